//! ir-client's integration tests: ir-client against real servers on 127.0.0.1. One test binary per
//! crate (each module was a binary of its own, each linking the whole
//! stack); run one module with `cargo test -p ir-client --test tests MODULE::`.

mod util;

mod auth;
mod browse;
mod cli;
mod errors;
mod ir_server_ratls;
mod pull;
mod ratls;
mod serve;
mod signatures;
mod sync;
