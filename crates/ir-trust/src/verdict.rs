//! Judging one image: the containers policy's requirements for its name,
//! then (when configured) notation's trust policy, against the signatures
//! found for its digest.

use std::fmt;
use std::sync::Arc;

use ir_notation::{Level, Target, TrustPolicy, TrustStore};
use ir_oci::Digest;

use crate::docker_reference::DockerReference;
use crate::evidence::EntryKind;
pub use crate::evidence::Evidence;
use crate::identity::SignedIdentity;
use crate::key::PublicKey;
use crate::keyless::Keyless;
use crate::payload::Claim;
use crate::policy::{Policy, Requirement};
use crate::reason::Reason;
use crate::signatures::{self, ArtifactSource};

/// Why one image is refused: which requirement, the reason, and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The requirement that failed (`transports.docker["r.io"][0]
    /// sigstoreSigned`, or `notation statement "prod"`).
    pub requirement: String,
    /// The reason.
    pub reason: Reason,
    /// What exactly (bounded: at most [`MAX_DETAIL`] bytes).
    pub detail: String,
}

/// Longest [`Refusal::detail`].
pub const MAX_DETAIL: usize = 300;

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.requirement, self.reason, self.detail)
    }
}

/// The outcome for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Served. `signers` names the keys (fingerprints) and certificate
    /// subjects whose signatures satisfied the policy; empty when the
    /// policy accepts anything.
    Accepted {
        /// Who signed it, as far as the policy required a signature.
        signers: Vec<String>,
    },
    /// Not served.
    Refused(Refusal),
}

impl Verdict {
    /// True for [`Verdict::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }
}

/// Notation's trust policy and trust store.
#[derive(Debug)]
pub struct NotationTrust {
    /// `trustpolicy.json`.
    pub policy: TrustPolicy,
    /// The trust store directory's certificates.
    pub store: TrustStore,
}

/// Everything an image is judged by: a containers policy, notation's
/// trust policy, or both (both must accept).
#[derive(Debug, Default)]
pub struct Trust {
    /// `--policy`.
    pub policy: Option<Policy>,
    /// `--notation-trust-policy` and `--notation-trust-store`.
    pub notation: Option<NotationTrust>,
}

/// The manifest being judged.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Its digest.
    pub digest: &'a Digest,
    /// Its media type.
    pub media_type: &'a str,
    /// Its size in bytes.
    pub size: u64,
}

impl Trust {
    /// True when neither policy is configured (everything is accepted).
    pub fn is_empty(&self) -> bool {
        self.policy.is_none() && self.notation.is_none()
    }

    /// Judges the image named `image` whose manifest is `subject`, with
    /// the signatures in `evidence`.
    pub fn judge(
        &self,
        image: &DockerReference,
        subject: &Subject<'_>,
        source: &dyn ArtifactSource,
        evidence: &mut Evidence<'_>,
    ) -> Verdict {
        let mut signers = Vec::new();
        if let Some(policy) = &self.policy {
            let reqs = policy.requirements_for(image);
            for (i, req) in reqs.list.iter().enumerate() {
                if matches!(req, Requirement::SigstoreSigned { .. }) {
                    evidence.load(source, subject.digest);
                }
                match judge_requirement(req, image, subject.digest, source, evidence) {
                    Ok(Some(signer)) => signers.push(signer),
                    Ok(None) => {}
                    Err((reason, detail)) => {
                        let name = format!("{}[{i}] {}", reqs.scope, req.kind());
                        return Verdict::Refused(refusal(name, reason, detail));
                    }
                }
            }
        }
        if let Some(notation) = &self.notation {
            evidence.load(source, subject.digest);
            match judge_notation(notation, image, subject, evidence) {
                Ok(Some(signer)) => signers.push(signer),
                Ok(None) => {}
                Err(r) => return Verdict::Refused(r),
            }
        }
        signers.sort();
        signers.dedup();
        Verdict::Accepted { signers }
    }
}

fn refusal(requirement: String, reason: Reason, mut detail: String) -> Refusal {
    if detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
        detail.push('…');
    }
    Refusal {
        requirement,
        reason,
        detail,
    }
}

type Failure = (Reason, String);

/// `Ok(Some(signer))` when satisfied by a signature, `Ok(None)` when
/// satisfied without one.
fn judge_requirement(
    req: &Requirement,
    image: &DockerReference,
    digest: &Digest,
    source: &dyn ArtifactSource,
    evidence: &mut Evidence<'_>,
) -> Result<Option<String>, Failure> {
    match req {
        Requirement::InsecureAcceptAnything => Ok(None),
        Requirement::Reject => Err((Reason::Rejected, "the policy rejects this image".into())),
        Requirement::SigstoreSigned {
            keys,
            keyless,
            identity,
        } => sigstore_signed(
            keys,
            keyless.as_deref(),
            identity,
            image,
            digest,
            source,
            evidence,
        )
        .map(Some),
    }
}

/// The first signature that satisfies the requirement names its key; when
/// none does, the failure that got furthest explains why.
fn sigstore_signed(
    keys: &[Arc<PublicKey>],
    keyless: Option<&Keyless>,
    identity: &SignedIdentity,
    image: &DockerReference,
    digest: &Digest,
    source: &dyn ArtifactSource,
    evidence: &mut Evidence<'_>,
) -> Result<String, Failure> {
    let mut best: Option<Failure> = None;
    let mut seen = 0;
    let text = digest.text();
    let wanted = text.as_str();
    for i in 0..evidence.entries().len() {
        let outcome = match &evidence.entries()[i].kind {
            EntryKind::Notation { .. } => continue,
            EntryKind::Malformed(why) => Err((Reason::BadSignature, why.clone())),
            EntryKind::Signed { record, .. } => {
                seen += 1;
                if let Some(why) = &record.unusable {
                    Err((Reason::BadSignature, why.clone()))
                } else if let Some(why) = record
                    .claims
                    .as_ref()
                    .err()
                    .filter(|e| e.starts_with(crate::payload::NOT_A_SIGNATURE))
                {
                    // An attestation is no signature, whoever signed it.
                    Err((Reason::BadSignature, why.clone()))
                } else {
                    let plausible = record.plausible;
                    let signer = match keyless {
                        Some(keyless) => match evidence.location(i) {
                            Some((artifact, layer)) => {
                                crate::keyless::verify(keyless, source, artifact, layer)
                            }
                            None => Err((Reason::BadSignature, "no signature".into())),
                        },
                        None => trusted_key(evidence, source, i, keys, plausible),
                    };
                    signer.and_then(|key| {
                        match evidence.claims(i) {
                            Some(Ok(claims)) => check_claim(claims, wanted, identity, image),
                            Some(Err(e)) => Err((Reason::BadSignature, e.clone())),
                            None => Err((Reason::BadSignature, "no signature".into())),
                        }
                        .map(|()| key)
                    })
                }
            }
        };
        match outcome {
            Ok(key) => return Ok(key),
            Err((reason, why)) => {
                let failure = (reason, format!("{}: {why}", evidence.entries()[i].origin()));
                if best.as_ref().is_none_or(|b| rank(reason) >= rank(b.0)) {
                    best = Some(failure);
                }
            }
        }
    }
    Err(best.unwrap_or_else(|| {
        (
            Reason::NoSignature,
            if seen == 0 {
                format!(
                    "no sigstore signature (no tag {} and no signature referrer)",
                    signatures::cosign_tag(digest)
                )
            } else {
                "no usable sigstore signature".into()
            },
        )
    }))
}

/// How far a signature got before it failed: later failures explain a
/// refusal better.
fn rank(reason: Reason) -> u8 {
    match reason {
        Reason::Rejected | Reason::NoSignature => 0,
        Reason::BadSignature => 1,
        Reason::UntrustedKey => 2,
        Reason::WrongDigest => 3,
        Reason::WrongIdentity => 4,
    }
}

fn trusted_key(
    evidence: &mut Evidence<'_>,
    source: &dyn ArtifactSource,
    index: usize,
    keys: &[Arc<PublicKey>],
    plausible: bool,
) -> Result<String, Failure> {
    for key in keys {
        if evidence.verifies(source, index, key) {
            return Ok(key.fingerprint().to_owned());
        }
    }
    if !plausible {
        return Err((
            Reason::BadSignature,
            "the signature is not a well-formed signature value".into(),
        ));
    }
    Err((
        Reason::UntrustedKey,
        format!(
            "the signature verifies with none of the {} trusted key(s)",
            keys.len()
        ),
    ))
}

fn check_claim(
    claims: &[Claim],
    wanted: &str,
    identity: &SignedIdentity,
    image: &DockerReference,
) -> Result<(), Failure> {
    let Some(first) = claims.first() else {
        return Err((Reason::BadSignature, "the statement has no subject".into()));
    };
    let for_us: Vec<&Claim> = claims.iter().filter(|c| c.digest == wanted).collect();
    if for_us.is_empty() {
        return Err((
            Reason::WrongDigest,
            format!("signs {}, not {wanted}", first.digest),
        ));
    }
    let mut last = String::new();
    for claim in for_us {
        let Some(text) = &claim.reference else {
            last = "the signature names no docker reference".into();
            continue;
        };
        match DockerReference::parse(text) {
            Ok(signed) if identity.matches(image, &signed) => return Ok(()),
            Ok(signed) => {
                last = format!(
                    "signed identity {signed} does not satisfy {} for {image}",
                    identity.kind()
                )
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err((Reason::WrongIdentity, last))
}

fn judge_notation(
    trust: &NotationTrust,
    image: &DockerReference,
    subject: &Subject<'_>,
    evidence: &Evidence<'_>,
) -> Result<Option<String>, Refusal> {
    let scope = image.name();
    let statement = match trust.policy.statement_for(&scope) {
        Ok(s) => s,
        Err(e) => {
            return Err(refusal(
                "notation trust policy".into(),
                Reason::Rejected,
                e.to_string(),
            ))
        }
    };
    let requirement = format!("notation statement {:?}", statement.name);
    if statement.verification.level == Level::Skip {
        return Ok(None);
    }
    let target = Target {
        media_type: subject.media_type.to_owned(),
        digest: subject.digest.to_string(),
        size: subject.size,
    };
    let mut last: Option<Failure> = None;
    for found in evidence.entries() {
        let EntryKind::Notation {
            media_type,
            envelope,
        } = &found.kind
        else {
            if let EntryKind::Malformed(why) = &found.kind {
                if last.is_none() {
                    last = Some((Reason::BadSignature, format!("{}: {why}", found.origin())));
                }
            }
            continue;
        };
        match ir_notation::verify(
            &trust.policy,
            &trust.store,
            &scope,
            &target,
            media_type,
            envelope,
        ) {
            Ok(v) => {
                return Ok(Some(if v.signer_subject.is_empty() {
                    format!("notation {}", v.policy_name)
                } else {
                    v.signer_subject
                }))
            }
            Err(e) => last = Some((notation_reason(&e), format!("{}: {e}", found.origin()))),
        }
    }
    let (reason, detail) = last.unwrap_or((
        Reason::NoSignature,
        "no notation signature among the referrers".into(),
    ));
    Err(refusal(requirement, reason, detail))
}

fn notation_reason(e: &ir_notation::Error) -> Reason {
    use ir_notation::Error as E;
    match e {
        E::TargetMismatch(_) => Reason::WrongDigest,
        E::BadSignature
        | E::MalformedEnvelope(_)
        | E::EnvelopeTooLarge { .. }
        | E::UnsupportedEnvelope(_)
        | E::UnsupportedAlgorithm(_)
        | E::UnknownCriticalHeader(_) => Reason::BadSignature,
        E::Expired(_) => Reason::BadSignature,
        E::IdentityNotTrusted(_) => Reason::WrongIdentity,
        E::NoApplicablePolicy(_) => Reason::Rejected,
        _ => Reason::UntrustedKey,
    }
}
