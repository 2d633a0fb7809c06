//! Signs every tag of every OCI layout under a root the way `cosign sign`
//! does (a `sha256-<hex>.sig` tag with a simple-signing layer), with a new
//! P-256 key whose public key is written to KEY_OUT. For benchmarks: a
//! signed copy of a large generated registry in seconds.
//!
//!     cosign-sign-root ROOT HOST KEY_OUT
//!
//! Each image is signed as `HOST/APPLICATION:TAG`.

use std::path::{Path, PathBuf};

use ir_testkit::cosign::{cosign_sign, Key};
use ir_testkit::{Alg, Desc, Layout};
use serde_json::Value;

fn layouts(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("index.json").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        layouts(&d, out);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, host, key_out] = args.as_slice() else {
        eprintln!("usage: cosign-sign-root ROOT HOST KEY_OUT");
        std::process::exit(2);
    };
    let root = Path::new(root);
    let key = Key::p256();
    std::fs::write(key_out, key.public_pem()).expect("write the public key");
    let mut found = Vec::new();
    layouts(root, &mut found);
    let mut signed = 0usize;
    for dir in found {
        let name = dir
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        let layout = Layout {
            dir: dir.clone(),
            alg: Alg::Sha256,
        };
        let text = std::fs::read(dir.join("index.json")).expect("read index.json");
        let mut index: Value = serde_json::from_slice(&text).expect("index.json is JSON");
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let mut added = Vec::new();
        for entry in &entries {
            let Some(tag) = entry["annotations"]["org.opencontainers.image.ref.name"].as_str()
            else {
                continue;
            };
            let d = Desc(entry.clone());
            added.push(cosign_sign(&layout, &d, &format!("{host}/{name}:{tag}"), &key).0);
            signed += 1;
        }
        index["manifests"]
            .as_array_mut()
            .expect("manifests")
            .extend(added);
        layout.write("index.json", &serde_json::to_vec(&index).expect("JSON"));
    }
    println!("{signed}");
}
