//! ir-notation's integration tests: notation's published vectors, generated
//! chains and envelopes, and trust policy rules. One test binary per crate;
//! run one module with `cargo test -p ir-notation --test tests MODULE::`.

use ir_notation::test_util as util;

mod generated;
mod policy;
mod vectors;
