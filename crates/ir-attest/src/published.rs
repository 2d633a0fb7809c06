//! Keys whose private half is published, so that anyone can sign with
//! them: the example keys of RFC 9052 (RFC 8152) Appendix C.7, and the
//! demo and test keys Veraison ships (its EAR signing key `skey.jwk` in
//! every deployment example is RFC 9052's key "11"). A relying party that
//! trusts one of them (as Veraison's EAR key, `-v`, or as a platform key,
//! `--cpak`) trusts whoever answers in its place: servers refuse them at
//! start unless told this is a development set-up.
//!
//! Keys are compared by their point, so every encoding a key file may use
//! (JWK, PEM, raw SEC1, a trust-anchor entry) is recognised.

use crate::keys::PublicKey;

/// A published key: where it comes from, and its public point.
struct Published {
    name: &'static str,
    curve: &'static str,
    x: &'static str,
    y: &'static str,
}

const PUBLISHED: &[Published] = &[
    Published {
        name: "RFC 9052 (RFC 8152) example key \"11\", also Veraison's demo EAR signing key (skey.jwk)",
        curve: "P-256",
        x: "bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff",
        y: "20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e",
    },
    Published {
        name: "RFC 9052 (RFC 8152) example key \"meriadoc.brandybuck@buckland.example\"",
        curve: "P-256",
        x: "65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d",
        y: "1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c",
    },
    Published {
        name: "RFC 9052 (RFC 8152) example key \"peregrin.took@tuckborough.example\"",
        curve: "P-256",
        x: "98f50a4ff6c05861c8860d13a638ea56c3f5ad7590bbfbf054e1c7b4d91d6280",
        y: "f01400b089867804b8e9fc96c3932161f1934f4223069170d924b7e03bf822bb",
    },
    Published {
        name: "RFC 9052 (RFC 8152) example key \"bilbo.baggins@hobbiton.example\"",
        curve: "P-521",
        x: "0072992cb3ac08ecf3e5c63dedec0d51a8c1f79ef2f82f94f3c737bf5de7986671eac625fe8257bbd0394644caaa3aaf8f27a4585fbbcad0f2457620085e5c8f42ad",
        y: "01dca6947bce88bc5790485ac97427342bc35f887d86d65a089377e247e60baa55e4e8501e2ada5724ac51d6909008033ebc10ac999b9d7f5cc2519f3fe1ea1d9475",
    },
    Published {
        name: "Veraison test key ec.p256.jwk (integration tests, CCA evidence)",
        curve: "P-256",
        x: "30a0424cd21c2944838a2d75c92b37e76ea20d9f00893a3b4eee8a3c0aafec3e",
        y: "e04b65e92456d9888b52b379bdfbd51ee869ef1f0fc65b6659695b6cce081723",
    },
    Published {
        name: "Veraison test key ec.p256.alt.jwk",
        curve: "P-256",
        x: "6183fd4efc98e4e9f9c4f3e11dec8a5ebba07df27d6eed0b183881a8c6cf22b4",
        y: "9ac32cbd617c05d0ca1282155a99dc5c16261417fd3b15830fa35aa297b4116a",
    },
    Published {
        name: "Veraison demo CoSERV signing key (coserv-signer.jwk)",
        curve: "P-256",
        x: "cf4b4db205072b54d90b7dbd8eaaf7decfc6b9a7ead640fe4a3015c258c107c6",
        y: "5c8ad59be377ff25ac642b70c1a3d541aeabf12911741b724a8e97857674f852",
    },
    Published {
        name: "Veraison test key endEntity.jwk",
        curve: "P-256",
        x: "96a1670b2c3d671cd54f80d556a3b83199d4d626466b78b39a10923b06f5156d",
        y: "653cbb39d1cf5d9887b450812ed268d6810eba4b54471aca08474e59fc93179a",
    },
    Published {
        name: "Veraison test key \"example-rak\" (ec.p384.jwk)",
        curve: "P-384",
        x: "82fbd132a9b5c396879fbb15340d9050978e55c79d5279a2ba0e95854f37e20cd2f64f3b72b570bbd773eee2ce768425",
        y: "edf545edbe89ffafe0e96bbd46e270f20796c448b98daf46a764d27442e6e6ed84f8cec817e6ecc6a71d3a3de7d67ecd",
    },
];

/// If `key` is one whose private half is published, which one it is.
pub fn published_key(key: &PublicKey) -> Option<&'static str> {
    // The uncompressed point is 0x04 || x || y: compare x || y in hex.
    let sec1 = key.to_sec1();
    let xy = hex::encode(sec1.get(1..)?);
    PUBLISHED
        .iter()
        .find(|p| {
            p.curve == key.curve_name()
                && xy.len() == p.x.len() + p.y.len()
                && xy.starts_with(p.x)
                && xy.ends_with(p.y)
        })
        .map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_key_is_a_valid_point_and_recognised() {
        for p in PUBLISHED {
            let key = PublicKey::from_coordinates(
                p.curve,
                &hex::decode(p.x).unwrap(),
                &hex::decode(p.y).unwrap(),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(published_key(&key), Some(p.name));
        }
    }

    #[test]
    fn veraison_demo_key_is_recognised_in_every_encoding() {
        let jwk = br#"{"kty":"EC","crv":"P-256","x":"usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8","y":"IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"}"#;
        let key = PublicKey::from_jwk_json(jwk).unwrap();
        assert!(published_key(&key).unwrap().contains("Veraison"));
        let again = PublicKey::from_sec1(&key.to_sec1()).unwrap();
        assert!(published_key(&again).is_some());
    }

    #[test]
    fn a_fresh_key_is_not_published() {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let key = PublicKey::from_sec1(pair.public_key().as_ref()).unwrap();
        assert_eq!(published_key(&key), None);
    }
}
