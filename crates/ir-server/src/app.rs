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
use crate::cli::{Args, ReportFormat, TlsMode};
use crate::reload::Reloader;
use crate::server::ConnLimits;
use crate::signals;
use crate::tls::{self, CertStore};
use crate::transport::{self, plain::Plain, ratls::RaTls, tls::Tls, ServeOptions};
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

fn load_options(args: &Args) -> LoadOptions {
    LoadOptions {
        threads: args.verify_threads,
        io_threads: args.io_threads,
        root_name: args.name.clone(),
        ..LoadOptions::default()
    }
}

/// Loads the registry with the options the arguments ask for, logging the
/// outcome.
pub fn load(args: &Args) -> Result<Registry, ir_oci::LoadError> {
    let root = args.root_dir();
    tracing::info!(root = %root.display(), "loading registry");
    let registry = ir_oci::load(&root, &load_options(args))?;
    crate::metrics::verified(&registry);
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
    tracing::info!("{}", report::summary_line(&registry));
    Ok(registry)
}

/// `--check`: load, print the report on stdout, and exit: 0 when
/// something is served and nothing was rejected, 1 when an application was
/// rejected or nothing is served (an empty root, a mistyped mount), 2 when
/// the root cannot be read.
pub fn check(args: &Args) -> ExitCode {
    let json = args.format == ReportFormat::Json;
    match load(args) {
        Ok(registry) => {
            let nothing_served = registry.applications.is_empty();
            if json {
                let report = report::CheckReport::of(&args.root_dir(), &registry);
                println!("{}", to_json(&report));
            } else {
                print!("{}", report::full_report(&registry));
                if nothing_served {
                    println!(
                        "error: nothing is served from {} (no OCI layout verified)",
                        args.root_dir().display()
                    );
                }
            }
            if registry.rejected.is_empty() && !nothing_served {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }
        }
        Err(e) => {
            if json {
                let report = report::CheckReport::root_error(&args.root_dir(), e.to_string());
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
    // Certificates first: a bad pair should fail before a long verification.
    let certs = match args.tls {
        TlsMode::NoTls => None,
        TlsMode::Tls | TlsMode::RaTls => match load_certificates(&args) {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match transport::bind(addr, args.backlog.max(1)) {
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
    let state = Arc::new(ApiState::loading(shared.clone(), !args.no_access_log));
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
    let shutdown = async move {
        tokio::select! {
            _ = signals::shutdown() => {}
            _ = stop_rx => {}
        }
        crate::metrics::shutting_down();
    };
    let options = serve_options(&args);
    let server = match (args.tls, certs) {
        (TlsMode::NoTls, _) => {
            tracing::info!("serving the OCI pull API over plain HTTP on {local}");
            tokio::spawn(transport::serve(
                listener,
                Arc::new(Plain),
                state.clone(),
                options,
                shutdown,
            ))
        }
        (TlsMode::Tls, Some(store)) => {
            tracing::info!("serving the OCI pull API over TLS on {local}");
            let tls = Arc::new(Tls::new(tls::server_config(store)));
            tokio::spawn(transport::serve(
                listener,
                tls,
                state.clone(),
                options,
                shutdown,
            ))
        }
        (TlsMode::RaTls, Some(store)) => {
            let attestor = match build_attestor(&args) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!("RA-TLS: {e}");
                    return ExitCode::FAILURE;
                }
            };
            tokio::spawn(reload_references(attestor.clone(), hangups.subscribe()));
            tracing::info!("serving the OCI pull API over RA-TLS on {local}: only attested CCA realms are served");
            let ratls = Arc::new(RaTls::new(store, attestor, args.ratls_tls12));
            tokio::spawn(transport::serve(
                listener,
                ratls,
                state.clone(),
                options,
                shutdown,
            ))
        }
        (mode, _) => {
            tracing::error!("transport {mode:?} needs a server certificate");
            return ExitCode::FAILURE;
        }
    };

    // The first load.
    let loaded = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = load(&args);
            crate::memory::release_freed();
            loaded
        })
        .await
    };
    match loaded {
        Ok(Ok(registry)) => {
            let cache_budget = match args.blob_cache {
                Some(mib) => mib.saturating_mul(1 << 20),
                None => crate::blob_cache::default_budget(),
            };
            tracing::debug!(bytes = cache_budget, "blob cache budget");
            let cache = crate::blob_cache::BlobCache::new(cache_budget);
            if cache_budget > 0 {
                tokio::spawn(unmap_idle_blob_copies(cache.clone()));
            }
            shared.store(Arc::new(
                Catalog::with_seal_budget(registry, args.seal_memory.saturating_mul(1 << 20))
                    .with_blob_cache(cache),
            ));
            state.set_ready();
            crate::sd_notify::notify("READY=1");
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
    let reloader = Arc::new(Reloader::new(shared, args.root_dir(), load_options(&args)));
    let (trigger_tx, trigger_rx) = mpsc::channel::<()>(1);
    tokio::spawn(reloader.run(trigger_rx, WATCH_QUIET));
    let mut hup = hangups.subscribe();
    let hup_trigger = trigger_tx.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_ok() {
            let _ = hup_trigger.try_send(());
        }
    });
    let _watcher = if args.watch {
        match crate::watch::watch_root(&args.root_dir(), trigger_tx) {
            Ok(w) => {
                tracing::info!("watching {} for changes", args.root_dir().display());
                Some(w)
            }
            Err(e) => {
                tracing::error!(
                    "--watch: cannot watch {}: {e}; reload with SIGHUP instead",
                    args.root_dir().display()
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

fn serve_options(args: &Args) -> ServeOptions {
    ServeOptions {
        limits: ConnLimits {
            header_read_timeout: Duration::from_secs(args.header_timeout.max(1)),
            ..ConnLimits::default()
        },
        max_connections: args.max_connections.max(1),
        handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
        grace: Duration::from_secs(args.shutdown_grace),
        send_timeout: Duration::from_secs(args.send_timeout.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        ..ServeOptions::default()
    }
}

/// Loads `-c`/`-k`; when they are missing, says how to make a development
/// pair.
fn load_certificates(args: &Args) -> Result<Arc<CertStore>, String> {
    let (cert, key) = (args.cert_path(), args.key_path());
    CertStore::load(&cert, &key).map(Arc::new).map_err(|e| {
        if !cert.exists() || !key.exists() {
            let dir = cert.parent().unwrap_or(&cert);
            format!(
                "{e}\n  To create a development certificate: scripts/make-dev-cert.sh {} \
                 (writes server.crt and server.key there)",
                dir.display()
            )
        } else {
            e.to_string()
        }
    })
}

/// The RA-TLS attestor from `-j`, and either `--cpak` (local platform
/// keys) or `-u`/`-v` (Veraison); says at start-up which is in force.
fn build_attestor(args: &Args) -> Result<Arc<Attestor>, String> {
    let platform = match &args.cpak {
        Some(path) => PlatformCheck::Local(
            PlatformKeys::load(path).map_err(|e| format!("--cpak {}: {e}", path.display()))?,
        ),
        None => {
            let mut config = VeraisonConfig::new(args.veraison_url.clone());
            config.timeout = Duration::from_secs(args.veraison_timeout.max(1));
            let client = VeraisonClient::new(config)
                .map_err(|e| format!("-u {}: {e}", args.veraison_url))?;
            let key = args.veraison_pubkey_path();
            let ear = EarVerifier::load(&key).map_err(|e| format!("-v {}: {e}", key.display()))?;
            PlatformCheck::Veraison { client, ear }
        }
    };
    let references = args.reference_json_path();
    let attestor = Attestor::new(&references, platform, args.max_attestations)
        .map_err(|e| format!("-j {}: {e}", references.display()))?;
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
    if cfg!(feature = "insecure-skip-challenge") {
        tracing::error!(
            "INSECURE BUILD (feature insecure-skip-challenge): RA-TLS tokens are not checked against the \
             connection's challenge, so recorded tokens are accepted. Never serve real realms with this build."
        );
    }
    Ok(Arc::new(attestor))
}

/// Reloads reference values on SIGHUP; a broken file keeps the old ones.
async fn reload_references(
    attestor: Arc<Attestor>,
    mut hangups: tokio::sync::broadcast::Receiver<()>,
) {
    while !matches!(
        hangups.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Closed)
    ) {
        let a = attestor.clone();
        match tokio::task::spawn_blocking(move || a.reload_references()).await {
            Ok(Ok(n)) => tracing::info!("RA-TLS: reference values reloaded ({n} realm(s))"),
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
async fn unmap_idle_blob_copies(cache: Arc<crate::blob_cache::BlobCache>) {
    let mut tick = tokio::time::interval(BLOB_MAP_IDLE / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cache = cache.clone();
        let _ = tokio::task::spawn_blocking(move || cache.unmap_idle(BLOB_MAP_IDLE)).await;
    }
}
