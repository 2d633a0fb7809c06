//! # ir-server
//!
//! A pull-only OCI registry that loads a root of OCI image layouts,
//! verifies every reachable byte (with [`ir_oci`]), and serves only what
//! verified over the OCI Distribution pull API on plain HTTP, TLS or RA-TLS.
//!
//! - [`cli`], [`config_file`], [`config`]: the command line, `--config`
//!   files, and the validated configuration built from them;
//! - [`app`]: start-up ([`app::App::build`]) and the server's life
//!   ([`app::App::run`]);
//! - [`transport`]: the HTTP server on a connection, accept loops per
//!   transport (plain, TLS, RA-TLS), certificates, client access, PROXY
//!   protocol;
//! - [`snapshot`]: the served snapshot: catalog, (re)loading through the
//!   signature policy gate, watching the root, load progress;
//! - [`delivery`]: sending only verified blob bytes (hashed streams, chunk
//!   seals, verified copies in memory) and the response body type;
//! - [`api`]: routing, handlers, errors, ranges, access log;
//! - [`auth`]: registry authentication (`--htpasswd`, tokens, external issuers);
//! - [`audit`]: delivery receipts (`--receipts`) and events (`--events-url`);
//! - [`metrics`]: Prometheus metrics, `/status`, and the metrics listener;
//! - [`process`]: signals, systemd notification, memory, logging, and
//!   `ir-server probe URL`.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod delivery;
pub mod metrics;
pub mod process;
pub mod snapshot;
pub mod transport;
