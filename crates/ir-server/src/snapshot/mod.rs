//! The snapshot side: what is served and how it is replaced. The
//! [`catalog`] is the served snapshot; [`reload`] is the one road every
//! load takes (read the root, judge it by the [`policy_gate`], record the
//! outcome, swap); [`watch`] and SIGHUP trigger reloads; [`load_progress`]
//! reports a long first load.

pub mod catalog;
pub mod load_progress;
pub mod policy_gate;
pub mod reload;
pub mod watch;
