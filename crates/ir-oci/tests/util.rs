//! ir-oci's half of the test kit. `ir_testkit` writes layouts without
//! knowing ir-oci (so that ir-oci can dev-depend on it); this module loads
//! an `ir_testkit::Root` with ir-oci and asserts on the resulting
//! [`Registry`].
//!
//! ```ignore
//! let (root, bad, image) = root_with_bad(); // `good` and `bad`
//! bad.corrupt_flip(&image.layers[0]);
//! let reg = root.load();
//! assert_rejected(&reg, "bad", image.layers[0].file(), rule);
//! ```

use std::path::Path;

use ir_oci::{Digest, LoadOptions, ReadAhead, Registry, Rule};
use ir_testkit::{Desc, Image, Layout, Root};

// ---- roots --------------------------------------------------------------

/// A root holding the valid application `good`, which [`assert_rejected`]
/// expects to find served beside the application under test.
pub fn root() -> Root {
    let root = Root::new();
    root.good("good");
    root
}

/// A root holding `good`, and a layout `bad` with one image tagged
/// `latest` in its index.json, for a test to break.
pub fn root_with_bad() -> (Root, Layout, Image) {
    let root = root();
    let bad = root.layout("bad");
    let image = bad.image(b"bad layer");
    bad.set_index(&[image.tagged("latest")]);
    (root, bad, image)
}

// ---- loading ------------------------------------------------------------

/// Loading a test root with ir-oci.
pub trait Load {
    /// Loads the root with default options; panics on a root error.
    fn load(&self) -> Registry {
        self.load_with(&LoadOptions::default())
    }

    /// Loads the root with `options`; panics on a root error.
    fn load_with(&self, options: &LoadOptions) -> Registry;
}

impl Load for Root {
    /// With the default `read_ahead` (`Always`), loads twice: reading
    /// every file itself, and taking the bytes of small files from the
    /// batched read-ahead; both must reach the same verdicts, so that every
    /// loader test covers both paths.
    fn load_with(&self, options: &LoadOptions) -> Registry {
        let load = |read_ahead| {
            let options = LoadOptions {
                read_ahead,
                ..options.clone()
            };
            ir_oci::load(self.path(), &options).expect("root loads")
        };
        if options.read_ahead != ReadAhead::default() {
            return load(options.read_ahead);
        }
        let direct = load(ReadAhead::Never);
        let ahead = load(ReadAhead::Always);
        assert_eq!(
            verdicts(&direct),
            verdicts(&ahead),
            "read-ahead changed the outcome"
        );
        ahead
    }
}

/// What a load decided, comparably: each served application's tags,
/// manifests (with their bytes) and blobs (with their file identities);
/// the rejections; the orphans.
fn verdicts(reg: &Registry) -> String {
    let mut out = String::new();
    for (name, app) in &reg.applications {
        let manifests: Vec<_> = app.manifests.iter().map(|(d, m)| (d, &m.bytes)).collect();
        let blobs: Vec<_> = app.blobs.iter().map(|(d, b)| (d, b.identity)).collect();
        out += &format!("{name}: {:?} {manifests:?} {blobs:?}\n", app.tags);
    }
    format!("{out}{:?}\n{:?}", reg.rejected, reg.orphans)
}

/// A test descriptor's digest as ir-oci's type.
pub trait OciDigest {
    /// The descriptor's digest, parsed by ir-oci.
    fn digest(&self) -> Digest;
}

impl OciDigest for Desc {
    fn digest(&self) -> Digest {
        Digest::parse(self.digest_str()).expect("valid digest")
    }
}

// ---- assertions -------------------------------------------------------

/// Asserts that `app` is served.
#[track_caller]
pub fn assert_served(reg: &Registry, app: &str) {
    assert!(
        reg.applications.keys().any(|n| n.as_str() == app),
        "{app} is not served; rejected: {:#?}",
        reg.rejected
    );
}

/// Asserts that exactly one application was rejected, that it is `app`,
/// for `file` (relative to the application), and returns its rule.
#[track_caller]
pub fn rejection(reg: &Registry, app: &str, file: impl AsRef<Path>) -> Rule {
    assert_eq!(
        reg.rejected.len(),
        1,
        "expected one rejection, got {:#?}",
        reg.rejected
    );
    let r = &reg.rejected[0];
    assert_eq!(r.application, app, "{r}");
    assert_eq!(r.file, file.as_ref(), "{r}");
    assert!(
        !reg.applications.keys().any(|n| n.as_str() == app),
        "{app} is rejected but served"
    );
    r.rule.clone()
}

/// Asserts `bad` was rejected for `file` with exactly `rule`, and that the
/// application `good` in the same root is still served.
#[track_caller]
pub fn assert_rejected(reg: &Registry, bad: &str, file: impl AsRef<Path>, rule: Rule) {
    assert_eq!(rejection(reg, bad, file), rule);
    assert_served(reg, "good");
}

/// Asserts nothing was rejected.
#[track_caller]
pub fn assert_clean(reg: &Registry) {
    assert!(reg.rejected.is_empty(), "rejected: {:#?}", reg.rejected);
}
