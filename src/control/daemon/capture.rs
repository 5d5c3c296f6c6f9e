//! `mswitch capture`: the daemon's end. A capture connection gets one
//! answer line (the port's number and the snap length), then a stream of
//! chunks, each `[u32 length][u64 frames lost so far]` (little-endian)
//! and `length` bytes of pcap records, until the client goes away, the
//! port goes, or the daemon stops. An idle capture sends an empty chunk
//! every second, so a client that left is noticed without traffic.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Daemon, Res};
use crate::control::proto::Response;
use crate::switch::capture::{BUFFER, Capture, Direction};

/// How long records may wait in the daemon before they are sent.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// An empty chunk at least this often, to notice a client that left.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The largest snap length asked for (as tcpdump's default).
pub(crate) const MAX_SNAPLEN: u32 = 262_144;

impl Daemon {
    pub(super) fn capture_session(
        &self,
        mut conn: &UnixStream,
        switch: &str,
        port: &str,
        direction: &str,
        snaplen: Option<u32>,
    ) -> Res<()> {
        let dir: Direction = direction.parse()?;
        let snaplen = snaplen.unwrap_or(MAX_SNAPLEN);
        if snaplen == 0 || snaplen > MAX_SNAPLEN {
            return Err(format!(
                "snap length {snaplen}: expected 1 to {MAX_SNAPLEN}"
            ));
        }
        let sw = {
            let sws = self.lock();
            let m = sws
                .get(switch)
                .ok_or_else(|| format!("no switch '{switch}'"))?;
            m.sw.clone()
        };
        let id = sw
            .port_id(port)
            .ok_or_else(|| format!("no port '{port}' on switch '{switch}'"))?;
        let c = Arc::new(Capture::new(dir, snaplen, BUFFER));
        if !sw.keep_capture(id, port, &c) {
            return Err(format!("no port '{port}' on switch '{switch}'"));
        }
        let line = Response::ok(json!({ "ofport": id.0, "snaplen": snaplen })).to_line();
        let mut spare = Vec::with_capacity(BUFFER);
        let mut last_sent = Instant::now();
        let mut ok = conn.write_all(line.as_bytes()).is_ok();
        while ok && !self.stopping() && sw.keep_capture(id, port, &c) {
            std::thread::sleep(DRAIN_EVERY);
            c.take(&mut spare);
            if spare.is_empty() && last_sent.elapsed() < HEARTBEAT {
                continue;
            }
            ok = send_chunk(conn, &spare, c.lost());
            last_sent = Instant::now();
        }
        sw.end_capture(id, &c);
        if ok {
            // The port or the daemon went: what is left, then the end.
            c.take(&mut spare);
            send_chunk(conn, &spare, c.lost());
        }
        Ok(())
    }
}

/// Sends one chunk of records; false if the client is gone.
fn send_chunk(mut conn: &UnixStream, records: &[u8], lost: u64) -> bool {
    let mut head = [0u8; 12];
    head[0..4].copy_from_slice(&(records.len() as u32).to_le_bytes());
    head[4..12].copy_from_slice(&lost.to_le_bytes());
    conn.write_all(&head).is_ok() && conn.write_all(records).is_ok()
}
