//! Test support: policies, and loading a root through the policy. The
//! signatures come from `ir_testkit::cosign`.

use std::path::{Path, PathBuf};

use ir_oci::Registry;
pub use ir_testkit::cosign::*;
use ir_testkit::Root;
use ir_trust::enforce::Judgement;
use ir_trust::{Memo, Policy, Trust, Verdict};
use serde_json::{json, Value};

/// The registry host images are judged under.
pub const HOST: &str = "registry.test";
/// A policy file in `dir` with `body` as its JSON.
pub fn policy_file(dir: &Path, body: &Value) -> PathBuf {
    let p = dir.join("policy.json");
    std::fs::write(&p, serde_json::to_vec_pretty(body).unwrap()).unwrap();
    p
}

/// `sigstoreSigned` with `keyPath` (and `signedIdentity` when given) for
/// `HOST`, reject by default.
pub fn signed_by(key: &Path, identity: Option<Value>) -> Value {
    let mut req = json!({"type": "sigstoreSigned", "keyPath": key});
    if let Some(i) = identity {
        req["signedIdentity"] = i;
    }
    json!({"default": [{"type": "reject"}], "transports": {"docker": {HOST: [req]}}})
}

/// The containers policy `policy` (written beside `root`) as a [`Trust`].
pub fn trust_of(root: &Root, policy: &Value) -> Trust {
    let dir = root.outside("policy");
    std::fs::create_dir_all(&dir).unwrap();
    Trust {
        policy: Some(Policy::load(&policy_file(&dir, policy)).unwrap()),
        notation: None,
    }
}

/// Loads `root` and applies the policy in `policy` under [`HOST`].
pub fn judge(root: &Root, policy: &Value) -> (Registry, Vec<Judgement>) {
    judge_with(root, &trust_of(root, policy))
}

/// Loads `root` and applies `trust` under [`HOST`]. Every judgement is
/// made three times, and must come out the same each time: reading every
/// signature, recalling every artifact from the memo the first made, and
/// recalling it from that memo's file.
pub fn judge_with(root: &Root, trust: &Trust) -> (Registry, Vec<Judgement>) {
    let load = || {
        let registry = ir_oci::load(root.path(), &ir_oci::LoadOptions::default()).unwrap();
        assert!(registry.rejected.is_empty(), "{:?}", registry.rejected);
        registry
    };
    let memo = Memo::new();
    let (registry, judgements) = ir_trust::enforce::enforce(trust, &memo, HOST, load());
    let (_, recalled) = ir_trust::enforce::enforce(trust, &memo, HOST, load());
    assert_eq!(
        format!("{recalled:?}"),
        format!("{judgements:?}"),
        "recalled"
    );
    let dir = root.outside("memo");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("memo.json");
    let _ = std::fs::remove_file(&file);
    memo.save(&file).unwrap();
    let (_, from_file) =
        ir_trust::enforce::enforce(trust, &Memo::load(&file).unwrap(), HOST, load());
    assert_eq!(
        format!("{from_file:?}"),
        format!("{judgements:?}"),
        "from file"
    );
    (registry, judgements)
}

/// The verdict of `app:tag`.
pub fn verdict<'a>(judgements: &'a [Judgement], app: &str, tag: &str) -> &'a Verdict {
    let j = judgements
        .iter()
        .find(|j| j.application.as_str() == app)
        .unwrap_or_else(|| panic!("no application {app}"));
    &j.tags
        .iter()
        .find(|(t, _)| t.as_str() == tag)
        .unwrap_or_else(|| panic!("no tag {tag}"))
        .1
         .1
}

/// The reason code of a refused `app:tag` (panics when accepted).
pub fn reason(judgements: &[Judgement], app: &str, tag: &str) -> &'static str {
    match verdict(judgements, app, tag) {
        Verdict::Refused(r) => r.reason.code(),
        Verdict::Accepted { .. } => panic!("{app}:{tag} was accepted"),
    }
}
