//! SIGHUP reads the authentication and access files again: the user file
//! (`--htpasswd`), this server's token key (`--token-key`), an external
//! issuer's key set (`--token-jwks`) and the access map (`--access-map`).
//!
//! Each file is read and checked whole first. One that cannot be used
//! (the error start-up gives, naming the file, the line and the rule) or
//! that is gone leaves the one in force, with an error line; the others
//! are applied. What is applied is swapped in whole: a request sees the
//! previous file or the new one, never a mix, and no connection is
//! dropped.
//!
//! - Users: a user whose entry changed or was removed loses the password
//!   remembered for them at once (see [`Htpasswd::succeeding`]), and this
//!   server's tokens for a removed user are refused.
//! - `--token-key`: a changed key signs the next tokens and the previous
//!   key's tokens are refused from the swap on (clients ask `/token` again
//!   on the 401, as after an expiry), so a key that may have leaked is
//!   retired without a restart. An unchanged key keeps its tokens valid; a
//!   key generated at start (no `--token-key`) is kept.
//! - `--token-jwks`: a changed set accepts its keys only; tokens of a key
//!   no longer in it are refused at once (the memory of verified tokens
//!   starts afresh).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::htpasswd::Htpasswd;
use super::token::{self, Issuer, Verifier};
use super::{read_token_key, Auth, AuthError, Inputs, TokenSource};
use crate::transport::client_access::{ClientAccessError, SharedClientMap};

/// The outcome of reading one input file again.
#[derive(Debug, Clone)]
pub struct InputReload {
    /// The flag that names the file.
    pub input: &'static str,
    /// The file.
    pub file: PathBuf,
    /// What is in force now, or why the file was not taken (the previous
    /// one stays).
    pub outcome: Result<String, String>,
}

impl Auth {
    /// Reads the user file, the token key and the key set again, applying
    /// each that can be used (blocking: a user file costs a bcrypt hash).
    pub fn reload(&self) -> Vec<InputReload> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.inputs.load_full();
        let mut next = Inputs {
            passwords: old.passwords.clone(),
            issuer: old.issuer.clone(),
            verifier: old.verifier.clone(),
        };
        let mut outcomes = Vec::new();
        match &self.config.source {
            TokenSource::Local { htpasswd, key, ttl } => {
                let outcome = reload_users(htpasswd, &mut next);
                outcomes.push(input("--htpasswd", htpasswd, outcome));
                if let Some(path) = key {
                    let outcome = self.reload_key(path, *ttl, &mut next);
                    outcomes.push(input("--token-key", path, outcome));
                }
            }
            TokenSource::External { jwks } => {
                let outcome = self.reload_jwks(jwks, &mut next);
                outcomes.push(input("--token-jwks", jwks, outcome));
            }
        }
        self.inputs.store(Arc::new(next));
        outcomes
    }

    fn reload_key(&self, path: &Path, ttl: Duration, next: &mut Inputs) -> Result<String, String> {
        let key = read_token_key(path).map_err(|e| e.to_string())?;
        if next.issuer.as_ref().is_some_and(|i| i.kid() == key.kid()) {
            return Ok("unchanged".into());
        }
        let kid = key.kid().to_owned();
        let issuer = Issuer::new(
            key,
            self.config.issuer.clone(),
            self.config.service.clone(),
            ttl,
        );
        next.verifier = Arc::new(issuer.verifier());
        next.issuer = Some(Arc::new(issuer));
        Ok(format!(
            "a new key (kid {kid}) signs tokens; tokens of the previous key are refused"
        ))
    }

    fn reload_jwks(&self, path: &Path, next: &mut Inputs) -> Result<String, String> {
        let keys = token::load_jwks(path)
            .map_err(|e| AuthError::Jwks(path.display().to_string(), e).to_string())?;
        let n = keys.len();
        if next.verifier.has_keys(&keys) {
            return Ok(format!("{n} key(s), unchanged"));
        }
        next.verifier = Arc::new(Verifier::new(
            self.config.issuer.clone(),
            self.config.service.clone(),
            keys,
        ));
        Ok(format!(
            "{n} key(s) in force; tokens of keys not in the set are refused"
        ))
    }
}

fn input(flag: &'static str, file: &Path, outcome: Result<String, String>) -> InputReload {
    InputReload {
        input: flag,
        file: file.to_owned(),
        outcome,
    }
}

fn reload_users(path: &Path, next: &mut Inputs) -> Result<String, String> {
    let new = Htpasswd::load(path).map_err(|e| e.to_string())?;
    let Some(old) = &next.passwords else {
        let n = new.len();
        next.passwords = Some(Arc::new(new));
        return Ok(format!("{n} user(s)"));
    };
    let (new, c) = new.succeeding(old);
    next.passwords = Some(Arc::new(new));
    Ok(format!(
        "{} user(s): +{} added, -{} removed, ~{} changed",
        c.users, c.added, c.removed, c.changed
    ))
}

/// Reads the access map (`access`) and `auth`'s files again, logging one
/// line per file: what is in force, or the error and that the previous
/// file stays.
pub fn reload_inputs(auth: Option<&Auth>, access: Option<&SharedClientMap>) -> Vec<InputReload> {
    let mut all = Vec::new();
    if let Some(map) = access {
        let outcome = map
            .reload()
            .map(|n| format!("{n} entr{}", if n == 1 { "y" } else { "ies" }))
            .map_err(|e| match e {
                ClientAccessError::Read { .. } => format!("--access-map {e}"),
                e => e.to_string(),
            });
        all.push(input("--access-map", map.path(), outcome));
    }
    if let Some(auth) = auth {
        all.extend(auth.reload());
    }
    for r in &all {
        match &r.outcome {
            Ok(what) => tracing::info!("reloaded {} {}: {what}", r.input, r.file.display()),
            Err(e) => tracing::error!("{e}; the previous {} stays in force", r.input),
        }
    }
    all
}
