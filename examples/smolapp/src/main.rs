//! `mswitch-smolapp`: a UDP and TCP echo server on smoltcp, on a vport of a
//! running mswitch `demux` switch, sharing the host's IP address.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mswitch::wire::MacAddr;
use mswitch_smolapp::server::Settings;

/// Serve a UDP echo and a TCP echo with a user-space stack on a vport of a
/// `demux` switch, on the host's own IP address: the switch delivers the
/// bound ports here and everything else to the host's kernel.
#[derive(Parser, Debug)]
#[command(name = "mswitch-smolapp", version)]
struct Args {
    /// The daemon's control socket (default: mswitch's).
    #[arg(long)]
    ctl: Option<PathBuf>,
    /// The switch (it must run the demux module).
    #[arg(long, short)]
    switch: String,
    /// The vport's name (created if it does not exist).
    #[arg(long, short, default_value = "smolapp")]
    port: String,
    /// The host's address, shared with the kernel: IP or IP/PREFIX, IPv4
    /// or IPv6 (at most one of each: give the option twice for both).
    #[arg(long, value_parser = parse_cidr, required = true)]
    ip: Vec<(IpAddr, u8)>,
    /// The host interface's MAC, to answer from (default: the destination
    /// MAC of the first frame received).
    #[arg(long)]
    mac: Option<MacAddr>,
    /// UDP port to echo on.
    #[arg(long)]
    udp: Option<u16>,
    /// TCP port to echo on.
    #[arg(long)]
    tcp: Option<u16>,
    /// TCP connections served at once (a connection beyond them is
    /// refused with a reset).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    tcp_conns: u16,
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("'{ip}' is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("'{l}' is not a prefix length (0..={max})"))?,
    };
    Ok((ip, len))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for &(ip, len) in &a.ip {
        match ip {
            IpAddr::V4(ip) => v4.push((ip, len)),
            IpAddr::V6(ip) => v6.push((ip, len)),
        }
    }
    if v4.len() > 1 || v6.len() > 1 {
        eprintln!("mswitch-smolapp: --ip: one IPv4 and one IPv6 address at most");
        return ExitCode::FAILURE;
    }
    let s = Settings {
        v4: v4.pop(),
        v6: v6.pop(),
        mac: a.mac,
        udp: a.udp,
        tcp: a.tcp,
        tcp_conns: usize::from(a.tcp_conns),
    };
    match mswitch_smolapp::run(a.ctl.as_deref(), &a.switch, &a.port, &s) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mswitch-smolapp: {e}");
            ExitCode::FAILURE
        }
    }
}
