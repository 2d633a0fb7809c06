//! What a signature says it signs: cosign's simple-signing payload, or the
//! in-toto statement inside a sigstore bundle's DSSE envelope.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `type` of a cosign simple-signing payload.
pub const COSIGN_PAYLOAD_TYPE: &str = "cosign container image signature";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type of an in-toto statement that is a cosign image
/// signature (`cosign sign` with sigstore bundles). Any other predicate
/// (an SBOM, a provenance, a vulnerability scan) is an attestation about
/// the image, not a signature of it.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// How the claims of an in-toto statement that is an attestation (another
/// predicate type) fail: no key makes it a signature.
pub const NOT_A_SIGNATURE: &str = "an attestation";
/// Most subjects read from one in-toto statement.
const MAX_SUBJECTS: usize = 64;

/// The claim of one signature: the manifest digest it signs and the docker
/// reference it names (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `algorithm:hex`.
    pub digest: String,
    /// The signed docker reference, unparsed (`None`: the statement names
    /// no reference for this digest).
    pub reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleSigning {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)] // Free-form (creator, timestamp); read and ignored.
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    identity: Identity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

/// Reads a cosign simple-signing payload (strictly: the `critical` part has
/// exactly `type`, `image` and `identity`, as containers/image requires).
pub fn simple_signing(payload: &[u8]) -> Result<Claim, String> {
    let p: SimpleSigning = serde_json::from_slice(payload).map_err(|e| format!("payload: {e}"))?;
    if p.critical.kind != COSIGN_PAYLOAD_TYPE {
        return Err(format!(
            "payload type {:?} is not {COSIGN_PAYLOAD_TYPE:?}",
            p.critical.kind
        ));
    }
    Ok(Claim {
        digest: p.critical.image.digest,
        reference: Some(p.critical.identity.reference),
    })
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType", default)]
    predicate_type: Option<String>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    name: Option<String>,
    digest: BTreeMap<String, String>,
}

/// The claims of an in-toto statement that is a cosign signature
/// ([`COSIGN_SIGN_PREDICATE_TYPE`]): one per subject digest in an
/// algorithm OCI digests use. A statement of any other predicate type is
/// an attestation and claims nothing.
pub fn in_toto(payload: &[u8]) -> Result<Vec<Claim>, String> {
    let s: Statement =
        serde_json::from_slice(payload).map_err(|e| format!("in-toto statement: {e}"))?;
    if !matches!(
        s.kind.as_str(),
        "https://in-toto.io/Statement/v1" | "https://in-toto.io/Statement/v0.1"
    ) {
        return Err(format!("statement type {:?} is not in-toto's", s.kind));
    }
    if s.predicate_type.as_deref() != Some(COSIGN_SIGN_PREDICATE_TYPE) {
        return Err(format!(
            "{NOT_A_SIGNATURE} (predicate type {:?}), not a signature: only {COSIGN_SIGN_PREDICATE_TYPE:?} signs an image",
            s.predicate_type.as_deref().unwrap_or("")
        ));
    }
    if s.subject.len() > MAX_SUBJECTS {
        return Err(format!("more than {MAX_SUBJECTS} subjects"));
    }
    Ok(s.subject
        .into_iter()
        .flat_map(|sub| {
            let name = sub.name;
            sub.digest
                .into_iter()
                .filter(|(alg, _)| alg == "sha256" || alg == "sha512")
                .map(move |(alg, hex)| Claim {
                    digest: format!("{alg}:{hex}"),
                    reference: name.clone(),
                })
        })
        .collect())
}

/// DSSE's pre-authentication encoding, which a DSSE signature signs.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_payload_is_read_strictly() {
        let ok = br#"{"critical":{"identity":{"docker-reference":"r.io/a:1"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#;
        let c = simple_signing(ok).unwrap();
        assert_eq!(c.digest, "sha256:ab");
        assert_eq!(c.reference.as_deref(), Some("r.io/a:1"));
        let extra = br#"{"critical":{"identity":{"docker-reference":"r.io/a:1"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature","x":1},"optional":{}}"#;
        assert!(simple_signing(extra).is_err());
        let atomic = br#"{"critical":{"identity":{"docker-reference":"r.io/a:1"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"atomic container signature"}}"#;
        assert!(simple_signing(atomic).unwrap_err().contains("type"));
        assert!(simple_signing(b"[]").is_err());
    }

    #[test]
    fn in_toto_subjects_become_claims() {
        let s = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r.io/a","digest":{"sha256":"ab","md5":"x"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}"#;
        let c = in_toto(s).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].digest, "sha256:ab");
        assert_eq!(c[0].reference.as_deref(), Some("r.io/a"));
        assert!(in_toto(br#"{"_type":"x","subject":[]}"#).is_err());
        // cosign v3's `cosign sign` names no subject: no reference.
        let nameless = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"ab"},"annotations":{}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}"#;
        assert_eq!(in_toto(nameless).unwrap()[0].reference, None);
    }

    #[test]
    fn attestations_are_not_signatures() {
        for predicate in [
            "https://spdx.dev/Document",
            "https://slsa.dev/provenance/v1",
            "https://cosign.sigstore.dev/attestation/vuln/v1",
            "https://sigstore.dev/cosign/sign/v2",
        ] {
            let s = format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"r.io/a","digest":{{"sha256":"ab"}}}}],"predicateType":"{predicate}","predicate":{{}}}}"#
            );
            let e = in_toto(s.as_bytes()).unwrap_err();
            assert!(e.contains("attestation") && e.contains(predicate), "{e}");
        }
        let none = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r.io/a","digest":{"sha256":"ab"}}]}"#;
        assert!(in_toto(none).unwrap_err().contains("attestation"));
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(dsse_pae("t", b"ab"), b"DSSEv1 1 t 2 ab".to_vec());
    }
}
