//! ir-server's integration tests: the real server on 127.0.0.1. One test binary per
//! crate (each module was a binary of its own, each linking the whole
//! stack); run one module with `cargo test -p ir-server --test tests MODULE::`.

mod util;

mod api;
mod auth;
mod auth_reload;
mod check;
mod config_file;
mod fail_closed;
mod hostile;
mod integrity;
mod keys;
mod metrics;
mod oci_client;
mod proxy;
mod ratls;
mod ratls_sighup;
mod readme_help;
mod receipts;
mod reload;
mod signatures;
mod tls;
