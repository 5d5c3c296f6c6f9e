//! The keys and certificates of `ssl:`/`pssl:` connections, as Open
//! vSwitch takes them: a private key, its certificate (optionally followed
//! by the chain up to the CA) and the CA certificate(s) that peers'
//! certificates must be signed by, from the command line
//! (`--private-key`, `--certificate`, `--ca-cert`, `--bootstrap-ca-cert`)
//! or from the database's SSL table.
//!
//! [`TlsKeys`] holds the file names and builds rustls configurations from
//! them, reading the files again when their names or their contents on
//! disk change (Open vSwitch also notices replaced files), so a change
//! applies to the next connection. Connections already open keep the keys
//! they started with.
//!
//! Peer verification is Open vSwitch's: both sides present certificates
//! (mutual TLS) that must chain to a CA certificate in `ca_cert`; the
//! peer's name is not checked against the target's address (Open vSwitch
//! checks the chain only). [`ChainOnly`] does that with webpki's chain
//! verification, the one rustls's own verifier uses, minus the name check.
//!
//! With `bootstrap_ca_cert` and no CA file yet, the first `ssl:` connection
//! trusts the top certificate of the chain the peer sends (which must be
//! consistent with it), writes it to the CA file, and is dropped; the next
//! connection verifies against that file ([`bootstrap`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::bootstrap;

/// Where the keys are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub private_key: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    /// `none` turns peer verification off (as Open vSwitch's `-C none`).
    pub ca_cert: Option<PathBuf>,
    /// Bootstrap `ca_cert` from the first peer when the file is missing.
    pub bootstrap_ca_cert: bool,
    /// More certificates sent after ours (our CA's, for peers that
    /// bootstrap theirs from us).
    pub peer_ca_cert: Option<PathBuf>,
}

impl TlsFiles {
    /// `ca_cert` is `none`: peers are not verified.
    fn no_verify(&self) -> bool {
        self.ca_cert.as_deref() == Some(Path::new("none"))
    }
}

/// Why no TLS configuration could be made. Each is one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no SSL {0} configured (--{1} or the database's SSL table)")]
    Missing(&'static str, &'static str),
    #[error("cannot read {what} {}: {source}", .path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {}: {detail}", .path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("SSL configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("SSL CA certificates: {0}")]
    Verifier(String),
    #[error(
        "no CA certificate at {} yet: bootstrapping it works on ssl: connections, not pssl:",
        .0.display()
    )]
    BootstrapPassive(PathBuf),
}

/// The crypto of every TLS connection: ring's, with its default suites
/// (TLS 1.2 and 1.3, AES-GCM and ChaCha20-Poly1305 with ECDHE).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(source) => TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        },
        E::NoItemsFound => TlsError::Pem {
            what,
            path: path.to_owned(),
            detail: "no PEM item of that kind in the file".into(),
        },
        e => TlsError::Pem {
            what,
            path: path.to_owned(),
            detail: format!("bad PEM: {e}"),
        },
    }
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            detail: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path, e))
}

/// A trust store of the CA certificates in `path`.
fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs("CA certificate", path)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            what: "CA certificate",
            path: path.to_owned(),
            detail: format!("unusable as a CA: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The certificate chain (ours, then `peer_ca_cert`'s) and private key.
fn load_identity(f: &TlsFiles) -> Result<Identity, TlsError> {
    let key = f
        .private_key
        .as_deref()
        .ok_or(TlsError::Missing("private key", "private-key"))?;
    let cert = f
        .certificate
        .as_deref()
        .ok_or(TlsError::Missing("certificate", "certificate"))?;
    let mut chain = load_certs("certificate", cert)?;
    if let Some(p) = &f.peer_ca_cert {
        chain.extend(load_certs("peer CA certificate", p)?);
    }
    Ok((chain, load_key(key)?))
}

/// A server certificate verifier that checks the chain up to a CA of
/// `roots` (validity, signatures, key usage) but not the server's name.
#[derive(Debug)]
pub struct ChainOnly {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ChainOnly {
    pub fn new(roots: Arc<RootCertStore>, provider: &CryptoProvider) -> ChainOnly {
        ChainOnly {
            roots,
            algs: provider.signature_verification_algorithms,
        }
    }
}

/// The handshake-signature checks every verifier here shares.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}
pub(super) use signature_checks;

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// `-C none`: any server certificate is taken (the handshake signatures
/// are still checked against it).
#[derive(Debug)]
struct NoVerify {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// What a file looked like when it was read: a changed file is read again.
type Stamp = Option<(std::time::SystemTime, u64, u64)>;

fn stamp(p: &Option<PathBuf>) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p.as_deref()?).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

#[derive(Default)]
struct Cached {
    key: Option<(TlsFiles, [Stamp; 4])>,
    client: Option<Arc<ClientConfig>>,
    server: Option<Arc<ServerConfig>>,
}

/// The keys of a process's TLS connections (Open vSwitch has one set per
/// process too), shared by its OpenFlow agents and its database client.
#[derive(Default)]
pub struct TlsKeys {
    files: Mutex<TlsFiles>,
    cached: Mutex<Cached>,
}

impl std::fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TlsKeys").field(&self.files()).finish()
    }
}

impl TlsKeys {
    pub fn new(files: TlsFiles) -> TlsKeys {
        TlsKeys {
            files: Mutex::new(files),
            cached: Mutex::default(),
        }
    }

    pub fn files(&self) -> TlsFiles {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// New file names (the SSL table changed): used from the next
    /// connection on.
    pub fn set(&self, files: TlsFiles) {
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
    }

    /// The cache, emptied if the file names or the files changed.
    fn fresh(&self) -> (TlsFiles, std::sync::MutexGuard<'_, Cached>) {
        let f = self.files();
        let stamps = [
            stamp(&f.private_key),
            stamp(&f.certificate),
            stamp(&f.ca_cert),
            stamp(&f.peer_ca_cert),
        ];
        let mut c = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let key = Some((f.clone(), stamps));
        if c.key != key {
            *c = Cached {
                key,
                ..Cached::default()
            };
        }
        (f, c)
    }

    /// A configuration from the cache, or made of the files (and cached).
    fn config<T>(
        &self,
        slot: fn(&mut Cached) -> &mut Option<Arc<T>>,
        make: impl FnOnce(&TlsFiles, &Path, Identity) -> Result<T, TlsError>,
    ) -> Result<Arc<T>, TlsError> {
        let (f, mut c) = self.fresh();
        if let Some(cfg) = slot(&mut c) {
            return Ok(cfg.clone());
        }
        let id = load_identity(&f)?;
        let ca = f
            .ca_cert
            .as_deref()
            .ok_or(TlsError::Missing("CA certificate", "ca-cert"))?;
        let cfg = Arc::new(make(&f, ca, id)?);
        *slot(&mut c) = Some(cfg.clone());
        Ok(cfg)
    }

    /// The configuration of connections this process makes (`ssl:`).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.config(
            |c| &mut c.client,
            |f, ca, (chain, key)| {
                let provider = provider();
                let verifier: Arc<dyn ServerCertVerifier> = if f.no_verify() {
                    Arc::new(NoVerify {
                        algs: provider.signature_verification_algorithms,
                    })
                } else if f.bootstrap_ca_cert && !ca.exists() {
                    Arc::new(bootstrap::Bootstrap::new(ca.to_owned(), &provider))
                } else {
                    Arc::new(ChainOnly::new(load_roots(ca)?, &provider))
                };
                Ok(ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_auth_cert(chain, key)?)
            },
        )
    }

    /// The configuration of connections this process accepts (`pssl:`):
    /// the peer must present a certificate signed by the CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.config(
            |c| &mut c.server,
            |f, ca, (chain, key)| {
                if f.bootstrap_ca_cert && !ca.exists() {
                    return Err(TlsError::BootstrapPassive(ca.to_owned()));
                }
                let provider = provider();
                let verifier = if f.no_verify() {
                    WebPkiClientVerifier::no_client_auth()
                } else {
                    WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider.clone())
                        .build()
                        .map_err(|e| TlsError::Verifier(e.to_string()))?
                };
                Ok(ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)?)
            },
        )
    }
}

/// The `--private-key`, `--certificate`, `--ca-cert` and
/// `--bootstrap-ca-cert` options of Open vSwitch's daemons.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM private key for ssl:/pssl: connections.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// PEM certificate of the private key (optionally followed by its chain).
    #[arg(short = 'c', long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// PEM CA certificate(s) that peers' certificates must be signed by
    /// (`none`: peers are not verified, a security risk).
    #[arg(
        short = 'C',
        long,
        value_name = "FILE",
        conflicts_with = "bootstrap_ca_cert"
    )]
    pub ca_cert: Option<PathBuf>,
    /// Like --ca-cert, but when FILE does not exist, take the CA
    /// certificate from the first ssl: peer and save it there.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_ca_cert: Option<PathBuf>,
    /// PEM certificate(s) sent after ours: the CA's that signed ours, for
    /// peers that bootstrap their CA certificate from us.
    #[arg(long, value_name = "FILE")]
    pub peer_ca_cert: Option<PathBuf>,
}

impl TlsArgs {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            private_key: self.private_key.clone(),
            certificate: self.certificate.clone(),
            ca_cert: self
                .ca_cert
                .clone()
                .or_else(|| self.bootstrap_ca_cert.clone()),
            bootstrap_ca_cert: self.bootstrap_ca_cert.is_some(),
            peer_ca_cert: self.peer_ca_cert.clone(),
        }
    }

    pub fn keys(&self) -> Arc<TlsKeys> {
        Arc::new(TlsKeys::new(self.files()))
    }
}
