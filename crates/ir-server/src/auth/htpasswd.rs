//! `--htpasswd FILE`: users and bcrypt password hashes, as distribution's
//! `htpasswd` authentication reads them (`htpasswd -B`).
//!
//! One `user:hash` per line; empty lines and `#` comments are skipped.
//! Only bcrypt hashes (`$2y$`, `$2a$`, `$2b$`) are accepted: any other
//! hash (MD5 `$apr1$`, SHA `{SHA}`, crypt, plain text) or a malformed or
//! repeated entry is a start-up error naming the file and the line.
//!
//! A bcrypt verification costs tens of milliseconds by design, too much
//! for every request of a pull that sends Basic credentials each time: a
//! successful one is remembered for [`CACHE_TTL`] as an HMAC of the
//! credentials under a per-process key, one entry per user (so the cache
//! is bounded by the file), compared in constant time. An unknown user is
//! checked against a dummy hash of the same cost, so a refusal takes as
//! long whether or not the user exists.
//!
//! A reload ([`Htpasswd::succeeding`]) keeps the remembered successes of
//! users whose entry is unchanged and forgets those of users whose entry
//! changed or was removed, so a removed user's password stops working at
//! once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::{constant_time, hmac};

/// Most users in the file.
pub const MAX_USERS: usize = 10_000;
/// Largest file.
const MAX_BYTES: u64 = 4 << 20;
/// Longest user name.
const MAX_USER: usize = 256;
/// Longest password checked (bcrypt reads 72 bytes; longer input is
/// refused rather than hashed).
pub const MAX_PASSWORD: usize = 1024;
/// Highest bcrypt cost accepted (`htpasswd -C`'s): each step doubles the
/// time of every check, and of the check each start and reload makes.
pub const MAX_COST: u32 = 17;
/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file cannot be read.
    #[error("--htpasswd {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line breaks a rule.
    #[error("--htpasswd {path}:{line}: {why}")]
    Line {
        /// The file.
        path: String,
        /// The line (from 1).
        line: usize,
        /// The rule.
        why: String,
    },
    /// The file as a whole breaks a rule.
    #[error("--htpasswd {path}: {why}")]
    File {
        /// The file.
        path: String,
        /// The rule.
        why: String,
    },
}

/// What a reload changed in the user file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserChanges {
    /// Users now.
    pub users: usize,
    /// Users now, not before.
    pub added: usize,
    /// Users before, not now.
    pub removed: usize,
    /// Users before and now, with another hash.
    pub changed: usize,
}

/// The users and their hashes, with the cache of recent successes.
pub struct Htpasswd {
    users: HashMap<String, String>,
    dummy: String,
    cache_key: hmac::Key,
    cache: Mutex<HashMap<String, (hmac::Tag, Instant)>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|source| HtpasswdError::Read {
                path: shown.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(HtpasswdError::File {
                path: shown,
                why: format!("larger than {MAX_BYTES} bytes"),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| HtpasswdError::File {
            path: shown.clone(),
            why: "not UTF-8 text".into(),
        })?;
        Self::parse(&text).map_err(|(line, why)| HtpasswdError::Line {
            path: shown,
            line,
            why,
        })
    }

    /// Parses the file's text; an error names the line (from 1) and rule.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        let mut max_cost = 4;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or((n, "not USER:HASH".to_string()))?;
            if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) {
                return Err((
                    n,
                    "the user name is empty, too long or has control characters".into(),
                ));
            }
            let hash = hash.trim();
            if !["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
                return Err((
                    n,
                    format!(
                        "user {user:?}: only bcrypt hashes ($2y$, $2a$, $2b$; htpasswd -B) are accepted"
                    ),
                ));
            }
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| (n, format!("user {user:?}: malformed bcrypt hash: {e}")))?;
            if hash.len() != 60 {
                return Err((n, format!("user {user:?}: malformed bcrypt hash")));
            }
            if parts.get_cost() > MAX_COST {
                return Err((
                    n,
                    format!(
                        "user {user:?}: bcrypt cost {} is above {MAX_COST} (htpasswd -C takes 4 to 17)",
                        parts.get_cost()
                    ),
                ));
            }
            max_cost = max_cost.max(parts.get_cost());
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((n, format!("user {user:?} appears twice")));
            }
            if users.len() > MAX_USERS {
                return Err((n, format!("more than {MAX_USERS} users")));
            }
        }
        // The dummy costs what the dearest real hash costs.
        let dummy = bcrypt::hash("not a password", max_cost.clamp(4, MAX_COST))
            .map_err(|e| (0, e.to_string()))?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| (0, "no randomness".to_string()))?;
        Ok(Htpasswd {
            users,
            dummy,
            cache_key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True without users (nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// True when `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// This file, read again, taking over from `old`: the successes `old`
    /// remembers are kept for users whose entry is unchanged, and only
    /// theirs (a changed or removed entry's are forgotten).
    pub fn succeeding(mut self, old: &Htpasswd) -> (Self, UserChanges) {
        let changes = UserChanges {
            users: self.users.len(),
            added: self.users.keys().filter(|u| !old.contains(u)).count(),
            removed: old.users.keys().filter(|u| !self.contains(u)).count(),
            changed: self
                .users
                .iter()
                .filter(|(u, h)| old.users.get(*u).is_some_and(|o| o != *h))
                .count(),
        };
        self.cache_key = old.cache_key.clone();
        let kept: HashMap<_, _> = old
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(u, _)| self.users.get(*u) == old.users.get(*u))
            .map(|(u, v)| (u.clone(), *v))
            .collect();
        self.cache = Mutex::new(kept);
        (self, changes)
    }

    fn tag(&self, user: &str, password: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.cache_key);
        ctx.update(&(user.len() as u64).to_be_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password.as_bytes());
        ctx.sign()
    }

    /// True when a verification of these credentials succeeded less than
    /// [`CACHE_TTL`] ago (no bcrypt needed).
    pub fn cached(&self, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(user).is_some_and(|(t, at)| {
            at.elapsed() < CACHE_TTL
                && constant_time::verify_slices_are_equal(t.as_ref(), tag.as_ref()).is_ok()
        })
    }

    /// Checks the credentials with bcrypt (slow: call off the async
    /// threads), remembering a success. Unknown users cost the same.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD {
            return false;
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let tag = self.tag(user, password);
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(user.to_owned(), (tag, Instant::now()));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_entries_verify_and_are_cached() {
        let h = bcrypt::hash("secret", 4).unwrap();
        let file = Htpasswd::parse(&format!(
            "# users\n\nalice:{h}\nbob:{}\n",
            h.replacen("$2b$", "$2y$", 1)
        ))
        .unwrap();
        assert_eq!(file.len(), 2);
        assert!(!file.cached("alice", "secret"));
        assert!(file.verify("alice", "secret"));
        assert!(file.cached("alice", "secret"));
        assert!(!file.cached("alice", "Secret"));
        assert!(!file.verify("alice", "wrong"));
        assert!(file.verify("bob", "secret"), "$2y$ is read as bcrypt");
        assert!(!file.verify("carol", "secret"));
        assert!(
            !file.verify("carol", "not a password"),
            "the dummy never admits"
        );
    }

    #[test]
    fn a_reload_forgets_changed_and_removed_users_only() {
        let (a, b, c) = (
            bcrypt::hash("a", 4).unwrap(),
            bcrypt::hash("b", 4).unwrap(),
            bcrypt::hash("c", 4).unwrap(),
        );
        let old = Htpasswd::parse(&format!("alice:{a}\nbob:{b}\ncarol:{c}\n")).unwrap();
        assert!(old.verify("alice", "a") && old.verify("bob", "b") && old.verify("carol", "c"));
        let b2 = bcrypt::hash("b2", 4).unwrap();
        let new = Htpasswd::parse(&format!("alice:{a}\nbob:{b2}\ndave:{c}\n")).unwrap();
        let (new, changes) = new.succeeding(&old);
        assert_eq!(
            changes,
            UserChanges {
                users: 3,
                added: 1,
                removed: 1,
                changed: 1
            }
        );
        assert!(new.cached("alice", "a"), "unchanged: still remembered");
        assert!(!new.cached("bob", "b"), "changed: forgotten");
        assert!(!new.verify("bob", "b"));
        assert!(!new.cached("carol", "c"), "removed: forgotten");
        assert!(!new.verify("carol", "c"));
        assert!(new.verify("bob", "b2") && new.verify("dave", "c"));
    }

    #[test]
    fn other_hashes_and_bad_lines_name_their_line() {
        let h = bcrypt::hash("x", 4).unwrap();
        for (text, line, says) in [
            ("a:$apr1$abc$def\n".to_string(), 1, "only bcrypt"),
            (
                format!("a:{h}\nb:{{SHA}}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n"),
                2,
                "only bcrypt",
            ),
            (format!("a:{h}\n\nplain\n"), 3, "not USER:HASH"),
            (format!("a:{h}\na:{h}\n"), 2, "twice"),
            ("a:$2y$05$short\n".to_string(), 1, "malformed"),
            ("a:secret\n".to_string(), 1, "only bcrypt"),
            (format!(":{h}\n"), 1, "user name"),
            (
                format!("a:{h}\nb:{}\n", h.replacen("$04$", "$18$", 1)),
                2,
                "cost 18 is above 17",
            ),
        ] {
            let (n, why) = Htpasswd::parse(&text).unwrap_err();
            assert_eq!(n, line, "{text}: {why}");
            assert!(why.contains(says), "{text}: {why}");
        }
    }
}
