//! Signs one tag of an OCI layout keyless, the way `cosign sign` does with
//! a Fulcio certificate and a Rekor entry, but with a new test CA and a new
//! test Rekor key (written to OUT_DIR/fulcio.pem and OUT_DIR/rekor.pub):
//! the `sha256-<hex>.sig` tag (or, with `bundle`, a sigstore bundle
//! referrer) is added to the layout. For end-to-end tests.
//!
//!     keyless-sign LAYOUT TAG REFERENCE OUT_DIR EMAIL ISSUER [tag|bundle]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ir_testkit::keyless::{keyless_bundle, keyless_sign, Fulcio, Rekor, Sign};
use ir_testkit::{Alg, Desc, Layout};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, tag, reference, out, email, issuer, form) = match args.as_slice() {
        [_, d, t, r, o, e, i] => (d, t, r, o, e, i, "tag"),
        [_, d, t, r, o, e, i, f] if f == "tag" || f == "bundle" => (d, t, r, o, e, i, f.as_str()),
        _ => {
            eprintln!("usage: keyless-sign LAYOUT TAG REFERENCE OUT_DIR EMAIL ISSUER [tag|bundle]");
            std::process::exit(2);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let fulcio = Fulcio::new("ir-testkit fulcio", now);
    let rekor = Rekor::new();
    let out = Path::new(out);
    std::fs::create_dir_all(out).expect("create OUT_DIR");
    fulcio.write(out, "fulcio.pem");
    rekor.0.write_public(out, "rekor.pub");
    let layout = Layout {
        dir: dir.into(),
        alg: Alg::Sha256,
    };
    let text = std::fs::read(layout.dir.join("index.json")).expect("read index.json");
    let mut index: Value = serde_json::from_slice(&text).expect("index.json is JSON");
    let entry = index["manifests"]
        .as_array()
        .and_then(|m| {
            m.iter().find(|e| {
                e["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)
            })
        })
        .cloned()
        .unwrap_or_else(|| {
            eprintln!("keyless-sign: no tag {tag} in {dir}");
            std::process::exit(1);
        });
    let sign = if form == "bundle" {
        keyless_bundle
    } else {
        keyless_sign
    };
    let sig = sign(
        &layout,
        &Desc(entry),
        reference,
        &fulcio,
        &rekor,
        &Sign::new(email, issuer, now),
    );
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(sig.0);
    layout.write("index.json", &serde_json::to_vec(&index).expect("JSON"));
}
