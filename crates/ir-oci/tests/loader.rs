//! One test per loader rule, accepted and rejected. Every rejection test
//! also checks that a valid application (`good`) in the same root is still
//! served, and names the exact rule and file.

use std::path::{Path, PathBuf};

use crate::util::*;
use ir_oci::digest::DigestError;
use ir_oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use ir_oci::name::NameError;
use ir_oci::{Algorithm, Digest, LoadError, LoadOptions, Rule};
use ir_testkit::*;
use serde_json::json;

// ---- the valid cases ------------------------------------------------------

#[test]
fn valid_layout_is_served_with_tags_manifests_and_blobs() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"hello");
    app.set_index(&[image.tagged("latest"), image.tagged("1.0")]);
    let reg = root.load();
    assert_clean(&reg);
    assert!(reg.orphans.is_empty());
    let a = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    let tags: Vec<_> = a.tags.keys().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["1.0", "latest"]);
    assert_eq!(a.tags.values().next().unwrap(), &image.manifest.digest());
    let m = &a.manifests[&image.manifest.digest()];
    assert_eq!(&*m.media_type, OCI_MANIFEST);
    assert_eq!(
        m.bytes,
        std::fs::read(app.blob_path(&image.manifest)).unwrap()
    );
    assert!(m.referring.is_none()); // no subject
    assert!(a.blobs.contains_key(&image.config.digest()));
    assert!(a.blobs.contains_key(&image.layers[0].digest()));
    assert_eq!(a.blobs.len(), 2);
    assert_eq!(
        a.bytes_verified,
        image.manifest.size() + image.config.size() + image.layers[0].size()
    );
}

#[test]
fn sha512_layout_is_accepted() {
    let root = root();
    let app = root.layout_with("wide", Alg::Sha512);
    let image = app.image(b"sha512 layer");
    app.set_index(&[image.tagged("latest")]);
    assert!(app
        .path(image.manifest.file())
        .starts_with(app.path("blobs/sha512")));
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "wide");
    let a = &reg.applications[&ir_oci::RepoName::parse("wide").unwrap()];
    assert_eq!(
        a.tags.values().next().unwrap().algorithm(),
        Algorithm::Sha512
    );
    assert_eq!(a.blobs.len(), 2);
}

#[test]
fn sha512_blob_with_wrong_content_is_rejected() {
    let root = root();
    let app = root.layout_with("bad", Alg::Sha512);
    let image = app.image(b"sha512 layer");
    app.set_index(&[image.tagged("latest")]);
    app.corrupt_flip(&image.layers[0]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", image.layers[0].file());
    assert!(
        matches!(&rule, Rule::DigestMismatch { expected, actual }
            if *expected == image.layers[0].digest() && actual.algorithm() == Algorithm::Sha512),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

#[test]
fn zero_applications_is_an_empty_registry() {
    let root = Root::new();
    let reg = root.load();
    assert!(reg.applications.is_empty());
    assert!(reg.rejected.is_empty());
    assert!(reg.orphans.is_empty());
}

#[test]
fn missing_root_is_a_root_error() {
    let root = Root::new();
    let missing = root.outside("no-such-dir");
    let err = ir_oci::load(&missing, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(&err, LoadError::Root { path, .. } if *path == missing),
        "{err}"
    );
}

#[test]
fn root_that_is_a_file_is_a_root_error() {
    let root = Root::new();
    let file = root.outside("file");
    std::fs::write(&file, b"x").unwrap();
    let err = ir_oci::load(&file, &LoadOptions::default()).unwrap_err();
    assert!(matches!(&err, LoadError::Root { reason, .. } if reason.contains("not a directory")));
}

#[test]
fn root_that_is_itself_a_layout_is_served_under_its_directory_name() {
    let root = Root::new();
    let app = root.layout("just-written");
    let image = app.image(b"one layout");
    app.set_index(&[image.tagged("latest")]);
    app.write("blobs/sha256/0000", b"orphan");
    let reg = ir_oci::load(&root.path().join("just-written"), &LoadOptions::default()).unwrap();
    assert_served(&reg, "just-written");
    assert_eq!(reg.applications.len(), 1);
    assert!(reg.rejected.is_empty(), "{:?}", reg.rejected);
    assert_eq!(reg.orphans.len(), 1);
    assert_eq!(reg.orphans[0].application, "just-written");
}

#[test]
fn root_that_is_itself_a_layout_is_served_under_the_name_given() {
    let root = Root::new();
    let app = root.layout("Not_A_Repo_Name");
    let image = app.image(b"one layout");
    app.set_index(&[image.tagged("latest")]);
    let dir = root.path().join("Not_A_Repo_Name");
    // Its directory name is not a repository name: rejected as such.
    let reg = ir_oci::load(&dir, &LoadOptions::default()).unwrap();
    assert!(reg.applications.is_empty());
    assert!(matches!(reg.rejected[0].rule, Rule::InvalidName(_)));
    let options = LoadOptions {
        root_name: Some("team/tool".into()),
        ..LoadOptions::default()
    };
    let reg = ir_oci::load(&dir, &options).unwrap();
    assert_served(&reg, "team/tool");
    assert!(reg.rejected.is_empty());
    // A broken single layout is rejected, as in a root of many.
    app.corrupt_flip(&image.layers[0]);
    let reg = ir_oci::load(&dir, &options).unwrap();
    assert!(reg.applications.is_empty());
    assert_eq!(reg.rejected[0].application, "team/tool");
}

#[test]
fn a_root_name_for_a_root_that_is_not_a_layout_is_a_root_error() {
    let root = root();
    let options = LoadOptions {
        root_name: Some("app".into()),
        ..LoadOptions::default()
    };
    let err = ir_oci::load(root.path(), &options).unwrap_err();
    assert!(
        matches!(&err, LoadError::Root { reason, .. } if reason.contains("not an OCI layout")),
        "{err}"
    );
}

// ---- oci-layout --------------------------------------------------------------

#[test]
fn missing_oci_layout_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.remove("oci-layout");
    let reg = root.load();
    assert_rejected(&reg, "bad", "oci-layout", Rule::Missing);
}

#[test]
fn unparsable_oci_layout_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.write("oci-layout", b"imageLayoutVersion = 1.0.0");
    let reg = root.load();
    let rule = rejection(&reg, "bad", "oci-layout");
    assert!(
        matches!(
            rule,
            Rule::InvalidJson {
                what: "oci-layout",
                ..
            }
        ),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

#[test]
fn oci_layout_with_wrong_version_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.write("oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "oci-layout",
        Rule::LayoutVersion("2.0.0".into()),
    );
}

#[test]
fn oci_layout_that_is_a_symlink_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.symlink("oci-layout", "../good/oci-layout");
    let reg = root.load();
    assert_rejected(&reg, "bad", "oci-layout", Rule::Symlink);
}

// ---- index.json ----------------------------------------------------------

#[test]
fn missing_index_json_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.remove("index.json");
    let reg = root.load();
    assert_rejected(&reg, "bad", "index.json", Rule::Missing);
}

#[test]
fn index_json_that_is_not_json_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.write("index.json", b"{ not json");
    let reg = root.load();
    let rule = rejection(&reg, "bad", "index.json");
    assert!(
        matches!(
            rule,
            Rule::InvalidJson {
                what: "image index",
                ..
            }
        ),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

#[test]
fn index_json_with_schema_version_1_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index_json(&json!({"schemaVersion": 1, "manifests": [image.manifest.0]}));
    let reg = root.load();
    assert_rejected(&reg, "bad", "index.json", Rule::SchemaVersion(1));
}

#[test]
fn index_json_with_a_manifest_media_type_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index_json(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "manifests": [image.manifest.0],
    }));
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::MediaTypeMismatch {
            expected: OCI_INDEX.into(),
            found: OCI_MANIFEST.into(),
        },
    );
}

#[test]
fn index_json_without_media_type_is_accepted() {
    let root = root();
    let app = root.layout("app");
    let image = app.image(b"x");
    app.set_index_json(&json!({"schemaVersion": 2, "manifests": [image.tagged("v1").0]}));
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "app");
}

#[test]
fn index_json_that_is_a_fifo_is_rejected_without_hanging() {
    let (root, bad, _) = root_with_bad();
    bad.fifo("index.json");
    let reg = root.load();
    assert_rejected(&reg, "bad", "index.json", Rule::NotRegularFile("FIFO"));
}

#[test]
fn index_entry_with_a_layer_media_type_is_not_a_manifest() {
    let (root, bad, image) = root_with_bad();
    bad.set_index(&[image.tagged("latest"), image.layers[0].clone()]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::NotAManifest(LAYER_GZIP.into()),
    );
}

#[test]
fn descriptor_with_invalid_media_type_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index(&[image.manifest.with("mediaType", json!("not a media type"))]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::InvalidMediaType("not a media type".into()),
    );
}

// ---- media types of documents -------------------------------------------------

#[test]
fn nested_index_whose_media_type_disagrees_with_its_descriptor_is_rejected() {
    let (root, bad, image) = root_with_bad();
    // The document says it is a Docker manifest list; the descriptor says OCI index.
    let nested = bad.json(
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [image.manifest.0],
        }),
    );
    bad.set_index(&[nested.tagged("latest")]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        nested.file(),
        Rule::MediaTypeMismatch {
            expected: OCI_INDEX.into(),
            found: DOCKER_MANIFEST_LIST.into(),
        },
    );
}

#[test]
fn manifest_whose_media_type_disagrees_with_its_descriptor_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index(&[image.manifest.with("mediaType", json!(DOCKER_MANIFEST))]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.manifest.file(),
        Rule::MediaTypeMismatch {
            expected: DOCKER_MANIFEST.into(),
            found: OCI_MANIFEST.into(),
        },
    );
}

#[test]
fn manifest_that_is_not_a_manifest_is_rejected() {
    let (root, bad, _) = root_with_bad();
    let junk = bad.json(OCI_MANIFEST, &json!({"hello": "world"}));
    bad.set_index(&[junk.tagged("latest")]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", junk.file());
    assert!(
        matches!(
            rule,
            Rule::InvalidJson {
                what: "image manifest",
                ..
            }
        ),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

#[test]
fn manifest_with_schema_version_1_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let m = bad.json(
        OCI_MANIFEST,
        &json!({"schemaVersion": 1, "config": image.config.0, "layers": []}),
    );
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_rejected(&reg, "bad", m.file(), Rule::SchemaVersion(1));
}

// ---- digest grammar ---------------------------------------------------------

#[test]
fn unknown_digest_algorithm_is_rejected_naming_it() {
    let (root, bad, image) = root_with_bad();
    let md5 = image
        .manifest
        .with("digest", json!("md5:d41d8cd98f00b204e9800998ecf8427e"));
    bad.set_index(&[md5]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", "index.json");
    assert_eq!(
        rule,
        Rule::Digest(DigestError::UnsupportedAlgorithm("md5".into()))
    );
    assert!(
        reg.rejected[0].to_string().contains("\"md5\""),
        "{}",
        reg.rejected[0]
    );
    assert_served(&reg, "good");
}

#[test]
fn sha384_digest_is_rejected_as_unsupported() {
    let (root, bad, image) = root_with_bad();
    let d = image
        .manifest
        .with("digest", json!(format!("sha384:{}", "a".repeat(96))));
    bad.set_index(&[d]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::Digest(DigestError::UnsupportedAlgorithm("sha384".into())),
    );
}

#[test]
fn uppercase_hex_digest_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let upper = format!("sha256:{}", image.manifest.digest().hex().to_uppercase());
    bad.set_index(&[image.manifest.with("digest", json!(upper))]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", "index.json");
    assert!(
        matches!(
            rule,
            Rule::Digest(DigestError::NotLowercaseHex {
                algorithm: Algorithm::Sha256,
                ..
            })
        ),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

#[test]
fn digest_of_wrong_length_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let short = format!("sha256:{}", &image.manifest.digest().hex()[..63]);
    bad.set_index(&[image.manifest.with("digest", json!(short))]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::Digest(DigestError::WrongLength {
            algorithm: Algorithm::Sha256,
            expected: 64,
            found: 63,
        }),
    );
}

#[test]
fn bad_layer_digest_inside_a_manifest_is_rejected_against_the_manifest() {
    let (root, bad, image) = root_with_bad();
    let layer = image.layers[0].with("digest", json!(format!("sha256:{}", "A".repeat(64))));
    let m = bad.manifest(&image.config, &[layer]);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", m.file());
    assert!(
        matches!(
            rule,
            Rule::Digest(DigestError::NotLowercaseHex { found: 'A', .. })
        ),
        "{rule:?}"
    );
    assert_served(&reg, "good");
}

// ---- presence, size and content of blobs --------------------------------

#[test]
fn missing_layer_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.remove(image.layers[0].file());
    let reg = root.load();
    assert_rejected(&reg, "bad", image.layers[0].file(), Rule::Missing);
}

#[test]
fn missing_manifest_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.remove(image.manifest.file());
    let reg = root.load();
    assert_rejected(&reg, "bad", image.manifest.file(), Rule::Missing);
}

#[test]
fn missing_blobs_directory_is_rejected_against_the_blob() {
    let (root, bad, image) = root_with_bad();
    std::fs::remove_dir_all(bad.path("blobs")).unwrap();
    let reg = root.load();
    assert_rejected(&reg, "bad", image.manifest.file(), Rule::Missing);
}

#[test]
fn layer_bigger_than_its_descriptor_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.corrupt_grow(&image.layers[0]);
    let size = image.layers[0].size();
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::SizeMismatch {
            expected: size,
            actual: size + 1,
        },
    );
}

#[test]
fn layer_smaller_than_its_descriptor_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.corrupt_shrink(&image.layers[0]);
    let size = image.layers[0].size();
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::SizeMismatch {
            expected: size,
            actual: size - 1,
        },
    );
}

#[test]
fn manifest_bigger_or_smaller_than_its_descriptor_is_rejected() {
    for grow in [true, false] {
        let (root, bad, image) = root_with_bad();
        let size = image.manifest.size();
        let actual = if grow {
            bad.corrupt_grow(&image.manifest);
            size + 1
        } else {
            bad.corrupt_shrink(&image.manifest);
            size - 1
        };
        let reg = root.load();
        assert_rejected(
            &reg,
            "bad",
            image.manifest.file(),
            Rule::SizeMismatch {
                expected: size,
                actual,
            },
        );
    }
}

fn flipped_digest(bad: &Layout, d: &Desc) -> Digest {
    Digest::of_bytes(Algorithm::Sha256, &std::fs::read(bad.blob_path(d)).unwrap())
}

#[test]
fn manifest_with_wrong_content_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.corrupt_flip(&image.manifest);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.manifest.file(),
        Rule::DigestMismatch {
            expected: image.manifest.digest(),
            actual: flipped_digest(&bad, &image.manifest),
        },
    );
}

#[test]
fn config_with_wrong_content_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.corrupt_flip(&image.config);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.config.file(),
        Rule::DigestMismatch {
            expected: image.config.digest(),
            actual: flipped_digest(&bad, &image.config),
        },
    );
}

#[test]
fn layer_with_wrong_content_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.corrupt_flip(&image.layers[0]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::DigestMismatch {
            expected: image.layers[0].digest(),
            actual: flipped_digest(&bad, &image.layers[0]),
        },
    );
}

#[test]
fn nested_index_with_wrong_content_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let nested = bad.index(std::slice::from_ref(&image.manifest));
    bad.set_index(&[nested.tagged("latest")]);
    bad.corrupt_flip(&nested);
    let reg = root.load();
    let rule = rejection(&reg, "bad", nested.file());
    assert!(matches!(rule, Rule::DigestMismatch { .. }), "{rule:?}");
    assert_served(&reg, "good");
}

#[test]
fn descriptor_size_of_2_pow_53_is_out_of_range() {
    let (root, bad, image) = root_with_bad();
    let huge = image.layers[0].with("size", json!(1u64 << 53));
    let m = bad.manifest(&image.config, &[huge]);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_rejected(&reg, "bad", m.file(), Rule::SizeOutOfRange(1 << 53));
}

#[test]
fn descriptor_size_of_2_pow_53_minus_1_is_in_range_but_must_match() {
    let (root, bad, image) = root_with_bad();
    let big = image.layers[0].with("size", json!((1u64 << 53) - 1));
    let m = bad.manifest(&image.config, &[big]);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::SizeMismatch {
            expected: (1 << 53) - 1,
            actual: image.layers[0].size(),
        },
    );
}

#[test]
fn descriptors_disagreeing_on_a_blob_size_are_rejected() {
    let (root, bad, image) = root_with_bad();
    let wrong = image.layers[0].with("size", json!(image.layers[0].size() + 5));
    let m = bad.manifest(&image.config, &[image.layers[0].clone(), wrong]);
    bad.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        m.file(),
        Rule::ConflictingSizes {
            digest: image.layers[0].digest(),
            first: image.layers[0].size(),
            second: image.layers[0].size() + 5,
        },
    );
}

#[test]
fn blob_shared_by_two_manifests_is_hashed_once() {
    let root = Root::new();
    let app = root.layout("app");
    let config = app.config();
    let shared = app.blob(LAYER_GZIP, &[7u8; 4096]);
    let own = app.blob(LAYER_GZIP, b"own layer");
    let m1 = app.manifest(&config, std::slice::from_ref(&shared));
    let m2 = app.manifest(&config, &[shared.clone(), own.clone()]);
    app.set_index(&[m1.tagged("one"), m2.tagged("two")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = reg.applications.values().next().unwrap();
    assert_eq!(a.blobs.len(), 3);
    let expected = m1.size() + m2.size() + config.size() + shared.size() + own.size();
    assert_eq!(a.bytes_verified, expected);
    assert_eq!(reg.bytes_verified(), expected);
}

#[test]
fn manifest_listed_twice_is_hashed_once() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"layer");
    let nested = app.index(std::slice::from_ref(&image.manifest));
    app.set_index(&[image.tagged("a"), image.tagged("b"), nested.tagged("c")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = reg.applications.values().next().unwrap();
    assert_eq!(a.manifests.len(), 2);
    assert_eq!(
        a.bytes_verified,
        nested.size() + image.manifest.size() + image.config.size() + image.layers[0].size()
    );
}

#[test]
fn manifest_larger_than_the_limit_is_rejected() {
    let (root, bad, image) = root_with_bad();
    // Two layers: bigger than `good`'s one-layer manifest.
    let m = bad.manifest(
        &image.config,
        &[image.layers[0].clone(), image.layers[0].clone()],
    );
    bad.set_index(&[m.tagged("latest")]);
    let options = LoadOptions {
        max_manifest: m.size() - 1,
        ..LoadOptions::default()
    };
    let reg = root.load_with(&options);
    assert_rejected(
        &reg,
        "bad",
        m.file(),
        Rule::TooLarge {
            size: m.size(),
            limit: m.size() - 1,
        },
    );
}

#[test]
fn application_named_like_a_layout_file_is_found_in_its_namespace() {
    // `index.json` and `oci-layout` are valid repository name components;
    // as directories they do not make their parent a layout.
    let root = root();
    root.good("ns/index.json");
    root.good("ns/oci-layout");
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "ns/index.json");
    assert_served(&reg, "ns/oci-layout");
}

#[test]
fn more_descriptors_than_the_limit_is_rejected() {
    let root = root();
    let bad = root.layout("bad");
    let config = bad.config();
    let layers: Vec<_> = (0..10u8).map(|i| bad.blob(LAYER_GZIP, &[i])).collect();
    let m = bad.manifest(&config, &layers);
    bad.set_index(&[m.tagged("latest")]);
    let options = LoadOptions {
        max_descriptors: 8,
        ..LoadOptions::default()
    };
    let reg = root.load_with(&options);
    assert_rejected(&reg, "bad", m.file(), Rule::TooManyDescriptors(8));
}

// ---- file types ---------------------------------------------------------------

#[test]
fn blob_symlink_to_etc_passwd_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.symlink(image.layers[0].file(), "/etc/passwd");
    let reg = root.load();
    assert_rejected(&reg, "bad", image.layers[0].file(), Rule::Symlink);
}

#[test]
fn blob_symlink_to_another_applications_identical_blob_is_rejected() {
    let root = root();
    let good = root.layout("good2");
    let image = good.image(b"shared bytes");
    good.set_index(&[image.tagged("latest")]);
    let bad = root.layout("bad");
    let copy = bad.image(b"shared bytes");
    assert_eq!(copy.layers[0].digest(), image.layers[0].digest());
    bad.set_index(&[copy.tagged("latest")]);
    // Same content, so only the link itself is wrong.
    bad.symlink(copy.layers[0].file(), good.blob_path(&image.layers[0]));
    let reg = root.load();
    assert_rejected(&reg, "bad", copy.layers[0].file(), Rule::Symlink);
    assert_served(&reg, "good2");
}

#[test]
fn manifest_that_is_a_symlink_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let target = root.outside("manifest");
    std::fs::copy(bad.blob_path(&image.manifest), &target).unwrap();
    bad.symlink(image.manifest.file(), &target);
    let reg = root.load();
    assert_rejected(&reg, "bad", image.manifest.file(), Rule::Symlink);
}

#[test]
fn blobs_directory_that_is_a_symlink_is_rejected() {
    let (root, bad, _) = root_with_bad();
    let elsewhere = root.outside("blobs");
    std::fs::rename(bad.path("blobs"), &elsewhere).unwrap();
    bad.symlink("blobs", &elsewhere);
    let reg = root.load();
    assert_rejected(&reg, "bad", "blobs", Rule::Symlink);
}

#[test]
fn algorithm_directory_that_is_a_symlink_is_rejected() {
    let (root, bad, _) = root_with_bad();
    let elsewhere = root.outside("sha256");
    std::fs::rename(bad.path("blobs/sha256"), &elsewhere).unwrap();
    bad.symlink("blobs/sha256", &elsewhere);
    let reg = root.load();
    assert_rejected(&reg, "bad", "blobs/sha256", Rule::Symlink);
}

#[test]
fn application_directory_that_is_a_symlink_is_rejected() {
    let root = root();
    let real = Root::new();
    real.good("elsewhere");
    std::os::unix::fs::symlink(real.path().join("elsewhere"), root.path().join("bad")).unwrap();
    let reg = root.load();
    assert_rejected(&reg, "bad", "", Rule::Symlink);
}

#[test]
fn blob_that_is_a_directory_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.make_dir(image.layers[0].file());
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::NotRegularFile("directory"),
    );
}

#[test]
fn blob_that_is_a_fifo_is_rejected_without_hanging() {
    let (root, bad, image) = root_with_bad();
    bad.fifo(image.layers[0].file());
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.layers[0].file(),
        Rule::NotRegularFile("FIFO"),
    );
}

#[test]
fn manifest_that_is_a_fifo_is_rejected_without_hanging() {
    let (root, bad, image) = root_with_bad();
    bad.fifo(image.manifest.file());
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        image.manifest.file(),
        Rule::NotRegularFile("FIFO"),
    );
}

#[test]
fn blob_and_manifest_with_a_second_hard_link_are_accepted() {
    let (root, bad, image) = root_with_bad();
    bad.hardlink(image.layers[0].file(), root.outside("layer-second-name"));
    bad.hardlink(image.manifest.file(), root.outside("manifest-second-name"));
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "bad");
}

/// Whether the permission bits of `path` (mode 000) stop this process from
/// reading it: not when running as root or with CAP_DAC_OVERRIDE.
fn permissions_bite(path: &Path) -> bool {
    std::fs::File::open(path).is_err()
}

#[test]
fn unreadable_blob_is_rejected_unless_permissions_do_not_apply() {
    let (root, bad, image) = root_with_bad();
    bad.chmod(image.layers[0].file(), 0o000);
    let bites = permissions_bite(&bad.blob_path(&image.layers[0]));
    let reg = root.load();
    if bites {
        let rule = rejection(&reg, "bad", image.layers[0].file());
        assert!(
            matches!(&rule, Rule::Io(msg) if msg.contains("ermission denied")),
            "{rule:?}"
        );
        assert_served(&reg, "good");
    } else {
        // Root (or CAP_DAC_OVERRIDE) reads mode-000 files: the content is
        // intact, so the application is served.
        eprintln!("running with permission override: mode 000 does not stop reads");
        assert_clean(&reg);
        assert_served(&reg, "bad");
    }
}

#[test]
fn unreadable_index_json_is_rejected_unless_permissions_do_not_apply() {
    let (root, bad, _) = root_with_bad();
    bad.chmod("index.json", 0o000);
    let bites = permissions_bite(&bad.path("index.json"));
    let reg = root.load();
    if bites {
        let rule = rejection(&reg, "bad", "index.json");
        assert!(matches!(rule, Rule::Io(_)), "{rule:?}");
        assert_served(&reg, "good");
    } else {
        assert_clean(&reg);
        assert_served(&reg, "bad");
    }
}

// ---- depth ----------------------------------------------------------------

/// Writes `levels` indexes nested in each other above `image`'s manifest;
/// returns the outermost and the innermost index.
fn index_chain(app: &Layout, image: &Image, levels: usize) -> (Desc, Desc) {
    let mut inner = app.index(std::slice::from_ref(&image.manifest));
    let innermost = inner.clone();
    for _ in 1..levels {
        inner = app.index(&[inner]);
    }
    (inner, innermost)
}

#[test]
fn default_max_depth_is_16() {
    assert_eq!(LoadOptions::default().max_depth, 16);
}

#[test]
fn sixteen_nested_indexes_are_accepted() {
    // index.json is level 0; LoadOptions::max_depth (16) is the deepest
    // level an index may sit at below it, so 16 nested indexes are fine and
    // the manifests the deepest one lists are at level 17.
    let root = root();
    let app = root.layout("deep");
    let image = app.image(b"deep layer");
    let (outer, _) = index_chain(&app, &image, 16);
    app.set_index(&[outer.tagged("latest")]);
    let reg = root.load();
    assert_clean(&reg);
    assert_served(&reg, "deep");
    let a = reg
        .applications
        .values()
        .find(|a| a.name.as_str() == "deep")
        .unwrap();
    assert_eq!(a.manifests.len(), 17);
}

#[test]
fn seventeen_nested_indexes_are_rejected() {
    let root = root();
    let app = root.layout("bad");
    let image = app.image(b"deep layer");
    // The innermost index of 17 sits at level 17.
    let (outer, innermost) = index_chain(&app, &image, 17);
    app.set_index(&[outer.tagged("latest")]);
    let reg = root.load();
    assert_rejected(&reg, "bad", innermost.file(), Rule::TooDeep(16));
}

#[test]
fn max_depth_option_is_honoured_at_its_boundary() {
    for (levels, ok) in [(3, true), (4, false)] {
        let root = root();
        let app = root.layout("bad");
        let image = app.image(b"deep layer");
        let (outer, innermost) = index_chain(&app, &image, levels);
        app.set_index(&[outer.tagged("latest")]);
        let options = LoadOptions {
            max_depth: 3,
            ..LoadOptions::default()
        };
        let reg = root.load_with(&options);
        if ok {
            assert_clean(&reg);
        } else {
            assert_rejected(&reg, "bad", innermost.file(), Rule::TooDeep(3));
        }
    }
}

// ---- tags -----------------------------------------------------------------

#[test]
fn duplicate_tags_are_rejected() {
    let (root, bad, image) = root_with_bad();
    let other = bad.image(b"other layer");
    bad.set_index(&[image.tagged("1.0"), other.tagged("1.0")]);
    let reg = root.load();
    assert_rejected(&reg, "bad", "index.json", Rule::DuplicateTag("1.0".into()));
}

#[test]
fn duplicate_tag_on_the_same_manifest_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index(&[image.tagged("1.0"), image.tagged("1.0")]);
    let reg = root.load();
    assert_rejected(&reg, "bad", "index.json", Rule::DuplicateTag("1.0".into()));
}

#[test]
fn invalid_tag_annotation_is_rejected() {
    let (root, bad, image) = root_with_bad();
    bad.set_index(&[image.tagged("not a tag!")]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::InvalidTag(NameError::InvalidTag("not a tag!".into())),
    );
}

#[test]
fn tag_longer_than_128_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let long = "a".repeat(129);
    bad.set_index(&[image.tagged(&long)]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        "index.json",
        Rule::InvalidTag(NameError::InvalidTag(long[..80].into())),
    );
}

#[test]
fn full_reference_ref_name_gives_the_tag_after_the_last_colon() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"x");
    let other = app.image(b"y");
    app.set_index(&[
        image.tagged("registry.example/app:1.0"),
        other.tagged("localhost:5000/team/app:edge"),
    ]);
    let reg = root.load();
    assert_clean(&reg);
    let a = reg.applications.values().next().unwrap();
    let tags: Vec<_> = a.tags.keys().map(|t| t.as_str()).collect();
    assert_eq!(tags, ["1.0", "edge"]);
    assert_eq!(a.tags.values().next().unwrap(), &image.manifest.digest());
}

#[test]
fn untagged_manifests_are_served_by_digest_only() {
    let root = Root::new();
    let app = root.layout("app");
    let image = app.image(b"x");
    app.set_index(std::slice::from_ref(&image.manifest));
    let reg = root.load();
    assert_clean(&reg);
    let a = reg.applications.values().next().unwrap();
    assert!(a.tags.is_empty());
    assert!(a.manifests.contains_key(&image.manifest.digest()));
}

// ---- non-distributable layers ----------------------------------------------

#[test]
fn non_distributable_layer_absent_on_disk_is_accepted_and_not_served() {
    let root = root();
    let app = root.layout("app");
    let config = app.config();
    let local = app.blob(LAYER_GZIP, b"local");
    let foreign = app
        .blob(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            b"foreign",
        )
        .with("urls", json!(["https://example.com/layer.tar.gz"]));
    app.remove(foreign.file());
    let m = app.manifest(&config, &[local.clone(), foreign.clone()]);
    app.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(a.blobs.contains_key(&local.digest()));
    assert!(!a.blobs.contains_key(&foreign.digest()));
}

#[test]
fn non_distributable_layer_present_on_disk_is_verified() {
    let root = root();
    let app = root.layout("app");
    let config = app.config();
    let foreign = app
        .blob(LAYER_GZIP, b"foreign")
        .with("urls", json!(["https://example.com/layer.tar.gz"]));
    let m = app.manifest(&config, std::slice::from_ref(&foreign));
    app.set_index(&[m.tagged("latest")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(a.blobs.contains_key(&foreign.digest()));

    // And when present but wrong, it rejects the application.
    app.corrupt_flip(&foreign);
    let reg = root.load();
    let rule = rejection(&reg, "app", foreign.file());
    assert!(matches!(rule, Rule::DigestMismatch { .. }), "{rule:?}");
    assert_served(&reg, "good");
}

#[test]
fn layer_without_urls_absent_on_disk_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let with_empty_urls = image.layers[0].with("urls", json!([]));
    let m = bad.manifest(&image.config, &[with_empty_urls]);
    bad.set_index(&[m.tagged("latest")]);
    bad.remove(image.layers[0].file());
    let reg = root.load();
    assert_rejected(&reg, "bad", image.layers[0].file(), Rule::Missing);
}

// ---- artifacts and referrers ------------------------------------------------

fn artifact(app: &Layout, subject: Option<&Desc>) -> Desc {
    let payload = app.blob("application/spdx+json", br#"{"spdxVersion":"SPDX-2.3"}"#);
    let mut extra = json!({
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    });
    if let Some(s) = subject {
        extra["subject"] = s.0.clone();
    }
    app.artifact("application/vnd.example.sbom.v1+json", &[payload], extra)
}

#[test]
fn artifact_with_empty_config_is_accepted() {
    let root = root();
    let app = root.layout("app");
    let a = artifact(&app, None);
    app.set_index(&[a.tagged("sbom")]);
    let reg = root.load();
    assert_clean(&reg);
    let application = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    let m = &application.manifests[&a.digest()];
    // No subject: nothing for the referrers API to report about it.
    assert_eq!(m.subject(), None);
    assert!(m.referring.is_none());
    let empty = Digest::of_bytes(Algorithm::Sha256, b"{}");
    assert!(application.blobs.contains_key(&empty));
}

#[test]
fn manifest_with_present_subject_fills_referrers() {
    let root = root();
    let app = root.layout("app");
    let image = app.image(b"the image");
    let a = artifact(&app, Some(&image.manifest));
    app.set_index(&[image.tagged("latest"), a.clone()]);
    let reg = root.load();
    assert_clean(&reg);
    assert!(reg.orphans.is_empty());
    let application = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    let referring = application.manifests[&a.digest()]
        .referring
        .as_deref()
        .expect("has a subject");
    assert_eq!(referring.subject, image.manifest.digest());
    assert_eq!(
        referring.artifact_type.as_deref(),
        Some("application/vnd.example.sbom.v1+json")
    );
    assert!(referring
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("org.opencontainers.image.created"));
    assert_eq!(
        application.referrers[&image.manifest.digest()],
        vec![a.digest()]
    );
}

#[test]
fn subject_reached_only_through_a_referrer_is_verified() {
    let root = root();
    let bad = root.layout("bad");
    let image = bad.image(b"the image");
    let a = artifact(&bad, Some(&image.manifest));
    // index.json lists only the artifact; the image is reached through subject.
    bad.set_index(&[a.tagged("sbom")]);
    let reg = root.load();
    assert_clean(&reg);
    let application = &reg.applications[&ir_oci::RepoName::parse("bad").unwrap()];
    assert!(application.manifests.contains_key(&image.manifest.digest()));
    assert!(application.blobs.contains_key(&image.layers[0].digest()));

    bad.corrupt_flip(&image.layers[0]);
    let reg = root.load();
    let rule = rejection(&reg, "bad", image.layers[0].file());
    assert!(matches!(rule, Rule::DigestMismatch { .. }), "{rule:?}");
    assert_served(&reg, "good");
}

#[test]
fn manifest_with_absent_subject_is_accepted_and_listed_as_referrer() {
    let root = root();
    let app = root.layout("app");
    let image = app.image(b"the image, pushed elsewhere");
    app.remove(image.manifest.file());
    let a = artifact(&app, Some(&image.manifest));
    app.set_index(&[a.tagged("sbom")]);
    let reg = root.load();
    assert_clean(&reg);
    let application = &reg.applications[&ir_oci::RepoName::parse("app").unwrap()];
    assert!(!application.manifests.contains_key(&image.manifest.digest()));
    assert_eq!(
        application.referrers[&image.manifest.digest()],
        vec![a.digest()]
    );
    // The image's config and layer are then reached by nothing.
    assert_eq!(reg.orphans.len(), 2);
}

#[test]
fn subject_with_invalid_digest_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let subject = image
        .manifest
        .with("digest", json!("md5:d41d8cd98f00b204e9800998ecf8427e"));
    let a = artifact(&bad, Some(&subject));
    bad.set_index(&[image.tagged("latest"), a.clone()]);
    let reg = root.load();
    assert_rejected(
        &reg,
        "bad",
        a.file(),
        Rule::Digest(DigestError::UnsupportedAlgorithm("md5".into())),
    );
}

// ---- Docker schema 2 --------------------------------------------------------

#[test]
fn docker_schema2_manifest_and_manifest_list_are_accepted() {
    let root = root();
    let app = root.layout("docker");
    let config = app.json(
        DOCKER_CONFIG,
        &json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}),
    );
    let layer = app.blob(DOCKER_LAYER, b"docker layer");
    let manifest = app.json(
        DOCKER_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.0,
            "layers": [layer.0],
        }),
    );
    let list = app.json(
        DOCKER_MANIFEST_LIST,
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                manifest.with("platform", json!({"architecture": "amd64", "os": "linux", "features": ["sse4"]})).0,
            ],
        }),
    );
    app.set_index(&[manifest.tagged("single"), list.tagged("multi")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = &reg.applications[&ir_oci::RepoName::parse("docker").unwrap()];
    assert_eq!(
        &*a.manifests[&manifest.digest()].media_type,
        DOCKER_MANIFEST
    );
    assert_eq!(
        &*a.manifests[&list.digest()].media_type,
        DOCKER_MANIFEST_LIST
    );
    assert_eq!(a.blobs.len(), 2);
}

#[test]
fn multi_platform_oci_index_is_accepted() {
    let root = Root::new();
    let app = root.layout("multi");
    let amd = app.image(b"amd64");
    let arm = app.image(b"arm64");
    let idx = app.index(&[
        amd.manifest.platform("linux", "amd64"),
        arm.manifest.platform("linux", "arm64"),
    ]);
    app.set_index(&[idx.tagged("latest"), idx.tagged("1.0")]);
    let reg = root.load();
    assert_clean(&reg);
    let a = reg.applications.values().next().unwrap();
    assert_eq!(a.manifests.len(), 3);
    assert_eq!(a.blobs.len(), 3); // one shared config, two layers
    assert!(a.tags.values().all(|d| *d == idx.digest()));
}

// ---- orphans ------------------------------------------------------------------

#[test]
fn orphan_files_are_listed_and_not_served() {
    let root = Root::new();
    let app = root.good("app");
    let stray = app.blob(LAYER_GZIP, b"nobody points at me");
    app.write("blobs/sha256/not-a-digest", b"junk");
    app.write("blobs/md5/d41d8cd98f00b204e9800998ecf8427e", b"");
    let reg = root.load();
    assert_clean(&reg);
    let files: Vec<_> = reg.orphans.iter().map(|o| o.file.clone()).collect();
    assert_eq!(
        files,
        [
            PathBuf::from("blobs/md5"),
            stray.file(),
            PathBuf::from("blobs/sha256/not-a-digest"),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert!(reg.orphans.iter().all(|o| o.application == "app"));
    let a = reg.applications.values().next().unwrap();
    assert!(!a.blobs.contains_key(&stray.digest()));
    assert!(!a.manifests.contains_key(&stray.digest()));
}

#[test]
fn orphans_of_a_rejected_application_are_not_reported() {
    let (root, bad, image) = root_with_bad();
    bad.blob(LAYER_GZIP, b"stray");
    bad.corrupt_flip(&image.layers[0]);
    let reg = root.load();
    rejection(&reg, "bad", image.layers[0].file());
    assert!(reg.orphans.is_empty());
}

// ---- names and namespaces ---------------------------------------------------

#[test]
fn application_in_a_namespace_is_served_with_its_path() {
    let root = root();
    root.good("team/app");
    root.good("team/sub/tool");
    let reg = root.load();
    assert_clean(&reg);
    let names: Vec<_> = reg.applications.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["good", "team/app", "team/sub/tool"]);
}

#[test]
fn invalid_application_names_are_rejected() {
    for name in [
        "App",
        "a..b",
        "with space",
        "per%cent",
        "team/Bad",
        "-x",
        "a___b",
    ] {
        let root = root();
        root.good(name);
        let reg = root.load();
        let rule = rejection(&reg, name, "");
        assert!(
            matches!(rule, Rule::InvalidName(NameError::InvalidName(ref n)) if n == name),
            "{name}: {rule:?}"
        );
        assert_served(&reg, "good");
    }
}

#[test]
fn directories_without_layouts_and_stray_files_are_ignored() {
    let root = root();
    std::fs::create_dir_all(root.path().join("empty/deeper")).unwrap();
    std::fs::write(root.path().join("README.md"), b"hi").unwrap();
    let reg = root.load();
    assert_clean(&reg);
    assert_eq!(reg.applications.len(), 1);
    let ignored: Vec<_> = reg.ignored.iter().map(|(p, _)| p.clone()).collect();
    assert!(
        ignored.contains(&root.path().join("README.md")),
        "{ignored:?}"
    );
    assert!(ignored.contains(&root.path().join("empty")), "{ignored:?}");
}

#[test]
fn layout_with_an_empty_index_is_served_with_nothing_in_it() {
    let root = root();
    let app = root.layout("empty");
    app.set_index(&[]);
    std::fs::remove_dir_all(app.path("blobs")).unwrap();
    let reg = root.load();
    assert_clean(&reg);
    let a = &reg.applications[&ir_oci::RepoName::parse("empty").unwrap()];
    assert!(a.tags.is_empty() && a.manifests.is_empty() && a.blobs.is_empty());
}

/// A load reports its progress: every application found is counted as
/// checked, and the large blobs' bytes checked reach their total.
#[test]
fn progress_counts_applications_and_large_blob_bytes() {
    let root = Root::new();
    for name in ["one", "two", "three"] {
        root.good(name);
    }
    let big = root.layout("big");
    let image = big.image(&vec![5u8; 1 << 20]);
    big.set_index(&[image.tagged("latest")]);
    let progress = std::sync::Arc::new(ir_oci::LoadProgress::default());
    let options = LoadOptions {
        progress: Some(progress.clone()),
        ..LoadOptions::default()
    };
    let registry = ir_oci::load(root.path(), &options).unwrap();
    assert_eq!(registry.applications.len(), 4);
    let p = progress.snapshot();
    assert_eq!(p.applications_total, 4);
    assert_eq!(p.applications_done, 4);
    assert_eq!(p.bytes_total, 1 << 20);
    assert_eq!(p.bytes_done, 1 << 20);
}

// ---- JSON text is UTF-8 throughout -------------------------------------

/// `doc` serialised, with one more field whose string holds a byte that is
/// not UTF-8 (serde_json skips unknown fields without validating them).
fn with_invalid_utf8_field(doc: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(doc).unwrap();
    assert_eq!(bytes.pop(), Some(b'}'));
    bytes.extend_from_slice(b",\"x-unknown\":\"caf\xe9\"}");
    bytes
}

fn assert_invalid_json(reg: &ir_oci::Registry, file: impl AsRef<Path>, expected: &str) {
    let rule = rejection(reg, "bad", file);
    assert!(
        matches!(&rule, Rule::InvalidJson { what, detail } if *what == expected && detail.contains("UTF-8")),
        "{rule:?}"
    );
    assert_served(reg, "good");
}

#[test]
fn index_json_with_invalid_utf8_in_an_unknown_field_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.tagged("latest").0]});
    bad.write("index.json", &with_invalid_utf8_field(&doc));
    assert_invalid_json(&root.load(), "index.json", "image index");
}

#[test]
fn manifest_with_invalid_utf8_in_an_unknown_field_is_rejected() {
    let (root, bad, image) = root_with_bad();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": image.config.0,
        "layers": [image.layers[0].0],
    });
    let manifest = bad.blob(OCI_MANIFEST, &with_invalid_utf8_field(&doc));
    bad.set_index(&[manifest.tagged("latest")]);
    assert_invalid_json(&root.load(), manifest.file(), "image manifest");
}

#[test]
fn oci_layout_with_invalid_utf8_in_an_unknown_field_is_rejected() {
    let (root, bad, _) = root_with_bad();
    bad.write(
        "oci-layout",
        &with_invalid_utf8_field(&json!({"imageLayoutVersion": "1.0.0"})),
    );
    assert_invalid_json(&root.load(), "oci-layout", "oci-layout");
}
