//! Offline verification of Notary Project (notation) signatures.
//!
//! Given notation's own trust policy (`trustpolicy.json`, version 1.0) and trust store
//! (`DIR/x509/{ca,signingAuthority,tsa}/NAME/`), [`verify`] checks one signature envelope
//! (JWS `application/jose+json` or COSE `application/cose`) for one artifact, as the Notary
//! Project signature specification and verification workflow define it:
//!
//! * **integrity**, always: the envelope decodes within bounds ([`MAX_ENVELOPE_BYTES`],
//!   10 certificates, 64 header parameters), `cty` is the notary payload type, every `crit`
//!   header is known and present, the signature verifies with the signing certificate's key
//!   under the algorithm notation's table assigns to that key (RSASSA-PSS SHA-256/384/512 for
//!   RSA 2048/3072/4096, ECDSA P-256/384/521), the payload's `targetArtifact` equals the
//!   [`Target`], every certificate meets notation's requirements (basicConstraints, keyUsage,
//!   codeSigning EKU on the signing certificate, key lengths) and is valid at the signing time;
//! * **authenticity**: the chain leads to a certificate of the statement's trust stores
//!   (`ca` for `notary.x509`, `signingAuthority` for `notary.x509.signingAuthority`), built
//!   with rustls-webpki, and the signing certificate's subject matches `trustedIdentities`;
//! * **authentic timestamp**: for `notary.x509`, every certificate is still valid now (no
//!   RFC 3161 timestamp is verified, so the claimed signing time proves nothing);
//! * **expiry**: the signature's `io.cncf.notary.expiry` has not passed.
//!
//! Levels `strict`, `permissive`, `audit` and `skip` and `override` behave as in notation:
//! an `enforce` failure is an [`Error`], a `log` failure lands in [`Verified::warnings`].
//!
//! Not done, offline by design: **revocation is never checked** (no OCSP or CRL fetch), which
//! is notation's `revocation: skip` whatever the policy says; RFC 3161 timestamp
//! countersignatures are not verified (`tsa` stores are loaded but unused, and
//! `verifyTimestamp` is accepted but has no effect); verification plugins are not run, so an
//! envelope that makes a plugin header critical is refused.
//!
//! Stricter than notation, by decision (fail closed): an extendedKeyUsage on the signing
//! certificate must include codeSigning; unknown fields in the policy are refused; certificates with unknown critical extensions are refused
//! (webpki). Laxer: the envelope's chain need not include the root when the trust store holds it.

mod certs;
mod cose;
mod dn;
mod envelope;
mod error;
mod jws;
mod policy;
mod store;
#[cfg(feature = "test-util")]
pub mod test_util;
mod verify;

pub use envelope::{Algorithm, SigningScheme, MAX_CHAIN_LEN, PAYLOAD_CONTENT_TYPE};
pub use error::Error;
pub use policy::{
    Action, Level, PolicyStatement, StoreKind, TrustPolicy, TrustStoreRef, TrustedIdentities,
    Verification,
};
pub use store::TrustStore;
pub use verify::{
    verify, verify_at, Target, Verified, MAX_ENVELOPE_BYTES, MEDIA_TYPE_COSE, MEDIA_TYPE_JWS,
};
