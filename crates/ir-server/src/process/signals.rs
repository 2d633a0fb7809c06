//! Process signals as streams that several parts of the server can follow:
//! SIGHUP reloads content, certificates and reference values alike.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

/// Forwards every SIGHUP to the returned channel's subscribers.
pub fn hangups() -> broadcast::Sender<()> {
    let (tx, _) = broadcast::channel(4);
    let sender = tx.clone();
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading");
                    let _ = sender.send(());
                }
            });
        }
        Err(e) => tracing::warn!("cannot handle SIGHUP, reload by signal is off: {e}"),
    }
    tx
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cannot handle SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}
