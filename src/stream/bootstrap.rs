//! CA certificate bootstrap (Open vSwitch's `--bootstrap-ca-cert`): while
//! the CA file does not exist, the first `ssl:` peer's chain is taken on
//! trust. Its last certificate (the peer's CA, which the peer must send
//! after its own) becomes the trust anchor only if the chain the peer sent
//! verifies up to it; it is written to the CA file (created, never
//! overwritten, mode 0444) and the connection is refused, so the next one
//! is verified against the file, as Open vSwitch does ("killing successful
//! connection to retry using CA cert").

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::keys::signature_checks;

#[derive(Debug)]
pub struct Bootstrap {
    ca_file: PathBuf,
    algs: WebPkiSupportedAlgorithms,
}

impl Bootstrap {
    pub fn new(ca_file: PathBuf, provider: &Arc<CryptoProvider>) -> Bootstrap {
        Bootstrap {
            ca_file,
            algs: provider.signature_verification_algorithms,
        }
    }
}

fn refuse(why: String) -> rustls::Error {
    rustls::Error::General(format!("cannot bootstrap the CA certificate: {why}"))
}

/// Base64 (RFC 4648, with padding).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A certificate as PEM text.
pub fn to_pem(cert: &[u8]) -> String {
    let b = base64(cert);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

impl ServerCertVerifier for Bootstrap {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.last() else {
            return Err(refuse(
                "the peer sent only its own certificate (it must send its CA certificate after it)"
                    .into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| refuse(format!("the peer's last certificate is no CA: {e}")))?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots,
            intermediates,
            now,
            self.algs.all,
        )
        .map_err(|e| {
            refuse(format!(
                "the peer's chain does not verify up to its CA: {e}"
            ))
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&self.ca_file)
            .map_err(|e| refuse(format!("{}: {e}", self.ca_file.display())))?;
        f.write_all(to_pem(ca).as_bytes())
            .map_err(|e| refuse(format!("{}: {e}", self.ca_file.display())))?;
        tracing::info!(
            "bootstrapped the CA certificate to {}; reconnecting with it",
            self.ca_file.display()
        );
        Err(rustls::Error::General(format!(
            "CA certificate bootstrapped to {}: reconnecting to verify the peer with it",
            self.ca_file.display()
        )))
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in v {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn pem_round_trips_through_the_pem_reader() {
        use rustls::pki_types::pem::PemObject;
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = to_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), &der[..]);
    }
}
