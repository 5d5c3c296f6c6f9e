//! The database's SSL table: the keys of `ssl:` controllers and of the
//! database connection itself, as ovs-vswitchd takes them. The row named
//! by `Open_vSwitch.ssl` replaces the files given on the command line
//! (`--private-key`, `--certificate`, `--ca-cert`, `--bootstrap-ca-cert`),
//! from the next connection on; without a row the last files stay (as in
//! Open vSwitch, which only acts on a row that is there). Connections
//! already open keep the keys they were made with.

use std::path::PathBuf;

use super::db::Mirror;
use crate::ovsdb::datum;
use crate::stream::{TlsFiles, TlsKeys};

/// The SSL table's columns read.
pub const COLUMNS: [&str; 4] = ["private_key", "certificate", "ca_cert", "bootstrap_ca_cert"];

/// The files the SSL row names, if there is one.
fn files(mirror: &Mirror) -> Option<TlsFiles> {
    let (_, root) = mirror.root()?;
    let uuid = *datum::uuids(&root["ssl"]).first()?;
    let row = mirror.row("SSL", uuid)?;
    let path = |k: &str| row[k].as_str().filter(|s| !s.is_empty()).map(PathBuf::from);
    Some(TlsFiles {
        private_key: path("private_key"),
        certificate: path("certificate"),
        ca_cert: path("ca_cert"),
        bootstrap_ca_cert: row["bootstrap_ca_cert"].as_bool().unwrap_or(false),
        peer_ca_cert: None,
    })
}

/// Gives `keys` the SSL row's files, if there is a row and they differ.
pub fn apply(keys: &TlsKeys, mirror: &Mirror) {
    let Some(mut f) = files(mirror) else {
        return;
    };
    let now = keys.files();
    // The table has no column for it: the command line's stays.
    f.peer_ca_cert = now.peer_ca_cert.clone();
    if f != now {
        let show = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
        tracing::info!(
            "SSL keys from the database: private key {}, certificate {}, CA certificate {}{}",
            show(&f.private_key),
            show(&f.certificate),
            show(&f.ca_cert),
            if f.bootstrap_ca_cert {
                " (bootstrap)"
            } else {
                ""
            }
        );
        keys.set(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ssl_row_replaces_the_command_line_files_and_its_absence_keeps_them() {
        let cli = TlsFiles {
            private_key: Some("/cli/key.pem".into()),
            certificate: Some("/cli/cert.pem".into()),
            ca_cert: Some("/cli/ca.pem".into()),
            bootstrap_ca_cert: false,
            peer_ca_cert: Some("/cli/peer-ca.pem".into()),
        };
        let keys = TlsKeys::new(cli.clone());
        let mut m = Mirror::default();
        m.apply(&json!({"Open_vSwitch": {"r": {"new": {"ssl": ["set", []]}}}}));
        apply(&keys, &m);
        assert_eq!(keys.files(), cli);
        m.apply(&json!({
            "Open_vSwitch": {"r": {"new": {"ssl": ["uuid", "s"]}}},
            "SSL": {"s": {"new": {"private_key": "/db/key.pem", "certificate": "/db/cert.pem",
                "ca_cert": "/db/ca.pem", "bootstrap_ca_cert": true}}},
        }));
        apply(&keys, &m);
        let f = keys.files();
        assert_eq!(f.private_key.as_deref(), Some("/db/key.pem".as_ref()));
        assert_eq!(f.certificate.as_deref(), Some("/db/cert.pem".as_ref()));
        assert_eq!(f.ca_cert.as_deref(), Some("/db/ca.pem".as_ref()));
        assert!(f.bootstrap_ca_cert);
        assert_eq!(f.peer_ca_cert, cli.peer_ca_cert);
        // `ovs-vsctl del-ssl`: the row goes, the files stay.
        m.apply(&json!({
            "Open_vSwitch": {"r": {"new": {"ssl": ["set", []]}}},
            "SSL": {"s": {"old": {}}},
        }));
        apply(&keys, &m);
        assert_eq!(keys.files(), f);
        // A malformed row names nothing.
        m.apply(&json!({
            "Open_vSwitch": {"r": {"new": {"ssl": ["uuid", "t"]}}},
            "SSL": {"t": {"new": {"private_key": 5, "certificate": "",
                "ca_cert": ["set", []], "bootstrap_ca_cert": "yes"}}},
        }));
        apply(&keys, &m);
        assert_eq!(
            keys.files(),
            TlsFiles {
                peer_ca_cert: cli.peer_ca_cert.clone(),
                ..TlsFiles::default()
            }
        );
    }
}
