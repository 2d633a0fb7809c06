//! # ir-attest
//!
//! Arm CCA attestation for ir-server's RA-TLS, as a library: no HTTP
//! server, no listener, no global state. It holds the rustls pieces that
//! run inside the handshake (the challenge and the client-certificate
//! verifier, [`ratls`]), but not the TLS server itself. The wire protocol
//! is described in the repository's `docs/ratls.md`.
//!
//! One module per job:
//!
//! - [`token`]: parse a CCA token (CBOR tag 399, two COSE_Sign1 tokens) and
//!   every realm and platform claim, with bounded sizes and errors that say
//!   where parsing failed;
//! - [`hash`]: the hash algorithms named by claims (`sha-256` …);
//! - [`keys`]: EC public keys (P-256/384/521) from SEC1 points, COSE_Key,
//!   JWK and PEM, and decoding of the realm attestation key (RAK);
//! - [`cose`]: COSE_Sign1 signature verification (ES256/ES384/ES512);
//! - [`verify`]: the local checks: realm signature, platform binding,
//!   session binding;
//! - [`reference_values`]: CCA reference values (islet JSON, arrays,
//!   directories), per-realm application lists, and matching a token
//!   against them;
//! - [`verify_error`]: why the local checks refuse a token;
//! - [`cca_platform`]: local CCA platform verification with known platform keys
//!   (CPAK) or a Veraison-style trust-anchor list;
//! - [`certificate`]: the token and SPKI of an RA-TLS client certificate;
//! - [`ratls`]: the rustls side of RA-TLS: the per-connection challenge
//!   and the client-certificate verifier;
//! - [`attestor`]: the whole attestation of a connection (local checks,
//!   platform, Veraison), run right after the handshake;
//! - [`published`]: keys whose private half is published (RFC examples,
//!   Veraison's demo keys), which servers refuse to trust;
//! - [`ear`]: verification of Veraison's EAR attestation results (JWT ES256);
//! - [`veraison`]: an async client for Veraison's challenge-response API;
//! - [`emulate`]: an emulated realm for tests and demos (NOT secure).
//!
//! The order in which a relying party should run the checks (cheap local
//! checks first, Veraison last) is shown in [`verify`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod attestor;
mod cbor;
pub mod cca_platform;
pub mod certificate;
pub mod cose;
pub mod ear;
pub mod emulate;
pub mod hash;
pub mod keys;
pub mod published;
pub mod ratls;
pub mod reference_values;
pub mod token;
pub mod veraison;
pub mod verify;
pub mod verify_error;

pub use cose::{CoseAlg, CoseError};
pub use ear::{Ear, EarError, EarVerifier};
pub use emulate::{EmulatedRealm, Measurements};

pub use cca_platform::{PlatformError, PlatformKeys};
pub use hash::HashAlg;
pub use keys::{KeyError, PublicKey};
pub use reference_values::{
    MatchError, RealmReference, ReferenceError, ReferenceSet, ReferenceValues,
};
pub use veraison::{VeraisonClient, VeraisonConfig, VeraisonError};
pub use verify::expected_realm_challenge;
pub use verify_error::VerifyError;

pub use token::{CcaToken, PlatformClaims, RealmClaims, TokenError};

/// Whether this build of ir-attest contains the INSECURE path that skips
/// the RA-TLS session binding (cargo feature `insecure-skip-challenge`).
/// Even then it is off unless turned on at run time
/// ([`attestor::Attestor::set_insecure_skip_challenge`]); servers print
/// this value at start-up.
pub const INSECURE_SKIP_CHALLENGE_AVAILABLE: bool = cfg!(feature = "insecure-skip-challenge");

/// The OID of the X.509 extension that carries the CCA token in an RA-TLS
/// client certificate (`1.3.3.3.7`), as dotted text.
pub const RATLS_TOKEN_EXTENSION_OID: &str = "1.3.3.3.7";

/// The same OID as its arcs, for X.509 libraries that want numbers.
pub const RATLS_TOKEN_EXTENSION_ARCS: [u64; 5] = [1, 3, 3, 3, 7];
