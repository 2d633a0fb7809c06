//! COSE_Sign1 (tag 18) as notation writes it (`application/cose`).

use ciborium::Value;
use coset::{
    iana, CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate, TaggedCborSerializable,
};

use crate::envelope::{
    self, malformed, names, Algorithm, Decoded, Protected, MAX_CHAIN_LEN, MAX_HEADERS,
};
use crate::Error;

/// COSE header label `x5chain` (RFC 9360).
const X5CHAIN: i64 = 33;

fn label_name(l: &Label) -> String {
    match l {
        Label::Int(i) => i.to_string(),
        Label::Text(t) => t.clone(),
    }
}

/// A notary time: CBOR tag 1 around an integer number of seconds.
fn epoch(name: &str, v: &Value) -> Result<i64, Error> {
    match v {
        Value::Tag(1, inner) => match inner.as_ref() {
            Value::Integer(i) => {
                i64::try_from(*i).map_err(|_| malformed(format!("{name} is out of range")))
            }
            _ => Err(malformed(format!("{name} is not an integer time"))),
        },
        _ => Err(malformed(format!("{name} is not a tag-1 time"))),
    }
}

/// Decodes a COSE_Sign1 envelope; no signature or certificate is checked here.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let sign1 = CoseSign1::from_tagged_slice(bytes)
        .map_err(|e| malformed(format!("not a tagged COSE_Sign1 (tag 18): {e}")))?;
    let h = &sign1.protected.header;
    if h.rest.len() > MAX_HEADERS || sign1.unprotected.rest.len() > MAX_HEADERS {
        return Err(malformed("too many header parameters"));
    }
    let alg = match &h.alg {
        Some(RegisteredLabelWithPrivate::Assigned(a)) => match a {
            iana::Algorithm::PS256 => Algorithm::Ps256,
            iana::Algorithm::PS384 => Algorithm::Ps384,
            iana::Algorithm::PS512 => Algorithm::Ps512,
            iana::Algorithm::ES256 => Algorithm::Es256,
            iana::Algorithm::ES384 => Algorithm::Es384,
            iana::Algorithm::ES512 => Algorithm::Es512,
            other => return Err(Error::UnsupportedAlgorithm(format!("{other:?}"))),
        },
        other => return Err(Error::UnsupportedAlgorithm(format!("{other:?}"))),
    };
    let crit = h
        .crit
        .iter()
        .map(|c| match c {
            RegisteredLabelWithPrivate::Text(t) => t.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    let rest = |name: &str| {
        h.rest
            .iter()
            .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
            .map(|(_, v)| v)
    };
    let text = |name: &str| -> Result<Option<String>, Error> {
        match rest(name) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t.clone())),
            Some(_) => Err(malformed(format!("{name} is not text"))),
        }
    };
    let time_field = |name: &str| rest(name).map(|v| epoch(name, v)).transpose();
    let content_type = match &h.content_type {
        Some(RegisteredLabel::Text(t)) => Some(t.clone()),
        Some(other) => Some(format!("{other:?}")),
        None => None,
    };
    let protected = Protected {
        crit,
        present: h.rest.iter().map(|(l, _)| label_name(l)).collect(),
        content_type,
        scheme: text(names::SIGNING_SCHEME)?,
        signing_time: time_field(names::SIGNING_TIME)?,
        authentic_signing_time: time_field(names::AUTHENTIC_SIGNING_TIME)?,
        expiry: time_field(names::EXPIRY)?,
    };
    let (scheme, signing_time) = envelope::check_protected(&protected)?;

    let x5chain = sign1
        .unprotected
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Int(X5CHAIN))
        .map(|(_, v)| v)
        .ok_or_else(|| malformed("x5chain (33) is missing from the unprotected header"))?;
    let chain: Vec<Vec<u8>> = match x5chain {
        Value::Bytes(b) => vec![b.clone()],
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_CHAIN_LEN => items
            .iter()
            .map(|i| match i {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err(malformed("x5chain holds a non-bstr")),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(malformed(format!(
                "x5chain must hold 1 to {MAX_CHAIN_LEN} certificates"
            )))
        }
    };
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| malformed("detached payloads are not supported"))?;
    let signed_bytes = sign1.tbs_data(&[]);
    Ok(Decoded {
        alg,
        scheme,
        signing_time,
        expiry: protected.expiry,
        payload,
        signed_bytes,
        signature: sign1.signature,
        chain,
    })
}
