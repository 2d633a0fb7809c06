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

/// Counts of what the served applications hold, each kind apart: the same
/// numbers per application ([`full_report`]) and in total.
fn served_counts(r: &Registry) -> (usize, usize, usize) {
    r.applications.values().fold((0, 0, 0), |(t, m, b), a| {
        (t + a.tags.len(), m + a.manifests.len(), b + a.blobs.len())
    })
}

/// A verification rate with a unit that fits it (`"412 MiB/s"`,
/// `"3.1 KiB/s"`), or `None` for a load too quick to time.
fn rate(bytes: u64, secs: f64) -> Option<String> {
    if secs <= 0.0 || bytes == 0 {
        return None;
    }
    let per_sec = (bytes as f64 / secs).min(u64::MAX as f64) as u64;
    Some(format!("{}/s", human_bytes(per_sec)))
}

/// One line: served, rejected, orphans, bytes, time and rate.
pub fn summary_line(r: &Registry) -> String {
    let (tags, manifests, blobs) = served_counts(r);
    let bytes = r.bytes_verified();
    let secs = r.elapsed.as_secs_f64();
    let rate = rate(bytes, secs)
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let reused = if r.blobs_reused > 0 {
        format!(", {} blobs unchanged since the last load", r.blobs_reused)
    } else {
        String::new()
    };
    format!(
        "registry loaded: {} applications served ({} tags, {} manifests, {} blobs, {} verified{}), {} rejected, {} orphan files, in {:.2}s{}",
        r.applications.len(),
        tags,
        manifests,
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

/// The machine-readable report of a load (`--check --format json`): one
/// serialisable document, so that fields can be added without breaking
/// readers that ignore what they do not know.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    /// The root that was loaded.
    pub root: String,
    /// True when at least one application is served and none was rejected
    /// (the `--check` exit code is 0 exactly then).
    pub ok: bool,
    /// Why the root could not be read at all (exit code 2); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every application found, served or rejected, sorted by name.
    pub applications: Vec<ApplicationReport>,
    /// Files under `blobs/` that nothing reaches (never served).
    pub orphans: Vec<OrphanReport>,
    /// Entries of the root skipped, with the reason.
    pub ignored: Vec<IgnoredReport>,
    /// Counts over the whole root.
    pub totals: Totals,
}

/// One application in a [`CheckReport`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplicationReport {
    /// Its name (for a rejected one, its path under the root).
    pub name: String,
    /// `served` or `rejected`.
    pub status: &'static str,
    /// Its tags and the manifest each names (served applications).
    pub tags: Vec<TagReport>,
    /// Manifests and indexes verified (served applications).
    pub manifests: usize,
    /// Other blobs verified (served applications).
    pub blobs: usize,
    /// Bytes hashed for it.
    pub bytes_verified: u64,
    /// The rules it broke, each with the file (rejected applications).
    pub errors: Vec<RuleReport>,
}

/// One tag of a served application.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TagReport {
    /// The tag.
    pub tag: String,
    /// The digest of the manifest or index it names.
    pub digest: String,
    /// The signature policy's verdict, when a policy is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureReport>,
}

/// A tag's verdict under the signature policy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignatureReport {
    /// `accepted` (served) or `refused` (not served).
    pub verdict: &'static str,
    /// Key fingerprints and certificate subjects whose signatures the
    /// policy accepted (empty when it required none).
    pub signers: Vec<String>,
    /// Refused: the requirement that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    /// Refused: the reason code (`no_signature`, `untrusted_key`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Refused: what exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One rule broken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleReport {
    /// The file, relative to the application (empty for the directory).
    pub file: String,
    /// A stable identifier of the rule (see [`crate::Rule::code`]).
    pub rule: &'static str,
    /// What was wrong, as the log line says it.
    pub message: String,
}

/// One orphan file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrphanReport {
    /// The application it lies in.
    pub application: String,
    /// The file, relative to the application.
    pub file: String,
}

/// One skipped entry of the root.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IgnoredReport {
    /// Its path.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Counts over the whole root.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    /// Applications served.
    pub served: usize,
    /// Applications rejected.
    pub rejected: usize,
    /// Tags served.
    pub tags: usize,
    /// Manifests and indexes served (the sum of the applications' `manifests`).
    pub manifests: usize,
    /// Other blobs served: configs and layers (the sum of the applications' `blobs`).
    pub blobs: usize,
    /// Bytes hashed.
    pub bytes_verified: u64,
    /// Orphan files.
    pub orphans: usize,
    /// Entries skipped.
    pub ignored: usize,
    /// Wall time of the load, in seconds.
    pub seconds: f64,
}

impl CheckReport {
    /// The report of a load of `root`.
    pub fn of(root: &std::path::Path, r: &Registry) -> Self {
        let mut applications: Vec<ApplicationReport> = r
            .applications
            .values()
            .map(|app| ApplicationReport {
                name: app.name.to_string(),
                status: "served",
                tags: app
                    .tags
                    .iter()
                    .map(|(tag, digest)| TagReport {
                        tag: tag.to_string(),
                        digest: digest.to_string(),
                        signature: None,
                    })
                    .collect(),
                manifests: app.manifests.len(),
                blobs: app.blobs.len(),
                bytes_verified: app.bytes_verified,
                errors: Vec::new(),
            })
            .collect();
        for rej in &r.rejected {
            let error = RuleReport {
                file: rej.file.display().to_string(),
                rule: rej.rule.code(),
                message: rej.to_string(),
            };
            match applications
                .iter_mut()
                .find(|a| a.status == "rejected" && a.name == rej.application)
            {
                Some(a) => a.errors.push(error),
                None => applications.push(ApplicationReport {
                    name: rej.application.clone(),
                    status: "rejected",
                    tags: Vec::new(),
                    manifests: 0,
                    blobs: 0,
                    bytes_verified: 0,
                    errors: vec![error],
                }),
            }
        }
        applications.sort_by(|a, b| a.name.cmp(&b.name));
        let (tags, manifests, blobs) = served_counts(r);
        let totals = Totals {
            served: r.applications.len(),
            rejected: applications
                .iter()
                .filter(|a| a.status == "rejected")
                .count(),
            tags,
            manifests,
            blobs,
            bytes_verified: r.bytes_verified(),
            orphans: r.orphans.len(),
            ignored: r.ignored.len(),
            seconds: r.elapsed.as_secs_f64(),
        };
        CheckReport {
            root: root.display().to_string(),
            ok: !r.applications.is_empty() && r.rejected.is_empty(),
            error: None,
            applications,
            orphans: r
                .orphans
                .iter()
                .map(|o| OrphanReport {
                    application: o.application.clone(),
                    file: o.file.display().to_string(),
                })
                .collect(),
            ignored: r
                .ignored
                .iter()
                .map(|(path, reason)| IgnoredReport {
                    path: path.display().to_string(),
                    reason: reason.clone(),
                })
                .collect(),
            totals,
        }
    }

    /// The report of a root that could not be read at all.
    pub fn root_error(root: &std::path::Path, error: String) -> Self {
        CheckReport {
            root: root.display().to_string(),
            ok: false,
            error: Some(error),
            applications: Vec::new(),
            orphans: Vec::new(),
            ignored: Vec::new(),
            totals: Totals::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_the_unit_that_shows_them() {
        assert_eq!(rate(3 * 1024, 1.0).as_deref(), Some("3.0 KiB/s"));
        assert_eq!(rate(512 << 20, 0.5).as_deref(), Some("1.0 GiB/s"));
        assert_eq!(rate(100, 2.0).as_deref(), Some("50 B/s"));
        assert_eq!(rate(0, 1.0), None);
        assert_eq!(rate(10, 0.0), None);
    }
}
