//! Start-up and the server's life: bind, load and verify, serve, reload on
//! SIGHUP (and file changes with `--watch`), shut down gracefully on
//! SIGTERM/SIGINT. `--check` loads and reports without serving.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ir_oci::{report, LoadOptions, Registry};
use tokio::sync::mpsc;

use crate::api::ApiState;
use crate::catalog::{self, Catalog};
use crate::cert_store::{self, CertStore};
use crate::cli::{Args, ReportFormat, TlsMode};
use crate::config::Config;
use crate::reload::Reloader;
use crate::signals;
use crate::transport::{self, plain::Plain, ratls::RaTls, tls::Tls, ServeOptions};
use crate::trust::{Gate, Judged, TrustError};
use ir_attest::attestor::{Attestor, PlatformCheck};
use ir_attest::{EarVerifier, PlatformKeys, VeraisonClient, VeraisonConfig};

/// Exit code when the root cannot be read at all.
pub const EXIT_ROOT: u8 = 2;
/// Exit code of `--check` when some application was rejected.
pub const EXIT_REJECTED: u8 = 1;

/// How often certificate files are checked for replacement.
const CERT_POLL: Duration = Duration::from_secs(2);
/// Quiet period that ends a burst of file events before a `--watch` reload.
const WATCH_QUIET: Duration = Duration::from_millis(500);

/// Loads the registry as the configuration asks, logging the outcome (no
/// signature policy applied).
pub fn load(config: &Config) -> Result<Registry, ir_oci::LoadError> {
    load_with(config, config.load.clone(), None).map(|j| j.registry)
}

/// The signature policy the configuration names (`None`: no policy), read
/// once; an error is a start-up error.
pub fn trust_gate(config: &Config) -> Result<Option<Arc<Gate>>, TrustError> {
    match &config.trust {
        Some(trust) => Ok(Some(Arc::new(Gate::new(trust.clone())?))),
        None => Ok(None),
    }
}

/// [`load`] with `options` (e.g. with a progress reporter), then the
/// signature policy of `gate` applied: what it refuses is not in the
/// registry returned, and the judgements say why.
fn load_with(
    config: &Config,
    options: LoadOptions,
    gate: Option<&Gate>,
) -> Result<Judged, ir_oci::LoadError> {
    let root = &config.root;
    tracing::info!(root = %root.display(), "loading registry");
    let registry = ir_oci::load(root, &options)?;
    crate::metrics::verified(&registry);
    let judged = match gate {
        Some(g) => {
            let judged = g.apply(registry);
            g.record(&judged.judgements);
            g.remember();
            judged
        }
        None => Judged {
            registry,
            views: Default::default(),
            judgements: Vec::new(),
            loaded: Default::default(),
        },
    };
    let registry = &judged.registry;
    if !registry.orphans.is_empty() {
        tracing::info!(
            "{} orphan files under blobs/ are not reachable and will not be served",
            registry.orphans.len()
        );
        for o in &registry.orphans {
            tracing::debug!("orphan: {}/{}", o.application, o.file.display());
        }
    }
    for (path, why) in &registry.ignored {
        tracing::debug!("ignored {}: {why}", path.display());
    }
    if registry.applications.is_empty() {
        tracing::warn!(root = %root.display(), "no application verified: nothing will be served");
    }
    tracing::info!("{}", report::summary_line(registry));
    Ok(judged)
}

/// `--check`: load, print the report on stdout, and exit: 0 when
/// something is served and nothing was rejected, 1 when an application was
/// rejected or nothing is served (an empty root, a mistyped mount), 2 when
/// the root cannot be read.
pub fn check(args: &Args) -> ExitCode {
    let json = args.format == ReportFormat::Json;
    let refuse = |e: &dyn std::fmt::Display, root: &std::path::Path| {
        if json {
            let report = report::CheckReport::root_error(root, e.to_string());
            println!("{}", to_json(&report));
        }
        eprintln!("error: {e}");
        ExitCode::from(EXIT_ROOT)
    };
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &e,
                args.root.as_deref().unwrap_or(std::path::Path::new(".")),
            )
        }
    };
    let gate = match trust_gate(&config) {
        Ok(g) => g,
        Err(e) => return refuse(&e, &config.root),
    };
    crate::trust::announce(gate.as_deref());
    match load_with(&config, config.load.clone(), gate.as_deref()) {
        Ok(Judged {
            registry,
            judgements,
            ..
        }) => {
            let nothing_served = registry.applications.is_empty();
            let refused = crate::trust::any_refused(&judgements);
            if json {
                let mut report = report::CheckReport::of(&config.root, &registry);
                crate::trust::annotate(&mut report, &judgements);
                report.ok &= !refused;
                println!("{}", to_json(&report));
            } else {
                print!("{}", crate::trust::text_report(&judgements));
                print!("{}", report::full_report(&registry));
                if nothing_served {
                    println!(
                        "error: nothing is served from {} (no OCI layout verified)",
                        config.root.display()
                    );
                }
            }
            if registry.rejected.is_empty() && !nothing_served && !refused {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }
        }
        Err(e) => {
            if json {
                let report = report::CheckReport::root_error(&config.root, e.to_string());
                println!("{}", to_json(&report));
            }
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ROOT)
        }
    }
}

fn to_json(report: &report::CheckReport) -> String {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// Binds, loads and serves until SIGINT or SIGTERM. The port is bound
/// before loading so that probes see a live process (`/healthz`) that is
/// not ready yet (`/readyz` and the API answer 503) while a large registry
/// verifies.
pub async fn serve(args: Args) -> ExitCode {
    let config = match Config::from_args(&args) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Certificates first: a bad pair should fail before a long verification.
    let certs = match args.tls {
        TlsMode::NoTls => None,
        TlsMode::Tls | TlsMode::RaTls => match load_certificates(&config) {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // The signature policy next: a policy that cannot be used is a
    // start-up error, never a silent "accept everything".
    let gate = match trust_gate(&config) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    crate::trust::announce(gate.as_deref());
    // Authentication: a user file, key or key set that cannot be used is a
    // start-up error.
    let auth = match &config.auth {
        None => None,
        Some(a) => match crate::auth::Auth::load(a) {
            Ok(auth) => {
                tracing::info!("{}", auth.describe());
                if matches!(a.source, crate::auth::TokenSource::Local { key: None, .. }) {
                    tracing::info!("tokens are signed with a key generated at start (--token-key for one shared by replicas)");
                }
                Some(Arc::new(auth))
            }
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // Content reloads: SIGHUP, --watch, and a change of the realms'
    // policy scopes.
    let (trigger_tx, trigger_rx) = mpsc::channel::<()>(1);
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match transport::bind(addr, args.backlog) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let shared = catalog::shared(Catalog::default());
    let state = Arc::new(ApiState::loading(shared.clone(), !args.no_access_log).with_auth(auth));
    // Metrics (off unless --metrics-addr): bound before loading, so that
    // its /readyz says "not ready" while the registry verifies.
    if let Some(addr) = args.metrics_addr {
        if let Err(e) = crate::metrics::start(addr, state.clone()).await {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let hangups = signals::hangups();
    if let Some(store) = &certs {
        tokio::spawn(watch_certificates(store.clone(), hangups.subscribe()));
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = state.clone();
    let shutdown = async move {
        tokio::select! {
            _ = signals::shutdown() => {}
            _ = stop_rx => {}
        }
        draining.set_draining();
    };
    let options = config.serve.clone();
    let server = match (args.tls, certs) {
        (TlsMode::NoTls, _) => {
            tracing::info!("serving the OCI pull API over plain HTTP on {local}");
            start(listener, Arc::new(Plain), &state, options, shutdown)
        }
        (TlsMode::Tls, Some(store)) => {
            tracing::info!("serving the OCI pull API over TLS on {local}");
            let tls = match tls_transport(&args, store) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            start(listener, tls, &state, options, shutdown)
        }
        (TlsMode::RaTls, Some(store)) => {
            let attestor = match build_attestor(&config) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!("RA-TLS: {e}");
                    return ExitCode::FAILURE;
                }
            };
            state
                .status
                .set_ratls_platform(attestor.platform().describe());
            if let Some(g) = &gate {
                g.set_scopes(policy_scopes(&attestor));
            } else if attestor
                .references()
                .realms()
                .iter()
                .any(|r| r.policy_scope.is_some())
            {
                tracing::warn!("RA-TLS: a reference entry names a policy-scope, but no signature policy is in force (--policy): it changes nothing");
            }
            tokio::spawn(reload_references(
                attestor.clone(),
                config.clone(),
                hangups.subscribe(),
                gate.clone().map(|g| (g, trigger_tx.clone())),
            ));
            tracing::info!("serving the OCI pull API over RA-TLS on {local}: only attested CCA realms are served");
            let ratls = Arc::new(
                RaTls::new(store, attestor, args.ratls_tls12)
                    .with_max_connection_age(Duration::from_secs(args.max_connection_age)),
            );
            start(listener, ratls, &state, options, shutdown)
        }
        (mode, _) => {
            tracing::error!("transport {mode:?} needs a server certificate");
            return ExitCode::FAILURE;
        }
    };

    // The first load.
    let load_started = std::time::Instant::now();
    let progress = Arc::new(ir_oci::LoadProgress::default());
    let reporter = tokio::spawn(crate::load_progress::report(progress.clone()));
    let loaded = {
        let config = config.clone();
        let options = LoadOptions {
            progress: Some(progress.clone()),
            ..config.load.clone()
        };
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = load_with(&config, options, gate.as_deref());
            crate::memory::release_freed();
            loaded
        })
        .await
    };
    reporter.abort();
    crate::metrics::load_progress(&progress.snapshot());
    state.status.record_load(crate::status::LoadRecord {
        kind: crate::status::LoadKind::Start,
        finished: std::time::SystemTime::now(),
        elapsed: load_started.elapsed(),
        error: match &loaded {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        },
    });
    match loaded {
        Ok(Ok(judged)) => {
            let cache_budget = config
                .blob_cache
                .unwrap_or_else(crate::delivery::blob_cache::default_budget);
            tracing::debug!(bytes = cache_budget, "blob cache budget");
            let cache = crate::delivery::blob_cache::BlobCache::new(cache_budget);
            if cache_budget > 0 {
                tokio::spawn(unmap_idle_blob_copies(cache.clone()));
            }
            shared.store(Arc::new(
                Catalog::with_seal_budget(judged.registry, config.seal_budget)
                    .with_blob_cache(cache)
                    .with_views(gate.as_ref().map(|g| (g.host().to_owned(), judged.views)))
                    .with_loaded(judged.loaded),
            ));
            state.set_ready();
            let served = shared.load().registry().applications.len();
            crate::sd_notify::notify(&format!("READY=1\nSTATUS=serving {served} application(s)"));
            tracing::info!("ready");
        }
        Ok(Err(e)) => {
            tracing::error!("{e}");
            let _ = stop_tx.send(());
            let _ = server.await;
            return ExitCode::from(EXIT_ROOT);
        }
        Err(e) => {
            tracing::error!("loading failed: {e}");
            let _ = stop_tx.send(());
            let _ = server.await;
            return ExitCode::FAILURE;
        }
    }

    // Reloads: SIGHUP always, file changes with --watch. Reloaded
    // snapshots share the blob cache (`Catalog::succeeded_by`).
    let reloader = Arc::new(
        Reloader::new(shared, config.root.clone(), config.load.clone())
            .recording_to(state.status.clone())
            .with_trust(gate),
    );
    tokio::spawn(reloader.run(trigger_rx, WATCH_QUIET));
    let mut hup = hangups.subscribe();
    let hup_trigger = trigger_tx.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_ok() {
            let _ = hup_trigger.try_send(());
        }
    });
    let _watcher = if args.watch {
        match crate::watch::watch_root(&config.root, trigger_tx) {
            Ok(w) => {
                tracing::info!("watching {} for changes", config.root.display());
                Some(w)
            }
            Err(e) => {
                tracing::error!(
                    "--watch: cannot watch {}: {e}; reload with SIGHUP instead",
                    config.root.display()
                );
                None
            }
        }
    } else {
        None
    };

    let _ = server.await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Serves `handshake`'s transport on `listener` until `shutdown`: the one
/// path every transport starts through.
fn start<H: transport::Handshake>(
    listener: tokio::net::TcpListener,
    handshake: Arc<H>,
    state: &Arc<ApiState>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(transport::serve(
        listener,
        handshake,
        state.clone(),
        options,
        shutdown,
    ))
}

/// The TLS transport, requiring client certificates with `--client-ca`
/// (limited per client with `--access-map`).
fn tls_transport(
    args: &Args,
    store: Arc<CertStore>,
) -> Result<Tls, crate::client_access::ClientAccessError> {
    let Some(ca) = &args.client_ca else {
        return Ok(Tls::new(cert_store::server_config(store)));
    };
    let config =
        cert_store::server_config_with_client_auth(store, crate::client_access::verifier(ca)?);
    match &args.access_map {
        None => {
            tracing::info!(
                "TLS: client certificates from {} required; every client sees every application",
                ca.display()
            );
            Ok(Tls::new(config))
        }
        Some(path) => {
            let map = crate::client_access::ClientMap::load(path)?;
            tracing::info!(
                "TLS: client certificates from {} required; {} client(s) mapped to applications by {}",
                ca.display(),
                map.len(),
                path.display()
            );
            Ok(Tls::with_client_map(config, Arc::new(map)))
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
    source: crate::cert_store::CertError,
    hint: String,
}

/// The RA-TLS attestor from `-j`, and `--cpak` (local platform keys),
/// `-u`/`-v` (Veraison), or both when both are given; says at start-up
/// which is in force.
fn build_attestor(config: &Config) -> Result<Arc<Attestor>, StartupError> {
    let args = &config.flags;
    let platform = platform_check(config)?;
    let references = config.references.as_ref().ok_or_else(|| {
        StartupError::new("-j", "", crate::config::ConfigError::RaTlsNeedsReferences)
    })?;
    let mut attestor = Attestor::new(references, platform, args.max_attestations)
        .map_err(|e| StartupError::new("-j", references.display(), e))?;
    // The insecure path is a run-time choice that only some builds offer:
    // a feature unified into this build by another crate cannot turn it on.
    tracing::info!(
        "RA-TLS: insecure-skip-challenge available in this build: {}",
        ir_attest::INSECURE_SKIP_CHALLENGE_AVAILABLE
    );
    attestor
        .set_insecure_skip_challenge(args.insecure_skip_challenge)
        .map_err(|e| StartupError::new("--insecure-skip-challenge", "", e))?;
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

/// The platform check the flags ask for: `--cpak` (local platform keys),
/// `-u`/`-v` (Veraison), or both when both are given. Read at start-up and
/// again on SIGHUP (the keys can rotate without a restart).
fn platform_check(config: &Config) -> Result<PlatformCheck, StartupError> {
    let args = &config.flags;
    let veraison = || -> Result<(VeraisonClient, EarVerifier), StartupError> {
        let url = config.veraison_url.clone();
        let mut veraison_config = VeraisonConfig::new(url.clone());
        veraison_config.timeout = Duration::from_secs(args.veraison_timeout);
        if let Some(ca) = &args.veraison_ca {
            veraison_config.extra_root_pem = Some(
                read_small_file(ca)
                    .map_err(|e| StartupError::new("--veraison-ca", ca.display(), e))?,
            );
        }
        let client =
            VeraisonClient::new(veraison_config).map_err(|e| StartupError::new("-u", &url, e))?;
        let key = config.veraison_pubkey.as_ref().ok_or_else(|| {
            StartupError::new("-v", "", crate::config::ConfigError::VeraisonNeedsKey)
        })?;
        let ear = EarVerifier::load(key)
            .map_err(|e| StartupError::new("-v", key.display(), e))?
            .with_verifier_id(args.veraison_verifier_id.clone());
        for k in ear.keys() {
            if let Some(name) = ir_attest::published::published_key(k) {
                refuse_published_key(args, "-v", key, "the key", name)?;
            }
        }
        Ok((client, ear))
    };
    let local = args
        .cpak
        .as_ref()
        .map(|path| {
            let keys = PlatformKeys::load(path)
                .map_err(|e| StartupError::new("--cpak", path.display(), e))?;
            if let Some((which, name)) = keys.published_key() {
                refuse_published_key(args, "--cpak", path, &which, name)?;
            }
            check_firmware_pins(args, path, &keys)?;
            Ok::<_, StartupError>(keys)
        })
        .transpose()?;
    Ok(match (local, args.veraison_url.is_some()) {
        (Some(keys), false) => PlatformCheck::Local(keys),
        (Some(keys), true) => {
            let (client, ear) = veraison()?;
            PlatformCheck::LocalAndVeraison { keys, client, ear }
        }
        (None, _) => {
            let (client, ear) = veraison()?;
            PlatformCheck::Veraison { client, ear }
        }
    })
}

/// A trust key (`-v`, `--cpak`) whose private half is published: a
/// start-up error, or with `--insecure-dev-keys` a loud warning.
fn refuse_published_key(
    args: &Args,
    flag: &'static str,
    path: &std::path::Path,
    which: &str,
    name: &str,
) -> Result<(), StartupError> {
    if args.insecure_dev_keys {
        tracing::error!(
            "INSECURE (--insecure-dev-keys): {flag} {}: {which} is {name}, whose private key \
             is published: anyone can sign what this server then trusts. Never serve real realms like this.",
            path.display()
        );
        return Ok(());
    }
    Err(StartupError::new(
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
    args: &Args,
    path: &std::path::Path,
    keys: &PlatformKeys,
) -> Result<(), StartupError> {
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
    if args.cpak_any_firmware {
        tracing::warn!(
            "--cpak-any-firmware: platforms whose --cpak key pins no firmware pass with any \
             RMM or TF-A build their key signs, old vulnerable ones included"
        );
        return Ok(());
    }
    Err(StartupError::new(
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
fn read_small_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
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
pub struct StartupError {
    flag: &'static str,
    value: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StartupError {
    fn new(
        flag: &'static str,
        value: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StartupError {
            flag,
            value: value.to_string(),
            source: source.into(),
        }
    }
}

/// Reloads reference values on SIGHUP; a broken file keeps the old ones.
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
    config: Arc<Config>,
    mut hangups: tokio::sync::broadcast::Receiver<()>,
    gate: Option<(Arc<Gate>, mpsc::Sender<()>)>,
) {
    while !matches!(
        hangups.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ) {
        let (a, c) = (attestor.clone(), config.clone());
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
async fn unmap_idle_blob_copies(cache: Arc<crate::delivery::blob_cache::BlobCache>) {
    let mut tick = tokio::time::interval(BLOB_MAP_IDLE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cache = cache.clone();
        let _ = tokio::task::spawn_blocking(move || cache.unmap_idle(BLOB_MAP_IDLE)).await;
    }
}
