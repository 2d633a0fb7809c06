//! `Range` header evaluation: no panic, and a partial answer always lies
//! inside the content.
#![no_main]

use ir_server::api::range::{evaluate, RangeOutcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (size, header) = data.split_at(8);
    // Sizes up to 2^53-1, the largest a verified blob can have.
    let size = u64::from_le_bytes(size.try_into().unwrap()) & ((1 << 53) - 1);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    match evaluate(header, size) {
        RangeOutcome::Partial { start, end } => {
            assert!(start <= end, "{header:?} {size}");
            assert!(end < size, "{header:?} {size}: {start}-{end}");
        }
        RangeOutcome::Unsatisfiable => {
            assert!(header.trim().starts_with("bytes="));
        }
        RangeOutcome::Full => {}
    }
});
