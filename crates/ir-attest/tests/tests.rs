//! ir-attest's integration tests: attestation against real and generated tokens. One test binary per
//! crate (each module was a binary of its own, each linking the whole
//! stack); run one module with `cargo test -p ir-attest --test tests MODULE::`.

mod ear;
mod emulate;
mod fixtures;
mod oracles;
mod token;
mod veraison;
