//! `ir-server --check`, run as producers' CI runs it: the exit code (0
//! served and all verified, 1 rejected or nothing served, 2 root
//! unreadable), the text report, and the JSON report.

use std::path::Path;
use std::process::Command;

use ir_testkit::Root;
use serde_json::Value;

/// Runs `ir-server --check` with `args`; its exit code and stdout.
fn check(root: &Path, args: &[&str]) -> (i32, String) {
    let (code, out, _) = crate::util::check(root, args);
    (code, out)
}

fn check_json(root: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (code, out) = check(root, &all);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (code, doc)
}

#[test]
fn empty_root_and_mistyped_mount_exit_non_zero() {
    let root = Root::new();
    let (code, out) = check(root.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nothing is served"), "{out}");
    let (code, doc) = check_json(root.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["totals"]["served"], 0);

    // A directory of files that are no layouts (a mount of something else).
    std::fs::write(root.path().join("README"), b"not a layout").unwrap();
    std::fs::create_dir(root.path().join("data")).unwrap();
    let (code, doc) = check_json(root.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["ignored"].as_array().unwrap().len(), 2, "{doc}");
}

#[test]
fn json_report_of_a_clean_root_exits_0_with_tags_and_digests() {
    let root = Root::new();
    let app = root.layout("team/app");
    let image = app.image(b"layer");
    app.set_index(&[image.tagged("latest"), image.tagged("1.0")]);
    let (code, doc) = check_json(root.path(), &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["ok"], true);
    assert!(doc.get("error").is_none());
    let apps = doc["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["name"], "team/app");
    assert_eq!(apps[0]["status"], "served");
    assert_eq!(apps[0]["blobs"], 2);
    assert_eq!(apps[0]["manifests"], 1);
    let digest = image.manifest["digest"].as_str().unwrap();
    assert_eq!(
        apps[0]["tags"],
        serde_json::json!([{"tag": "1.0", "digest": digest}, {"tag": "latest", "digest": digest}])
    );
    assert_eq!(doc["totals"]["served"], 1);
    assert_eq!(doc["totals"]["rejected"], 0);
    assert_eq!(doc["totals"]["tags"], 2);
    // Each kind counted apart, the same in the totals as per application.
    assert_eq!(doc["totals"]["manifests"], 1);
    assert_eq!(doc["totals"]["blobs"], 2);
    assert_eq!(doc["orphans"], serde_json::json!([]));
}

#[test]
fn text_report_counts_each_kind_the_same_per_application_and_in_total() {
    let root = Root::new();
    root.good("team/app");
    let (code, out) = check(root.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("served    team/app  (1 tags, 1 manifests, 2 blobs,"),
        "{out}"
    );
    let summary = out.lines().last().unwrap();
    assert!(
        summary.contains("(1 tags, 1 manifests, 2 blobs,"),
        "{summary}"
    );
    // A small root's rate is given in a unit that shows it, never "0 MiB/s".
    assert!(!summary.contains("(0 MiB/s)"), "{summary}");
}

#[test]
fn json_report_names_each_rejection_and_orphan_and_exits_1() {
    let root = Root::new();
    root.good("good");
    let bad = root.layout("bad");
    let image = bad.image(b"bad layer");
    bad.set_index(&[image.tagged("latest")]);
    bad.corrupt_flip(&image.layers[0]);
    bad.write("blobs/sha256/0123", b"orphan");
    let (code, doc) = check_json(root.path(), &[]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["ok"], false);
    let apps = doc["applications"].as_array().unwrap();
    let names: Vec<_> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bad", "good"]);
    assert_eq!(apps[0]["status"], "rejected");
    let errors = apps[0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["rule"], "digest_mismatch");
    assert_eq!(
        errors[0]["file"],
        image.layers[0].file().display().to_string()
    );
    assert_eq!(apps[1]["status"], "served");
    assert_eq!(doc["totals"]["served"], 1);
    assert_eq!(doc["totals"]["rejected"], 1);
    // A rejected application's orphans are not listed (nothing of it is
    // served); a served one's are.
    let good = root.layout("good");
    good.write("blobs/sha256/4567", b"orphan");
    let (_, doc) = check_json(root.path(), &[]);
    assert_eq!(
        doc["orphans"],
        serde_json::json!([{"application": "good", "file": "blobs/sha256/4567"}])
    );
    assert_eq!(doc["totals"]["orphans"], 1);
}

#[test]
fn unreadable_root_exits_2_with_a_json_error() {
    let root = Root::new();
    let missing = root.outside("no-such-root");
    let (code, doc) = check_json(&missing, &[]);
    assert_eq!(code, 2);
    assert_eq!(doc["ok"], false);
    assert!(doc["error"].as_str().unwrap().contains("no-such-root"));
    let (code, _) = check(&missing, &[]);
    assert_eq!(code, 2);
}

#[test]
fn a_single_layout_is_checked_under_its_name_or_the_one_given() {
    let root = Root::new();
    let app = root.layout("just-built");
    let image = app.image(b"layer");
    app.set_index(&[image.tagged("latest")]);
    let dir = root.path().join("just-built");
    let (code, doc) = check_json(&dir, &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["applications"][0]["name"], "just-built");
    let (code, doc) = check_json(&dir, &["--name", "team/tool"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["applications"][0]["name"], "team/tool");
    let (code, out) = check(&dir, &["--name", "team/tool"]);
    assert_eq!(code, 0);
    assert!(out.contains("served    team/tool"), "{out}");
    // --name for a root of many layouts is a mistake: the root is refused.
    let (code, _) = check(root.path(), &["--name", "x"]);
    assert_eq!(code, 2);
    // A broken single layout fails the check.
    app.corrupt_flip(&image.layers[0]);
    let (code, doc) = check_json(&dir, &[]);
    assert_eq!(code, 1);
    assert_eq!(doc["applications"][0]["status"], "rejected");
}

/// Serve mode: a root that is itself a layout is served under `--name`.
#[test]
fn a_single_layout_is_served_under_the_name_given() {
    use std::io::{BufRead, BufReader, Read, Write};
    let root = Root::new();
    let app = root.layout("just-built");
    let image = app.image(b"layer");
    app.set_index(&[image.tagged("latest")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ir-server"))
        .args([
            "--bind",
            "127.0.0.1",
            "-p",
            "0",
            "--name",
            "team/tool",
            "-r",
        ])
        .arg(root.path().join("just-built"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((_, a)) = line.split_once("over plain HTTP on ") {
            addr = Some(a.trim().to_string());
        }
        if line.contains("ready") && addr.is_some() {
            break;
        }
    }
    let addr = addr.expect("the server said where it listens");
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"repositories":["team/tool"]}"#),
        "{response}"
    );
}

/// Where a seccomp profile blocks io_uring (Docker's and containerd's
/// default ones do), the load still verifies everything, reading file by
/// file, and says so once as a warning. The child process gets a seccomp
/// filter that fails `io_uring_setup` with EPERM, as those profiles do.
#[test]
fn blocked_io_uring_is_a_warning_and_the_load_still_verifies() {
    use std::os::unix::process::CommandExt as _;
    let root = Root::new();
    for name in ["one", "two"] {
        root.good(name);
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ir-server"));
    cmd.arg("--check")
        .arg("-r")
        .arg(root.path())
        .env_remove("RUST_LOG");
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec,
    // on a filter that lives on this stack until exec.
    unsafe {
        cmd.pre_exec(|| {
            const IO_URING_SETUP: u32 = 425; // x86_64 and aarch64 alike
            let filter = [
                // A = the system call number (offset 0 of seccomp_data).
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                libc::sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: IO_URING_SETUP,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x0005_0000 | libc::EPERM as u32,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
            ];
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("io_uring unavailable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
}
