//! Why an image was refused, as a closed set of reasons (the metric
//! labels).

use std::fmt;

/// Why an image was refused. [`Reason::code`] is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A `reject` requirement applies.
    Rejected,
    /// No signature was found where the requirement looks.
    NoSignature,
    /// A signature is malformed, or its payload is.
    BadSignature,
    /// No signature verifies with a trusted key (a signature by another
    /// key and an altered signature cannot be told apart).
    UntrustedKey,
    /// A signature verifies but signs another manifest.
    WrongDigest,
    /// A signature verifies for this digest but names an identity the
    /// policy does not accept.
    WrongIdentity,
}

impl Reason {
    /// Every reason, for metrics that list them all.
    pub const ALL: [Reason; 6] = [
        Reason::Rejected,
        Reason::NoSignature,
        Reason::BadSignature,
        Reason::UntrustedKey,
        Reason::WrongDigest,
        Reason::WrongIdentity,
    ];

    /// A stable snake_case label.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::NoSignature => "no_signature",
            Reason::BadSignature => "bad_signature",
            Reason::UntrustedKey => "untrusted_key",
            Reason::WrongDigest => "wrong_digest",
            Reason::WrongIdentity => "wrong_identity",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
