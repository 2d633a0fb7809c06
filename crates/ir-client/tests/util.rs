//! Test registries and servers for ir-client: ir-server's accept loop on
//! 127.0.0.1 with plain, TLS and an in-test RA-TLS transport, and a
//! deliberately lying registry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ir_attest::cca_platform::PlatformKeys;
use ir_attest::verify::{verify_local, Session};
use ir_attest::ReferenceSet;
use ir_server::api::{ApiState, ConnInfo};
use ir_server::snapshot::catalog::{self, Catalog};
use ir_server::transport::{Handshake, HandshakeError, ServeOptions};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest as _, Sha512};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A registry root with:
/// - `app:latest`, an image with two layers;
/// - `app:multi`, an index for linux/amd64 and linux/arm64/v8;
/// - `team/tools:1.0`.
pub struct Fixture {
    pub root: ir_testkit::Root,
    pub image: ir_testkit::Image,
    pub amd64: ir_testkit::Image,
    pub arm64: ir_testkit::Image,
    pub index: ir_testkit::Desc,
}

pub fn fixture() -> Fixture {
    let root = ir_testkit::Root::new();
    let app = root.layout("app");
    let image = app.image_with_layers(&[b"first layer", &vec![7u8; 300_000]]);
    let amd64 = app.image(b"amd64 layer");
    let arm64 = app.image(b"arm64 layer");
    let index = app.index(&[
        amd64.manifest.platform("linux", "amd64"),
        arm64.manifest.with(
            "platform",
            serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ),
    ]);
    app.set_index(&[image.tagged("latest"), index.tagged("multi")]);
    let tools = root.layout("team/tools");
    let t = tools.image(b"tools");
    tools.set_index(&[t.tagged("1.0")]);
    Fixture {
        root,
        image,
        amd64,
        arm64,
        index,
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn from_parts(
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ADDR/PATH`: a repository or image reference on this server.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Serves the layouts under `root` with ir-server's accept loop.
pub async fn serve<H: Handshake>(root: &Path, handshake: Arc<H>) -> Server {
    let registry = ir_oci::load(root, &ir_oci::LoadOptions::default()).unwrap();
    assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
    let state = Arc::new(ApiState::new(
        catalog::shared(Catalog::new(registry)),
        false,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServeOptions {
        grace: std::time::Duration::from_secs(2),
        ..ServeOptions::default()
    };
    let task = tokio::spawn(ir_server::transport::serve(
        listener,
        handshake,
        state,
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A test CA and a server certificate for localhost signed by it.
pub struct Pki {
    /// Holds the files below alive for as long as the Pki.
    _dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::TempDir::new().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ir-client test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_file = dir.path().join("ca.pem");
    let cert_file = dir.path().join("server.crt");
    let key_file = dir.path().join("server.key");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        _dir: dir,
        ca_file,
        cert_file,
        key_file,
    }
}

/// ir-server's TLS transport with the PKI's server certificate.
pub fn tls_transport(pki: &Pki) -> Arc<ir_server::transport::tls::Tls> {
    let store = Arc::new(
        ir_server::transport::cert_store::CertStore::load(&pki.cert_file, &pki.key_file).unwrap(),
    );
    Arc::new(ir_server::transport::tls::Tls::new(
        ir_server::transport::cert_store::server_config(store),
    ))
}

/// What the in-test RA-TLS server concluded about one handshake.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub challenge: [u8; 64],
    pub result: Result<String, String>,
}

/// An RA-TLS transport written for these tests, independent of
/// ir-server's: a fresh challenge per connection sent as the only
/// certificate-authority hint (base64 text), and a client-certificate
/// verifier that checks the token with `ir_attest::verify::verify_local`
/// against the given reference values and platform keys.
pub struct TestRaTls {
    server_certs: Arc<ir_server::transport::cert_store::CertStore>,
    references: Arc<ReferenceSet>,
    platform: Arc<PlatformKeys>,
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    counter: AtomicU64,
}

impl TestRaTls {
    pub fn new(pki: &Pki, references: ReferenceSet, platform: PlatformKeys) -> Arc<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let store =
            ir_server::transport::cert_store::CertStore::load(&pki.cert_file, &pki.key_file)
                .unwrap();
        Arc::new(Self {
            server_certs: Arc::new(store),
            references: Arc::new(references),
            platform: Arc::new(platform),
            outcomes: Arc::default(),
            provider,
            counter: AtomicU64::new(0),
        })
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    fn challenge(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(self.counter.fetch_add(1, Ordering::SeqCst).to_le_bytes());
        h.update(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                .to_le_bytes(),
        );
        h.update(std::process::id().to_le_bytes());
        h.finalize().into()
    }
}

#[derive(Debug)]
struct TestVerifier {
    challenge: [u8; 64],
    hints: Vec<DistinguishedName>,
    references: Arc<ReferenceSet>,
    platform: Arc<PlatformKeys>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl TestVerifier {
    fn check(&self, der: &[u8]) -> Result<String, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let token = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == ir_attest::RATLS_TOKEN_EXTENSION_OID)
            .ok_or("missing extension 1.3.3.3.7")?
            .value;
        let verified = verify_local(
            token,
            Session {
                challenge: &self.challenge,
                client_spki_der: cert.tbs_certificate.subject_pki.raw,
            },
            &self.references,
            Some(&self.platform),
        )
        .map_err(|e| e.to_string())?;
        Ok(verified.realm.label())
    }
}

impl ClientCertVerifier for TestVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self.check(end_entity);
        self.outcomes.lock().unwrap().push(Outcome {
            challenge: self.challenge,
            result: result.clone(),
        });
        result
            .map(|_| ClientCertVerified::assertion())
            .map_err(rustls::Error::General)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Handshake for TestRaTls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Hello = TcpStream;
    type Exchanged = (Self::Io, ConnInfo);

    async fn hello(&self, tcp: TcpStream, _peer: SocketAddr) -> Result<TcpStream, HandshakeError> {
        Ok(tcp)
    }

    async fn verify(
        &self,
        exchanged: (Self::Io, ConnInfo),
        _peer: SocketAddr,
        _deadline: tokio::time::Instant,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        Ok(exchanged)
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Self::Io, ConnInfo), HandshakeError> {
        let challenge = self.challenge();
        let hint = base64::engine::general_purpose::STANDARD.encode(challenge);
        let verifier = Arc::new(TestVerifier {
            challenge,
            hints: vec![DistinguishedName::from(hint.into_bytes())],
            references: self.references.clone(),
            platform: self.platform.clone(),
            outcomes: self.outcomes.clone(),
            provider: self.provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.server_certs.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let stream = tokio_rustls::TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .map_err(HandshakeError::from_io)?;
        Ok((stream, ConnInfo::open(peer)))
    }
}

/// A registry that serves fixed bytes per path, whatever they hash to.
pub async fn lying_registry(routes: HashMap<String, (String, Vec<u8>)>) -> Server {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let routes = Arc::new(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                _ = &mut stopped => break,
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let routes = routes.clone();
                    async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        match routes.get(req.uri().path()) {
                            Some((ct, body)) => {
                                *resp.body_mut() = Full::new(Bytes::from(body.clone()));
                                resp.headers_mut()
                                    .insert("content-type", ct.parse().unwrap());
                            }
                            None => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// Files under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A GET of `url` with `c`, sent (a failure to send panics).
pub async fn get(c: &reqwest::Client, url: impl reqwest::IntoUrl) -> reqwest::Response {
    c.get(url).send().await.unwrap()
}

/// A fresh directory and the path `root` in it (not created), for a root
/// a test writes; the directory goes when the first value is dropped.
pub fn scratch_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    (dir, root)
}

/// Runs the ir-client binary with `args` and `env` on a blocking thread,
/// without the proxy variables of the caller's environment; with `home`,
/// also without any auth file but those given (HOME is `home`, the XDG
/// and REGISTRY_AUTH_FILE variables are unset).
pub async fn run_client(
    args: &[&str],
    env: &[(&str, &str)],
    home: Option<&Path>,
) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let home = home.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ir-client"));
        c.args(&args);
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
        ] {
            c.env_remove(proxy);
        }
        if let Some(home) = home {
            c.env("HOME", home)
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("REGISTRY_AUTH_FILE");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

/// Asserts that a run succeeded (else shows its stderr); its stdout.
pub fn stdout_ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A signature policy (read as the client reads it) that rejects everything
/// but images of `host` signed by `key` (`policy.json` beside the key).
pub fn signature_policy(key: &Path, host: &str) -> ir_client::signatures::SignaturePolicy {
    let file = key.with_file_name("policy.json");
    let body = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {host: [{"type": "sigstoreSigned", "keyPath": key}]}},
    });
    std::fs::write(&file, serde_json::to_vec(&body).unwrap()).unwrap();
    ir_client::signatures::SignaturePolicy {
        trust: Arc::new(ir_trust::Trust {
            policy: Some(ir_trust::Policy::load(&file).unwrap()),
            notation: None,
        }),
        registry_host: Some(host.to_owned()),
    }
}
