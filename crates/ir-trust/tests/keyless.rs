//! Keyless signatures (`sigstoreSigned` with `fulcio` and
//! `rekorPublicKey*`): a real signature published with containers/image's
//! fixtures, and signatures made here with a test Fulcio CA and Rekor key,
//! one for every refusal, judged on loaded layouts (what is served).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ir_oci::{Digest, Registry};
use ir_testkit::keyless::{
    keyless_bundle, keyless_layer, keyless_sign, Fulcio, IssuerExt, Rekor, Sign, BUNDLE, CHAIN,
};
use ir_testkit::Root;
use ir_trust::{ArtifactSource, DockerReference, Evidence, Policy, Subject, Trust, Verdict};
use serde_json::{json, Value};

use crate::util::*;

const EMAIL: &str = "ci@example.com";
const ISSUER: &str = "https://token.actions.example.com";
/// The integrated time of the test signatures (2023-11-14T22:13:20Z).
const T: i64 = 1_700_000_000;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keyless")
        .join(name)
}

/// A keyless policy for `HOST`: Fulcio CA file, Rekor key file, identity.
fn keyless_policy(ca: &Path, rekor: &Path, issuer: &str, email: &str) -> Value {
    json!({"default": [{"type": "reject"}], "transports": {"docker": {HOST: [{
        "type": "sigstoreSigned",
        "fulcio": {"caPath": ca, "oidcIssuer": issuer, "subjectEmail": email},
        "rekorPublicKeyPath": rekor,
    }]}}})
}

// ---------------------------------------------------------------------------
// The real signature.

/// The fixture's signature manifest and image manifest in memory (its
/// layers are not in the fixture, so it cannot be a loaded layout).
struct Published {
    manifests: HashMap<Digest, (String, Vec<u8>)>,
    blobs: HashMap<Digest, Vec<u8>>,
    tags: HashMap<String, Digest>,
    image: Digest,
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::parse(&format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
    ))
    .unwrap()
}

impl Published {
    /// With `annotations` changed by `edit` before the signature manifest
    /// is made.
    fn new(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Self {
        let manifest = std::fs::read(fixture("manifest.json")).unwrap();
        let signature = std::fs::read(fixture("signature-1")).unwrap();
        let prefix = b"\0sigstore-json\n";
        assert!(signature.starts_with(prefix));
        let sig: Value = serde_json::from_slice(&signature[prefix.len()..]).unwrap();
        let payload = STANDARD.decode(sig["payload"].as_str().unwrap()).unwrap();
        let mut annotations = sig["annotations"].as_object().unwrap().clone();
        edit(&mut annotations);
        let config =
            br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let sig_manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config).to_string(), "size": config.len()},
            "layers": [{"mediaType": SIMPLE_SIGNING, "digest": sha256(&payload).to_string(),
                "size": payload.len(), "annotations": annotations}],
        }))
        .unwrap();
        let image = sha256(&manifest);
        let sig_digest = sha256(&sig_manifest);
        let mut tags = HashMap::new();
        tags.insert("fulcio-rekor-1".to_owned(), image.clone());
        tags.insert(ir_trust::signatures::cosign_tag(&image), sig_digest.clone());
        let mut manifests = HashMap::new();
        manifests.insert(
            image.clone(),
            (
                "application/vnd.docker.distribution.manifest.v2+json".to_owned(),
                manifest,
            ),
        );
        manifests.insert(
            sig_digest,
            (
                "application/vnd.oci.image.manifest.v1+json".to_owned(),
                sig_manifest,
            ),
        );
        let mut blobs = HashMap::new();
        blobs.insert(sha256(&payload), payload);
        blobs.insert(sha256(config), config.to_vec());
        Published {
            manifests,
            blobs,
            tags,
            image,
        }
    }

    fn judge(&self, policy: &Value, name: &str) -> Verdict {
        let dir = tempfile::tempdir().unwrap();
        let trust = Trust {
            policy: Some(Policy::load(&policy_file(dir.path(), policy)).unwrap()),
            notation: None,
        };
        let (media_type, bytes) = &self.manifests[&self.image];
        let subject = Subject {
            digest: &self.image,
            media_type,
            size: bytes.len() as u64,
        };
        let image = DockerReference::parse(name).unwrap();
        trust.judge(&image, &subject, self, &mut Evidence::new())
    }
}

impl ArtifactSource for Published {
    fn manifest(&self, digest: &Digest) -> Option<(&str, &[u8])> {
        self.manifests
            .get(digest)
            .map(|(m, b)| (m.as_str(), b.as_slice()))
    }
    fn tagged(&self, tag: &str) -> Option<Digest> {
        self.tags.get(tag).cloned()
    }
    fn referrers(&self, _: &Digest) -> Vec<Digest> {
        Vec::new()
    }
    fn blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, String> {
        match self.blobs.get(digest) {
            Some(b) if b.len() as u64 <= limit => Ok(b.clone()),
            Some(_) => Err("too large".into()),
            None => Err("no such blob".into()),
        }
    }
}

const PUBLISHED_NAME: &str = "192.168.64.2:5000/cosign-signed/fulcio-rekor-1";
const PUBLISHED_EMAIL: &str = "mitr@redhat.com";
const PUBLISHED_ISSUER: &str = "https://github.com/login/oauth";

/// The real policy, `transports.docker` for the published name's host.
fn published_policy(issuer: &str, email: &str) -> Value {
    json!({"default": [{"type": "reject"}], "transports": {"docker": {"192.168.64.2:5000": [{
        "type": "sigstoreSigned",
        "fulcio": {"caPath": fixture("fulcio_v1.crt.pem"), "oidcIssuer": issuer, "subjectEmail": email},
        "rekorPublicKeyPath": fixture("rekor.pub"),
        // The signature names the repository without a tag.
        "signedIdentity": {"type": "matchRepository"},
    }]}}})
}

fn refusal(v: &Verdict) -> (&'static str, String) {
    match v {
        Verdict::Refused(r) => (r.reason.code(), r.detail.clone()),
        Verdict::Accepted { .. } => panic!("accepted"),
    }
}

#[test]
fn published_keyless_signature_is_accepted() {
    let p = Published::new(|_| {});
    match p.judge(
        &published_policy(PUBLISHED_ISSUER, PUBLISHED_EMAIL),
        &format!("{PUBLISHED_NAME}:fulcio-rekor-1"),
    ) {
        Verdict::Accepted { signers } => {
            assert_eq!(
                signers,
                vec![format!("{PUBLISHED_EMAIL} ({PUBLISHED_ISSUER})")]
            )
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn published_keyless_signature_refusals() {
    let p = Published::new(|_| {});
    let name = format!("{PUBLISHED_NAME}:fulcio-rekor-1");
    let (code, detail) = refusal(&p.judge(
        &published_policy(PUBLISHED_ISSUER, "someone@example.com"),
        &name,
    ));
    assert_eq!(code, "untrusted_key");
    assert!(detail.contains("mitr@redhat.com"), "{detail}");
    let (code, detail) = refusal(&p.judge(
        &published_policy("https://accounts.google.com", PUBLISHED_EMAIL),
        &name,
    ));
    assert_eq!(code, "untrusted_key");
    assert!(detail.contains("OIDC issuer"), "{detail}");
    // Another repository: the signature names cosign-signed/fulcio-rekor-1.
    let (code, _) = refusal(&p.judge(
        &published_policy(PUBLISHED_ISSUER, PUBLISHED_EMAIL),
        "192.168.64.2:5000/other:fulcio-rekor-1",
    ));
    assert_eq!(code, "wrong_identity");

    // The SET altered (one bit of its signature), or without it.
    let flipped = Published::new(|a| {
        let mut set: Value = serde_json::from_str(a[BUNDLE].as_str().unwrap()).unwrap();
        let mut sig = STANDARD
            .decode(set["SignedEntryTimestamp"].as_str().unwrap())
            .unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        set["SignedEntryTimestamp"] = json!(STANDARD.encode(sig));
        a.insert(BUNDLE.into(), json!(set.to_string()));
    });
    let policy = published_policy(PUBLISHED_ISSUER, PUBLISHED_EMAIL);
    let (code, detail) = refusal(&flipped.judge(&policy, &name));
    assert_eq!(code, "bad_signature");
    assert!(detail.contains("Rekor"), "{detail}");
    let missing = Published::new(|a| {
        a.remove(BUNDLE);
    });
    let (code, detail) = refusal(&missing.judge(&policy, &name));
    assert_eq!(code, "bad_signature");
    assert!(detail.contains("signed entry timestamp"), "{detail}");
    // The intermediate missing: no chain to the root.
    let no_chain = Published::new(|a| {
        a.remove(CHAIN);
    });
    let (code, _) = refusal(&no_chain.judge(&policy, &name));
    assert_eq!(code, "untrusted_key");
}

// ---------------------------------------------------------------------------
// The test kit's Fulcio and Rekor.

/// A refusal's reason code and a fragment of its detail (`None`: accepted).
type Refused = Option<(&'static str, &'static str)>;

/// The tags served for `app` (none when the application is withdrawn).
fn served_tags(registry: &Registry, app: &str) -> Vec<String> {
    registry
        .applications
        .get(&ir_oci::RepoName::parse(app).unwrap())
        .map(|a| a.tags.keys().map(|t| t.as_str().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn keyless_signatures_are_served_and_every_refusal_is_withdrawn() {
    let root = Root::new();
    let dir = root.outside("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let fulcio = Fulcio::new("test fulcio", T);
    let other_ca = Fulcio::new("other fulcio", T);
    let rekor = Rekor::new();
    let ca_path = fulcio.write(&dir, "fulcio.pem");
    let rekor_path = rekor.0.write_public(&dir, "rekor.pub");

    // Each case: the application, how it is signed, and the reason and a
    // fragment of the detail when refused; as a signature tag (cosign's tag
    // form) and, where the last field is not `None`, as a sigstore bundle
    // too (referrers; the application `b-NAME`), refused as it says.
    let base = || Sign::new(EMAIL, ISSUER, T);
    let v2_only = [IssuerExt::V2(ISSUER)];
    let both = [IssuerExt::V1(ISSUER), IssuerExt::V2(ISSUER)];
    let disagree = [IssuerExt::V1(ISSUER), IssuerExt::V2("https://evil.example")];
    let other_email = Some(("untrusted_key", "issued to [\"mallory@example.com\"]"));
    let expired = Some(("untrusted_key", "not valid at the Rekor integrated time"));
    let bad_set = Some(("bad_signature", "verifies with no trusted Rekor key"));
    let other_ca_refused = Some(("untrusted_key", "does not chain to a trusted Fulcio CA"));
    let cases: Vec<(&str, Sign<'_>, Refused, Option<Refused>)> = vec![
        ("good", base(), None, Some(None)),
        (
            "issuerv2",
            Sign {
                issuer_exts: Some(&v2_only),
                ..base()
            },
            None,
            None,
        ),
        (
            "issuerboth",
            Sign {
                issuer_exts: Some(&both),
                ..base()
            },
            None,
            None,
        ),
        (
            "issuerdisagree",
            Sign {
                issuer_exts: Some(&disagree),
                ..base()
            },
            Some(("bad_signature", "OIDC issuer extensions disagree")),
            None,
        ),
        (
            "noissuer",
            Sign {
                issuer_exts: Some(&[]),
                ..base()
            },
            Some(("untrusted_key", "no OIDC issuer extension")),
            None,
        ),
        (
            "otherissuer",
            Sign {
                issuer: "https://evil.example",
                ..base()
            },
            Some(("untrusted_key", "OIDC issuer is \"https://evil.example\"")),
            None,
        ),
        (
            "otheremail",
            Sign {
                email: "mallory@example.com",
                ..base()
            },
            other_email,
            Some(other_email),
        ),
        (
            "expired",
            Sign {
                validity: Some((T - 1200, T - 600)),
                ..base()
            },
            expired,
            Some(expired),
        ),
        (
            "notyetvalid",
            Sign {
                validity: Some((T + 60, T + 660)),
                ..base()
            },
            Some(("untrusted_key", "CertNotValidYet")),
            None,
        ),
        (
            "badset",
            Sign {
                bad_set: true,
                ..base()
            },
            bad_set,
            Some(bad_set),
        ),
        (
            "noset",
            Sign {
                no_set: true,
                ..base()
            },
            Some(("bad_signature", "no Rekor signed entry timestamp")),
            Some(Some(("bad_signature", "no inclusion promise"))),
        ),
        (
            "otherentry",
            Sign {
                other_entry: true,
                ..base()
            },
            Some(("bad_signature", "logs another signature")),
            Some(Some(("bad_signature", "logs another payload"))),
        ),
        (
            "otherca",
            Sign {
                ca: Some(&other_ca),
                ..base()
            },
            other_ca_refused,
            Some(other_ca_refused),
        ),
    ];
    let mut expected: Vec<(String, Refused)> = Vec::new();
    for (name, how, reason, as_bundle) in cases {
        let forms = [(name.to_owned(), Some(reason), false)]
            .into_iter()
            .chain([(format!("b-{name}"), as_bundle, true)]);
        for (name, reason, bundle) in forms {
            let Some(reason) = reason else { continue };
            let app = root.layout(&name);
            let image = app.image(name.as_bytes());
            let reference = format!("{HOST}/{name}:1");
            let sign = if bundle { keyless_bundle } else { keyless_sign };
            let sig = sign(&app, &image.manifest, &reference, &fulcio, &rekor, &how);
            app.set_index(&[image.tagged("1"), sig]);
            expected.push((name, reason));
        }
    }
    // A bundle artifact whose layer calls itself a simple-signing payload,
    // signed keyless as one: the judgement reads the layer as a bundle (its
    // DSSE statement names this image, its signature is junk), so keyless
    // verification must read it as a bundle too, not as a signed payload.
    let confused = root.layout("confused");
    let image = confused.image(b"confused");
    let (alg, hex) = image.manifest.digest_str().split_once(':').unwrap();
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": format!("{HOST}/confused:1"), "digest": {alg: hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap();
    let bundle = serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "none"}},
        "dsseEnvelope": {"payload": STANDARD.encode(&statement),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": STANDARD.encode([0x30, 0x06, 2, 1, 1, 2, 1, 1]), "keyid": ""}]},
    }))
    .unwrap();
    let layer = keyless_layer(
        &confused,
        &bundle,
        &fulcio,
        &rekor,
        &Sign::new(EMAIL, ISSUER, T),
    );
    let media = "application/vnd.dev.sigstore.bundle.v0.3+json";
    let sig = confused.artifact(media, &[layer], json!({"subject": image.manifest.0}));
    confused.set_index(&[image.tagged("1"), sig]);
    expected.push((
        "confused".into(),
        Some(("untrusted_key", "the bundle holds no certificate")),
    ));
    // A key-based signature is not a keyless one.
    let keyed = root.layout("keyed");
    let image = keyed.image(b"keyed");
    let sig = cosign_sign(
        &keyed,
        &image.manifest,
        &format!("{HOST}/keyed:1"),
        &Key::p256(),
    );
    keyed.set_index(&[image.tagged("1"), sig]);
    expected.push((
        "keyed".into(),
        Some(("untrusted_key", "not a keyless signature")),
    ));

    let policy = keyless_policy(&ca_path, &rekor_path, ISSUER, EMAIL);
    let (registry, j) = judge(&root, &policy);
    for (name, reason) in &expected {
        let name = name.as_str();
        match *reason {
            None => {
                match verdict(&j, name, "1") {
                    Verdict::Accepted { signers } => {
                        assert_eq!(signers, &vec![format!("{EMAIL} ({ISSUER})")])
                    }
                    v => panic!("{name}: {v:?}"),
                }
                assert!(served_tags(&registry, name).contains(&"1".to_owned()));
            }
            Some((reason, detail)) => {
                let Verdict::Refused(r) = verdict(&j, name, "1") else {
                    panic!("{name} is accepted")
                };
                assert_eq!(r.reason.code(), reason, "{name}: {r}");
                assert!(r.detail.contains(detail), "{name}: {r}");
                assert!(
                    !served_tags(&registry, name).contains(&"1".to_owned()),
                    "{name} is served"
                );
            }
        }
    }
    // The same signatures with the other CA trusted: only `otherca` is.
    let other_path = other_ca.write(&dir, "other.pem");
    let (registry, _) = judge(
        &root,
        &keyless_policy(&other_path, &rekor_path, ISSUER, EMAIL),
    );
    assert!(served_tags(&registry, "otherca").contains(&"1".to_owned()));
    assert!(!served_tags(&registry, "good").contains(&"1".to_owned()));
}

#[test]
fn keyless_policies_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let fulcio = Fulcio::new("test fulcio", T);
    let ca = fulcio.write(dir.path(), "fulcio.pem");
    let rekor = Key::p256().write_public(dir.path(), "rekor.pub");
    let load = |req: Value| {
        let body = json!({"default": [req]});
        Policy::load(&policy_file(dir.path(), &body)).map(|_| ())
    };
    let ok = json!({"type": "sigstoreSigned",
        "fulcio": {"caPath": ca, "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
        "rekorPublicKeyPath": rekor});
    load(ok.clone()).unwrap();
    let ca_data = STANDARD.encode(&fulcio.pem);
    let rekor_data = STANDARD.encode(std::fs::read(&rekor).unwrap());
    load(json!({"type": "sigstoreSigned",
        "fulcio": {"caData": ca_data, "oidcIssuer": ISSUER, "subjectEmail": EMAIL},
        "rekorPublicKeyDatas": [rekor_data]}))
    .unwrap();
    let refused = |req: Value, what: &str| {
        let e = load(req).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    };
    let mut no_rekor = ok.clone();
    no_rekor
        .as_object_mut()
        .unwrap()
        .remove("rekorPublicKeyPath");
    refused(no_rekor, "rekorPublicKey");
    let mut no_email = ok.clone();
    no_email["fulcio"]
        .as_object_mut()
        .unwrap()
        .remove("subjectEmail");
    refused(no_email, "subjectEmail");
    let mut both = ok.clone();
    both["keyPath"] = json!(rekor);
    refused(both, "exclusive");
    let mut unknown = ok.clone();
    unknown["fulcio"]["subjectURI"] = json!("x");
    refused(unknown, "unknown field");
    let mut bad_ca = ok.clone();
    bad_ca["fulcio"]["caPath"] = json!(rekor);
    refused(bad_ca, "no PEM CERTIFICATE");
    let keyed_rekor =
        json!({"type": "sigstoreSigned", "keyPath": rekor, "rekorPublicKeyPath": rekor});
    refused(keyed_rekor, "rekorPublicKeyPath");
}

/// The same fresh keyless signatures judged by sigstore-rs (through
/// ir-sign) and by us: both accept the valid one and both refuse an
/// altered SET and a certificate of another CA. A genuine SET of another
/// entry (another signature by the same certificate) satisfies
/// sigstore-rs's cosign verifier, which does not compare the logged entry
/// with the signature; we refuse it, as containers/image does.
/// (sigstore-rs wants the certificate valid now, so these are made now.)
#[test]
fn sigstore_rs_agrees_on_fresh_keyless_signatures() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let root = Root::new();
    let dir = root.outside("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let fulcio = Fulcio::new("test fulcio", now);
    let other_ca = Fulcio::new("other fulcio", now);
    let rekor = Rekor::new();
    let ca_path = fulcio.write(&dir, "fulcio.pem");
    let rekor_path = rekor.0.write_public(&dir, "rekor.pub");
    // (application, how signed, sigstore-rs accepts, we accept)
    let cases = [
        ("good", Sign::new(EMAIL, ISSUER, now), true, true),
        (
            "badset",
            Sign {
                bad_set: true,
                ..Sign::new(EMAIL, ISSUER, now)
            },
            false,
            false,
        ),
        (
            "otherentry",
            Sign {
                other_entry: true,
                ..Sign::new(EMAIL, ISSUER, now)
            },
            true,
            false,
        ),
        (
            "otherca",
            Sign {
                ca: Some(&other_ca),
                ..Sign::new(EMAIL, ISSUER, now)
            },
            false,
            false,
        ),
    ];
    for (name, how, _, _) in &cases {
        let app = root.layout(name);
        let image = app.image(name.as_bytes());
        let sig = keyless_sign(
            &app,
            &image.manifest,
            &format!("{HOST}/{name}:1"),
            &fulcio,
            &rekor,
            how,
        );
        app.set_index(&[image.tagged("1"), sig]);
    }
    let (_, j) = judge(&root, &keyless_policy(&ca_path, &rekor_path, ISSUER, EMAIL));
    let ca_pem = std::fs::read(&ca_path).unwrap();
    let rekor_pem = std::fs::read(&rekor_path).unwrap();
    for (name, _, theirs_ok, ours_ok) in &cases {
        let layout = ir_sign::layout::Layout::open(&root.path().join(name)).unwrap();
        let digest = layout.resolve_tag("1").unwrap().digest().to_string();
        let theirs = ir_sign::keyless::verify_keyless(
            &layout,
            &ca_pem,
            &rekor_pem,
            &digest,
            &format!("{HOST}/{name}:1"),
        );
        let ours = verdict(&j, name, "1");
        assert_eq!(
            theirs.is_ok(),
            *theirs_ok,
            "sigstore-rs on {name}: {theirs:?}"
        );
        assert_eq!(ours.is_accepted(), *ours_ok, "ours on {name}: {ours:?}");
    }
}
