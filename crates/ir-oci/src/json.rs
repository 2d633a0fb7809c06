//! JSON for trusted inputs (policies, reference values, trust anchors,
//! access maps): an object that names a key twice is refused.
//!
//! serde_json keeps the last value of a repeated key, so
//! `{"default":[reject],"default":[insecureAcceptAnything]}` would load as
//! the permissive one; containers/image and most JSON readers in the
//! security field refuse such a document, and so does [`from_slice`].
//! The check is a second pass over the bytes with a bounded depth, then
//! the ordinary typed parse.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Deepest nesting a trusted JSON file may have.
pub const MAX_DEPTH: usize = 64;

/// Why a trusted JSON document was refused.
#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    /// An object names the same key twice.
    #[error("duplicate key {key:?} at {path}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Where the object is, as a JSON pointer-like path (`$`, `$.a[2]`).
        path: String,
    },
    /// Not JSON, nested deeper than [`MAX_DEPTH`], or not of the expected shape.
    #[error("{0}")]
    Invalid(#[from] serde_json::Error),
}

/// Parses `bytes` as `T`, refusing any object with a repeated key.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictJsonError> {
    check_unique_keys(bytes)?;
    Ok(serde_json::from_slice(bytes)?)
}

/// Checks that no object in `bytes` repeats a key (and that it is JSON).
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), StrictJsonError> {
    let mut found = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walk = Walk {
        depth: 0,
        path: String::from("$"),
        found: &mut found,
    };
    let parsed = walk.deserialize(&mut de).and_then(|()| de.end());
    if let Some(dup) = found {
        return Err(dup);
    }
    parsed.map_err(StrictJsonError::Invalid)
}

/// One value being walked: where it is and how deep.
struct Walk<'f> {
    depth: usize,
    path: String,
    found: &'f mut Option<StrictJsonError>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nested deeper than {MAX_DEPTH} at {}",
                self.path
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let walk = Walk {
                depth: self.depth + 1,
                path: format!("{}[{i}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if !seen.insert(key.clone()) {
                *self.found = Some(StrictJsonError::DuplicateKey {
                    key,
                    path: self.path,
                });
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk {
                depth: self.depth + 1,
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_named_with_its_place() {
        let err = check_unique_keys(br#"{"default":[{"type":"reject"}],"default":[]}"#).unwrap_err();
        assert!(
            matches!(&err, StrictJsonError::DuplicateKey { key, path } if key == "default" && path == "$"),
            "{err}"
        );
        let err = check_unique_keys(br#"{"a":[{"b":1},{"b":2,"b":3}]}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"duplicate key "b" at $.a[1]"#);
        // The same key with an escape is the same key.
        assert!(check_unique_keys(br#"{"a":1,"\u0061":2}"#).is_err());
    }

    #[test]
    fn unique_keys_parse_as_usual() {
        let v: serde_json::Value = from_slice(br#"{"a":{"a":1},"b":[1,{"a":2}]}"#).unwrap();
        assert_eq!(v["b"][1]["a"], 2);
        assert!(check_unique_keys(b"[]").is_ok());
        assert!(check_unique_keys(b"{} x").is_err(), "trailing bytes");
        assert!(check_unique_keys(b"{\"a\":").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(check_unique_keys(deep.as_bytes()).is_err());
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_unique_keys(fine.as_bytes()).is_ok());
    }
}
