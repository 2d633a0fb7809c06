//! # ir-server
//!
//! A pull-only OCI registry that loads a root of OCI image layouts,
//! verifies every reachable byte (with [`ir_oci`]), and serves only what
//! verified over the OCI Distribution pull API on plain HTTP, TLS or RA-TLS.
//!
//! - [`cli`]: the command line;
//! - [`catalog`]: the served snapshot;
//! - [`delivery`]: sending only verified blob bytes (hashed streams, chunk
//!   seals, verified copies in memory);
//! - [`api`]: routing, handlers, errors, ranges;
//! - [`client_access`]: client certificates for TLS (`--client-ca`) and the
//!   access map (`--access-map`);
//! - [`auth`]: registry authentication (`--htpasswd`, tokens);
//! - [`server`]: HTTP/1.1 and HTTP/2 on a connection, limits, shutdown;
//! - [`transport`]: accept loops per transport; [`cert_store`]: the
//!   server's certificate and key, reloadable;
//! - [`metrics`]: Prometheus metrics and the metrics listener;
//! - [`status`]: the `/status` document for operators;
//! - [`probe`]: `ir-server probe URL`, the container health check;
//! - [`load_progress`]: progress of a long first load (log, gauges, systemd);
//! - [`app`]: wiring it all together for the binary.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod cert_store;
pub mod cli;
pub mod client_access;
pub mod config;
pub mod config_file;
pub mod delivery;
pub mod load_progress;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod probe;
pub mod reload;
pub mod sd_notify;
pub mod server;
pub mod signals;
pub mod status;
pub mod transport;
pub mod trust;
pub mod watch;
