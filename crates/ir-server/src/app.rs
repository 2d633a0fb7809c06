//! Start-up: load and verify, then serve (or report, with `--check`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ir_oci::{report, LoadOptions, Registry};
use tokio::net::TcpListener;

use crate::api::ApiState;
use crate::catalog::{self, Catalog};
use crate::cli::{Args, TlsMode};
use crate::server::ConnLimits;
use crate::tls::{self, CertStore};
use crate::transport::{self, plain::Plain, tls::Tls, ServeOptions};

/// Exit code when the root cannot be read at all.
pub const EXIT_ROOT: u8 = 2;
/// Exit code of `--check` when some application was rejected.
pub const EXIT_REJECTED: u8 = 1;

/// Loads the registry with the options the arguments ask for.
pub fn load(args: &Args) -> Result<Registry, ir_oci::LoadError> {
    let options = LoadOptions {
        threads: args.verify_threads,
        ..LoadOptions::default()
    };
    let root = args.root_dir();
    tracing::info!(root = %root.display(), "loading registry");
    let registry = ir_oci::load(&root, &options)?;
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

/// `--check`: load, print the report on stdout, and exit.
pub fn check(args: &Args) -> ExitCode {
    match load(args) {
        Ok(registry) => {
            print!("{}", report::full_report(&registry));
            if registry.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REJECTED)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ROOT)
        }
    }
}

/// Loads, binds and serves until SIGINT or SIGTERM.
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
    let loaded = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || load(&args)).await
    };
    let registry = match loaded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_ROOT);
        }
        Err(e) => {
            tracing::error!("loading failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = Arc::new(ApiState {
        catalog: catalog::shared(Catalog::new(registry)),
        access_log: !args.no_access_log,
    });
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = match TcpListener::bind(addr).await {
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
    let options = serve_options(&args);
    if let Some(store) = &certs {
        tokio::spawn(watch_certificates(store.clone()));
    }
    match (args.tls, certs) {
        (TlsMode::NoTls, _) => {
            tracing::info!("serving the OCI pull API over plain HTTP on {local}");
            transport::serve(listener, Arc::new(Plain), state, options, shutdown_signal()).await;
        }
        (TlsMode::Tls, Some(store)) => {
            tracing::info!("serving the OCI pull API over TLS on {local}");
            let tls = Arc::new(Tls::new(tls::server_config(store)));
            transport::serve(listener, tls, state, options, shutdown_signal()).await;
        }
        (mode, _) => {
            tracing::error!("transport {mode:?} is not available in this build yet");
            return ExitCode::FAILURE;
        }
    }
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

/// Rotates certificates on SIGHUP, and when their files change (polled,
/// which also works on file systems without change notification).
async fn watch_certificates(store: Arc<CertStore>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("no SIGHUP handler, certificate rotation only by file change: {e}");
            None
        }
    };
    let mut poll = tokio::time::interval(CERT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hup_recv = async {
            match &mut hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = hup_recv => {
                tracing::info!("SIGHUP: reloading the TLS certificate");
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload_logged()).await;
            }
            _ = poll.tick() => {
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
            }
        }
    }
}

/// How often certificate files are checked for replacement.
const CERT_POLL: Duration = Duration::from_secs(2);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}
