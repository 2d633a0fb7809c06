//! Who received a manifest, as receipts name them.

use aws_lc_rs::digest::{digest, SHA256};
use hex::encode as hex;
use ir_receipts::Identity;

/// The identity of an attested realm, for receipts.
pub fn realm_identity(claims: &ir_attest::token::RealmClaims, instance_id: &[u8]) -> Identity {
    Identity::Realm {
        rim: hex(&claims.rim),
        rems: std::array::from_fn(|i| hex(&claims.rems[i])),
        personalization: hex(claims.personalization),
        platform_instance_id_sha256: hex(digest(&SHA256, instance_id)),
    }
}

/// The identity of a TLS client certificate (its subject), for receipts.
pub fn certificate_identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(Identity::Certificate {
        subject: cert.subject().to_string(),
    })
}
