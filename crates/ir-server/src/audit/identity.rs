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

/// The identity of an authenticated user, for receipts. The last one is
/// remembered per thread: a request does not allocate it again, and a
/// keep-alive client's requests mostly land on the same thread.
pub fn user_identity(name: &std::sync::Arc<str>) -> std::sync::Arc<Identity> {
    use std::cell::RefCell;
    use std::sync::Arc;
    thread_local! {
        static LAST: RefCell<Option<(Arc<str>, Arc<Identity>)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((known, identity)) if Arc::ptr_eq(known, name) || **known == **name => {
            identity.clone()
        }
        _ => {
            let identity = Arc::new(Identity::User {
                name: name.to_string(),
            });
            *last = Some((name.clone(), identity.clone()));
            identity
        }
    })
}
