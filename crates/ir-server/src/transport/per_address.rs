//! At most N handshakes in progress per source address, so one address
//! cannot hold every handshake slot (or every Veraison slot behind them).
//! Further handshakes from that address wait for one of its own slots,
//! within their handshake timeout: clients behind one NAT or proxy are
//! slowed down, not refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The per-address handshake slots.
#[derive(Debug)]
pub struct PerAddress {
    limit: usize,
    slots: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// A handshake slot of one address; released on drop.
#[derive(Debug)]
pub struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
    permit: Option<OwnedSemaphorePermit>,
}

impl PerAddress {
    /// At most `limit` (at least 1) handshakes per address.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            limit: limit.max(1),
            slots: Mutex::default(),
        })
    }

    /// Waits for one of `ip`'s slots.
    pub async fn acquire(self: &Arc<Self>, ip: IpAddr) -> AddressSlot {
        let semaphore = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone();
        let permit = semaphore
            .acquire_owned()
            .await
            .expect("per-address semaphores are never closed");
        AddressSlot {
            owner: self.clone(),
            ip,
            permit: Some(permit),
        }
    }

    /// Addresses with a handshake in progress or waiting.
    pub fn tracked(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut slots = self.owner.slots.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.permit.take());
        // Forget an address nobody holds or waits for (only the table's
        // reference is left), so the table never outgrows the connections.
        if slots
            .get(&self.ip)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_address_waits_while_another_proceeds() {
        let cap = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = cap.acquire(a).await;
        let _s2 = cap.acquire(a).await;
        let third = tokio::time::timeout(Duration::from_millis(50), cap.acquire(a)).await;
        assert!(third.is_err(), "a third slot for the same address");
        let _other = cap.acquire(b).await;
        drop(s1);
        let _s3 = cap.acquire(a).await;
    }

    #[tokio::test]
    async fn released_addresses_are_forgotten() {
        let cap = PerAddress::new(1);
        for i in 0..100u32 {
            let _s = cap.acquire(IpAddr::from(i.to_be_bytes())).await;
        }
        assert_eq!(cap.tracked(), 0);
    }
}
