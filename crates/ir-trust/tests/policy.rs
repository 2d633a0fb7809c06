//! containers-policy.json parsing: what is refused at start-up, and which
//! scope applies.

use ir_trust::{DockerReference, Policy, Requirement};
use serde_json::json;

use crate::util::Key;

fn parse(v: serde_json::Value) -> Result<Policy, ir_trust::PolicyError> {
    Policy::from_json(&serde_json::to_vec(&v).unwrap(), "policy.json")
}

fn error(v: serde_json::Value) -> String {
    parse(v).unwrap_err().to_string()
}

#[test]
fn unsupported_requirements_are_start_up_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Key::p256().write_public(tmp.path(), "k.pub");
    let cases = [
        (
            json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}),
            "signedBy",
        ),
        (
            json!({"type": "sigstoreSigned", "fulcio": {"caPath": "/nonexistent/ca.pem", "oidcIssuer": "https://i", "subjectEmail": "e@x"}, "rekorPublicKeyPath": key}),
            "fulcio.caPath: /nonexistent/ca.pem",
        ),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "rekorPublicKeyPath": "/r"}),
            "rekorPublicKeyPath",
        ),
        (json!({"type": "sigstoreSigned", "pki": {}}), "pki"),
        (json!({"type": "somethingElse"}), "somethingElse"),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "keyData": "x"}),
            "exactly one",
        ),
        (json!({"type": "sigstoreSigned"}), "exactly one"),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "typo": 1}),
            "unknown field \"typo\"",
        ),
        (
            json!({"type": "sigstoreSigned", "keyPath": "/nonexistent/k.pub"}),
            "/nonexistent/k.pub",
        ),
        (json!({"type": "sigstoreSigned", "keyPaths": []}), "1 to 64"),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "signedIdentity": {"type": "matchNothing"}}),
            "matchNothing",
        ),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "signedIdentity": {"type": "exactReference", "dockerReference": "r.io/a"}}),
            "tag or a digest",
        ),
        (
            json!({"type": "sigstoreSigned", "keyPath": key, "signedIdentity": {"type": "exactRepository", "dockerRepository": "r.io/a:1"}}),
            "must not",
        ),
        (
            json!({"type": "insecureAcceptAnything", "keyPath": key}),
            "unknown field",
        ),
    ];
    for (req, needle) in cases {
        let msg = error(
            json!({"default": [{"type": "reject"}], "transports": {"docker": {"r.io": [req.clone()]}}}),
        );
        assert!(msg.contains(needle), "{req}: {msg}");
        assert!(
            msg.starts_with("policy.json: transports.docker[\"r.io\"][0]"),
            "{msg}"
        );
    }
}

#[test]
fn structure_errors() {
    assert!(error(json!({})).contains("\"default\" is missing"));
    assert!(error(json!({"default": []})).contains("empty requirement list"));
    assert!(error(json!({"default": [{"type": "reject"}], "extra": 1})).contains("unknown field"));
    assert!(error(json!({"default": [{"type": "reject"}], "transports": {"docker": {"Bad/Scope": [{"type": "reject"}]}}})).contains("Bad/Scope"));
    assert!(error(json!({"default": [{"type": "reject"}], "transports": {"docker": {"busybox": [{"type": "reject"}]}}})).contains("host"));
    assert!(error(json!({"default": [{"type": "reject"}], "transports": {"docker": {"docker.io/busybox": [{"type": "reject"}]}}})).contains("normalized"));
    assert!(Policy::from_json(b"not json", "p")
        .unwrap_err()
        .to_string()
        .contains("not JSON"));
    // Other transports are ignored (and named), even with requirements we
    // would refuse for docker.
    let p = parse(json!({"default": [{"type": "reject"}], "transports": {"atomic": {"": [{"type": "signedBy"}]}}})).unwrap();
    assert_eq!(p.ignored_transports(), ["atomic"]);
}

#[test]
fn the_most_specific_scope_applies() {
    let p = parse(json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "*.example.com": [{"type": "reject"}],
            "a.example.com": [{"type": "insecureAcceptAnything"}],
            "a.example.com/team": [{"type": "reject"}],
            "a.example.com/team/app": [{"type": "insecureAcceptAnything"}],
            "a.example.com/team/app:pinned": [{"type": "reject"}],
        }},
    }))
    .unwrap();
    let scope = |r: &str| {
        p.requirements_for(&DockerReference::parse(r).unwrap())
            .scope
            .clone()
    };
    assert_eq!(
        scope("a.example.com/team/app:pinned"),
        "transports.docker[\"a.example.com/team/app:pinned\"]"
    );
    assert_eq!(
        scope("a.example.com/team/app:1"),
        "transports.docker[\"a.example.com/team/app\"]"
    );
    assert_eq!(
        scope("a.example.com/team/other:1"),
        "transports.docker[\"a.example.com/team\"]"
    );
    assert_eq!(
        scope("a.example.com/x:1"),
        "transports.docker[\"a.example.com\"]"
    );
    assert_eq!(
        scope("b.example.com/x:1"),
        "transports.docker[\"*.example.com\"]"
    );
    assert_eq!(
        scope("b.example.com:5000/x:1"),
        "transports.docker[\"*.example.com\"]"
    );
    assert_eq!(scope("other.io/x:1"), "transports.docker[\"\"]");
    let no_transport_default = parse(json!({"default": [{"type": "reject"}]})).unwrap();
    let r = no_transport_default.requirements_for(&DockerReference::parse("r.io/a:1").unwrap());
    assert_eq!(r.scope, "default");
    assert!(matches!(r.list[0], Requirement::Reject));
}

#[test]
fn key_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let k1 = Key::p256();
    let k2 = Key::ed25519();
    let p1 = k1.write_public(tmp.path(), "1.pub");
    let p2 = k2.write_public(tmp.path(), "2.pub");
    use base64::Engine;
    let data = |k: &Key| base64::engine::general_purpose::STANDARD.encode(k.public_pem());
    for req in [
        json!({"type": "sigstoreSigned", "keyPaths": [p1, p2]}),
        json!({"type": "sigstoreSigned", "keyDatas": [data(&k1), data(&k2)]}),
    ] {
        let p = parse(json!({"default": [req]})).unwrap();
        assert_eq!(p.key_count(), 2);
    }
    let p = parse(json!({"default": [{"type": "sigstoreSigned", "keyData": data(&k1)}]})).unwrap();
    assert_eq!(p.key_count(), 1);
    assert!(
        error(json!({"default": [{"type": "sigstoreSigned", "keyData": "bm90IGEga2V5"}]}))
            .contains("PUBLIC KEY")
    );
}

#[test]
fn a_confidential_containers_policy_says_what_to_write_instead() {
    // The agent's usual forms: a key fetched from the key broker, GPG.
    let kbs = error(
        json!({"default": [{"type": "reject"}], "transports": {"docker": {
            "quay.io/confidential-containers": [{
                "type": "sigstoreSigned",
                "keyPath": "kbs:///default/cosign-public-key/test",
            }],
        }}}),
    );
    assert!(
        kbs.contains("kbs:///default/cosign-public-key/test")
            && kbs.contains("key broker")
            && kbs.contains("put the public key in a file"),
        "{kbs}"
    );
    let gpg = error(
        json!({"default": [{"type": "reject"}], "transports": {"docker": {
            "quay.io/confidential-containers": [{
                "type": "signedBy",
                "keyType": "GPGKeys",
                "keyPath": "kbs:///default/gpg-public-config/test",
            }],
        }}}),
    );
    assert!(
        gpg.contains("signedBy") && gpg.contains("use \"sigstoreSigned\""),
        "{gpg}"
    );
}

#[test]
fn the_policy_files_load_as_one_trust_and_errors_name_the_flag_and_file() {
    use ir_trust::{NotationFiles, TrustFiles};
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.json");
    std::fs::write(
        &policy,
        br#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();

    assert!(TrustFiles::default().is_empty());
    let files = TrustFiles {
        policy: Some(policy.clone()),
        notation: None,
    };
    let trust = files.load().unwrap();
    assert!(trust.policy.is_some() && trust.notation.is_none());

    let missing = tmp.path().join("missing.json");
    let e = TrustFiles {
        policy: Some(missing.clone()),
        notation: None,
    }
    .load()
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!("--policy {}: ", missing.display())),
        "{e}"
    );

    let store = tmp.path().join("no-store");
    let e = TrustFiles {
        policy: Some(policy.clone()),
        notation: Some(NotationFiles {
            trust_policy: missing.clone(),
            trust_store: store.clone(),
        }),
    }
    .load()
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!("--notation-trust-policy {}: ", missing.display())),
        "{e}"
    );
}
