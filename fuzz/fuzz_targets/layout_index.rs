//! Arbitrary bytes as `index.json` of an application, loaded and verified
//! with `ir_oci::load` (structure, nested documents, blobs), beside a
//! valid application that must stay served.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = common::scratch().lock().unwrap();
    common::reset(&s.app);
    std::fs::write(s.app.join("index.json"), data).unwrap();
    common::load_and_check(&s);
});
