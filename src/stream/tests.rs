//! Tests of the TLS keys and streams on loopback TCP, with fixed test
//! certificates (`testdata/`, P-256, valid until 2126, made with openssl
//! for these tests only): CA `ca` signed `a` and `b`; `rogueca` signed `r`.
//! No certificate names an address: the handshakes show that names are
//! not checked, as in Open vSwitch.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn data(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/stream/testdata")
        .join(f)
}

fn keys(who: &str, ca: &str) -> TlsKeys {
    TlsKeys::new(TlsFiles {
        private_key: Some(data(&format!("{who}-key.pem"))),
        certificate: Some(data(&format!("{who}-cert.pem"))),
        ca_cert: Some(data(&format!("{ca}-cert.pem"))),
        ..TlsFiles::default()
    })
}

/// A temporary file with `text`, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(name: &str, text: &str) -> Temp {
        let p = std::env::temp_dir().join(format!("mswitch-tls-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        Temp(p)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn one_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "{s}");
    s
}

#[test]
fn pem_loading_errors_are_one_clear_line() {
    let e = one_line(keys::load_key(Path::new("/nonexistent/key.pem")).unwrap_err());
    assert!(
        e.starts_with("cannot read private key /nonexistent/key.pem: No such file"),
        "{e}"
    );
    let e = one_line(keys::load_certs("certificate", Path::new("/nonexistent/c.pem")).unwrap_err());
    assert!(
        e.starts_with("cannot read certificate /nonexistent/c.pem"),
        "{e}"
    );
    let junk = Temp::new("junk.pem", "hello, not a PEM file\n");
    let e = one_line(keys::load_key(&junk.0).unwrap_err());
    assert!(e.contains("junk.pem: no PEM item of that kind"), "{e}");
    let e = one_line(keys::load_certs("certificate", &junk.0).unwrap_err());
    assert!(e.contains("junk.pem: no certificate in the file"), "{e}");
    // A key where a certificate belongs, and the other way round.
    let e = one_line(keys::load_certs("CA certificate", &data("a-key.pem")).unwrap_err());
    assert!(
        e.starts_with("CA certificate ") && e.contains("no certificate"),
        "{e}"
    );
    assert!(keys::load_key(&data("a-cert.pem")).is_err());
    // A PEM block whose body is not base64.
    let bad = Temp::new(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let e = one_line(keys::load_certs("certificate", &bad.0).unwrap_err());
    assert!(e.contains("bad PEM"), "{e}");

    // Missing settings name the option.
    let e = one_line(TlsKeys::default().client_config().unwrap_err());
    assert_eq!(
        e,
        "no SSL private key configured (--private-key or the database's SSL table)"
    );
    let mut f = keys("a", "ca").files();
    f.ca_cert = None;
    let e = one_line(TlsKeys::new(f).server_config().unwrap_err());
    assert!(
        e.starts_with("no SSL CA certificate configured (--ca-cert"),
        "{e}"
    );
    // A key that is not the certificate's.
    let mut f = keys("a", "ca").files();
    f.private_key = Some(data("b-key.pem"));
    let e = one_line(TlsKeys::new(f).client_config().unwrap_err());
    assert!(e.starts_with("SSL configuration: "), "{e}");
    // Bootstrapping is for ssl: only.
    let mut f = keys("a", "ca").files();
    f.ca_cert = Some("/nonexistent/ca.pem".into());
    f.bootstrap_ca_cert = true;
    assert!(TlsKeys::new(f.clone()).client_config().is_ok());
    let e = one_line(TlsKeys::new(f).server_config().unwrap_err());
    assert!(e.contains("not pssl:"), "{e}");
}

#[test]
fn configurations_are_cached_until_the_files_change() {
    let k = keys("a", "ca");
    let c1 = k.client_config().unwrap();
    assert!(Arc::ptr_eq(&c1, &k.client_config().unwrap()));
    let s1 = k.server_config().unwrap();
    assert!(Arc::ptr_eq(&s1, &k.server_config().unwrap()));
    k.set(keys("b", "ca").files());
    assert!(!Arc::ptr_eq(&c1, &k.client_config().unwrap()));
    assert!(!Arc::ptr_eq(&s1, &k.server_config().unwrap()));
}

/// Both ends of a loopback TCP connection, blocking, with timeouts.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    for t in [&c, &s] {
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        t.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    (c, s)
}

/// A blocking handshake between a client with `client` keys and a server
/// with `server` keys: each side's outcome.
fn handshake(client: &TlsKeys, server: &TlsKeys) -> (io::Result<Stream>, io::Result<Stream>) {
    let (c, s) = pair();
    let mut c = Stream::tls_client(c, client, "127.0.0.1").unwrap();
    let mut s = Stream::tls_server(s, server).unwrap();
    let t = std::thread::spawn(move || s.handshake().map(|()| s));
    let rc = c.handshake().map(|()| c);
    // The client is done before the server has read its last flight (TLS
    // 1.3): a first read makes the server see it.
    let rs = t.join().unwrap();
    (rc, rs)
}

#[test]
fn mutual_tls_checks_chains_but_not_names() {
    let (c, s) = handshake(&keys("b", "ca"), &keys("a", "ca"));
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    s.write_all(b"back").unwrap();
    let n = c.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    drop(c);
    // The client's close (close_notify) reads as end of stream.
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

#[test]
fn peers_from_another_ca_are_refused_on_both_sides() {
    // A server with a certificate of another CA: the client refuses.
    let (c, _) = handshake(&keys("b", "ca"), &keys("r", "ca"));
    let e = one_line(c.err().unwrap());
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
    // A client with one: the server refuses (the client may only learn
    // it from the alert, after its own handshake is done in TLS 1.3).
    let (c, s) = handshake(&keys("r", "ca"), &keys("a", "ca"));
    let e = match s {
        Err(e) => one_line(e),
        Ok(mut s) => one_line(s.read(&mut [0u8; 4]).unwrap_err()),
    };
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
    if let Ok(mut c) = c {
        let r = c.read(&mut [0u8; 4]);
        assert!(!matches!(r, Ok(n) if n > 0), "{r:?}");
    }
}

/// Moves bytes between two non-blocking streams until `done` or 2000
/// rounds.
fn pump(a: &mut Stream, b: &mut Stream, mut done: impl FnMut(&mut Stream, &mut Stream) -> bool) {
    for _ in 0..2000 {
        if done(a, b) {
            return;
        }
        for s in [&mut *a, &mut *b] {
            if s.wants_write() {
                let _ = s.flush();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no progress");
}

fn read_some(s: &mut Stream, into: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn non_blocking_streams_carry_data_both_ways_through_the_handshake() {
    let (c, s) = pair();
    let mut c = Stream::tls_client(c, &keys("b", "ca"), "127.0.0.1").unwrap();
    let mut s = Stream::tls_server(s, &keys("a", "ca")).unwrap();
    c.set_nonblocking().unwrap();
    s.set_nonblocking().unwrap();
    // Written before the handshake: kept until it is done.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got_s, mut got_c) = (0, Vec::new(), Vec::new());
    let mut greeted = false;
    pump(&mut c, &mut s, |c, s| {
        if sent < big.len() {
            match c.write(&big[sent..]) {
                Ok(n) => sent += n,
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        }
        read_some(s, &mut got_s).unwrap();
        if !greeted {
            match s.write(b"server says hi") {
                Ok(14) => greeted = true,
                Ok(n) => panic!("partial write {n}"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        }
        read_some(c, &mut got_c).unwrap();
        got_s.len() == big.len() && got_c == b"server says hi"
    });
    assert_eq!(got_s, big);
    assert!(!c.buffered_input() && !s.buffered_input());
}

#[test]
fn a_broken_stream_stays_an_error_and_never_reads_as_would_block() {
    let (mut c, s) = pair();
    let mut s = Stream::tls_server(s, &keys("a", "ca")).unwrap();
    s.set_nonblocking().unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let first = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            r => break r,
        }
    };
    let e = one_line(first.unwrap_err());
    assert!(e.starts_with("TLS: "), "{e}");
    // The poll loop asks again: still the error (no spinning on
    // WouldBlock with input announced).
    assert!(s.buffered_input());
    let again = s.read(&mut buf).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn ca_cert_none_takes_any_server() {
    let mut none = keys("b", "ca").files();
    none.ca_cert = Some("none".into());
    let (c, s) = handshake(&TlsKeys::new(none.clone()), &keys("r", "rogueca"));
    // The client takes the rogue server; that server refuses the client,
    // whose CA it does not know.
    let mut c = c.unwrap();
    let e = s.err().map(one_line).unwrap_or_default();
    assert!(e.contains("UnknownIssuer") || e.is_empty(), "{e}");
    let r = c.read(&mut [0u8; 4]);
    assert!(!matches!(r, Ok(n) if n > 0), "{r:?}");
    // A server with `none` asks for no certificate at all.
    let (c, s) = handshake(&keys("r", "ca"), &TlsKeys::new(none));
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    c.write_all(b"x").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf).unwrap(), 1);
}
