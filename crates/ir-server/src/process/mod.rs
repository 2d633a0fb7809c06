//! Process plumbing: signals, systemd notification, giving memory back,
//! log setup, and the `ir-server probe` health check.

pub mod logging;
pub mod memory;
pub mod probe;
pub mod sd_notify;
pub mod signals;
