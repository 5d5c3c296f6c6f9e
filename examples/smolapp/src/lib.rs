//! `mswitch-smolapp`: an application with a user-space TCP/IP stack
//! ([smoltcp]) on a vport of an mswitch `demux` switch. It serves a UDP
//! echo and a TCP echo on its own port numbers, on the very addresses
//! (IPv4, IPv6) the host's kernel stack uses on the same interface: `demux`
//! hands the application the packets of the tuples it bound, and the
//! kernel gets everything else (ARP, ICMP and neighbour discovery for those
//! addresses included).
//!
//! - [`device`]: smoltcp's `phy::Device` on the vport, doing Ethernet
//!   itself (the host owns address resolution for the shared addresses).
//! - [`server`]: the interface, the sockets and the echo logic.
//! - [`run`]: connect, bind the tuples (they go away with the connection),
//!   serve; it sleeps on the vport's doorbell when idle.
//!
//! [smoltcp]: https://docs.rs/smoltcp

pub mod device;
pub mod server;
#[cfg(test)]
mod testutil;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use mswitch::client::VportConn;
use smoltcp::time::Instant;

use device::Link;
use server::{App, Settings};

/// The longest sleep when a packet is due but cannot go out yet (the
/// vport's ring is full: there is no doorbell for room).
const RETRY: Duration = Duration::from_millis(1);

/// The tuples `s` binds on the switch (`udp:IP:PORT`, `tcp:[IP6]:PORT`).
pub fn tuples(s: &Settings) -> Vec<String> {
    let mut v = Vec::new();
    for ip in s.addrs() {
        let ip = match ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let protos = [("udp", s.udp), ("tcp", s.tcp)];
        v.extend(
            protos
                .iter()
                .filter_map(|&(proto, port)| Some(format!("{proto}:{ip}:{}", port?))),
        );
    }
    v
}

/// Connects to vport `port` of switch `switch` (daemon socket `ctl`, or the
/// default one), binds the tuples and serves until the process ends.
/// Returns only on an error (settings, connection, a refused tuple).
pub fn run(ctl: Option<&Path>, switch: &str, port: &str, s: &Settings) -> Result<(), String> {
    s.check()?;
    let mut conn = VportConn::connect(ctl, switch, port)?;
    for t in tuples(s) {
        conn.bind(&t).map_err(|e| format!("bind {t}: {e}"))?;
    }
    let start = std::time::Instant::now();
    let now =
        || Instant::from_micros(i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX));
    let mut app = App::new(conn, s, seed(), now())?;
    eprintln!(
        "mswitch-smolapp: port {} of {switch} serving {}",
        app.device().link().info.ofport,
        tuples(s).join(", ")
    );
    loop {
        if app.poll(now()) {
            continue;
        }
        let wait = match app.delay(now()) {
            Some(d) if d.is_zero() => Some(RETRY),
            d => d,
        };
        app.device_mut().link_mut().wait(wait)?;
    }
}

/// Something unpredictable for TCP's initial sequence numbers.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
