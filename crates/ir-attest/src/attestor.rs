//! Judges an RA-TLS client once its handshake completed: the token in its
//! certificate, bound to this connection's challenge and certificate key,
//! checked against the reference values, and the platform checked either
//! locally (known CPAKs) or by Veraison.
//!
//! The cheapest checks ([`Attestor::precheck`]: parsing, the platform and
//! session bindings, the reference values; hashing only) run inside the TLS
//! handshake, before the handshake signature is checked. After the
//! handshake, [`Attestor::attest`] runs the local checks again with the
//! signatures (on the blocking pool: signature checks are CPU work), so a
//! wrong realm never costs a Veraison round trip. Veraison calls are
//! asynchronous, bounded in time by the client's timeout and in number by
//! a semaphore whose wait is bounded so that wait plus appraisal fit in the
//! handshake's deadline; one slow verifier never stalls the runtime or
//! other clients.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::cca_platform::{PlatformError, PlatformKeys};
use crate::certificate::{read_certificate, CertificateError};
use crate::ear::{EarError, EarVerifier};
use crate::reference_values::{MatchError, RealmReference, ReferenceError, ReferenceSet};
use crate::token::RealmClaims;
use crate::veraison::{VeraisonClient, VeraisonError};
use crate::verify::{self, Session, VerifyError};

/// How the platform part of a token is judged. In every mode the security
/// lifecycle must be "secured".
pub enum PlatformCheck {
    /// The platform token's signature (and reference values, if the
    /// trust-anchor entry has them) with known platform keys (`--cpak`).
    Local(PlatformKeys),
    /// Veraison's appraisal (`-u`), its EAR checked with its key (`-v`)
    /// and bound to the token by its annotated evidence.
    Veraison {
        /// The Veraison client (with its timeout).
        client: VeraisonClient,
        /// Verifies the EAR.
        ear: EarVerifier,
    },
    /// Both (`--cpak` with `-u`): the local appraisal must pass, and only
    /// then is the token sent to Veraison, which must affirm it too.
    LocalAndVeraison {
        /// Known platform keys.
        keys: PlatformKeys,
        /// The Veraison client.
        client: VeraisonClient,
        /// Verifies the EAR.
        ear: EarVerifier,
    },
}

impl PlatformCheck {
    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            PlatformCheck::Local(keys) => format!("local platform keys ({} trusted)", keys.len()),
            PlatformCheck::Veraison { client, .. } => format!("Veraison at {}", client.api_url()),
            PlatformCheck::LocalAndVeraison { keys, client, .. } => format!(
                "local platform keys ({} trusted) and Veraison at {}",
                keys.len(),
                client.api_url()
            ),
        }
    }

    /// The platform keys, when the platform is checked locally.
    pub fn local_keys(&self) -> Option<&PlatformKeys> {
        match self {
            PlatformCheck::Local(keys) | PlatformCheck::LocalAndVeraison { keys, .. } => Some(keys),
            PlatformCheck::Veraison { .. } => None,
        }
    }

    /// The Veraison client and EAR verifier, when Veraison is asked.
    pub fn veraison(&self) -> Option<(&VeraisonClient, &EarVerifier)> {
        match self {
            PlatformCheck::Local(_) => None,
            PlatformCheck::Veraison { client, ear }
            | PlatformCheck::LocalAndVeraison { client, ear, .. } => Some((client, ear)),
        }
    }
}

/// Why the insecure session-binding skip cannot be turned on.
#[derive(Debug, thiserror::Error)]
#[error("this build has no insecure-skip-challenge (build with the cargo feature insecure-skip-challenge to test clients that send a fixed token; never in production)")]
pub struct InsecureUnavailable;

/// A realm that attested.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The reference entry it matched (name, applications it may pull).
    pub realm: RealmReference,
    /// A one-line summary of the token, for logs.
    pub summary: String,
    /// The realm token's claims, to match the realm again against reference
    /// values reloaded while its connection is open.
    pub claims: RealmClaims,
    /// The platform's instance ID (platform claim 2396), for receipts.
    pub platform_instance_id: Vec<u8>,
}

/// Why a client was refused. Each variant says exactly what failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The certificate carries no usable token.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A local check failed (token, signatures, bindings, reference values,
    /// platform keys).
    #[error(transparent)]
    Local(#[from] VerifyError),
    /// Veraison failed or did not affirm.
    #[error(transparent)]
    Veraison(#[from] VeraisonError),
    /// No Veraison slot freed up in time for the appraisal to finish
    /// within the handshake's deadline.
    #[error("no Veraison slot free within {0:?} (--max-attestations appraisals in flight)")]
    VeraisonBusy(Duration),
    /// The blocking task running the checks failed.
    #[error("attestation task failed: {0}")]
    Internal(String),
}

impl AttestError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AttestError::Certificate(CertificateError::Missing) => "no_certificate",
            AttestError::Certificate(CertificateError::MissingExtension) => "missing_extension",
            AttestError::Certificate(_) => "bad_certificate",
            AttestError::Local(e) => local_reason(e),
            AttestError::Veraison(VeraisonError::Unreachable { .. }) => "veraison_unreachable",
            AttestError::Veraison(VeraisonError::Timeout(_)) => "veraison_timeout",
            AttestError::Veraison(VeraisonError::Ear(e)) => match e {
                EarError::NotAffirming { .. } => "veraison_not_affirming",
                EarError::NoPlatformAppraisal | EarError::NoRealmAppraisal => "ear_submod_missing",
                EarError::EvidenceMismatch(_) => "ear_evidence_mismatch",
                EarError::NonceMismatch { .. } => "ear_nonce",
                EarError::BadSignature | EarError::UnknownKid(_) => "ear_signature",
                EarError::Profile { .. } | EarError::VerifierId { .. } => "ear_verifier",
                EarError::Stale { .. } | EarError::FromFuture { .. } | EarError::Expired { .. } => {
                    "ear_stale"
                }
                _ => "ear_invalid",
            },
            AttestError::Veraison(_) => "veraison_error",
            AttestError::VeraisonBusy(_) => "veraison_busy",
            AttestError::Internal(_) => "internal",
        }
    }
}

fn local_reason(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Token(_) => "token_parse",
        VerifyError::BadRak(_)
        | VerifyError::BadRealmSignature(_)
        | VerifyError::UnsupportedRakHashAlg(_) => "realm_signature",
        VerifyError::PlatformBindingMismatch { .. } => "platform_binding",
        VerifyError::ChallengeMismatch { .. } => "challenge_mismatch",
        VerifyError::HashAlgMismatch { .. } => "hash_algorithm",
        VerifyError::RimMismatch { .. } => "rim_mismatch",
        VerifyError::NoRemSetMatched { .. } => "rem_mismatch",
        VerifyError::PersonalizationMismatch { .. } => "personalization_mismatch",
        VerifyError::Reference(MatchError::NoMatch { reason, .. }) => local_reason(reason),
        VerifyError::Reference(_) => "no_reference_values",
        VerifyError::Platform(PlatformError::BadSignature(_)) => "platform_signature",
        VerifyError::Platform(PlatformError::Lifecycle { .. }) => "platform_lifecycle",
        VerifyError::Platform(PlatformError::Mismatch(_)) => "platform_mismatch",
        VerifyError::Platform(_) => "platform_key",
    }
}

/// Attests RA-TLS clients; shared by every connection.
pub struct Attestor {
    references_path: PathBuf,
    references: RwLock<Arc<ReferenceSet>>,
    platform: RwLock<Arc<PlatformCheck>>,
    veraison_slots: Semaphore,
    skip_challenge: bool,
}

impl Attestor {
    /// An attestor with reference values from `references_path` (a file
    /// with one document or an array, or a directory of such files),
    /// `platform` checks, and at most `max_in_flight` Veraison calls at
    /// once.
    pub fn new(
        references_path: &Path,
        platform: PlatformCheck,
        max_in_flight: usize,
    ) -> Result<Self, ReferenceError> {
        let references = ReferenceSet::load(references_path)?;
        Ok(Attestor {
            references_path: references_path.to_path_buf(),
            references: RwLock::new(Arc::new(references)),
            platform: RwLock::new(Arc::new(platform)),
            veraison_slots: Semaphore::new(max_in_flight.max(1)),
            skip_challenge: false,
        })
    }

    /// INSECURE: stops checking the session binding, so recorded tokens
    /// (as the islet test client sends) are accepted. Only builds with the
    /// cargo feature `insecure-skip-challenge` can turn it on (see
    /// [`crate::INSECURE_SKIP_CHALLENGE_AVAILABLE`]); it is off unless a
    /// caller asks, whatever features the build unified.
    pub fn set_insecure_skip_challenge(&mut self, on: bool) -> Result<(), InsecureUnavailable> {
        if on && !crate::INSECURE_SKIP_CHALLENGE_AVAILABLE {
            return Err(InsecureUnavailable);
        }
        self.skip_challenge = on;
        Ok(())
    }

    /// Whether the session binding is skipped (INSECURE).
    pub fn skips_challenge(&self) -> bool {
        self.skip_challenge
    }

    /// The reference values in force.
    pub fn references(&self) -> Arc<ReferenceSet> {
        self.references
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The platform check in force (an attestation keeps the one it
    /// started with).
    pub fn platform(&self) -> Arc<PlatformCheck> {
        self.platform
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the platform check (platform keys, Veraison key reloaded);
    /// attestations in progress finish with the previous one.
    pub fn set_platform(&self, platform: PlatformCheck) {
        *self.platform.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(platform);
    }

    /// Reloads the reference values; on error the ones in force stay.
    pub fn reload_references(&self) -> Result<usize, ReferenceError> {
        let fresh = ReferenceSet::load(&self.references_path)?;
        let n = fresh.len();
        *self.references.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(n)
    }

    /// The cheap checks of the client certificate `cert_der` on a
    /// connection that was sent `challenge`: the token extension, parsing,
    /// the platform and session bindings and the reference values (no
    /// signature check). Run inside the handshake, before its signature.
    pub fn precheck(&self, cert_der: &[u8], challenge: &[u8; 64]) -> Result<(), AttestError> {
        let presented = read_certificate(cert_der)?;
        let session = Session {
            challenge,
            client_spki_der: &presented.spki_der,
        };
        cheap_checks(
            &presented.token,
            session,
            &self.references(),
            self.skip_challenge,
        )?;
        Ok(())
    }

    /// Judges the client certificate `cert_der` presented on a connection
    /// that was sent `challenge`. A Veraison appraisal must be able to end
    /// by `deadline` (the handshake's): the wait for a Veraison slot is
    /// bounded by `deadline` minus the Veraison timeout.
    pub async fn attest(
        &self,
        cert_der: Vec<u8>,
        challenge: [u8; 64],
        deadline: tokio::time::Instant,
    ) -> Result<Attested, AttestError> {
        let references = self.references();
        let platform = self.platform();
        let skip_challenge = self.skip_challenge;
        let local_platform = platform.clone();
        let (verified, token) = tokio::task::spawn_blocking(
            move || -> Result<(verify::Verified, Vec<u8>), AttestError> {
                let presented = read_certificate(&cert_der)?;
                let session = Session {
                    challenge: &challenge,
                    client_spki_der: &presented.spki_der,
                };
                let verified = local_checks(
                    &presented.token,
                    session,
                    &references,
                    local_platform.local_keys(),
                    skip_challenge,
                )?;
                Ok((verified, presented.token))
            },
        )
        .await
        .map_err(|e| AttestError::Internal(e.to_string()))??;

        let summary = verified.token.summary();
        // Only a token that passed every local check (with --cpak, its
        // platform signature too) reaches Veraison.
        if let Some((client, ear)) = platform.veraison() {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .saturating_sub(client.timeout());
            let _slot = match tokio::time::timeout(wait, self.veraison_slots.acquire()).await {
                Ok(slot) => slot.map_err(|e| AttestError::Internal(e.to_string()))?,
                Err(_) => return Err(AttestError::VeraisonBusy(wait)),
            };
            client.appraise_token(&token, &verified.token, ear).await?;
        }
        Ok(Attested {
            realm: verified.realm,
            summary,
            platform_instance_id: verified.token.platform.claims.instance_id,
            claims: verified.token.realm.claims,
        })
    }
}

/// The cheap checks (no signature); the session binding is skipped only
/// when the attestor was asked to at run time, and only builds with the
/// feature contain that path.
fn cheap_checks(
    token: &[u8],
    session: Session<'_>,
    references: &ReferenceSet,
    skip_challenge: bool,
) -> Result<(), VerifyError> {
    #[cfg(feature = "insecure-skip-challenge")]
    if skip_challenge {
        return verify::precheck(token, None, references).map(|_| ());
    }
    let _ = skip_challenge;
    verify::precheck(token, Some(session), references).map(|_| ())
}

/// The local checks; the session binding is skipped only when the
/// attestor was asked to at run time, and only builds with the feature
/// contain that path.
fn local_checks(
    token: &[u8],
    session: Session<'_>,
    references: &ReferenceSet,
    keys: Option<&PlatformKeys>,
    skip_challenge: bool,
) -> Result<verify::Verified, VerifyError> {
    #[cfg(feature = "insecure-skip-challenge")]
    if skip_challenge {
        return verify::verify_local_insecure_skip_challenge(token, references, keys);
    }
    let _ = skip_challenge;
    verify::verify_local(token, session, references, keys)
}
