//! Hostile and unusual token input: order, trailing bytes, sizes, claim
//! types, duplicates; never a panic.

use ciborium::value::{Integer, Value};
use coset::{CborSerializable as _, TaggedCborSerializable as _};
use ir_attest::token::{CcaToken, Part, TokenError, MAX_TOKEN_SIZE};
use ir_attest::verify::{check_platform_binding, verify_realm_signature};
use ir_attest::{EmulatedRealm, Measurements};

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/cca/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The two inner tokens of a collection, platform first.
fn split(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let v: Value = ciborium::de::from_reader(bytes).unwrap();
    let Value::Tag(399, inner) = v else { panic!() };
    let Value::Map(entries) = *inner else {
        panic!()
    };
    let get = |k: i64| {
        entries
            .iter()
            .find(|(key, _)| *key == int(k))
            .and_then(|(_, v)| v.as_bytes().cloned())
            .unwrap()
    };
    (get(44234), get(44241))
}

fn collection(entries: Vec<(Value, Value)>) -> Vec<u8> {
    enc(&Value::Tag(399, Box::new(Value::Map(entries))))
}

/// Replaces the payload claims of an inner token (the signature no longer
/// matches, which parsing does not check).
fn with_claims(inner: &[u8], edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let mut sign1 = coset::CoseSign1::from_tagged_slice(inner).unwrap();
    let payload: Value = ciborium::de::from_reader(sign1.payload.as_deref().unwrap()).unwrap();
    let Value::Map(mut claims) = payload else {
        panic!()
    };
    edit(&mut claims);
    sign1.payload = Some(enc(&Value::Map(claims)));
    sign1.to_tagged_vec().unwrap()
}

fn set(claims: &mut Vec<(Value, Value)>, key: i64, value: Value) {
    claims.retain(|(k, _)| *k != int(key));
    claims.push((int(key), value));
}

fn emulated() -> Vec<u8> {
    EmulatedRealm::generate(Measurements::default())
        .unwrap()
        .token(&[7; 64])
        .unwrap()
}

#[test]
fn either_order_is_accepted() {
    for bytes in [fixture("token-a.bin"), emulated()] {
        let (p, r) = split(&bytes);
        let realm_first = collection(vec![
            (int(44241), Value::Bytes(r)),
            (int(44234), Value::Bytes(p)),
        ]);
        let t = CcaToken::parse(&realm_first).unwrap();
        verify_realm_signature(&t).unwrap();
        check_platform_binding(&t).unwrap();
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = fixture("token-a.bin");
    bytes.push(0);
    let err = CcaToken::parse(&bytes).unwrap_err();
    assert!(
        matches!(err, TokenError::Malformed { part: Part::Collection, ref reason } if reason.contains("trailing")),
        "{err}"
    );
    // Trailing bytes inside an inner token too.
    let (p, mut r) = split(&fixture("token-a.bin"));
    r.push(0);
    let bytes = collection(vec![
        (int(44234), Value::Bytes(p)),
        (int(44241), Value::Bytes(r)),
    ]);
    assert!(matches!(
        CcaToken::parse(&bytes),
        Err(TokenError::Malformed {
            part: Part::Realm,
            ..
        })
    ));
}

#[test]
fn sizes_are_bounded() {
    let big = vec![0u8; MAX_TOKEN_SIZE + 1];
    assert!(matches!(
        CcaToken::parse(&big),
        Err(TokenError::TooLarge { .. })
    ));
    // A collection that claims a huge byte string but is short.
    let lie = [
        0xd9, 0x01, 0x8f, 0xa2, 0x19, 0xac, 0xca, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff,
    ];
    assert!(CcaToken::parse(&lie).is_err());
}

#[test]
fn outer_structure_errors_say_where() {
    let (p, r) = split(&fixture("token-a.bin"));
    let cases: Vec<Vec<u8>> = vec![
        enc(&Value::Tag(398, Box::new(Value::Map(vec![])))),
        enc(&Value::Map(vec![])),
        collection(vec![(int(44234), Value::Bytes(p.clone()))]),
        collection(vec![
            (int(44234), Value::Bytes(p.clone())),
            (int(44234), Value::Bytes(p.clone())),
        ]),
        collection(vec![
            (int(44234), Value::Bytes(p.clone())),
            (int(1), Value::Bytes(r.clone())),
        ]),
        collection(vec![
            (int(44234), Value::Bytes(p.clone())),
            (int(44241), Value::Text("x".into())),
        ]),
        collection(vec![
            (int(44234), Value::Bytes(p.clone())),
            (int(44241), Value::Bytes(r.clone())),
            (int(3), Value::Bytes(vec![])),
        ]),
        vec![],
        vec![0xff],
    ];
    for bytes in cases {
        let err = CcaToken::parse(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Malformed {
                    part: Part::Collection,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("CCA token collection"), "{err}");
    }
    // Inner token not a COSE_Sign1.
    let bytes = collection(vec![
        (int(44234), Value::Bytes(p)),
        (int(44241), Value::Bytes(enc(&int(5)))),
    ]);
    assert!(matches!(
        CcaToken::parse(&bytes),
        Err(TokenError::Malformed {
            part: Part::Realm,
            ..
        })
    ));
    // Untagged COSE_Sign1 is refused (tag 18 is required).
    let (p, r) = split(&fixture("token-a.bin"));
    let untagged = coset::CoseSign1::from_tagged_slice(&r)
        .unwrap()
        .to_vec()
        .unwrap();
    let bytes = collection(vec![
        (int(44234), Value::Bytes(p)),
        (int(44241), Value::Bytes(untagged)),
    ]);
    assert!(matches!(
        CcaToken::parse(&bytes),
        Err(TokenError::Malformed {
            part: Part::Realm,
            ..
        })
    ));
}

/// An edit of a claims map.
type ClaimsEdit = dyn Fn(&mut Vec<(Value, Value)>);

fn parse_with(
    edit_realm: Option<&ClaimsEdit>,
    edit_platform: Option<&ClaimsEdit>,
) -> Result<CcaToken, TokenError> {
    let (mut p, mut r) = split(&fixture("token-a.bin"));
    if let Some(e) = edit_realm {
        r = with_claims(&r, e);
    }
    if let Some(e) = edit_platform {
        p = with_claims(&p, e);
    }
    CcaToken::parse(&collection(vec![
        (int(44234), Value::Bytes(p)),
        (int(44241), Value::Bytes(r)),
    ]))
}

#[test]
fn realm_claim_types_are_checked() {
    type Edit = Box<dyn Fn(&mut Vec<(Value, Value)>)>;
    let cases: Vec<(i64, Edit)> = vec![
        (10, Box::new(|c| set(c, 10, Value::Bytes(vec![0; 32])))),
        (10, Box::new(|c| set(c, 10, Value::Text("x".into())))),
        (
            44235,
            Box::new(|c| set(c, 44235, Value::Bytes(vec![0; 63]))),
        ),
        (44236, Box::new(|c| set(c, 44236, int(1)))),
        (44237, Box::new(|c| set(c, 44237, Value::Text("k".into())))),
        (
            44238,
            Box::new(|c| set(c, 44238, Value::Bytes(vec![0; 20]))),
        ),
        (
            44239,
            Box::new(|c| set(c, 44239, Value::Array(vec![Value::Bytes(vec![0; 32]); 3]))),
        ),
        (
            44239,
            Box::new(|c| set(c, 44239, Value::Array(vec![int(1); 4]))),
        ),
        (
            44239,
            Box::new(|c| set(c, 44239, Value::Bytes(vec![0; 32]))),
        ),
        (44240, Box::new(|c| set(c, 44240, Value::Bytes(vec![])))),
        (265, Box::new(|c| set(c, 265, int(3)))),
    ];
    for (key, edit) in cases {
        match parse_with(Some(&*edit), None) {
            Err(TokenError::BadClaim {
                part: Part::Realm,
                key: k,
                ..
            }) => assert_eq!(k, key),
            other => panic!("claim {key}: {other:?}"),
        }
    }
    for key in [10, 44235, 44236, 44237, 44238, 44239, 44240] {
        let edit = move |c: &mut Vec<(Value, Value)>| c.retain(|(k, _)| *k != int(key));
        match parse_with(Some(&edit), None) {
            Err(TokenError::MissingClaim {
                part: Part::Realm,
                key: k,
                ..
            }) => assert_eq!(k, key),
            other => panic!("claim {key}: {other:?}"),
        }
    }
    let dup = |c: &mut Vec<(Value, Value)>| {
        let first = c[0].clone();
        c.push(first);
    };
    assert!(matches!(
        parse_with(Some(&dup), None),
        Err(TokenError::DuplicateClaim {
            part: Part::Realm,
            ..
        })
    ));
    // Unknown claims are tolerated.
    let unknown = |c: &mut Vec<(Value, Value)>| {
        c.push((int(99999), Value::Text("hello".into())));
        c.push((Value::Text("text-key".into()), int(1)));
    };
    parse_with(Some(&unknown), None).unwrap();
    // The error message says where and what.
    let err = parse_with(
        Some(&|c: &mut Vec<(Value, Value)>| set(c, 44238, Value::Text("x".into()))),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "realm token: claim 44238 (RIM): expected a byte string of 32, 48, 64 bytes, found text string"
    );
}

#[test]
fn platform_claim_types_are_checked() {
    type Edit = Box<dyn Fn(&mut Vec<(Value, Value)>)>;
    let cases: Vec<(i64, Edit)> = vec![
        (10, Box::new(|c| set(c, 10, Value::Bytes(vec![0; 31])))),
        (256, Box::new(|c| set(c, 256, Value::Bytes(vec![])))),
        (265, Box::new(|c| set(c, 265, Value::Bytes(vec![])))),
        (2395, Box::new(|c| set(c, 2395, int(-1)))),
        (2395, Box::new(|c| set(c, 2395, Value::Text("x".into())))),
        (2396, Box::new(|c| set(c, 2396, int(0)))),
        (2399, Box::new(|c| set(c, 2399, Value::Map(vec![])))),
        (2399, Box::new(|c| set(c, 2399, Value::Array(vec![int(1)])))),
        (
            2399,
            Box::new(|c| {
                set(
                    c,
                    2399,
                    Value::Array(vec![Value::Map(vec![(int(1), Value::Text("BL".into()))])]),
                )
            }),
        ),
        (
            2399,
            Box::new(|c| {
                set(
                    c,
                    2399,
                    Value::Array(vec![Value::Map(vec![
                        (int(2), int(1)),
                        (int(5), Value::Bytes(vec![])),
                    ])]),
                )
            }),
        ),
        (
            2399,
            Box::new(|c| {
                set(
                    c,
                    2399,
                    Value::Array(vec![
                        Value::Map(vec![
                            (int(2), Value::Bytes(vec![])),
                            (int(5), Value::Bytes(vec![]))
                        ]);
                        65
                    ]),
                )
            }),
        ),
        (2400, Box::new(|c| set(c, 2400, int(1)))),
        (2401, Box::new(|c| set(c, 2401, Value::Text("x".into())))),
        (2402, Box::new(|c| set(c, 2402, int(1)))),
    ];
    for (key, edit) in cases {
        match parse_with(None, Some(&*edit)) {
            Err(TokenError::BadClaim {
                part: Part::Platform,
                key: k,
                ..
            }) => assert_eq!(k, key),
            other => panic!("claim {key}: {other:?}"),
        }
    }
    // 2400 is optional.
    parse_with(
        None,
        Some(&|c: &mut Vec<(Value, Value)>| c.retain(|(k, _)| *k != int(2400))),
    )
    .unwrap();
}

#[test]
fn truncations_and_bit_flips_never_panic() {
    let bytes = fixture("veraison/cca-token-draft-ffm-00.cbor");
    for len in 0..bytes.len() {
        let _ = CcaToken::parse(&bytes[..len]);
    }
    // Deterministic pseudo-random bit flips.
    let mut x: u32 = 0x1234_5678;
    for round in 0..2000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut b = bytes.clone();
        let i = (x as usize) % b.len();
        b[i] ^= 1 << (x >> 29);
        // Signature checks are slow in unoptimised test builds: sample.
        if let (Ok(t), true) = (CcaToken::parse(&b), round % 100 == 0) {
            let _ = verify_realm_signature(&t);
            let _ = check_platform_binding(&t);
        }
    }
}

#[test]
fn summary_is_one_short_line() {
    let t = CcaToken::parse(&fixture("token-a.bin")).unwrap();
    let s = t.summary();
    assert!(
        s.contains("rim=fdd82b3e") && !s.contains('\n') && s.len() < 400,
        "{s}"
    );
}
