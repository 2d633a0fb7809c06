//! JWS JSON serialization as notation writes it (`application/jose+json`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::envelope::{
    self, malformed, names, Algorithm, Decoded, Protected, MAX_CHAIN_LEN, MAX_HEADERS,
};
use crate::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

/// Only `x5c` is used. Other unprotected fields are unsigned and ignored (notation's own
/// test envelopes spell `io.cncf.notary.SigningAgent` in several ways).
#[derive(Deserialize)]
struct Unprotected {
    x5c: Vec<String>,
}

/// A JSON object whose keys are unique: with a repeated header name, two parsers could each
/// see a different value, so the protected header refuses them (serde_json keeps the last).
struct UniqueMap(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if map.len() >= MAX_HEADERS {
                        return Err(serde::de::Error::custom("too many header parameters"));
                    }
                    if map.insert(k.clone(), v).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "header {k:?} is repeated"
                        )));
                    }
                }
                Ok(UniqueMap(map))
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn b64url(field: &str, s: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| malformed(format!("{field} is not base64url: {e}")))
}

fn rfc3339(name: &str, v: &Value) -> Result<i64, Error> {
    let s = v
        .as_str()
        .ok_or_else(|| malformed(format!("{name} is not a string")))?;
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| malformed(format!("{name} is not RFC 3339: {e}")))
}

/// Decodes a JWS envelope; no signature or certificate is checked here.
pub fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let env: Flattened = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let header_bytes = b64url("protected", &env.protected)?;
    let UniqueMap(header) =
        serde_json::from_slice(&header_bytes).map_err(|e| malformed(format!("protected: {e}")))?;
    let str_field = |k: &str| -> Result<Option<String>, Error> {
        match header.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("{k} is not a string"))),
        }
    };
    let alg = match str_field("alg")?.as_deref() {
        Some("PS256") => Algorithm::Ps256,
        Some("PS384") => Algorithm::Ps384,
        Some("PS512") => Algorithm::Ps512,
        Some("ES256") => Algorithm::Es256,
        Some("ES384") => Algorithm::Es384,
        Some("ES512") => Algorithm::Es512,
        other => return Err(Error::UnsupportedAlgorithm(format!("{other:?}"))),
    };
    let crit = match header.get("crit") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| malformed("crit holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("crit is not an array")),
    };
    let time_field = |k: &str| header.get(k).map(|v| rfc3339(k, v)).transpose();
    let protected = Protected {
        crit,
        present: header.keys().cloned().collect(),
        content_type: str_field("cty")?,
        scheme: str_field(names::SIGNING_SCHEME)?,
        signing_time: time_field(names::SIGNING_TIME)?,
        authentic_signing_time: time_field(names::AUTHENTIC_SIGNING_TIME)?,
        expiry: time_field(names::EXPIRY)?,
    };
    let (scheme, signing_time) = envelope::check_protected(&protected)?;

    if env.header.x5c.is_empty() || env.header.x5c.len() > MAX_CHAIN_LEN {
        return Err(malformed(format!(
            "x5c must hold 1 to {MAX_CHAIN_LEN} certificates"
        )));
    }
    let chain = env
        .header
        .x5c
        .iter()
        .map(|c| {
            STANDARD
                .decode(c)
                .map_err(|e| malformed(format!("x5c entry is not base64: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let payload = b64url("payload", &env.payload)?;
    let signature = b64url("signature", &env.signature)?;
    let signed_bytes = format!("{}.{}", env.protected, env.payload).into_bytes();
    Ok(Decoded {
        alg,
        scheme,
        signing_time,
        expiry: protected.expiry,
        payload,
        signed_bytes,
        signature,
        chain,
    })
}
