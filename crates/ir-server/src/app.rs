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
    match args.tls {
        TlsMode::NoTls => {
            tracing::info!("serving the OCI pull API over plain HTTP on {local}");
            crate::transport::serve_plain(
                listener,
                state,
                ConnLimits::default(),
                10_000,
                Duration::from_secs(30),
                shutdown_signal(),
            )
            .await;
        }
        TlsMode::Tls | TlsMode::RaTls => {
            tracing::error!(
                "transport {:?} is not available in this build yet",
                args.tls
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

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
