//! Why the local checks refuse a token ([`VerifyError`]), and why it
//! matched no realm of a reference set ([`MatchError`]): one module for
//! both, since each can hold the other.

use crate::cca_platform::PlatformError;
use crate::cose::CoseError;
use crate::hash::HashAlg;
use crate::keys::KeyError;
use crate::token::TokenError;

/// Why a token was rejected; each variant names the exact reason.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token did not parse.
    #[error("token parse error: {0}")]
    Token(#[from] TokenError),
    /// The RAK claim (44237) is not a valid key in the expected encoding.
    #[error("realm attestation key (44237) invalid: {0}")]
    BadRak(#[source] KeyError),
    /// The realm token's signature does not verify with its RAK.
    #[error("bad realm signature: {0}")]
    BadRealmSignature(#[source] CoseError),
    /// The RAK hash algorithm (44240) is not sha-256/384/512.
    #[error("unsupported RAK hash algorithm (44240): {0:?}")]
    UnsupportedRakHashAlg(String),
    /// The platform challenge is not the hash of the RAK.
    #[error("platform binding mismatch: {alg}(RAK) = {expected}, platform challenge = {found}")]
    PlatformBindingMismatch {
        /// The hash algorithm (44240).
        alg: HashAlg,
        /// The hash of the RAK claim (hex).
        expected: String,
        /// The platform challenge (hex).
        found: String,
    },
    /// The realm challenge does not bind this TLS session (a replayed or
    /// foreign token).
    #[error("challenge mismatch: realm challenge {found} is not SHA-512(challenge || SPKI) = {expected}")]
    ChallengeMismatch {
        /// The expected realm challenge (hex).
        expected: String,
        /// The token's realm challenge (hex).
        found: String,
    },
    /// The measurement hash algorithm differs from the reference value.
    #[error("hash algorithm mismatch: expected {expected}, found {found}")]
    HashAlgMismatch {
        /// The reference `hash-algo`.
        expected: String,
        /// The token's claim 44236.
        found: String,
    },
    /// The RIM differs from the reference value.
    #[error("RIM mismatch: expected {expected}, found {found}")]
    RimMismatch {
        /// The reference RIM (hex).
        expected: String,
        /// The token's RIM (hex).
        found: String,
    },
    /// The realm personalization value (44235) differs from the one the
    /// reference entry requires.
    #[error("personalization value mismatch: expected {expected}, found {found}")]
    PersonalizationMismatch {
        /// The reference `personalization-value` (hex).
        expected: String,
        /// The token's claim 44235 (hex).
        found: String,
    },
    /// The REMs equal none of the reference sets.
    #[error("no REM set matched (token REMs: {})", found.join(", "))]
    NoRemSetMatched {
        /// The token's four REMs (hex).
        found: Vec<String>,
    },
    /// No realm of the reference set matched.
    #[error("reference values: {0}")]
    Reference(#[from] MatchError),
    /// Local platform verification failed.
    #[error("platform: {0}")]
    Platform(#[from] PlatformError),
}

/// Why a token matched no realm of a [`ReferenceSet`](crate::reference_values::ReferenceSet).
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// The set is empty.
    #[error("no reference values loaded")]
    Empty,
    /// No realm matched; the closest failure is given.
    #[error("no realm matched ({checked} checked); closest is {realm}: {reason}")]
    NoMatch {
        /// The closest realm (see [`RealmReference::label`](crate::reference_values::RealmReference::label)).
        realm: String,
        /// How many realms were checked.
        checked: usize,
        /// Why the closest realm did not match.
        reason: Box<VerifyError>,
    },
}
