//! ir-sign's integration tests: keys in cosign's format, signing in the
//! three forms and verifying them, refusals of tampered, foreign and
//! misdirected signatures, and the command line's exit status. One test
//! binary per crate; run one module with `cargo test -p ir-sign --test tests MODULE::`.

mod util;

mod cli;
mod keys;
mod sign_verify;
