//! Start-up and the server's life. [`App::build`] turns the [`Config`]
//! into a listening server (certificates, signature policy, attestor,
//! listeners, metrics listener); [`App::run`] loads through the reloader,
//! marks the server ready, reloads on SIGHUP (and file changes with
//! `--watch`), rereads the authentication and access files on SIGHUP
//! ([`crate::auth::reload`]), and shuts down gracefully on SIGTERM/SIGINT.
//! [`check`] (`--check`) loads and reports without serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ir_oci::report;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::ApiState;
use crate::audit::trust_digest::digest_of;
use crate::audit::{Audit, AuditError};
use crate::auth::Auth;
use crate::cli::{Args, ReportFormat};
use crate::config::{AttestConfig, Config, ConfigError, PlatformConfig, TransportConfig};
use crate::delivery::blob_cache::{self, BlobCache};
use crate::metrics::listener::ListenError;
use crate::metrics::status::{InputRecord, LoadKind, ServerStatus};
use crate::metrics::Metrics;
use crate::process::{sd_notify, signals};
use crate::snapshot::catalog::{self, Catalog, SharedCatalog};
use crate::snapshot::policy_gate::{self, Gate, TrustError};
use crate::snapshot::reload::{self, Loaded, Reloader};
use crate::snapshot::{load_progress, watch};
use crate::transport::cert_store::{self, CertError, CertStore};
use crate::transport::client_access::{self, ClientAccessError, SharedClientMap};
use crate::transport::{self, plain::Plain, ratls::RaTls, tls::Tls, ServeOptions};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::{EarVerifier, PlatformKeys, VeraisonClient};

/// Exit code when the root cannot be read at all.
pub const EXIT_ROOT: u8 = 2;
/// Exit code of `--check` when some application was rejected.
pub const EXIT_REJECTED: u8 = 1;

/// How often certificate files are checked for replacement.
const CERT_POLL: Duration = Duration::from_secs(2);
/// Quiet period that ends a burst of file events before a `--watch` reload.
const WATCH_QUIET: Duration = Duration::from_millis(500);

/// Why the server could not start: one line naming the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The flags do not fit together.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server's certificate pair (`-c`, `-k`).
    #[error(transparent)]
    Certificates(#[from] CertificatesError),
    /// The signature policy cannot be used.
    #[error(transparent)]
    Policy(#[from] TrustError),
    /// The API port cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The metrics listener cannot be bound.
    #[error(transparent)]
    Metrics(#[from] ListenError),
    /// The client CA or the client map (`--client-ca`, `--client-map`).
    #[error(transparent)]
    ClientAccess(#[from] ClientAccessError),
    /// What RA-TLS needs (`-j`, `--cpak`, `-u`, `-v`, ...).
    #[error("RA-TLS: {0}")]
    Attestation(#[from] SettingError),
    /// The receipts journal or the events endpoint (`--receipts`, `--events-url`).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The users, token keys or access map (`--htpasswd`, `--token-*`,
    /// `--access-map`).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// A server built from its configuration, listening, not loaded yet.
pub struct App {
    config: Config,
    state: Arc<ApiState>,
    gate: Option<Arc<Gate>>,
    metrics: Option<Arc<Metrics>>,
    audit: Option<Arc<Audit>>,
    access: Option<Arc<SharedClientMap>>,
    hangups: broadcast::Sender<()>,
    triggers: (mpsc::Sender<()>, mpsc::Receiver<()>),
    server: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    blob_cache: Arc<BlobCache>,
}

/// Checks the flags, builds the server and runs it until SIGINT or
/// SIGTERM (the binary's `main` without `--check`).
pub async fn serve(args: Args) -> ExitCode {
    let app = match Config::from_args(args) {
        Ok(config) => App::build(config).await,
        Err(e) => Err(e.into()),
    };
    match app {
        Ok(app) => app.run().await,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

impl App {
    /// Certificates first (a bad pair should fail before a long
    /// verification), then the signature policy (one that cannot be used is
    /// a start-up error, never a silent "accept everything"), the port and
    /// the metrics listener, both bound before loading so that probes see
    /// a live process (`/healthz`) that is not ready yet (`/readyz` and the
    /// API answer 503) while a large registry verifies, and the transport.
    pub async fn build(config: Config) -> Result<App, StartupError> {
        let certs = match config.transport {
            TransportConfig::Plain => None,
            _ => Some(load_certificates(&config)?),
        };
        let gate = trust_gate(&config)?;
        policy_gate::announce(gate.as_deref());
        let audit = start_audit(&config, gate.clone())?;
        let (access, auth) = start_access(&config)?;
        let addr = config.listen.addr;
        let listener = transport::bind(addr, config.listen.backlog)
            .map_err(|source| StartupError::Listen { addr, source })?;
        let metrics = config.metrics_addr.map(|_| Arc::new(Metrics::new()));
        if let (Some(m), Some(a)) = (&metrics, &audit) {
            m.observe_audit(a.clone());
        }
        let blob_cache = BlobCache::new(blob_cache_budget(&config));
        let state = Arc::new(
            ApiState::loading(
                empty_catalog(&config, &blob_cache, metrics.as_ref()),
                config.access_log,
            )
            .with_metrics(metrics.clone())
            .with_audit(audit.clone())
            .with_auth(auth),
        );
        // Metrics (off unless --metrics-addr): bound before loading, so that
        // its /readyz says "not ready" while the registry verifies.
        if let (Some(addr), Some(m)) = (config.metrics_addr, &metrics) {
            crate::metrics::listener::start(addr, m.clone(), state.observed()).await?;
        }
        let hangups = signals::hangups();
        if let Some(store) = &certs {
            tokio::spawn(watch_certificates(store.clone(), hangups.subscribe()));
        }
        // Content reloads: SIGHUP, --watch, and a change of the realms'
        // policy scopes.
        let triggers = mpsc::channel::<()>(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let mut app = App {
            config,
            state,
            gate,
            metrics,
            audit,
            access,
            hangups,
            triggers,
            // Replaced below by the accept loop, which needs `app` to build
            // its transport.
            server: tokio::spawn(async {}),
            stop,
            blob_cache,
        };
        app.server = app.start(listener, certs, stopped)?;
        app.reread_inputs_on_hangup();
        Ok(app)
    }

    /// Rereads the access map and the authentication files on SIGHUP.
    fn reread_inputs_on_hangup(&self) {
        tokio::spawn(reload_inputs_on_hangup(
            self.hangups.subscribe(),
            (self.state.auth.clone(), self.access.clone()),
            self.state.status.clone(),
            self.metrics.clone(),
        ));
    }

    /// Starts serving the transport the configuration names on `listener`
    /// until SIGINT, SIGTERM or `stopped`.
    fn start(
        &self,
        listener: tokio::net::TcpListener,
        certs: Option<Arc<CertStore>>,
        stopped: oneshot::Receiver<()>,
    ) -> Result<JoinHandle<()>, StartupError> {
        let draining = self.state.clone();
        let shutdown = async move {
            tokio::select! {
                _ = signals::shutdown() => {}
                _ = stopped => {}
            }
            draining.set_draining();
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let options = self.config.serve.clone();
        Ok(match (&self.config.transport, certs) {
            (TransportConfig::Tls { client_ca, .. }, Some(store)) => {
                tracing::info!("serving the OCI pull API over TLS on {local}");
                let tls = tls_transport(client_ca.as_deref(), self.access.clone(), store)?;
                spawn_serve(listener, Arc::new(tls), &self.state, options, shutdown)
            }
            (TransportConfig::RaTls(attest), Some(store)) => {
                let ratls = self.ratls_transport(attest, store)?;
                tracing::info!("serving the OCI pull API over RA-TLS on {local}: only attested CCA realms are served");
                spawn_serve(listener, Arc::new(ratls), &self.state, options, shutdown)
            }
            _ => {
                tracing::info!("serving the OCI pull API over plain HTTP on {local}");
                spawn_serve(listener, Arc::new(Plain), &self.state, options, shutdown)
            }
        })
    }

    /// The RA-TLS transport: the attestor, its platform check shown in
    /// `/status`, the realms' policy scopes given to the gate, and the
    /// reference values and platform keys reloaded on SIGHUP.
    fn ratls_transport(
        &self,
        attest: &AttestConfig,
        store: Arc<CertStore>,
    ) -> Result<RaTls, StartupError> {
        let attestor = build_attestor(attest)?;
        self.state
            .status
            .set_ratls_platform(attestor.platform().describe());
        if let Some(g) = &self.gate {
            g.set_scopes(policy_scopes(&attestor));
        } else if attestor
            .references()
            .realms()
            .iter()
            .any(|r| r.policy_scope.is_some())
        {
            tracing::warn!("RA-TLS: a reference entry names a policy-scope, but no signature policy is in force (--policy): it changes nothing");
        }
        let receipted = self.audit.clone().map(|a| (a, attest.references.clone()));
        if let Some((audit, references)) = &receipted {
            audit.set_reference_values(digest_of(references));
        }
        tokio::spawn(reload_references(
            attestor.clone(),
            attest.platform.clone(),
            self.hangups.subscribe(),
            self.gate.clone().map(|g| (g, self.triggers.0.clone())),
            receipted,
        ));
        let ratls = RaTls::new(store, attestor, attest.tls12)
            .with_max_connection_age(attest.max_connection_age)
            .with_metrics(self.metrics.clone());
        Ok(match self.audit.clone() {
            Some(audit) => ratls.with_observer(attestation_events(audit)),
            None => ratls,
        })
    }

    /// Loads (the reloader's first load), serves once ready, and reloads on
    /// SIGHUP and with `--watch` on file changes, until shutdown.
    pub async fn run(self) -> ExitCode {
        let App {
            config,
            state,
            gate,
            metrics,
            audit,
            access: _,
            hangups,
            triggers: (trigger_tx, trigger_rx),
            server,
            stop,
            blob_cache,
        } = self;
        // Reloaded snapshots share the blob cache (`Catalog::succeeded_by`).
        let reloader = Arc::new(
            Reloader::new(
                state.catalog.clone(),
                config.root.clone(),
                config.load.clone(),
            )
            .recording_to(state.status.clone())
            .with_trust(gate)
            .with_metrics(metrics.clone()),
        );
        if let Err(code) = first_load(&reloader, metrics).await {
            let _ = stop.send(());
            let _ = server.await;
            return code;
        }
        state.set_ready();
        let served = state.catalog.load().registry().applications.len();
        sd_notify::notify(&format!("READY=1\nSTATUS=serving {served} application(s)"));
        tracing::info!("ready");
        if blob_cache.budget() > 0 {
            tokio::spawn(unmap_idle_blob_copies(blob_cache));
        }
        tokio::spawn(reloader.run(trigger_rx, WATCH_QUIET));
        tokio::spawn(forward_hangups(hangups.subscribe(), trigger_tx.clone()));
        let _watcher = config
            .watch
            .then(|| watch_root(&config.root, trigger_tx))
            .flatten();
        let _ = server.await;
        if let Some(audit) = audit {
            audit.close().await;
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    }
}

/// Posts each refused attestation as an event.
fn attestation_events(audit: Arc<Audit>) -> crate::transport::ratls::Observer {
    Arc::new(move |peer, outcome| {
        if let crate::transport::ratls::AttestationOutcome::Refused { detail, .. } = outcome {
            audit.refused(peer, "attestation", detail, None);
        }
    })
}

/// The access map and authentication, each when asked for.
type AccessAndAuth = (Option<Arc<SharedClientMap>>, Option<Arc<Auth>>);

/// The access map (`--access-map`: one, for client certificates and users
/// alike) and authentication, when asked for; a map, user file, key or key
/// set that cannot be used is a start-up error.
fn start_access(config: &Config) -> Result<AccessAndAuth, StartupError> {
    let path = match (&config.transport, &config.auth) {
        (
            TransportConfig::Tls {
                client_map: Some(p),
                ..
            },
            _,
        ) => Some(p),
        (_, Some(a)) => a.access_map.as_ref(),
        _ => None,
    };
    let access = path.map(|p| SharedClientMap::load(p)).transpose()?;
    let auth = start_auth(config, access.clone())?;
    Ok((access, auth))
}

/// Authentication, when asked for, with the access map `access`.
fn start_auth(
    config: &Config,
    access: Option<Arc<SharedClientMap>>,
) -> Result<Option<Arc<Auth>>, crate::auth::AuthError> {
    let Some(a) = &config.auth else {
        return Ok(None);
    };
    let auth = Auth::load_with_access(a, access)?;
    tracing::info!("{}", auth.describe());
    if matches!(a.source, crate::auth::TokenSource::Local { key: None, .. }) {
        tracing::info!(
            "tokens are signed with a key generated at start (--token-key for one shared by replicas)"
        );
    }
    Ok(Some(Arc::new(auth)))
}

/// Receipts and events, when asked for: the journal is opened (and its
/// key read) now, so a journal that cannot be written stops the start;
/// while it cannot keep up or be written, `/readyz` says so.
fn start_audit(config: &Config, gate: Option<Arc<Gate>>) -> Result<Option<Arc<Audit>>, AuditError> {
    if !config.audit.is_on() {
        return Ok(None);
    }
    let audit = Arc::new(Audit::start(&config.audit)?);
    if let Some(gate) = gate {
        audit.set_policy_digest(Box::new(move || gate.policy_digest()));
    }
    Ok(Some(audit))
}

/// The catalog served before the first load: empty, with the seal budget,
/// the blob cache and the download counters every later one inherits.
fn empty_catalog(
    config: &Config,
    cache: &Arc<BlobCache>,
    metrics: Option<&Arc<Metrics>>,
) -> SharedCatalog {
    let catalog = Catalog::with_seal_budget(Default::default(), config.seal_budget)
        .with_blob_cache(cache.clone());
    catalog::shared(match metrics {
        Some(m) => catalog.counting_downloads(m.clone()),
        None => catalog,
    })
}

/// The blob cache's budget in bytes (`--blob-cache`, else the default).
fn blob_cache_budget(config: &Config) -> u64 {
    let budget = config.blob_cache.unwrap_or_else(blob_cache::default_budget);
    tracing::debug!(bytes = budget, "blob cache budget");
    budget
}

/// The first load, with its progress reported while it runs; on failure
/// the exit code (the root cannot be read: [`EXIT_ROOT`]).
async fn first_load(reloader: &Reloader, metrics: Option<Arc<Metrics>>) -> Result<(), ExitCode> {
    let progress = Arc::new(ir_oci::LoadProgress::default());
    let reporter = tokio::spawn(load_progress::report(progress.clone(), metrics));
    let loaded = reloader.load_first(progress).await;
    reporter.abort();
    match loaded {
        Ok(_) => Ok(()),
        Err(e @ reload::SwapError::Load(_)) => {
            tracing::error!("{e}");
            Err(ExitCode::from(EXIT_ROOT))
        }
        Err(e) => {
            tracing::error!("{e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Rereads the access map and the authentication files (`inputs`) on
/// SIGHUP, recording each file's outcome in `/status` and the metrics.
async fn reload_inputs_on_hangup(
    mut hangups: broadcast::Receiver<()>,
    inputs: (Option<Arc<Auth>>, Option<Arc<SharedClientMap>>),
    status: Arc<ServerStatus>,
    metrics: Option<Arc<Metrics>>,
) {
    if inputs.0.is_none() && inputs.1.is_none() {
        return;
    }
    while !matches!(
        hangups.recv().await,
        Err(broadcast::error::RecvError::Closed)
    ) {
        let (auth, access) = inputs.clone();
        let reread = tokio::task::spawn_blocking(move || {
            crate::auth::reload::reload_inputs(auth.as_deref(), access.as_deref())
        });
        let Ok(outcomes) = reread.await else {
            continue;
        };
        for r in outcomes {
            if let Some(m) = &metrics {
                m.input_reloaded(r.input, r.outcome.is_ok());
            }
            status.record_input(InputRecord {
                input: r.input,
                file: r.file.display().to_string(),
                finished: std::time::SystemTime::now(),
                error: r.outcome.err(),
            });
        }
    }
}

/// Turns every SIGHUP into a content reload trigger.
async fn forward_hangups(mut hup: broadcast::Receiver<()>, triggers: mpsc::Sender<()>) {
    while hup.recv().await.is_ok() {
        let _ = triggers.try_send(());
    }
}

/// `--watch`: a watcher of the root sending reload triggers (kept alive by
/// the caller); a root that cannot be watched leaves SIGHUP.
fn watch_root(root: &Path, triggers: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    match watch::watch_root(root, triggers) {
        Ok(w) => {
            tracing::info!("watching {} for changes", root.display());
            Some(w)
        }
        Err(e) => {
            tracing::error!(
                "--watch: cannot watch {}: {e}; reload with SIGHUP instead",
                root.display()
            );
            None
        }
    }
}

/// The signature policy the configuration names (`None`: no policy), read
/// once; an error is a start-up error.
pub fn trust_gate(config: &Config) -> Result<Option<Arc<Gate>>, TrustError> {
    match &config.trust {
        Some(trust) => Ok(Some(Arc::new(Gate::new(trust.clone())?))),
        None => Ok(None),
    }
}

/// `--check`: load, print the report on stdout, and exit: 0 when
/// something is served and nothing was rejected, 1 when an application was
/// rejected or nothing is served (an empty root, a mistyped mount), 2 when
/// the root cannot be read.
pub fn check(args: Args) -> ExitCode {
    let json = args.format == ReportFormat::Json;
    let given = args.root.clone().unwrap_or_else(|| ".".into());
    let refuse = |e: &dyn std::fmt::Display, root: &Path| {
        if json {
            let report = report::CheckReport::root_error(root, e.to_string());
            println!("{}", to_json(&report));
        }
        eprintln!("error: {e}");
        ExitCode::from(EXIT_ROOT)
    };
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => return refuse(&e, &given),
    };
    let gate = match trust_gate(&config) {
        Ok(g) => g,
        Err(e) => return refuse(&e, &config.root),
    };
    policy_gate::announce(gate.as_deref());
    tracing::info!(root = %config.root.display(), "loading registry");
    let empty = Catalog::default();
    let start = LoadKind::Start;
    match reload::load_judged(
        &config.root,
        &config.load,
        start,
        &empty,
        gate.as_deref(),
        None,
    ) {
        Ok(loaded) => {
            reload::log_first_load(&config.root, loaded.catalog.registry());
            check_report(&config.root, json, loaded)
        }
        Err(e) => refuse(&e, &config.root),
    }
}

/// Prints the `--check` report of `loaded` and says how to exit.
fn check_report(root: &Path, json: bool, loaded: Loaded) -> ExitCode {
    let (registry, judgements) = (loaded.catalog.registry(), &loaded.judgements);
    let nothing_served = registry.applications.is_empty();
    let refused = policy_gate::any_refused(judgements);
    if json {
        let mut report = report::CheckReport::of(root, registry);
        policy_gate::annotate(&mut report, judgements);
        report.ok &= !refused;
        println!("{}", to_json(&report));
    } else {
        print!("{}", policy_gate::text_report(judgements));
        print!("{}", report::full_report(registry));
        if nothing_served {
            println!(
                "error: nothing is served from {} (no OCI layout verified)",
                root.display()
            );
        }
    }
    if registry.rejected.is_empty() && !nothing_served && !refused {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    }
}

fn to_json(report: &report::CheckReport) -> String {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// Serves `handshake`'s transport on `listener` until `shutdown`: the one
/// path every transport starts through.
fn spawn_serve<H: transport::Handshake>(
    listener: tokio::net::TcpListener,
    handshake: Arc<H>,
    state: &Arc<ApiState>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(transport::serve(
        listener,
        handshake,
        state.clone(),
        options,
        shutdown,
    ))
}

/// The TLS transport, requiring client certificates with `--client-ca`
/// (limited per client with `--access-map`, the map in force at each
/// request).
fn tls_transport(
    client_ca: Option<&Path>,
    client_map: Option<Arc<SharedClientMap>>,
    store: Arc<CertStore>,
) -> Result<Tls, ClientAccessError> {
    let Some(ca) = client_ca else {
        return Ok(Tls::new(cert_store::server_config(store)));
    };
    let config = cert_store::server_config_with_client_auth(store, client_access::verifier(ca)?);
    match client_map {
        None => {
            tracing::info!(
                "TLS: client certificates from {} required; every client sees every application",
                ca.display()
            );
            Ok(Tls::new(config))
        }
        Some(map) => {
            tracing::info!(
                "TLS: client certificates from {} required; {} client(s) mapped to applications by {}",
                ca.display(),
                map.current().len(),
                map.path().display()
            );
            Ok(Tls::with_shared_client_map(config, map))
        }
    }
}

/// Loads `-c`/`-k`; when they are missing, says how to make a development
/// pair.
fn load_certificates(config: &Config) -> Result<Arc<CertStore>, CertificatesError> {
    let (cert, key) = (&config.cert, &config.key);
    CertStore::load(cert, key).map(Arc::new).map_err(|source| {
        let hint = (!cert.exists() || !key.exists()).then(|| {
            let dir = cert.parent().unwrap_or(cert);
            format!(
                "\n  To create a development certificate: scripts/make-dev-cert.sh {} \
                 (writes server.crt and server.key there)",
                dir.display()
            )
        });
        CertificatesError {
            source,
            hint: hint.unwrap_or_default(),
        }
    })
}

/// The server's certificate pair could not be loaded; `hint` says how to
/// make a development pair when the files are missing.
#[derive(Debug, thiserror::Error)]
#[error("{source}{hint}")]
pub struct CertificatesError {
    #[source]
    source: CertError,
    hint: String,
}

/// The RA-TLS attestor from `-j`, and `--cpak` (local platform keys),
/// `-u`/`-v` (Veraison), or both when both are given; says at start-up
/// which is in force.
fn build_attestor(config: &AttestConfig) -> Result<Arc<Attestor>, SettingError> {
    let platform = platform_check(&config.platform)?;
    let references = &config.references;
    let mut attestor = Attestor::new(references, platform, config.max_attestations)
        .map_err(|e| SettingError::new("-j", references.display(), e))?;
    // The insecure path is a run-time choice that only some builds offer:
    // a feature unified into this build by another crate cannot turn it on.
    tracing::info!(
        "RA-TLS: insecure-skip-challenge available in this build: {}",
        ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE
    );
    attestor
        .set_insecure_skip_challenge(config.insecure_skip_challenge)
        .map_err(|e| SettingError::new("--insecure-skip-challenge", "", e))?;
    tracing::info!(
        "RA-TLS: platforms verified by {}; {} realm(s) in the reference values from {}",
        attestor.platform().describe(),
        attestor.references().len(),
        references.display()
    );
    for realm in attestor.references().realms() {
        tracing::info!(
            "RA-TLS: realm {} may pull {}",
            realm.label(),
            match &realm.applications {
                None => "every application".to_string(),
                Some(list) => format!("{} application pattern(s)", list.len()),
            }
        );
    }
    if attestor.skips_challenge() {
        tracing::error!(
            "INSECURE (--insecure-skip-challenge): RA-TLS tokens are not checked against the \
             connection's challenge, so recorded tokens are accepted. Never serve real realms like this."
        );
    }
    Ok(Arc::new(attestor))
}

/// The platform check the configuration asks for: `--cpak` (local
/// platform keys), `-u`/`-v` (Veraison), or both when both are given. Read
/// at start-up and again on SIGHUP (the keys can rotate without a restart).
fn platform_check(config: &PlatformConfig) -> Result<PlatformCheck, SettingError> {
    let local = config
        .cpak
        .as_ref()
        .map(|path| {
            let keys = PlatformKeys::load(path)
                .map_err(|e| SettingError::new("--cpak", path.display(), e))?;
            if let Some((which, name)) = keys.published_key() {
                refuse_published_key(config.insecure_dev_keys, "--cpak", path, &which, name)?;
            }
            check_firmware_pins(config.cpak_any_firmware, path, &keys)?;
            Ok::<_, SettingError>(keys)
        })
        .transpose()?;
    let veraison = config
        .veraison
        .as_ref()
        .map(|v| veraison(v, config.insecure_dev_keys))
        .transpose()?;
    Ok(match (local, veraison) {
        (Some(keys), None) => PlatformCheck::Local(keys),
        (Some(keys), Some((client, ear))) => PlatformCheck::LocalAndVeraison { keys, client, ear },
        (None, Some((client, ear))) => PlatformCheck::Veraison { client, ear },
        (None, None) => return Err(SettingError::new("-v", "", ConfigError::VeraisonNeedsKey)),
    })
}

/// The Veraison client and the verifier of its results.
fn veraison(
    config: &crate::config::VeraisonConfig,
    insecure_dev_keys: bool,
) -> Result<(VeraisonClient, EarVerifier), SettingError> {
    let mut client_config = ir_attest::VeraisonConfig::new(config.url.clone());
    client_config.timeout = config.timeout;
    if let Some(ca) = &config.ca {
        client_config.extra_root_pem = Some(
            read_small_file(ca).map_err(|e| SettingError::new("--veraison-ca", ca.display(), e))?,
        );
    }
    let client =
        VeraisonClient::new(client_config).map_err(|e| SettingError::new("-u", &config.url, e))?;
    let key = &config.pubkey;
    let ear = EarVerifier::load(key)
        .map_err(|e| SettingError::new("-v", key.display(), e))?
        .with_verifier_id(config.verifier_id.clone());
    for k in ear.keys() {
        if let Some(name) = ir_attest::published::published_key(k) {
            refuse_published_key(insecure_dev_keys, "-v", key, "the key", name)?;
        }
    }
    Ok((client, ear))
}

/// A trust key (`-v`, `--cpak`) whose private half is published: a
/// start-up error, or with `--insecure-dev-keys` a loud warning.
fn refuse_published_key(
    insecure_dev_keys: bool,
    flag: &'static str,
    path: &Path,
    which: &str,
    name: &str,
) -> Result<(), SettingError> {
    if insecure_dev_keys {
        tracing::error!(
            "INSECURE (--insecure-dev-keys): {flag} {}: {which} is {name}, whose private key \
             is published: anyone can sign what this server then trusts. Never serve real realms like this.",
            path.display()
        );
        return Ok(());
    }
    Err(SettingError::new(
        flag,
        path.display(),
        PublishedKey {
            which: which.to_string(),
            name: name.to_string(),
        },
    ))
}

/// A trust key whose private half is published.
#[derive(Debug, thiserror::Error)]
#[error(
    "{which} is {name}, whose private key is published, so anyone can sign with it; \
     use your own deployment's key (for development only: --insecure-dev-keys)"
)]
struct PublishedKey {
    which: String,
    name: String,
}

/// Says per `--cpak` key whether its firmware is pinned by reference
/// values; an unpinned key is a start-up error unless `--cpak-any-firmware`
/// is given (then a warning).
fn check_firmware_pins(
    any_firmware: bool,
    path: &Path,
    keys: &PlatformKeys,
) -> Result<(), SettingError> {
    /// Keys named one per line at start; the rest are counted.
    const NAMED: usize = 64;
    let pins = keys.firmware_pins();
    let says = |pinned: bool| {
        if pinned {
            "pinned by reference values"
        } else {
            "NOT pinned (any firmware the key signs)"
        }
    };
    for (label, pinned) in pins.iter().take(NAMED) {
        tracing::info!("RA-TLS: --cpak {label}: firmware {}", says(*pinned));
    }
    if pins.len() > NAMED {
        let rest = &pins[NAMED..];
        let unpinned = rest.iter().filter(|(_, pinned)| !pinned).count();
        tracing::info!(
            "RA-TLS: --cpak: {} more entries, {} pinned, {unpinned} not",
            rest.len(),
            rest.len() - unpinned
        );
    }
    let Some((label, _)) = pins.iter().find(|(_, pinned)| !pinned) else {
        return Ok(());
    };
    if any_firmware {
        tracing::warn!(
            "--cpak-any-firmware: platforms whose --cpak key pins no firmware pass with any \
             RMM or TF-A build their key signs, old vulnerable ones included"
        );
        return Ok(());
    }
    Err(SettingError::new(
        "--cpak",
        path.display(),
        UnpinnedFirmware {
            label: label.clone(),
        },
    ))
}

/// A `--cpak` key that pins no firmware, without `--cpak-any-firmware`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{label} pins no firmware: give it reference values with sw-components (a trust-anchor \
     list entry's \"reference-values\", see docs/ratls.md), or pass --cpak-any-firmware to \
     accept any firmware the key signs"
)]
struct UnpinnedFirmware {
    label: String,
}

/// Reads a small trusted file (a CA certificate), at most 1 MiB.
fn read_small_file(path: &Path) -> std::io::Result<Vec<u8>> {
    const LIMIT: u64 = 1 << 20;
    if std::fs::metadata(path)?.len() > LIMIT {
        return Err(std::io::Error::other(format!("larger than {LIMIT} bytes")));
    }
    std::fs::read(path)
}

/// A start-up setting that cannot be used: the flag, the value or file it
/// names, and why (the error it caused, kept as the source).
#[derive(Debug, thiserror::Error)]
#[error("{flag}{}{value}: {source}", if value.is_empty() { "" } else { " " })]
pub struct SettingError {
    flag: &'static str,
    value: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SettingError {
    fn new(
        flag: &'static str,
        value: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SettingError {
            flag,
            value: value.to_string(),
            source: source.into(),
        }
    }
}

/// The policy scopes the realms of the reference values name.
fn policy_scopes(attestor: &Attestor) -> Vec<String> {
    attestor
        .references()
        .realms()
        .iter()
        .filter_map(|r| r.policy_scope.clone())
        .collect()
}

/// Reloads the reference values, the platform keys (`--cpak`) and
/// Veraison's key (`-v`) on SIGHUP; what fails to load keeps what is in
/// force, with an error. With a signature policy, a change in the realms'
/// policy scopes triggers a content reload, which judges the content under
/// the new scopes (until it ends, a realm with a new scope sees nothing).
async fn reload_references(
    attestor: Arc<Attestor>,
    platform: PlatformConfig,
    mut hangups: tokio::sync::broadcast::Receiver<()>,
    gate: Option<(Arc<Gate>, mpsc::Sender<()>)>,
    receipted: Option<(Arc<Audit>, PathBuf)>,
) {
    while !matches!(
        hangups.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ) {
        let (a, c) = (attestor.clone(), platform.clone());
        match tokio::task::spawn_blocking(move || platform_check(&c).map(|p| a.set_platform(p)))
            .await
        {
            Ok(Ok(())) => tracing::info!(
                "RA-TLS: platform keys reloaded: {}",
                attestor.platform().describe()
            ),
            Ok(Err(e)) => {
                tracing::error!("RA-TLS: platform keys not reloaded, the previous ones stay: {e}")
            }
            Err(e) => tracing::error!("RA-TLS: platform key reload failed: {e}"),
        }
        let a = attestor.clone();
        match tokio::task::spawn_blocking(move || a.reload_references()).await {
            Ok(Ok(n)) => {
                tracing::info!("RA-TLS: reference values reloaded ({n} realm(s))");
                if let Some((audit, references)) = &receipted {
                    audit.set_reference_values(digest_of(references));
                }
                if let Some((gate, reload)) = &gate {
                    if gate.set_scopes(policy_scopes(&attestor)) {
                        let _ = reload.try_send(());
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(
                "RA-TLS: reference values not reloaded, the previous ones stay: {e}"
            ),
            Err(e) => tracing::error!("RA-TLS: reference reload failed: {e}"),
        }
    }
}

/// Rotates certificates on SIGHUP, and when their files change (polled,
/// which also works on file systems without change notification).
async fn watch_certificates(
    store: Arc<CertStore>,
    mut hangups: tokio::sync::broadcast::Receiver<()>,
) {
    let mut poll = tokio::time::interval(CERT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let store = store.clone();
        tokio::select! {
            r = hangups.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                let _ = tokio::task::spawn_blocking(move || store.reload_logged()).await;
            }
            _ = poll.tick() => {
                let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
            }
        }
    }
}

/// How long a blob copy in memory stays mapped after its last response.
const BLOB_MAP_IDLE: Duration = Duration::from_secs(10);

/// Unmaps idle blob copies now and then (see `BlobCache::unmap_idle`), on
/// the blocking pool: unmapping 256 MiB takes milliseconds.
async fn unmap_idle_blob_copies(cache: Arc<BlobCache>) {
    let mut tick = tokio::time::interval(BLOB_MAP_IDLE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cache = cache.clone();
        let _ = tokio::task::spawn_blocking(move || cache.unmap_idle(BLOB_MAP_IDLE)).await;
    }
}
