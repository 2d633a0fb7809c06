//! Per-address bounds. A source address is an IPv4 address, or the IPv6
//! prefix of [`AddressKeying`]'s length (default /64: one host's or one
//! LAN's share, which a single machine can fill with addresses of its own),
//! for every per-address limit and log budget.
//!
//! [`PerAddress`] counts one address's connections in a handshake, from
//! the moment they are accepted (or their PROXY header is read) until they
//! are served or dropped: those waiting for their client's bytes, waiting
//! for a verification slot, or being verified. Past the limit, a further
//! connection from that address is closed at once, so one address (or a
//! handful of them) cannot hold the handshake machinery with connections
//! that say nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Default IPv6 prefix length that counts as one source address.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// How client addresses are grouped into source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressKeying {
    ipv6_prefix_len: u8,
}

impl Default for AddressKeying {
    fn default() -> Self {
        AddressKeying::new(DEFAULT_IPV6_PREFIX_LEN)
    }
}

impl AddressKeying {
    /// IPv6 addresses grouped by their first `ipv6_prefix_len` bits (1 to
    /// 128; outside that range it is clamped).
    pub fn new(ipv6_prefix_len: u8) -> Self {
        AddressKeying {
            ipv6_prefix_len: ipv6_prefix_len.clamp(1, 128),
        }
    }

    /// The source address `ip` counts as: an IPv4 address (also when
    /// written as an IPv4-mapped IPv6 one), or an IPv6 prefix with its
    /// host bits cleared.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(self.ipv6_prefix_len));
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

/// The per-address count of connections in a handshake.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    keying: AddressKeying,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count; released on drop.
#[derive(Debug)]
pub struct AddressSlot {
    owner: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    /// At most `limit` (at least 1) connections in a handshake per source
    /// address, grouped by `keying`.
    pub fn new(limit: usize, keying: AddressKeying) -> Arc<Self> {
        Arc::new(PerAddress {
            limit: limit.max(1),
            keying,
            counts: Mutex::default(),
        })
    }

    /// The limit per source address.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A place for a connection from `ip`, or `None` when its source
    /// address already has `limit` connections in a handshake.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = self.keying.key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: self.clone(),
            key,
        })
    }

    /// Source addresses with a connection in a handshake.
    pub fn tracked(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        // Forget an address with nothing in a handshake, so the table never
        // outgrows the connections.
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_is_capped_while_another_proceeds() {
        let cap = PerAddress::new(2, AddressKeying::default());
        let s1 = cap.try_acquire(ip("192.0.2.1")).unwrap();
        let _s2 = cap.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(cap.try_acquire(ip("192.0.2.1")).is_none(), "a third one");
        let _other = cap.try_acquire(ip("192.0.2.2")).unwrap();
        drop(s1);
        let _s3 = cap.try_acquire(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn released_addresses_are_forgotten() {
        let cap = PerAddress::new(1, AddressKeying::default());
        for i in 0..100u32 {
            let _s = cap.try_acquire(IpAddr::from(i.to_be_bytes())).unwrap();
        }
        assert_eq!(cap.tracked(), 0);
    }

    #[test]
    fn ipv6_addresses_count_by_prefix() {
        let cap = PerAddress::new(2, AddressKeying::default());
        let _a = cap.try_acquire(ip("2001:db8::1")).unwrap();
        let _b = cap.try_acquire(ip("2001:db8::ffff:2")).unwrap();
        assert!(
            cap.try_acquire(ip("2001:db8:0:0:1234::3")).is_none(),
            "same /64"
        );
        let _c = cap.try_acquire(ip("2001:db8:0:1::1")).unwrap();
        let per_host = PerAddress::new(1, AddressKeying::new(128));
        let _d = per_host.try_acquire(ip("2001:db8::1")).unwrap();
        let _e = per_host.try_acquire(ip("2001:db8::2")).unwrap();
    }

    #[test]
    fn keys() {
        let k = AddressKeying::default();
        assert_eq!(k.key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(k.key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(k.key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            AddressKeying::new(48).key(ip("2001:db8:1:2::1")),
            ip("2001:db8:1::")
        );
        assert_eq!(AddressKeying::new(128).key(ip("::1")), ip("::1"));
        assert_eq!(AddressKeying::new(0).key(ip("8000::1")), ip("8000::"));
    }
}
