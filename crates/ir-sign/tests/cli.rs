//! The `ir-sign` command line: files, exit status, one-line reasons.

use std::process::Command;

use crate::util::{Scratch, REFERENCE};

fn ir_sign(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ir-sign"))
        .args(args)
        .env_remove("COSIGN_PASSWORD")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generate_sign_verify_round_trip_with_exit_status() {
    let scratch = Scratch::new();
    let keys = scratch.dir.path().join("keys");
    let keys = keys.to_str().unwrap();
    let layout = scratch.path();
    let layout = layout.to_str().unwrap();
    let (code, _, err) = ir_sign(&[
        "generate-key-pair",
        "--output-dir",
        keys,
        "--password",
        "pw",
    ]);
    assert_eq!(code, 0, "{err}");
    let key = format!("{keys}/cosign.key");
    let public = format!("{keys}/cosign.pub");
    // A second generation never overwrites the key.
    let (code, _, _) = ir_sign(&[
        "generate-key-pair",
        "--output-dir",
        keys,
        "--password",
        "pw",
    ]);
    assert_eq!(code, 1);

    let verify = |reference: &str| {
        ir_sign(&[
            "verify",
            "--key",
            &public,
            "--layout",
            layout,
            "--tag",
            "latest",
            "--reference",
            reference,
        ])
    };
    let (code, _, err) = verify(REFERENCE);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no signature found"), "{err}");

    for mode in ["tag", "referrers", "bundle"] {
        let (code, _, err) = ir_sign(&[
            "sign",
            "--key",
            &key,
            "--password",
            "pw",
            "--layout",
            layout,
            "--tag",
            "latest",
            "--reference",
            REFERENCE,
            "--mode",
            mode,
        ]);
        assert_eq!(code, 0, "{mode}: {err}");
        let (code, out, err) = ir_sign(&[
            "verify",
            "--key",
            &public,
            "--layout",
            layout,
            "--tag",
            "latest",
            "--reference",
            REFERENCE,
            "--mode",
            mode,
        ]);
        assert_eq!(code, 0, "{mode}: {err}");
        assert!(out.contains(&format!("{mode} signature")), "{out}");
    }
    // The tag and referrers forms name the image (a bundle names none).
    for mode in ["tag", "referrers"] {
        let (code, _, err) = ir_sign(&[
            "verify",
            "--key",
            &public,
            "--layout",
            layout,
            "--tag",
            "latest",
            "--reference",
            "registry.example:5000/other:latest",
            "--mode",
            mode,
        ]);
        assert_eq!(code, 1, "{mode}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn wrong_password_is_refused() {
    let scratch = Scratch::new();
    let keys = scratch.dir.path().join("keys");
    let keys = keys.to_str().unwrap();
    let layout = scratch.path();
    let (code, _, _) = ir_sign(&[
        "generate-key-pair",
        "--output-dir",
        keys,
        "--password",
        "pw",
    ]);
    assert_eq!(code, 0);
    let (code, _, err) = ir_sign(&[
        "sign",
        "--key",
        &format!("{keys}/cosign.key"),
        "--password",
        "nope",
        "--layout",
        layout.to_str().unwrap(),
        "--tag",
        "latest",
        "--reference",
        REFERENCE,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot decrypt"), "{err}");
}
