//! Credential helpers: `docker-credential-<name> get` with the registry
//! host on standard input, answering
//! `{"ServerURL": …, "Username": …, "Secret": …}` (a `Username` of
//! `<token>` makes the secret an identity token). Bounded in time and
//! output; what a helper prints never reaches an error message.

use super::credentials::{Credentials, Secret};
use crate::AuthError;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Longest a helper may run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from a helper.
pub const MAX_HELPER_OUTPUT: u64 = 64 * 1024;

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` for `host`: `Ok(None)` when the
/// helper has no credentials for it.
pub async fn get(helper: &str, host: &str) -> Result<Option<Credentials>, AuthError> {
    let fail = |why: String| AuthError::Helper {
        helper: helper.to_string(),
        host: host.to_string(),
        why,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let run = async {
        // A helper that does not read its input must not block us.
        let _ = stdin.write_all(host.as_bytes()).await;
        drop(stdin);
        let mut out = Vec::new();
        (&mut stdout)
            .take(MAX_HELPER_OUTPUT + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| fail(format!("reading its answer: {e}")))?;
        if out.len() as u64 > MAX_HELPER_OUTPUT {
            return Err(fail(format!(
                "answered more than {MAX_HELPER_OUTPUT} bytes"
            )));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| fail(format!("waiting for it: {e}")))?;
        Ok((status, out))
    };
    let result = tokio::time::timeout(HELPER_TIMEOUT, run).await;
    // On a timeout the child is killed when dropped (`kill_on_drop`).
    let (status, out) = match result {
        Ok(r) => r?,
        Err(_) => {
            return Err(fail(format!(
                "no answer within {} s",
                HELPER_TIMEOUT.as_secs()
            )))
        }
    };
    if !status.success() {
        // The protocol's "no credentials" answer.
        if String::from_utf8_lossy(&out).contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("failed ({status})")));
    }
    let answer: Answer = serde_json::from_slice(&out)
        .map_err(|_| fail("its answer is not the helper protocol's JSON".into()))?;
    Ok(match (answer.username.as_str(), answer.secret) {
        (_, secret) if secret.is_empty() => None,
        ("<token>", secret) => Some(Credentials::IdentityToken(Secret::new(secret))),
        ("", _) => return Err(fail("its answer has a secret but no Username".into())),
        (user, secret) => Some(Credentials::Basic {
            user: user.to_string(),
            password: Secret::new(secret),
        }),
    })
}
