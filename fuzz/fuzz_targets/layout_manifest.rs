//! Arbitrary bytes as a manifest or nested index blob (stored under its
//! true digest, so that parsing and verification past the digest check is
//! exercised), referenced from `index.json` with a media type chosen by
//! the first byte.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, doc)) = data.split_first() else {
        return;
    };
    let media_type = [
        common::OCI_MANIFEST,
        common::OCI_INDEX,
        common::DOCKER_MANIFEST,
        common::DOCKER_LIST,
    ][usize::from(selector % 4)];
    let s = common::scratch().lock().unwrap();
    common::reset(&s.app);
    let hex = common::write_extra_blob(&s.app, doc);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"sha256:{hex}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"fuzz"}}}}]}}"#,
        doc.len()
    );
    std::fs::write(s.app.join("index.json"), index).unwrap();
    common::load_and_check(&s);
});
