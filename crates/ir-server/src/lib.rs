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
//! - [`server`]: HTTP/1.1 and HTTP/2 on a connection, limits, shutdown;
//! - [`transport`]: accept loops per transport; [`cert_store`]: the
//!   server's certificate and key, reloadable;
//! - [`metrics`]: Prometheus metrics and the metrics listener;
//! - [`app`]: wiring it all together for the binary.
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod catalog;
pub mod cert_store;
pub mod cli;
pub mod delivery;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod reload;
pub mod sd_notify;
pub mod server;
pub mod signals;
pub mod transport;
pub mod watch;
