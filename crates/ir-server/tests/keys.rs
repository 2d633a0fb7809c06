//! The ES256 keys the server reads at start (`--token-key`, `--receipts-key`,
//! both through `ir-jose`): a key on another curve stops the start, and the
//! error names the flag and the file.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// Starts the server with `args` (plain HTTP, an OS-chosen port) and
/// expects it to stop by itself: its stdout and stderr together.
fn start_error(root: &Path, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_ir-server"))
        .args(["-p", "0", "--bind", "127.0.0.1", "-r"])
        .arg(root)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} started: {text}");
    text
}

fn p384_key(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let path = dir.join("p384.pem");
    std::fs::write(&path, key.serialize_pem()).unwrap();
    path.display().to_string()
}

#[test]
fn a_receipts_key_on_another_curve_stops_the_start_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let journal = dir.path().join("receipts");
    std::fs::create_dir(&journal).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = p384_key(dir.path());
    let root = ir_testkit::Root::new();
    root.good("app");
    let text = start_error(
        root.path(),
        &[
            "--receipts",
            journal.to_str().unwrap(),
            "--receipts-key",
            &key,
        ],
    );
    assert!(text.contains(&key), "{text}");
    assert!(text.contains("P-256"), "{text}");
    // Nothing was written with it.
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 0, "{text}");
}

/// Starts the server with `--htpasswd` and `--token-key KEY` (over TLS,
/// as passwords need) and expects it to stop: what it printed.
fn token_key_start_error(dir: &Path, key: &str) -> String {
    let ca = crate::util::pki::make_ca();
    let (cert, tls_key) = crate::util::pki::make_leaf(&ca, dir, 1, true);
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let root = ir_testkit::Root::new();
    root.good("app");
    start_error(
        root.path(),
        &[
            "-t",
            "tls",
            "-c",
            cert.to_str().unwrap(),
            "-k",
            tls_key.to_str().unwrap(),
            "--htpasswd",
            htpasswd.to_str().unwrap(),
            "--token-key",
            key,
        ],
    )
}

#[test]
fn a_token_key_on_another_curve_stops_the_start_naming_the_flag_and_file() {
    let dir = TempDir::new().unwrap();
    let key = p384_key(dir.path());
    let text = token_key_start_error(dir.path(), &key);
    assert!(text.contains(&format!("--token-key {key}")), "{text}");
    assert!(text.contains("not an EC P-256 private key"), "{text}");
}

#[test]
fn a_token_key_file_over_64_kib_is_not_read() {
    // A good P-256 key, then comment lines up to 80 KB: the key file is
    // refused for its size before its PEM is read.
    let dir = TempDir::new().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let path = dir.path().join("big.pem");
    std::fs::write(&path, pair.serialize_pem() + &"# padding\n".repeat(8_000)).unwrap();
    let key = path.display().to_string();
    let text = token_key_start_error(dir.path(), &key);
    assert!(
        text.contains(&format!("--token-key {key}: larger than 65536 bytes")),
        "{text}"
    );
}
