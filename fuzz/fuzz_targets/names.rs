//! Digests, repository names, tags, references and ref.name annotations:
//! no panic, and whatever parses is canonical (round-trips exactly) and
//! free of path tricks.
#![no_main]

use ir_oci::{Digest, Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fn no_path_tricks(s: &str) {
    assert!(!s.contains(".."), "{s:?}");
    assert!(
        !s.contains('\\') && !s.contains('%') && !s.contains('\0'),
        "{s:?}"
    );
    assert!(!s.starts_with('/') && !s.contains("//"), "{s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(&*d.text(), s);
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert!(d
            .hex()
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        let path = d.blob_path();
        assert_eq!(path.matches('/').count(), 2, "{path}");
        no_path_tricks(&path);
    }
    if let Ok(n) = RepoName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert!(n.as_str().len() <= ir_oci::name::MAX_NAME_LEN);
        assert!(!n.as_str().bytes().any(|c| c.is_ascii_uppercase()));
        no_path_tricks(n.as_str());
    }
    if let Ok(t) = Tag::parse(s) {
        assert_eq!(t.as_str(), s);
        assert!(t.as_str().len() <= ir_oci::name::MAX_TAG_LEN);
        // `..` inside a tag is valid (`a..b`); a tag is never a path: no
        // `/`, `\`, `%` or NUL, and it cannot start with `.`.
        assert!(!t.as_str().starts_with('.'), "{s:?}");
        assert!(!s.contains(['/', '\\', '%', '\0', ':']), "{s:?}");
    }
    if let Ok(t) = Tag::from_ref_name(s) {
        assert!(s.ends_with(t.as_str()));
        assert!(Tag::parse(t.as_str()).is_ok());
    }
    match Reference::parse(s) {
        Ok(Reference::Tag(t)) => assert_eq!(t.as_str(), s),
        Ok(Reference::Digest(d)) => assert_eq!(&*d.text(), s),
        Err(_) => {}
    }
});
