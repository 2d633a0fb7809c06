//! The local checks of an RA-TLS client token, and the order to run them.
//!
//! A relying party should run, cheapest first, so that a flood of forged
//! tokens costs hashing only, never a signature check or a Veraison call:
//!
//! 1. [`CcaToken::parse`];
//! 2. [`check_platform_binding`] (platform challenge = hash of the RAK);
//! 3. [`check_session_binding`] (realm challenge = SHA-512(challenge ||
//!    SPKI DER));
//! 4. reference values ([`crate::reference_values::ReferenceSet::match_claims`]);
//! 5. the platform's security lifecycle ([`crate::cca_platform::check_lifecycle`]);
//! 6. [`verify_realm_signature`] (realm token signed by its own RAK);
//! 7. the platform: locally ([`crate::cca_platform::PlatformKeys::verify`]),
//!    through Veraison ([`crate::veraison`], then [`crate::ear`]), or both
//!    (local first).
//!
//! [`precheck`] runs 1–5 (no signature: cheap enough to run inside the TLS
//! handshake, before the TLS CertificateVerify signature is checked);
//! [`verify_local`] runs 1–6 (and 7 in local CPAK mode) in that order.
//! Skipping the session binding is possible only with the cargo feature
//! `insecure-skip-challenge` (`verify_local_insecure_skip_challenge`),
//! which default builds do not contain.

use crate::cca_platform::PlatformKeys;
use crate::cose::verify_sign1;
use crate::hash::HashAlg;
use crate::keys::{decode_rak, PublicKey};
use crate::reference_values::{RealmReference, ReferenceSet};
use crate::token::CcaToken;
pub use crate::verify_error::VerifyError;
use sha2::{Digest, Sha512};

/// Decodes the RAK of `token` with the encoding its profiles call for.
pub fn realm_key(token: &CcaToken) -> Result<PublicKey, VerifyError> {
    let realm = &token.realm.claims;
    decode_rak(
        &realm.rak,
        realm.profile.as_deref(),
        Some(token.platform.claims.profile.as_str()),
    )
    .map_err(VerifyError::BadRak)
}

/// Verifies the realm token's COSE_Sign1 with the RAK it carries; returns
/// the RAK.
pub fn verify_realm_signature(token: &CcaToken) -> Result<PublicKey, VerifyError> {
    let key = realm_key(token)?;
    verify_sign1(&token.realm.sign1, &key).map_err(VerifyError::BadRealmSignature)?;
    Ok(key)
}

/// Checks the platform binding: the platform challenge (10) equals the
/// hash, named by claim 44240, of the RAK claim bytes exactly as sent.
pub fn check_platform_binding(token: &CcaToken) -> Result<HashAlg, VerifyError> {
    let realm = &token.realm.claims;
    let alg = HashAlg::from_name(&realm.rak_hash_alg)
        .ok_or_else(|| VerifyError::UnsupportedRakHashAlg(realm.rak_hash_alg.clone()))?;
    let expected = alg.digest(&realm.rak);
    let found = &token.platform.claims.challenge;
    if expected != *found {
        return Err(VerifyError::PlatformBindingMismatch {
            alg,
            expected: hex::encode(expected),
            found: hex::encode(found),
        });
    }
    Ok(alg)
}

/// The realm challenge a client must present for a session:
/// `SHA-512(challenge || client SubjectPublicKeyInfo DER)`.
pub fn expected_realm_challenge(challenge: &[u8; 64], client_spki_der: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(challenge);
    h.update(client_spki_der);
    h.finalize().into()
}

/// Checks the session binding: the realm challenge (10) equals
/// [`expected_realm_challenge`] of the server's challenge and the SPKI DER
/// of the certificate the client presented.
pub fn check_session_binding(
    token: &CcaToken,
    challenge: &[u8; 64],
    client_spki_der: &[u8],
) -> Result<(), VerifyError> {
    let expected = expected_realm_challenge(challenge, client_spki_der);
    let found = &token.realm.claims.challenge;
    if expected != *found {
        return Err(VerifyError::ChallengeMismatch {
            expected: hex::encode(expected),
            found: hex::encode(found),
        });
    }
    Ok(())
}

/// The TLS session a token must be bound to.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The 64-byte challenge the server sent.
    pub challenge: &'a [u8; 64],
    /// The SPKI DER of the client certificate.
    pub client_spki_der: &'a [u8],
}

/// A token that passed the local checks.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The parsed token.
    pub token: CcaToken,
    /// The realm of the reference set it matched.
    pub realm: RealmReference,
    /// Whether the platform token's signature was verified locally (CPAK
    /// mode). When false the platform still needs Veraison.
    pub platform_verified_locally: bool,
}

/// Runs the local checks in order (see the module docs): parse, platform
/// binding, session binding, reference values, realm signature, and,
/// when `platform_keys` is given (local CPAK mode), the platform signature.
/// Without `platform_keys` the platform must still be appraised by
/// Veraison.
pub fn verify_local(
    token_bytes: &[u8],
    session: Session<'_>,
    references: &ReferenceSet,
    platform_keys: Option<&PlatformKeys>,
) -> Result<Verified, VerifyError> {
    verify_inner(token_bytes, Some(session), references, platform_keys)
}

/// [`verify_local`] WITHOUT the session-binding check, for testing clients
/// that send a fixed recorded token. INSECURE: a replayed token passes.
/// Only compiled with the `insecure-skip-challenge` feature.
#[cfg(feature = "insecure-skip-challenge")]
pub fn verify_local_insecure_skip_challenge(
    token_bytes: &[u8],
    references: &ReferenceSet,
    platform_keys: Option<&PlatformKeys>,
) -> Result<Verified, VerifyError> {
    verify_inner(token_bytes, None, references, platform_keys)
}

/// The cheap checks (parse, platform binding, session binding when
/// `session` is given, reference values), without any signature check.
/// Passing them is not an attestation: [`verify_local`] must follow.
pub fn precheck(
    token_bytes: &[u8],
    session: Option<Session<'_>>,
    references: &ReferenceSet,
) -> Result<(CcaToken, RealmReference), VerifyError> {
    let token = CcaToken::parse(token_bytes)?;
    check_platform_binding(&token)?;
    if let Some(s) = session {
        check_session_binding(&token, s.challenge, s.client_spki_der)?;
    }
    let realm = references.match_claims(&token.realm.claims)?.clone();
    // In every mode: a platform in a debug or other non-secured state is
    // refused (Veraison would still call some of them trustworthy).
    crate::cca_platform::check_lifecycle(&token)?;
    Ok((token, realm))
}

fn verify_inner(
    token_bytes: &[u8],
    session: Option<Session<'_>>,
    references: &ReferenceSet,
    platform_keys: Option<&PlatformKeys>,
) -> Result<Verified, VerifyError> {
    let (token, realm) = precheck(token_bytes, session, references)?;
    verify_realm_signature(&token)?;
    if let Some(keys) = platform_keys {
        keys.verify(&token)?;
    }
    Ok(Verified {
        token,
        realm,
        platform_verified_locally: platform_keys.is_some(),
    })
}
