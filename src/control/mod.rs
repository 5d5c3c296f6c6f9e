//! Control: the daemon that hosts switches, its Unix-socket protocol, the
//! `mswitch ctl` commands and the client library that attaches other
//! programs to virtual ports.

pub mod cli;
pub mod client;
pub mod daemon;
pub mod proto;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::packet::{DEFAULT_BUF_SIZE, DEFAULT_RING_SIZE, MemConfig};

/// Where the control socket lives unless `--ctl` or `MSWITCH_CTL` says otherwise:
/// `/run/mswitch/mswitch.sock` for root, else under `$XDG_RUNTIME_DIR` or `/tmp`.
pub fn default_ctl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MSWITCH_CTL") {
        return PathBuf::from(p);
    }
    if crate::sys::euid() == 0 {
        return PathBuf::from("/run/mswitch/mswitch.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("mswitch/mswitch.sock"),
        None => PathBuf::from(format!("/tmp/mswitch-{}/mswitch.sock", crate::sys::euid())),
    }
}

/// Switch and port names: 1 to 32 of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("bad {what} name '{s}' (1-32 of A-Z a-z 0-9 _ . -)"))
    }
}

/// What `attach` and `--port` accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// `vport:NAME[,ring=N][,buf=N]`: a shared-memory port for another process.
    Vport {
        name: String,
        ring: Option<u32>,
        buf: Option<u32>,
    },
}

impl PortSpec {
    pub fn name(&self) -> &str {
        match self {
            PortSpec::Vport { name, .. } => name,
        }
    }

    pub(crate) fn name_check(&self) -> Result<(), String> {
        valid_name("port", self.name())
    }

    pub fn mem_config(&self) -> MemConfig {
        match self {
            PortSpec::Vport { ring, buf, .. } => MemConfig::new(
                ring.unwrap_or(DEFAULT_RING_SIZE),
                buf.unwrap_or(DEFAULT_BUF_SIZE),
            ),
        }
    }
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PortSpec, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("bad port spec '{s}' (expected vport:NAME)"))?;
        match kind {
            "vport" => {
                let mut parts = rest.split(',');
                let name = parts.next().unwrap_or("").to_owned();
                valid_name("port", &name)?;
                let (mut ring, mut buf) = (None, None);
                for kv in parts {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("bad port option '{kv}' in '{s}'"))?;
                    let n: u32 = v
                        .parse()
                        .map_err(|_| format!("bad number '{v}' in '{s}'"))?;
                    match k {
                        "ring" => ring = Some(n),
                        "buf" => buf = Some(n),
                        _ => return Err(format!("unknown port option '{k}' in '{s}' (ring, buf)")),
                    }
                }
                let spec = PortSpec::Vport { name, ring, buf };
                spec.mem_config()
                    .validate()
                    .map_err(|e| format!("port '{s}': {e}"))?;
                Ok(spec)
            }
            _ => Err(format!(
                "unknown port kind '{kind}' in '{s}' (supported: vport)"
            )),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Vport { name, ring, buf } => {
                write!(f, "vport:{name}")?;
                if let Some(r) = ring {
                    write!(f, ",ring={r}")?;
                }
                if let Some(b) = buf {
                    write!(f, ",buf={b}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(
            "vport:a".parse::<PortSpec>().unwrap(),
            PortSpec::Vport {
                name: "a".into(),
                ring: None,
                buf: None
            }
        );
        let s: PortSpec = "vport:p-1,ring=256,buf=9216".parse().unwrap();
        assert_eq!(s.to_string(), "vport:p-1,ring=256,buf=9216");
        assert_eq!(s.mem_config().buf_size, 9216);
        for bad in [
            "a",
            "tap:x",
            "vport:",
            "vport:a b",
            "vport:a,ring=3",
            "vport:a,buf=x",
            "vport:a,foo=1",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("switch", "sw0.a_b-c").is_ok());
        assert!(valid_name("switch", "").is_err());
        assert!(valid_name("switch", "a/b").is_err());
        assert!(valid_name("switch", &"x".repeat(33)).is_err());
    }
}
