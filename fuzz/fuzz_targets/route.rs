//! Request path routing: no panic, and every name and reference a route
//! carries is valid and free of traversal.
#![no_main]

use ir_server::api::route::{parse, Route};
use libfuzzer_sys::fuzz_target;

fn clean(s: &str) {
    assert!(
        !s.contains("..") && !s.contains('%') && !s.contains('\\'),
        "{s:?}"
    );
    assert!(
        !s.starts_with('/') && !s.contains("//") && !s.contains('\0'),
        "{s:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    match parse(path) {
        Ok(Route::Manifest(name, reference)) => {
            clean(name.as_str());
            assert!(!reference.contains('/'), "{reference:?}");
        }
        Ok(Route::Blob(name, digest)) | Ok(Route::Referrers(name, digest)) => {
            clean(name.as_str());
            assert!(!digest.contains('/'), "{digest:?}");
        }
        Ok(Route::Upload(name)) | Ok(Route::Tags(name)) => clean(name.as_str()),
        Ok(Route::Base) | Ok(Route::Catalog) | Err(_) => {}
    }
});
