//! Refused connections in the log: one `WARN` line each, at most
//! [`MAX_DETAIL`] bytes of detail whatever the client sent (a token's
//! content reaches error messages), and at most [`LINES_PER_WINDOW`] lines
//! per source address per [`WINDOW`] (an IPv6 source address is its prefix,
//! see [`AddressKeying`]); the lines held back are counted in the next line
//! logged for that address. Metrics count every refusal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::HandshakeError;
use super::per_address::AddressKeying;

/// Most bytes of a refusal's detail in one log line.
pub const MAX_DETAIL: usize = 300;
/// Lines logged per source address per window.
pub const LINES_PER_WINDOW: u32 = 5;
/// The rate-limiting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Source addresses tracked at once; past it, the table starts afresh (a
/// flood from many addresses then logs at most this many lines per window
/// and per refill).
pub const MAX_TRACKED: usize = 4096;

/// `text` cut to at most `max` bytes on a character boundary, with `…`
/// (3 bytes, within `max`) when it was cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    logged: u32,
    held_back: u64,
}

/// The rate limiter of refusal log lines.
#[derive(Debug, Default)]
pub struct RefusalLog {
    keying: AddressKeying,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl RefusalLog {
    /// A log whose budget is per source address as `keying` groups them.
    pub fn new(keying: AddressKeying) -> Self {
        RefusalLog {
            keying,
            windows: Mutex::default(),
        }
    }

    /// Logs that `peer`'s connection was refused for `error`, unless that
    /// address already had its lines for this window.
    pub fn refused(&self, peer: SocketAddr, error: &HandshakeError) {
        let Some(held_back) = self.admit(self.keying.key(peer.ip()), Instant::now()) else {
            return;
        };
        let reason = error.reason();
        let detail = bounded(&error.to_string(), MAX_DETAIL);
        let held_back = match held_back {
            0 => String::new(),
            n => format!(" ({n} more from this address not logged)"),
        };
        match error {
            HandshakeError::HelloTimeout(_)
            | HandshakeError::FlightTimeout(_)
            | HandshakeError::Timeout(_)
            | HandshakeError::AddressBusy(_) => {
                tracing::info!(%peer, reason, "connection dropped: {detail}{held_back}")
            }
            _ => tracing::warn!(%peer, reason, "connection refused: {detail}{held_back}"),
        }
    }

    /// Whether a line for `ip` may be logged now; if so, how many were held
    /// back since the last one.
    fn admit(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let w = windows.entry(ip).or_insert(Window {
            started: now,
            logged: 0,
            held_back: 0,
        });
        if now.duration_since(w.started) >= WINDOW {
            w.started = now;
            w.logged = 0;
        }
        if w.logged >= LINES_PER_WINDOW {
            w.held_back += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"é".repeat(1000), 300);
        assert!(cut.len() <= 300);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn lines_per_address_are_limited_and_held_back_ones_counted() {
        let log = RefusalLog::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(log.admit(a, t), Some(0));
        }
        for _ in 0..7 {
            assert_eq!(log.admit(a, t), None);
        }
        assert_eq!(log.admit(b, t), Some(0), "another address is not limited");
        assert_eq!(log.admit(a, t + WINDOW), Some(7));
    }

    #[test]
    fn ipv6_addresses_share_their_prefix_budget() {
        let log = RefusalLog::default();
        let t = Instant::now();
        let e = HandshakeError::Timeout(Duration::from_secs(1));
        for i in 0..LINES_PER_WINDOW {
            let peer = SocketAddr::new(format!("2001:db8::{}", i + 1).parse().unwrap(), 1);
            log.refused(peer, &e);
        }
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let key = log.keying.key(same_64);
        assert_eq!(log.admit(key, t), None, "the /64's budget is spent");
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(log.admit(log.keying.key(other_64), t), Some(0));
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let log = RefusalLog::default();
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            log.admit(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(log.windows.lock().unwrap().len() <= MAX_TRACKED);
    }
}
