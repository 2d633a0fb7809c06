//! The `ir-client` binary: exit codes, one-line errors, the emulated-realm
//! export and an RA-TLS pull with `--emulate-realm`.

use std::process::{Command, Output};
use std::sync::Arc;

use crate::util::{fixture, pki, serve, TestRaTls};
use ir_attest::cca_platform::PlatformKeys;
use ir_attest::ReferenceSet;
use ir_server::transport::plain::Plain;

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ir-client"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_over_http_and_one_line_failures() {
    let f = fixture();
    let server = serve(f.root.path(), Arc::new(Plain)).await;
    let out = tempfile::TempDir::new().unwrap();
    let dir = out.path().to_str().unwrap();
    let url = format!("http://127.0.0.1:{}/app:latest", server.port());

    let o = run(args(&["pull", &url, "--out", dir])).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(f.image.manifest.digest_str()));

    for (a, want, code) in [
        (
            args(&["pull", "not-a-reference", "--out", dir]),
            "reference",
            2,
        ),
        (
            args(&[
                "pull",
                &format!("http://127.0.0.1:{}/nope:1", server.port()),
                "--out",
                dir,
            ]),
            "HTTP 404: NAME_UNKNOWN",
            3,
        ),
        (
            args(&["pull", "ra-tls://localhost:1/app", "--out", dir]),
            "needs a token source",
            2,
        ),
        (
            args(&["pull", &url, "--out", dir, "--emulate-realm"]),
            "ra-tls",
            2,
        ),
        // The policy files: the error names the flag and the file.
        (
            args(&[
                "pull",
                &url,
                "--out",
                dir,
                "--policy",
                "/nonexistent/p.json",
            ]),
            "--policy /nonexistent/p.json: ",
            2,
        ),
        (
            args(&[
                "pull",
                &url,
                "--out",
                dir,
                "--notation-trust-policy",
                "/nonexistent/trustpolicy.json",
                "--notation-trust-store",
                "/nonexistent/store",
            ]),
            "--notation-trust-policy /nonexistent/trustpolicy.json: ",
            2,
        ),
    ] {
        let o = run(a.clone()).await;
        assert_eq!(o.status.code(), Some(code), "{a:?}");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(
            err.lines().last().unwrap().starts_with("ir-client: "),
            "{err}"
        );
    }
    // Usage errors are clap's (exit status 2).
    let o = run(args(&["pull", &url])).await;
    assert_eq!(o.status.code(), Some(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emulated_realm_export_then_ra_tls_pull() {
    let work = tempfile::TempDir::new().unwrap();
    let p = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let o = run(args(&[
        "emulated-realm",
        "--realm-keys",
        &p("keys"),
        "--cpak-out",
        &p("cpak.pub"),
        "--trust-anchors-out",
        &p("anchors.json"),
        "--reference-values-out",
        &p("realm.json"),
        "--name",
        "cli-realm",
        "--rem",
        &"ab".repeat(32),
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("NOT SECURE: emulated realm, for testing and demos"));

    let f = fixture();
    let pki = pki();
    let refs = ReferenceSet::load(&work.path().join("realm.json")).unwrap();
    let keys = PlatformKeys::load(&work.path().join("anchors.json")).unwrap();
    let server_side = TestRaTls::new(&pki, refs, keys);
    let server = serve(f.root.path(), server_side.clone()).await;
    let url = format!("ra-tls://localhost:{}/app:multi", server.port());
    let out = p("out");
    let ca = pki.ca_file.to_str().unwrap().to_string();

    // Same keys and REM as exported: accepted.
    let o = run(args(&[
        "pull",
        &url,
        "--out",
        &out,
        "--ca",
        &ca,
        "--emulate-realm",
        "--realm-keys",
        &p("keys"),
        "--rem",
        &"ab".repeat(32),
        "--platform",
        "linux/arm64",
    ]))
    .await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("NOT SECURE"));
    assert!(text(&o.stdout).contains(f.arm64.manifest.digest_str()));

    // Another REM: refused by the server, exit status 5 (attestation),
    // saying so, with no retry.
    let o = run(args(&[
        "pull",
        &url,
        "--out",
        &out,
        "--ca",
        &ca,
        "--emulate-realm",
        "--realm-keys",
        &p("keys"),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("the server refused this realm's attestation"));
    let last = server_side.outcomes().pop().unwrap();
    assert!(last.result.unwrap_err().contains("no REM set matched"));
    server.stop().await;
}
