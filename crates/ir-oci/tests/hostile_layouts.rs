//! Hostile layouts (issue 7) beyond the rule-by-rule tests of `loader.rs`:
//! links out of the root and into `/proc`, device nodes and sockets, huge,
//! deep, duplicated, mistyped and non-UTF-8 JSON, a million descriptors,
//! blobs that change or vanish while they are hashed, unreadable files for
//! a non-root loader, hostile names, and the memory taken by loading all of
//! them at once. Every test asserts the rule AND that the valid
//! application `good` in the same root is still served.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;
use ir_oci::name::NameError;
use ir_oci::{LoadOptions, ReadAhead, Registry, Rule};
use ir_testkit::*;
use serde_json::json;

fn root() -> Root {
    let root = Root::new();
    root.good("good");
    root
}

fn root_with_bad() -> (Root, Layout, Image) {
    let root = root();
    let bad = root.layout("bad");
    let image = bad.image(b"bad layer");
    bad.set_index(&[image.tagged("latest")]);
    (root, bad, image)
}

/// Asserts `bad` was rejected for `file` with an `InvalidJson` rule about
/// `what`, `good` still served; returns the parser's detail.
#[track_caller]
fn assert_invalid_json(reg: &Registry, file: impl AsRef<Path>, what: &str) -> String {
    let rule = rejection(reg, "bad", file);
    assert_served(reg, "good");
    match rule {
        Rule::InvalidJson { what: w, detail } if w == what => detail,
        other => panic!("expected InvalidJson({what}), got {other:?}"),
    }
}

fn c_path(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

// ---- links out of the layout ---------------------------------------------

#[test]
fn blob_hard_linked_to_a_file_outside_the_root_is_content_like_any_other() {
    // A second name outside the layout changes nothing about what is
    // served: the bytes verified are the blob's bytes. A later change
    // through the other name is caught when serving (identity and seal
    // checks: ir-server's `integrity.rs`).
    let root = root();
    let bad = root.layout("bad");
    let outside = root.outside("copy");
    let content = b"a layer with another name outside the root".to_vec();
    std::fs::write(&outside, &content).unwrap();
    let layer = bad.blob(LAYER_GZIP, &content);
    std::fs::remove_file(bad.blob_path(&layer)).unwrap();
    std::fs::hard_link(&outside, bad.blob_path(&layer)).unwrap();
    let config = bad.config();
    let m = bad.manifest(&config, std::slice::from_ref(&layer));
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "bad");

    // Wrong content is still wrong content, whatever its other names.
    std::fs::write(&outside, b"a layer with another name outside the ROOT").unwrap();
    let reg = root.load();
    assert!(matches!(
        rejection(&reg, "bad", layer.file()),
        Rule::DigestMismatch { .. }
    ));
}

#[test]
fn blob_shared_by_two_applications_through_a_hard_link_is_hashed_once() {
    // As `cp -al`, `rsync --link-dest` and deduplicating stores leave them.
    let root = root();
    let one = root.layout("one");
    let image = one.image(b"shared by a hard link");
    one.set_index(&[image.tagged("latest")]);
    let two = root.layout("two");
    let copy = two.image(b"shared by a hard link");
    two.set_index(&[copy.tagged("latest")]);
    std::fs::remove_file(two.blob_path(&copy.layers[0])).unwrap();
    std::fs::hard_link(
        one.blob_path(&image.layers[0]),
        two.blob_path(&copy.layers[0]),
    )
    .unwrap();
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "one");
    assert_served(&reg, "two");
    assert_eq!(reg.blobs_linked, 1, "the shared layer is hashed once");

    // A broken shared blob rejects both applications, each naming it.
    std::fs::write(one.blob_path(&image.layers[0]), b"shared by a hard LINK").unwrap();
    let reg = root.load();
    let rejected: Vec<_> = reg
        .rejected
        .iter()
        .map(|r| r.application.as_str())
        .collect();
    assert_eq!(rejected, ["one", "two"]);
    assert!(reg
        .rejected
        .iter()
        .all(|r| matches!(r.rule, Rule::DigestMismatch { .. })));
    assert_served(&reg, "good");
}

#[test]
fn symlinks_into_proc_are_rejected() {
    for (what, rel, target) in [
        ("layer", None, "/proc/self/environ"),
        ("index.json", Some("index.json"), "/proc/self/mem"),
        ("oci-layout", Some("oci-layout"), "/proc/self/cmdline"),
        ("blobs dir", Some("blobs"), "/proc/self/fd"),
    ] {
        let (root, bad, image) = root_with_bad();
        let file = rel
            .map(PathBuf::from)
            .unwrap_or_else(|| image.layers[0].file());
        bad.symlink(&file, target);
        let reg = root.load();
        let rule = rejection(&reg, "bad", &file);
        assert_eq!(rule, Rule::Symlink, "{what}");
        assert_served(&reg, "good");
    }
}

#[test]
fn application_and_namespace_symlinked_into_proc_are_rejected() {
    let root = root();
    std::os::unix::fs::symlink("/proc/self/root", root.path().join("app")).unwrap();
    std::fs::create_dir(root.path().join("ns")).unwrap();
    root.good("ns/real");
    std::os::unix::fs::symlink("/proc", root.path().join("ns/proc")).unwrap();
    let reg = root.load();
    assert_served(&reg, "good");
    assert_served(&reg, "ns/real");
    let rejected: Vec<_> = reg
        .rejected
        .iter()
        .map(|r| (r.application.as_str(), r.rule.clone()))
        .collect();
    assert_eq!(
        rejected,
        [("app", Rule::Symlink), ("ns/proc", Rule::Symlink)]
    );
}

// ---- device nodes and sockets ---------------------------------------------

/// Replaces `path` with a device node; `Err(errno)` when not permitted.
fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) -> Result<(), i32> {
    let _ = std::fs::remove_file(path);
    // SAFETY: a valid NUL-terminated path; plain syscall.
    let rc = unsafe {
        libc::mknod(
            c_path(path).as_ptr(),
            kind | 0o644,
            libc::makedev(major, minor),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[test]
fn blob_index_and_manifest_that_are_device_nodes_are_rejected_without_reading() {
    // /dev/zero (1,5) as index.json would never end if read; /dev/null
    // (1,3) as a layer would hash as empty; loop0 (7,0) as a block device.
    for (what, kind, major, minor, name) in [
        ("layer", libc::S_IFCHR, 1, 3, "character device"),
        ("index.json", libc::S_IFCHR, 1, 5, "character device"),
        ("manifest", libc::S_IFBLK, 7, 0, "block device"),
    ] {
        let (root, bad, image) = root_with_bad();
        let file = match what {
            "layer" => image.layers[0].file(),
            "manifest" => image.manifest.file(),
            _ => PathBuf::from("index.json"),
        };
        match mknod(&bad.path(&file), kind, major, minor) {
            Ok(()) => {
                let started = Instant::now();
                let reg = root.load();
                assert_rejected(&reg, "bad", &file, Rule::NotRegularFile(name));
                assert!(started.elapsed() < Duration::from_secs(10), "{what}");
            }
            Err(errno) => {
                // Without CAP_MKNOD (not root, or a user namespace) the
                // kernel refuses device nodes: nobody can plant one there.
                assert_eq!(errno, libc::EPERM, "{what}");
                eprintln!("mknod not permitted (EPERM): device-node case not exercised");
                return;
            }
        }
    }
}

#[test]
fn blob_that_is_a_unix_socket_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let path = bad.blob_path(&image.layers[0]);
    std::fs::remove_file(&path).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::NotRegularFile("socket"),
    );
}

// ---- huge JSON ----------------------------------------------------------------

#[test]
fn sparse_1_gib_index_json_is_too_large_and_never_read() {
    let (root, bad, _) = root_with_bad();
    let f = std::fs::File::create(bad.path("index.json")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let reg = root.load();
    // The rule is the proof that it was never read: the size is refused
    // from fstat, before any read (reading it would find zeros and report
    // invalid JSON instead).
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::TooLarge {
            size: 1 << 30,
            limit: LoadOptions::default().max_index_json,
        },
    );
}

#[test]
fn manifest_described_as_1_gib_is_too_large_before_it_is_opened() {
    let (root, bad, image) = root_with_bad();
    let huge = image.manifest.with("size", json!(1u64 << 30));
    bad.set_index(&[huge]);
    // The file itself is sparse and as big as the descriptor says.
    std::fs::OpenOptions::new()
        .write(true)
        .open(bad.blob_path(&image.manifest))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.manifest.file(),
        Rule::TooLarge {
            size: 1 << 30,
            limit: LoadOptions::default().max_manifest,
        },
    );
}

#[test]
fn small_manifest_descriptor_over_a_1_gib_file_is_a_size_mismatch_without_reading() {
    let (root, bad, image) = root_with_bad();
    let size = image.manifest.size();
    std::fs::OpenOptions::new()
        .write(true)
        .open(bad.blob_path(&image.manifest))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.manifest.file(),
        Rule::SizeMismatch {
            expected: size,
            actual: 1 << 30,
        },
    );
}

// ---- deep, duplicated, mistyped and non-UTF-8 JSON ------------------------

#[test]
fn index_json_nested_100k_deep_is_rejected_without_overflowing_the_stack() {
    for doc in ["[".repeat(100_000), "{\"a\":".repeat(100_000)] {
        let (root, bad, _) = root_with_bad();
        bad.write("index.json", doc.as_bytes());
        let reg = root.load();
        // serde reports the recursion limit, or (for an array, which a
        // derived struct also accepts) the first element's wrong type.
        assert_invalid_json(&reg, "index.json", "image index");
    }
}

#[test]
fn manifest_nested_100k_deep_inside_an_annotation_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let mut doc = serde_json::to_string(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": image.config.0,
        "layers": [image.layers[0].0],
    }))
    .unwrap();
    doc.pop(); // the closing brace
    doc.push_str(",\"annotations\":");
    doc.push_str(&"[".repeat(100_000));
    let m = bad.blob(OCI_MANIFEST, doc.as_bytes());
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_invalid_json(&reg, m.file(), "image manifest");
}

#[test]
fn manifest_with_duplicate_keys_is_rejected() {
    // `layers` twice: a parser keeping the first would see another image
    // than one keeping the last. Both the typed parse and the rejection
    // must be unambiguous.
    let (root, bad, image) = root_with_bad();
    let other = bad.blob(LAYER_GZIP, b"another layer");
    let doc = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}],"layers":[{}]}}"#,
        image.config.0, image.layers[0].0, other.0
    );
    let m = bad.blob(OCI_MANIFEST, doc.as_bytes());
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    let detail = assert_invalid_json(&reg, m.file(), "image manifest");
    assert!(detail.contains("duplicate field"), "{detail}");
}

#[test]
fn index_json_with_duplicate_keys_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let doc = format!(
        r#"{{"schemaVersion":2,"manifests":[{}],"manifests":[]}}"#,
        image.tagged("latest").0
    );
    bad.write("index.json", doc.as_bytes());
    let reg = root.load();
    let detail = assert_invalid_json(&reg, "index.json", "image index");
    assert!(detail.contains("duplicate field"), "{detail}");
}

#[test]
fn invalid_utf8_in_index_json_or_manifest_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let mut doc =
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [image.tagged("latest").0]}))
            .unwrap();
    // Replace a byte of the tag ("latest") with an invalid UTF-8 byte.
    let at = doc.windows(6).position(|w| w == b"latest").unwrap();
    doc[at] = 0xff;
    bad.write("index.json", &doc);
    let reg = root.load();
    assert_invalid_json(&reg, "index.json", "image index");

    let (root, bad, image) = root_with_bad();
    let mut doc = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": image.config.0,
        "layers": [image.layers[0].0],
        "annotations": {"k": "vXX"},
    }))
    .unwrap();
    let at = doc.windows(3).position(|w| w == b"vXX").unwrap();
    doc[at + 1] = 0xc3; // a lone lead byte
    doc[at + 2] = 0x28;
    let m = bad.blob(OCI_MANIFEST, &doc);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_invalid_json(&reg, m.file(), "image manifest");
}

#[test]
fn numbers_as_strings_negative_and_fractional_sizes_are_rejected() {
    for size in [
        json!("12"),
        json!(-1),
        json!(12.5),
        json!(1e300),
        json!(null),
    ] {
        let (root, bad, image) = root_with_bad();
        bad.set_index(&[image.manifest.with("size", size.clone())]);
        let reg = root.load();
        assert_invalid_json(&reg, "index.json", "image index");
    }
    let (root, bad, image) = root_with_bad();
    bad.set_index_json(&json!({"schemaVersion": "2", "manifests": [image.manifest.0]}));
    let reg = root.load();
    assert_invalid_json(&reg, "index.json", "image index");
    // Inside a manifest too.
    let (root, bad, image) = root_with_bad();
    let layer = image.layers[0].with("size", json!(image.layers[0].size().to_string()));
    let m = bad.manifest(&image.config, &[layer]);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_invalid_json(&reg, m.file(), "image manifest");
}

// ---- a million descriptors -------------------------------------------------

/// Writes `count` compact descriptors of `manifest` as `path`, streaming
/// (so that building it does not raise the test's own peak memory);
/// returns the file's size.
fn write_many_descriptors(path: &Path, manifest: &Desc, count: usize) -> u64 {
    let one = serde_json::to_vec(&manifest.0).unwrap();
    let _ = std::fs::remove_file(path);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(br#"{"schemaVersion":2,"manifests":["#).unwrap();
    for i in 0..count {
        if i > 0 {
            f.write_all(b",").unwrap();
        }
        f.write_all(&one).unwrap();
    }
    f.write_all(b"]}").unwrap();
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn index_json_with_a_million_descriptors_is_too_large_and_never_parsed() {
    let (root, bad, image) = root_with_bad();
    let len = write_many_descriptors(&bad.path("index.json"), &image.manifest, 1_000_000);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::TooLarge {
            size: len,
            limit: LoadOptions::default().max_index_json,
        },
    );
}

/// The most descriptors that fit in an index.json under the default limit.
fn fill_index_json(bad: &Layout, image: &Image) -> usize {
    let one = serde_json::to_vec(&image.manifest.0).unwrap().len() + 1;
    let count = (LoadOptions::default().max_index_json as usize - 64) / one;
    write_many_descriptors(&bad.path("index.json"), &image.manifest, count);
    count
}

#[test]
fn index_json_at_the_size_limit_loads_in_bounded_time() {
    // ~110k descriptors of one manifest in 16 MiB: every one is checked,
    // the manifest is read and hashed once.
    let (root, bad, image) = root_with_bad();
    let count = fill_index_json(&bad, &image);
    assert!(count > 100_000, "{count}");
    let started = Instant::now();
    let reg = root.load();
    let elapsed = started.elapsed();
    assert_clean(&reg);
    assert_served(&reg, "bad");
    assert_served(&reg, "good");
    eprintln!("{count} descriptors in a 16 MiB index.json loaded in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[test]
fn index_json_with_more_descriptors_than_the_limit_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let count = fill_index_json(&bad, &image);
    let options = LoadOptions {
        max_descriptors: count - 1,
        ..LoadOptions::default()
    };
    let reg = root.load_with(&options);
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::TooManyDescriptors(count - 1),
    );
}

// ---- blobs that change or vanish while they are hashed ---------------------

const RACE_BLOB: u64 = 256 << 20;

/// sha256 of `RACE_BLOB` zero bytes, computed once.
fn zeros_digest() -> &'static str {
    static D: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let mut h = ir_oci::Algorithm::Sha256.hasher();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..RACE_BLOB >> 20 {
            h.update(&chunk);
        }
        h.finish().to_string()
    })
}

/// A root whose `bad` holds a large sparse layer of zeros; returns its path.
fn root_with_big_layer() -> (Root, PathBuf, Desc) {
    let root = root();
    let bad = root.layout("bad");
    let layer = Desc(json!({
        "mediaType": LAYER_GZIP,
        "digest": zeros_digest(),
        "size": RACE_BLOB,
    }));
    let path = bad.blob_path(&layer);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(RACE_BLOB)
        .unwrap();
    let config = bad.config();
    let m = bad.manifest(&config, std::slice::from_ref(&layer));
    bad.set_index(&[m.tagged("latest")]);
    (root, path, layer)
}

/// Whether this process has `path` open (the loader's hashing phase).
fn is_open(path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target == path)
}

/// Loads the root on a thread, runs `change` as soon as the loader has the
/// blob open for hashing, and returns the registry. No read-ahead: it too
/// opens the blob (to read its first pages), and a change made then is
/// seen before hashing starts, a different race from the one tested here.
fn load_while(root: &Root, path: &Path, change: impl FnOnce()) -> Registry {
    // As ir-server does: large blobs are hashed through memory maps.
    assert!(ir_oci::loader::mapped::install_sigbus_handler());
    let root_path = root.path().to_path_buf();
    let loader = std::thread::spawn(move || {
        ir_oci::load(
            &root_path,
            &LoadOptions {
                threads: Some(1),
                read_ahead: ReadAhead::Never,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_open(path) {
        assert!(
            Instant::now() < deadline,
            "the loader never opened the blob"
        );
        assert!(
            !loader.is_finished(),
            "the loader finished before the blob was seen open"
        );
        std::thread::yield_now();
    }
    change();
    loader.join().unwrap()
}

#[test]
fn blob_truncated_while_it_is_hashed_is_rejected() {
    let (root, path, layer) = root_with_big_layer();
    let reg = load_while(&root, &path, || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(RACE_BLOB / 2)
            .unwrap();
    });
    assert_rejected(&reg, "bad", layer.file(), Rule::ChangedDuringVerification);
}

#[test]
fn blob_deleted_while_it_is_hashed_is_rejected() {
    let (root, path, layer) = root_with_big_layer();
    let reg = load_while(&root, &path, || std::fs::remove_file(&path).unwrap());
    // The open descriptor still reads every byte, but unlinking changed the
    // inode's ctime: the identity check after hashing catches it.
    assert_rejected(&reg, "bad", layer.file(), Rule::ChangedDuringVerification);
}

#[test]
fn blob_grown_while_it_is_hashed_is_rejected() {
    let (root, path, layer) = root_with_big_layer();
    let reg = load_while(&root, &path, || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"one more byte").unwrap();
    });
    assert_rejected(&reg, "bad", layer.file(), Rule::ChangedDuringVerification);
}

// ---- permissions, for real, as a non-root loader ----------------------------

/// Runs this test binary's test `name` again in a child process with
/// `env` set; returns whether it passed.
fn rerun(name: &str, env: (&str, &str)) -> std::process::Output {
    // Test names are paths below the test binary's root module.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::{name}");
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .output()
        .unwrap()
}

const AS_NOBODY: &str = "IR_OCI_TEST_AS_NOBODY";

#[test]
fn unreadable_files_are_rejected_for_a_non_root_loader() {
    if let Ok(dir) = std::env::var(AS_NOBODY) {
        // The child: drop to nobody for good, then load.
        // SAFETY: plain syscalls; this process only runs this test.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
        let reg = ir_oci::load(Path::new(&dir), &LoadOptions::default()).unwrap();
        assert_served(&reg, "good");
        let mut rejected: Vec<_> = reg
            .rejected
            .iter()
            .map(|r| (r.application.clone(), r.file.clone(), r.rule.clone()))
            .collect();
        rejected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(rejected.len(), 3, "{rejected:#?}");
        for (app, _, rule) in &rejected {
            assert!(
                matches!(rule, Rule::Io(msg) if msg.contains("ermission denied")),
                "{app}: {rule:?}"
            );
        }
        assert_eq!(rejected[0].1, Path::new("index.json"));
        assert_eq!(rejected[2].1, Path::new("oci-layout"));
        println!("CHILD-OK");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let root = root();
    let a = root.layout("a-index");
    let image = a.image(b"a");
    a.set_index(&[image.tagged("latest")]);
    a.chmod("index.json", 0o000);
    let b = root.layout("b-layer");
    let image = b.image(b"b");
    b.set_index(&[image.tagged("latest")]);
    b.chmod(image.layers[0].file(), 0o000);
    let c = root.layout("c-layout");
    let image = c.image(b"c");
    c.set_index(&[image.tagged("latest")]);
    c.chmod("oci-layout", 0o000);
    if !is_root {
        // Already unprivileged: the permissions bite here.
        let reg = root.load();
        assert_served(&reg, "good");
        assert_eq!(reg.rejected.len(), 3, "{:#?}", reg.rejected);
        return;
    }
    // As root they would not: run the load as nobody in a child process,
    // with the directories open to it (temp dirs are 0700).
    let mut p = root.path().to_path_buf();
    while p.pop() && p != Path::new("/") {
        if p == std::env::temp_dir() {
            break;
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = rerun(
        "unreadable_files_are_rejected_for_a_non_root_loader",
        (AS_NOBODY, root.path().to_str().unwrap()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- names ------------------------------------------------------------------

#[test]
fn hostile_application_names_are_rejected() {
    let root = root();
    let long = "a".repeat(255);
    let names = [
        "...",
        "UPPER",
        "a%2e%2e",
        "%2f",
        "a b",
        " lead",
        "trail ",
        "tab\tname",
        "new\nline",
        "back\\slash",
        "colon:tag",
        "at@digest",
    ];
    for n in names {
        root.good(n);
    }
    // The longest component a file system takes is 255 bytes: as a name on
    // its own it is valid; under a namespace the whole name is too long.
    root.good(&long);
    root.good(&format!("ns/{long}"));
    let reg = root.load();
    assert_served(&reg, "good");
    assert_served(&reg, &long);
    for n in names {
        let r = reg
            .rejected
            .iter()
            .find(|r| r.application == n)
            .unwrap_or_else(|| panic!("{n:?} not rejected"));
        assert!(
            matches!(&r.rule, Rule::InvalidName(NameError::InvalidName(_))),
            "{n:?}: {r}"
        );
    }
    let too_long = reg
        .rejected
        .iter()
        .find(|r| r.application.starts_with("ns/"))
        .expect("ns/<255> rejected");
    assert_eq!(
        too_long.rule,
        Rule::InvalidName(NameError::NameTooLong(258))
    );
    assert_eq!(reg.applications.len(), 2);
}

#[test]
fn component_over_255_bytes_cannot_even_be_created() {
    let root = root();
    let err = std::fs::create_dir(root.path().join("a".repeat(256))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
}

#[test]
fn non_utf8_application_name_is_rejected() {
    use std::os::unix::ffi::OsStrExt;
    let root = root();
    let name = std::ffi::OsStr::from_bytes(b"app\xff");
    let real = root.layout("tmp-real");
    let image = real.image(b"x");
    real.set_index(&[image.tagged("latest")]);
    std::fs::rename(root.path().join("tmp-real"), root.path().join(name)).unwrap();
    let reg = root.load();
    assert_served(&reg, "good");
    assert_eq!(reg.rejected.len(), 1, "{:#?}", reg.rejected);
    assert!(
        matches!(reg.rejected[0].rule, Rule::InvalidName(_)),
        "{}",
        reg.rejected[0]
    );
    assert_eq!(reg.applications.len(), 1);
}

#[test]
fn hostile_tag_annotations_are_rejected() {
    for tag in [
        "../../etc/passwd",
        "a/b",
        "%2e%2e",
        "with space",
        "-lead",
        ".hidden",
        "tag\0nul",
        "é",
    ] {
        let (root, bad, image) = root_with_bad();
        bad.set_index(&[image.tagged(tag)]);
        let reg = root.load();
        let rule = rejection(&reg, "bad", "index.json");
        assert!(matches!(rule, Rule::InvalidTag(_)), "{tag:?}: {rule:?}");
        assert_served(&reg, "good");
    }
}

#[test]
fn layout_nested_deeper_than_the_namespace_bound_is_not_served() {
    let root = root();
    let deep = (0..LoadOptions::default().max_namespace_depth)
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join("/");
    root.good(&format!("{deep}/app"));
    let reg = root.load();
    assert_served(&reg, "good");
    assert_eq!(reg.applications.len(), 1);
    assert!(reg.rejected.is_empty(), "{:#?}", reg.rejected);
}

// ---- memory while loading all of them at once -------------------------------

const MEASURE: &str = "IR_OCI_TEST_MEASURE_RSS";

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak RSS bound asserted for loading the hostile root below (MiB).
const RSS_BOUND_MIB: u64 = 512;

/// Builds one root holding every hostile layout of this file that does not
/// need another thread or process, plus `good`.
fn build_hostile_root() -> Root {
    let root = root();
    let add = |name: &str| {
        let app = root.layout(name);
        let image = app.image(name.as_bytes());
        app.set_index(&[image.tagged("latest")]);
        (app, image)
    };
    let (a, _) = add("huge-index");
    std::fs::File::create(a.path("index.json"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (a, image) = add("million");
    write_many_descriptors(&a.path("index.json"), &image.manifest, 1_000_000);
    for i in 0..4 {
        let (a, image) = add(&format!("full-{i}"));
        fill_index_json(&a, &image);
    }
    let (a, _) = add("deep");
    a.write("index.json", "[".repeat(100_000).as_bytes());
    let (a, image) = add("dup");
    let doc = format!(
        r#"{{"schemaVersion":2,"manifests":[{}],"manifests":[]}}"#,
        image.tagged("latest").0
    );
    a.write("index.json", doc.as_bytes());
    let (a, image) = add("strsize");
    a.set_index(&[image.manifest.with("size", json!("12"))]);
    let (a, image) = add("bigmanifest");
    let huge = image.manifest.with("size", json!(1u64 << 30));
    a.set_index(&[huge]);
    let (a, image) = add("sparselayer");
    std::fs::OpenOptions::new()
        .write(true)
        .open(a.blob_path(&image.layers[0]))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (a, image) = add("proc");
    a.symlink(image.layers[0].file(), "/proc/self/environ");
    let (a, image) = add("fifo");
    a.fifo(image.layers[0].file());
    let (a, image) = add("device");
    let _ = mknod(&a.blob_path(&image.layers[0]), libc::S_IFCHR, 1, 5);
    root
}

#[test]
fn memory_stays_bounded_while_loading_every_hostile_layout_at_once() {
    if std::env::var(MEASURE).is_ok() {
        // The child: alone in its process, so VmHWM is this load's.
        let root = build_hostile_root();
        let before = status_kib("VmHWM:");
        let started = Instant::now();
        let reg = root.load();
        let elapsed = started.elapsed();
        let after = status_kib("VmHWM:");
        assert_served(&reg, "good");
        for full in 0..4 {
            assert_served(&reg, &format!("full-{full}"));
        }
        assert_eq!(reg.rejected.len(), 10, "{:#?}", reg.rejected);
        println!(
            "MEASURE peak_rss_before_kib={before} peak_rss_after_kib={after} load_ms={}",
            elapsed.as_millis()
        );
        return;
    }
    let out = rerun(
        "memory_stays_bounded_while_loading_every_hostile_layout_at_once",
        (MEASURE, "1"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("MEASURE ").map(|at| &l[at..]))
        .expect("measurement line");
    eprintln!("{line}");
    let after: u64 = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("peak_rss_after_kib="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after < RSS_BOUND_MIB << 10,
        "peak RSS {after} KiB over {RSS_BOUND_MIB} MiB"
    );
}

/// Fuzzing finding (target `names`, harness assumption, not a bug): `..`
/// inside a tag is valid by the spec's grammar. A tag is only ever a map
/// key, never a path: it cannot contain `/`, nor start with `.`.
#[test]
fn tag_with_double_dots_is_valid_and_cannot_be_a_path() {
    use ir_oci::Tag;
    assert!(Tag::parse("reistreisrtrxeyy..aexam").is_ok());
    assert!(Tag::parse("1..2").is_ok());
    for t in ["..", "../x", "x/..", ".."] {
        assert!(Tag::parse(t).is_err(), "{t}");
    }
    let root = root();
    let app = root.layout("app");
    let image = app.image(b"dots");
    app.set_index(&[image.tagged("v1..2")]);
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "app");
    assert_served(&reg, "good");
}
