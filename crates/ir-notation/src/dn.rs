//! Distinguished names as notation compares them: a map from attribute type to value,
//! with a trusted identity matching a subject when its attributes are a subset.
//!
//! Hand-written because no crate in the tree parses RFC 4514 strings; the grammar notation
//! accepts (single-valued RDNs, no `#` hex values) is small.

use std::collections::BTreeMap;

/// Attribute type → value, e.g. `"CN"` → `"wabbit-networks.io"`.
pub type DnMap = BTreeMap<String, String>;

/// Longest distinguished name string accepted from a policy.
const MAX_DN_LEN: usize = 4096;
/// Most attributes in one distinguished name.
const MAX_ATTRIBUTES: usize = 32;

/// Parses an RFC 4514 string (`C=US, ST=WA, O=Notary, CN=x`) the way notation does: every
/// RDN single-valued, `S` as an alias of `ST`, no duplicate types, `C`, `ST` and `O` required.
pub fn parse_identity_dn(s: &str) -> Result<DnMap, String> {
    if s.len() > MAX_DN_LEN {
        return Err("distinguished name is too long".into());
    }
    if s.contains("=#") {
        return Err("hex-encoded attribute values are not supported".into());
    }
    let mut map = DnMap::new();
    for rdn in split_unescaped(s, ',')? {
        if split_unescaped(&rdn, '+')?.len() > 1 {
            return Err("multi-valued RDNs are not supported".into());
        }
        let (ty, value) = rdn
            .split_once('=')
            .ok_or_else(|| format!("{rdn:?} is not TYPE=VALUE"))?;
        let ty = match ty.trim() {
            "S" => "ST".to_string(),
            t => t.to_string(),
        };
        let value = unescape(value.trim())?;
        if ty.is_empty() || value.is_empty() {
            return Err(format!("{rdn:?} has an empty type or value"));
        }
        if map.insert(ty.clone(), value).is_some() {
            return Err(format!("attribute {ty} appears more than once"));
        }
        if map.len() > MAX_ATTRIBUTES {
            return Err("too many attributes".into());
        }
    }
    for required in ["C", "ST", "O"] {
        if !map.contains_key(required) {
            return Err(format!("attribute {required} is required"));
        }
    }
    Ok(map)
}

/// True when every attribute of `subset` is in `of` with the same value.
pub fn is_subset(subset: &DnMap, of: &DnMap) -> bool {
    subset.iter().all(|(k, v)| of.get(k) == Some(v))
}

/// Splits on `sep` where it is not escaped by a backslash; keeps escapes for `unescape`.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            cur.push(chars.next().ok_or("trailing backslash")?);
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        if parts.len() > MAX_ATTRIBUTES {
            return Err("too many attributes".into());
        }
    }
    parts.push(cur);
    Ok(parts)
}

/// Resolves `\c` and `\XX` escapes.
fn unescape(s: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(s.len());
    let raw = s.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            let hex = raw.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            if let Some(b) = hex {
                bytes.push(b);
                i += 3;
            } else {
                bytes.push(*raw.get(i + 1).ok_or("trailing backslash")?);
                i += 2;
            }
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).map_err(|_| "escaped value is not UTF-8".to_string())
}

/// The subject of a certificate as a [`DnMap`], or `None` when notation could not compare
/// it (multi-valued RDN, repeated attribute type, value that is not a string).
pub fn certificate_subject(name: &x509_parser::x509::X509Name<'_>) -> Option<DnMap> {
    let mut map = DnMap::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let attr = attrs.next()?;
        if attrs.next().is_some() {
            return None;
        }
        let oid = attr.attr_type().to_id_string();
        let ty = match oid.as_str() {
            "2.5.4.3" => "CN",
            "2.5.4.5" => "SERIALNUMBER",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.9" => "STREET",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "2.5.4.17" => "POSTALCODE",
            other => other,
        }
        .to_string();
        let value = attr.as_str().ok()?.to_string();
        if map.insert(ty, value).is_some() {
            return None;
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_subsets() {
        let id = parse_identity_dn("C=US, S=WA, O=Notary\\, Inc").unwrap();
        assert_eq!(id.get("ST").map(String::as_str), Some("WA"));
        assert_eq!(id.get("O").map(String::as_str), Some("Notary, Inc"));
        let mut subject = id.clone();
        subject.insert("CN".into(), "x".into());
        assert!(is_subset(&id, &subject));
        assert!(!is_subset(&subject, &id));
    }

    #[test]
    fn refuses_what_notation_refuses() {
        assert!(parse_identity_dn("C=US, O=Notary").is_err(), "ST missing");
        assert!(parse_identity_dn("C=US, ST=WA, O=A, O=B").is_err());
        assert!(parse_identity_dn("C=US+ST=WA, O=A").is_err());
        assert!(parse_identity_dn("C=US, ST=WA, O=#0101").is_err());
        assert!(parse_identity_dn("C=US, ST=WA, O=A\\").is_err());
    }
}
