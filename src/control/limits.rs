//! The daemon's resource limits: how many switches, how much shared memory
//! for ports, how many control and OpenFlow connections (per peer and in
//! all) and how long a connection may stay silent. Every limit has a
//! documented default (README, "Limits") and an option of `mswitch daemon`,
//! `run` and `vswitchd`; going past one is refused with a one-line error
//! that names the limit and its option.

use std::time::Duration;

/// Limits on the OpenFlow connections of one switch's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfLimits {
    /// Connections served at once, dialled controllers included.
    pub conns: usize,
    /// Connections from one peer address (TCP: its IP; Unix: its uid).
    pub per_peer: usize,
    /// Time a passive connection has to send its HELLO.
    pub handshake: Duration,
}

impl Default for OfLimits {
    fn default() -> OfLimits {
        OfLimits {
            conns: 256,
            per_peer: 64,
            handshake: Duration::from_secs(5),
        }
    }
}

/// Every limit of a daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Switches hosted at once (each has at least one worker thread).
    pub switches: usize,
    /// Bytes of port memory (rings and buffers of virtual ports) in all.
    pub shm: u64,
    /// Control connections at once (vport clients and captures included).
    pub ctl_conns: usize,
    /// Control connections of one user other than root and the daemon's.
    pub ctl_per_user: usize,
    /// How long a control connection may wait between requests.
    pub ctl_idle: Duration,
    pub openflow: OfLimits,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            switches: 1024,
            shm: default_shm(),
            ctl_conns: 1024,
            ctl_per_user: 64,
            ctl_idle: Duration::from_secs(60),
            openflow: OfLimits::default(),
        }
    }
}

/// Half of the machine's memory (4 GiB if it cannot be read).
pub fn default_shm() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024 / 2)
        })
        .unwrap_or(4 << 30)
}

/// Parses a size: bytes, or with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            format!(
                "bad size '{}' (bytes, or a number with K, M, G or T)",
                clip(s)
            )
        })
}

/// A size for people: `36.0 GiB`, `512 KiB`, `100 B`.
pub fn show_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Most characters of untrusted text (a name, a spec) quoted in an error.
pub const CLIP: usize = 64;

/// `s` cut to [`CLIP`] characters (with `...` when cut), for quoting
/// untrusted text in a one-line error.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(CLIP) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}... ({} bytes)", &s[..at], s.len()),
    }
}

/// The limit options of the long-running commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Most switches at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_switches: Option<usize>,
    /// Most memory for ports' rings and buffers, in all: bytes or with K,
    /// M, G, T [default: half the machine's memory].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_shm: Option<u64>,
    /// Most control connections at once, vport clients included; when
    /// full, the connection idle longest is closed for a new one [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_ctl_conns: Option<usize>,
    /// Most control connections of one user other than root and the
    /// daemon's own [default: 64].
    #[arg(long, value_name = "N")]
    pub max_ctl_conns_per_user: Option<usize>,
    /// Close a control connection that sends no request for SECS [default: 60].
    #[arg(long, value_name = "SECS")]
    pub ctl_idle_timeout: Option<f64>,
    /// Most OpenFlow connections per switch; when full, the one quiet
    /// longest is closed for a new one [default: 256].
    #[arg(long, value_name = "N")]
    pub max_openflow_conns: Option<usize>,
    /// Most OpenFlow connections per switch from one address (TCP) or
    /// user (Unix socket) [default: 64].
    #[arg(long, value_name = "N")]
    pub max_openflow_conns_per_peer: Option<usize>,
    /// Close an OpenFlow connection that sends no HELLO within SECS [default: 5].
    #[arg(long, value_name = "SECS")]
    pub openflow_handshake_timeout: Option<f64>,
}

fn secs(what: &str, s: f64) -> Result<Duration, String> {
    if s > 0.0 && s <= 86_400.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{what} must be more than 0 and at most 86400 seconds"
        ))
    }
}

fn count(what: &str, n: usize) -> Result<usize, String> {
    if (1..=1_000_000).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{what} must be between 1 and 1000000"))
    }
}

impl LimitArgs {
    /// The limits asked for, the defaults for the rest.
    pub fn limits(&self) -> Result<Limits, String> {
        let d = Limits::default();
        let of = OfLimits::default();
        let n = |v: Option<usize>, what: &str, def: usize| v.map_or(Ok(def), |n| count(what, n));
        let t = |v: Option<f64>, what: &str, def: Duration| v.map_or(Ok(def), |s| secs(what, s));
        Ok(Limits {
            switches: n(self.max_switches, "--max-switches", d.switches)?,
            shm: match self.max_shm {
                Some(0) => return Err("--max-shm must be more than 0".into()),
                Some(s) => s,
                None => d.shm,
            },
            ctl_conns: n(self.max_ctl_conns, "--max-ctl-conns", d.ctl_conns)?,
            ctl_per_user: n(
                self.max_ctl_conns_per_user,
                "--max-ctl-conns-per-user",
                d.ctl_per_user,
            )?,
            ctl_idle: t(self.ctl_idle_timeout, "--ctl-idle-timeout", d.ctl_idle)?,
            openflow: OfLimits {
                conns: n(self.max_openflow_conns, "--max-openflow-conns", of.conns)?,
                per_peer: n(
                    self.max_openflow_conns_per_peer,
                    "--max-openflow-conns-per-peer",
                    of.per_peer,
                )?,
                handshake: t(
                    self.openflow_handshake_timeout,
                    "--openflow-handshake-timeout",
                    of.handshake,
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_show() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err(), "overflow is an error");
        assert_eq!(show_size(100), "100 B");
        assert_eq!(show_size(36 << 30), "36.0 GiB");
        assert_eq!(show_size(1536), "1.5 KiB");
    }

    #[test]
    fn untrusted_text_is_clipped() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1_000_000);
        let c = clip(&long);
        assert!(c.len() < 200, "{}", c.len());
        assert!(c.ends_with("... (2000000 bytes)"), "{c}");
    }

    #[test]
    fn options_are_checked() {
        let d = LimitArgs::default().limits().unwrap();
        assert_eq!(d, Limits::default());
        assert!(d.shm > 0);
        let a = LimitArgs {
            max_switches: Some(3),
            ctl_idle_timeout: Some(0.5),
            max_shm: Some(1 << 20),
            ..Default::default()
        };
        let l = a.limits().unwrap();
        assert_eq!(l.switches, 3);
        assert_eq!(l.ctl_idle, Duration::from_millis(500));
        assert_eq!(l.shm, 1 << 20);
        let bad = |a: LimitArgs| a.limits().unwrap_err();
        assert!(
            bad(LimitArgs {
                max_switches: Some(0),
                ..Default::default()
            })
            .contains("--max-switches")
        );
        assert!(
            bad(LimitArgs {
                ctl_idle_timeout: Some(f64::NAN),
                ..Default::default()
            })
            .contains("--ctl-idle-timeout")
        );
        assert!(
            bad(LimitArgs {
                max_shm: Some(0),
                ..Default::default()
            })
            .contains("--max-shm")
        );
    }
}
