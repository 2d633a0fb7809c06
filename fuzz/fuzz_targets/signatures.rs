//! What a signature policy reads from the untrusted root: signature
//! manifests, cosign payloads, in-toto statements and docker references;
//! and the signature cache's file. No panic; a docker reference that
//! parses is normalized (parsing its text again gives the same reference),
//! bounded, and identity matching against it never panics; a cache that
//! reads is written back as bytes that read as the same cache.
#![no_main]

use ir_trust::{payload, signatures, DockerReference, Memo, SignedIdentity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = signatures::artifact_kind(data);
    let _ = payload::simple_signing(data);
    let _ = payload::in_toto(data);
    if let Ok(memo) = Memo::from_bytes(data) {
        let again = Memo::from_bytes(&memo.to_bytes()).expect("a written cache reads");
        assert_eq!(again.len(), memo.len());
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = signatures::cosign_tag_target(s);
    if let Ok(r) = DockerReference::parse(s) {
        let text = r.to_string();
        assert!(text.len() <= 2048, "{text}");
        assert_eq!(DockerReference::parse(&text).as_ref(), Ok(&r), "{s:?} -> {text}");
        let image = DockerReference::parse("registry.test/app:1").unwrap();
        for identity in [
            SignedIdentity::MatchExact,
            SignedIdentity::MatchRepoDigestOrExact,
            SignedIdentity::MatchRepository,
            SignedIdentity::RemapIdentity {
                prefix: "registry.test".into(),
                signed_prefix: r.host().into(),
            },
        ] {
            let _ = identity.matches(&image, &r);
            let _ = identity.matches(&r, &image);
        }
    }
});
