//! DSSE and in-toto pieces of a sigstore bundle that sigstore-rs keeps
//! crate-private (`bundle::verify::models::compute_pae`,
//! `bundle::intoto::InTotoStatementV1`), so they are written here from the
//! specifications (DSSE protocol v1; in-toto Statement v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1_TYPE: &str = "https://in-toto.io/Statement/v1";
/// cosign's predicate type for a plain signature (`cosign sign` with the new bundle format).
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";

/// DSSE's pre-authentication encoding: the bytes that are signed.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_V1_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// What kind of predicate follows.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate (`{}` for a cosign signature).
    #[serde(default)]
    pub predicate: serde_json::Value,
}

/// A subject of a statement: its digests, and a name when it has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's name. cosign v3's `cosign sign` writes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Algorithm → hex digest.
    pub digest: BTreeMap<String, String>,
    /// Annotations (cosign writes its `-a` annotations here, `{}` without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

impl Statement {
    /// cosign v3's statement for a signature of the manifest `sha256_hex`
    /// (`cosign sign`, sigstore bundle): the subject is the digest alone,
    /// with empty annotations, and names no image.
    pub fn cosign_sign(sha256_hex: &str) -> Self {
        Statement {
            statement_type: STATEMENT_V1_TYPE.to_string(),
            subject: vec![Subject {
                name: None,
                digest: BTreeMap::from([("sha256".to_string(), sha256_hex.to_string())]),
                annotations: Some(serde_json::json!({})),
            }],
            predicate_type: COSIGN_SIGN_PREDICATE_TYPE.to_string(),
            predicate: serde_json::json!({}),
        }
    }
}
