//! Human-readable accounts of a load: the one-line summary that the server
//! logs, and the full report that `--check` prints.

use std::fmt::Write;

use crate::model::Registry;

/// Formats a byte count with a binary unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One line: served, rejected, orphans, bytes, time and rate.
pub fn summary_line(r: &Registry) -> String {
    let tags: usize = r.applications.values().map(|a| a.tags.len()).sum();
    let blobs: usize = r
        .applications
        .values()
        .map(|a| a.blobs.len() + a.manifests.len())
        .sum();
    let bytes = r.bytes_verified();
    let secs = r.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        bytes as f64 / secs / (1 << 20) as f64
    } else {
        0.0
    };
    let reused = if r.blobs_reused > 0 {
        format!(", {} blobs unchanged since the last load", r.blobs_reused)
    } else {
        String::new()
    };
    format!(
        "registry loaded: {} applications served ({} tags, {} blobs, {} verified{}), {} rejected, {} orphan files, in {:.2}s ({:.0} MiB/s)",
        r.applications.len(),
        tags,
        blobs,
        human_bytes(bytes),
        reused,
        r.rejected.len(),
        r.orphans.len(),
        secs,
        rate
    )
}

/// The full report: one line per application served or rejected, then
/// orphans and ignored entries, then the summary.
pub fn full_report(r: &Registry) -> String {
    let mut out = String::new();
    for app in r.applications.values() {
        let _ = writeln!(
            out,
            "served    {}  ({} tags, {} manifests, {} blobs, {} verified)",
            app.name,
            app.tags.len(),
            app.manifests.len(),
            app.blobs.len(),
            human_bytes(app.bytes_verified)
        );
    }
    for rej in &r.rejected {
        let _ = writeln!(out, "rejected  {rej}");
    }
    for o in &r.orphans {
        let _ = writeln!(
            out,
            "orphan    {}/{} (not served)",
            o.application,
            o.file.display()
        );
    }
    for (path, why) in &r.ignored {
        let _ = writeln!(out, "ignored   {}: {why}", path.display());
    }
    out.push_str(&summary_line(r));
    out.push('\n');
    out
}
