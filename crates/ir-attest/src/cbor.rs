//! Small CBOR helpers shared by the parsers (crate-private).

use ciborium::value::{Integer, Value};

/// Decodes exactly one CBOR item from `bytes`. Returns the item, or a
/// message naming the problem (malformed CBOR, or trailing bytes).
pub(crate) fn decode_exact(mut bytes: &[u8]) -> Result<Value, String> {
    // ciborium bounds recursion depth (256) itself.
    let value: Value =
        ciborium::de::from_reader(&mut bytes).map_err(|e| format!("malformed CBOR: {e}"))?;
    if !bytes.is_empty() {
        return Err(format!(
            "{} trailing byte(s) after the CBOR item",
            bytes.len()
        ));
    }
    Ok(value)
}

/// Encodes a value to bytes. Encoding into a `Vec` cannot fail for values
/// built in memory, but the error is still passed on rather than unwrapped.
pub(crate) fn encode(value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out)
        .map_err(|e| format!("CBOR encoding failed: {e}"))?;
    Ok(out)
}

/// A short name of the CBOR type of `v`, for error messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text string",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Tag(_, _) => "tagged item",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "other CBOR item",
    }
}

/// The integer value of a map key, if it is an integer that fits an i64.
pub(crate) fn int_key(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => i64::try_from(i128::from(*i)).ok(),
        _ => None,
    }
}

/// Builds an integer CBOR value.
pub(crate) fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}
