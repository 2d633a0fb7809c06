//! ir-server's integration tests: the real server on 127.0.0.1. One test binary per
//! crate (each module was a binary of its own, each linking the whole
//! stack); run one module with `cargo test -p ir-server --test tests MODULE::`.

mod util;

mod api;
mod auth;
mod check;
mod config_file;
mod fail_closed;
mod hostile;
mod integrity;
mod oci_client;
mod proxy;
mod ratls;
mod ratls_sighup;
mod readme_help;
mod reload;
mod signatures;
mod tls;

// `metrics.rs` is a test binary of its own: it asserts on the process-wide
// metrics registry, which the other modules' servers would move meanwhile.
