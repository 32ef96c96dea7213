//! Counts of what each client address holds at once (connections, relayed requests), so that one
//! host cannot take every slot from the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Per-address counts with one limit.
pub struct ClientCounts {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One of an address's slots; given back on drop.
pub struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientCounts {
    pub fn new(max: usize) -> ClientCounts {
        ClientCounts {
            counts: Arc::default(),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `ip`, unless it already holds `max`.
    pub fn take(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_limit_and_slots_come_back() {
        let c = ClientCounts::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.take(a).unwrap();
        let _s2 = c.take(a).unwrap();
        assert!(c.take(a).is_none());
        assert!(c.take(b).is_some());
        drop(s1);
        assert!(c.take(a).is_some());
    }
}
