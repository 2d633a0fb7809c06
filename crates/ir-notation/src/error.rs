//! Why a signature, a trust policy or a trust store was refused.

/// A refusal, with its reason as data. Every variant is final: nothing is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The trust policy file is unreadable or breaks one of notation's rules.
    #[error("notation trust policy: {0}")]
    InvalidPolicy(String),
    /// The trust store directory is unreadable or holds something that is not a certificate.
    #[error("notation trust store: {0}")]
    InvalidTrustStore(String),
    /// No trust policy statement's `registryScopes` covers the scope (and there is no `*`).
    #[error("no notation trust policy statement applies to {0:?}")]
    NoApplicablePolicy(String),
    /// The envelope media type is neither `application/jose+json` nor `application/cose`.
    #[error("unsupported signature envelope media type {0:?}")]
    UnsupportedEnvelope(String),
    /// The envelope is larger than [`crate::MAX_ENVELOPE_BYTES`].
    #[error("signature envelope of {size} bytes exceeds the limit of {limit} bytes")]
    EnvelopeTooLarge {
        /// Size of the envelope.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The envelope does not parse or breaks the envelope specification.
    #[error("malformed signature envelope: {0}")]
    MalformedEnvelope(String),
    /// The signature algorithm is not one of notation's, or does not match the signing key.
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A header listed in `crit` that this verifier does not implement (plugins included).
    #[error("critical header {0:?} is not supported")]
    UnknownCriticalHeader(String),
    /// The signature does not verify with the signing certificate's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The payload's `targetArtifact` is not the artifact being verified.
    #[error("signature is for another artifact: {0}")]
    TargetMismatch(String),
    /// A certificate breaks notation's certificate requirements.
    #[error("certificate does not meet notation's requirements: {0}")]
    CertificateRequirement(String),
    /// The chain does not lead to a certificate in the policy's trust stores.
    #[error("certificate chain is not trusted: {0}")]
    UntrustedChain(String),
    /// The signing certificate's subject is not one of the policy's `trustedIdentities`.
    #[error("signer {0:?} is not a trusted identity")]
    IdentityNotTrusted(String),
    /// The signature or a certificate is expired or not yet valid at the time that matters.
    #[error("expired: {0}")]
    Expired(String),
}
