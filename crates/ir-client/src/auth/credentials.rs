//! Credentials, and secrets that never print.

use std::fmt;

/// A password or token: compared and cloned, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (Basic, or for a token).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// An identity (refresh) token, exchanged for access tokens.
    IdentityToken(Secret),
}
