//! `--watch`: reload when files change under the root. Events are only
//! triggers; the reload itself rescans and verifies, so a missed or
//! spurious event costs nothing but a reload.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches `root` recursively, sending a trigger per event burst. The
/// returned watcher must be kept alive.
pub fn watch_root(
    root: &Path,
    triggers: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(e) if e.kind.is_access() => {}
            Ok(_) => {
                // A full channel already holds a pending trigger.
                let _ = triggers.try_send(());
            }
            Err(e) => tracing::warn!("file watching error: {e}"),
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}
