//! Layouts written by real tools load with no rejection: `umoci`, `skopeo`
//! (OCI and Docker schema 2 manifests, single images and multi-platform
//! indexes) and `buildah`.
//!
//! The tools come from apt (`apt-get install skopeo umoci buildah`). When one
//! is missing, a test prints why and returns, except when the environment
//! variable `CI` is set: CI installs them, so there a missing tool fails.
//!
//! Sources are the bundled example registry (`registry/` at the repository
//! root), which holds real gzip tar layers, and images the tools create
//! themselves (`umoci new`, `buildah from scratch`).
//!
//! buildah runs as root here with the `vfs` storage driver and a storage
//! root inside the test's temporary directory, so it touches no system
//! storage. Unprivileged, buildah needs user namespaces and subuid ranges,
//! which this test does not set up: without root it prints why and returns
//! (CI runs as root).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ir_oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ir_oci::{LoadOptions, Registry, RepoName};

/// An application of the example registry, as a canonical path (buildah
/// derives an image name from it, and `..` is not valid in one).
fn example(app: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../registry");
    std::fs::canonicalize(root).expect("registry/").join(app)
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True if every tool is installed. If not: panics under CI, otherwise
/// prints what is missing and returns false.
fn tools(test: &str, names: &[&str]) -> bool {
    let missing: Vec<_> = names.iter().filter(|t| !installed(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: {missing:?} not installed (apt-get install skopeo umoci buildah)");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; CI must install them");
    }
    not_run(&format!("{msg}; with CI set this fails"));
    false
}

/// Says why a test did not run, on the real stderr: `eprintln!` output of
/// passing tests is captured and never shown.
fn not_run(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOT RUN {msg}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, failing the test with its output if it fails.
fn run<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn oci_ref(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// Loads `root`, asserting no application is rejected.
fn load_clean(root: &Path) -> Registry {
    let reg = ir_oci::load(root, &LoadOptions::default()).expect("root loads");
    assert!(reg.rejected.is_empty(), "rejected: {:#?}", reg.rejected);
    reg
}

fn tags(reg: &Registry, app: &str) -> Vec<String> {
    reg.applications[&RepoName::parse(app).unwrap()]
        .tags
        .keys()
        .map(|t| t.to_string())
        .collect()
}

fn tagged_media_type(reg: &Registry, app: &str, tag: &str) -> String {
    let a = &reg.applications[&RepoName::parse(app).unwrap()];
    let digest = &a.tags[&ir_oci::Tag::parse(tag).unwrap()];
    a.manifests[digest].media_type.to_string()
}

struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        Scratch { _tmp: tmp, root }
    }
    fn work(&self, name: &str) -> PathBuf {
        self._tmp.path().join(name)
    }
}

#[test]
fn umoci_init_new_repack_config_and_insert_load() {
    if !tools("umoci", &["umoci"]) {
        return;
    }
    let s = Scratch::new();
    let layout = s.root.join("umoci");
    let bundle = s.work("bundle");
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    let rootless: &[&str] = if is_root() { &[] } else { &["--rootless"] };

    run(
        "umoci",
        ["init", "--layout"]
            .iter()
            .map(OsStr::new)
            .chain([layout.as_os_str()]),
    );
    run("umoci", ["new", "--image", &image("base")]);
    let mut unpack = vec!["unpack"];
    unpack.extend(rootless);
    let bundle_arg = bundle.to_str().unwrap();
    let base = image("base");
    unpack.extend(["--image", &base, bundle_arg]);
    run("umoci", &unpack);
    std::fs::write(bundle.join("rootfs/greeting.txt"), b"hello from umoci\n").unwrap();
    let v1 = image("v1");
    run("umoci", ["repack", "--image", &v1, bundle_arg]);
    run(
        "umoci",
        ["config", "--image", &v1, "--config.entrypoint", "/bin/true"],
    );
    let extra = s.work("extra.txt");
    std::fs::write(&extra, b"inserted\n").unwrap();
    let mut insert = vec!["insert"];
    insert.extend(rootless);
    insert.extend([
        "--image",
        &v1,
        "--tag",
        "v2",
        extra.to_str().unwrap(),
        "/etc/extra.txt",
    ]);
    run("umoci", &insert);

    let reg = load_clean(&s.root);
    assert_eq!(tags(&reg, "umoci"), ["base", "v1", "v2"]);
    assert_eq!(tagged_media_type(&reg, "umoci", "v2"), OCI_MANIFEST);
    // `umoci config` and `insert` leave the superseded manifest and config
    // behind: orphans, listed and not served. After gc there are none.
    run("umoci", ["gc", "--layout", layout.to_str().unwrap()]);
    let reg = load_clean(&s.root);
    assert!(reg.orphans.is_empty(), "{:#?}", reg.orphans);
    let app = &reg.applications[&RepoName::parse("umoci").unwrap()];
    // v2 = v1's layer + the inserted one, plus config.
    let v2 = &app.tags[&ir_oci::Tag::parse("v2").unwrap()];
    let m: serde_json::Value = serde_json::from_slice(&app.manifests[v2].bytes).unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn skopeo_copy_oci_to_oci_loads() {
    if !tools("skopeo", &["skopeo"]) {
        return;
    }
    let s = Scratch::new();
    let dst = s.root.join("hello");
    run(
        "skopeo",
        [
            "copy",
            "--quiet",
            &oci_ref(&example("hello"), "latest"),
            &oci_ref(&dst, "1.0"),
        ],
    );
    let reg = load_clean(&s.root);
    assert!(reg.orphans.is_empty(), "{:#?}", reg.orphans);
    assert_eq!(tags(&reg, "hello"), ["1.0"]);
    assert_eq!(tagged_media_type(&reg, "hello", "1.0"), OCI_MANIFEST);
}

#[test]
fn skopeo_copy_format_v2s2_docker_manifest_in_oci_layout_loads() {
    if !tools("skopeo", &["skopeo"]) {
        return;
    }
    let s = Scratch::new();
    let dst = s.root.join("docker");
    run(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            &oci_ref(&example("hello"), "latest"),
            &oci_ref(&dst, "latest"),
        ],
    );
    let reg = load_clean(&s.root);
    assert_eq!(tagged_media_type(&reg, "docker", "latest"), DOCKER_MANIFEST);
    let app = &reg.applications[&RepoName::parse("docker").unwrap()];
    assert_eq!(app.blobs.len(), 2);
}

#[test]
fn skopeo_copy_all_multi_platform_index_loads() {
    if !tools("skopeo", &["skopeo"]) {
        return;
    }
    let s = Scratch::new();
    let dst = s.root.join("multi");
    run(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            &oci_ref(&example("multi"), "latest"),
            &oci_ref(&dst, "latest"),
        ],
    );
    let reg = load_clean(&s.root);
    assert!(reg.orphans.is_empty(), "{:#?}", reg.orphans);
    assert_eq!(tagged_media_type(&reg, "multi", "latest"), OCI_INDEX);
    let app = &reg.applications[&RepoName::parse("multi").unwrap()];
    // index + amd64 and arm64 manifests; two configs and two layers.
    assert_eq!(app.manifests.len(), 3);
    assert_eq!(app.blobs.len(), 4);
}

#[test]
fn skopeo_copy_all_format_v2s2_docker_manifest_list_loads() {
    if !tools("skopeo", &["skopeo"]) {
        return;
    }
    let s = Scratch::new();
    let dst = s.root.join("multi");
    run(
        "skopeo",
        [
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            &oci_ref(&example("multi"), "latest"),
            &oci_ref(&dst, "latest"),
        ],
    );
    let reg = load_clean(&s.root);
    assert_eq!(
        tagged_media_type(&reg, "multi", "latest"),
        DOCKER_MANIFEST_LIST
    );
    let app = &reg.applications[&RepoName::parse("multi").unwrap()];
    assert!(app
        .manifests
        .values()
        .filter(|m| &*m.media_type != DOCKER_MANIFEST_LIST)
        .all(|m| &*m.media_type == DOCKER_MANIFEST));
    assert_eq!(app.manifests.len(), 3);
}

#[test]
fn skopeo_copies_several_tags_into_one_layout_and_a_namespace() {
    if !tools("skopeo", &["skopeo"]) {
        return;
    }
    let s = Scratch::new();
    let dst = s.root.join("team/app");
    std::fs::create_dir_all(s.root.join("team")).unwrap();
    for (src, tag) in [
        ("hello", "latest"),
        ("multi", "1.0"),
        ("team/tools", "latest"),
    ] {
        run(
            "skopeo",
            [
                "copy",
                "--quiet",
                &oci_ref(&example(src), tag),
                &oci_ref(&dst, &format!("{}-{tag}", src.replace('/', "-"))),
            ],
        );
    }
    let reg = load_clean(&s.root);
    assert!(reg.orphans.is_empty(), "{:#?}", reg.orphans);
    assert_eq!(
        tags(&reg, "team/app"),
        ["hello-latest", "multi-1.0", "team-tools-latest"]
    );
}

#[test]
fn buildah_commit_oci_and_docker_formats_load() {
    if !tools("buildah", &["buildah"]) {
        return;
    }
    if !is_root() {
        let msg = "buildah: needs root here (vfs storage without user namespaces)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}; CI runs as root");
        }
        not_run(msg);
        return;
    }
    let s = Scratch::new();
    let storage = s.work("storage");
    let runroot = s.work("run");
    let buildah = |args: &[&str]| -> String {
        let mut all = vec![
            "--root",
            storage.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("buildah", &all)
    };
    let file = s.work("note.txt");
    std::fs::write(&file, b"added by buildah\n").unwrap();

    // From scratch.
    let ctr = buildah(&["from", "--quiet", "scratch"]).trim().to_string();
    buildah(&["copy", "--quiet", &ctr, file.to_str().unwrap(), "/note.txt"]);
    buildah(&["config", "--entrypoint", r#"["/note.txt"]"#, &ctr]);
    let scratch_oci = oci_ref(&s.root.join("scratch"), "latest");
    buildah(&["commit", "--quiet", "--format", "oci", &ctr, &scratch_oci]);
    buildah(&["rm", &ctr]);

    // On top of the example hello image (a real gzip layer), both formats.
    let from = oci_ref(&example("hello"), "latest");
    let ctr = buildah(&["from", "--quiet", &from]).trim().to_string();
    buildah(&["copy", "--quiet", &ctr, file.to_str().unwrap(), "/note.txt"]);
    let hello_oci = oci_ref(&s.root.join("hello"), "oci");
    let hello_docker = oci_ref(&s.root.join("hello"), "docker");
    buildah(&["commit", "--quiet", "--format", "oci", &ctr, &hello_oci]);
    // Committing with --format docker straight to an oci: destination
    // gives an OCI manifest again (the layout transport prefers OCI); push
    // with --format v2s2 to get a Docker schema 2 manifest in the layout.
    buildah(&[
        "commit",
        "--quiet",
        "--format",
        "docker",
        &ctr,
        "ir-oci-test-docker",
    ]);
    buildah(&[
        "push",
        "--quiet",
        "--format",
        "v2s2",
        "ir-oci-test-docker",
        &hello_docker,
    ]);
    buildah(&["rmi", "ir-oci-test-docker"]);
    buildah(&["rm", &ctr]);

    let reg = load_clean(&s.root);
    assert_eq!(tags(&reg, "scratch"), ["latest"]);
    assert_eq!(tagged_media_type(&reg, "scratch", "latest"), OCI_MANIFEST);
    assert_eq!(tags(&reg, "hello"), ["docker", "oci"]);
    assert_eq!(tagged_media_type(&reg, "hello", "oci"), OCI_MANIFEST);
    assert_eq!(tagged_media_type(&reg, "hello", "docker"), DOCKER_MANIFEST);
    let app = &reg.applications[&RepoName::parse("hello").unwrap()];
    let oci = &app.tags[&ir_oci::Tag::parse("oci").unwrap()];
    let m: serde_json::Value = serde_json::from_slice(&app.manifests[oci].bytes).unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2);
}
