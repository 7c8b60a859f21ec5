//! Concurrent connection limits, total and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tern_config::Cidr;

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    exempt: Vec<Cidr>,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Held for the life of a connection; releases its slot on drop.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LimitExceeded {
    Total,
    PerIp,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize, exempt: Vec<Cidr>) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits { max_total, max_per_ip, exempt, counts: Mutex::new((0, HashMap::new())) })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, LimitExceeded> {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.max_total {
            return Err(LimitExceeded::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip && !self.exempt.iter().any(|c| c.contains(ip)) {
            if *n == 0 {
                per_ip.remove(&ip);
            }
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        *total += 1;
        Ok(ConnectionSlot { limits: Arc::clone(self), ip })
    }

    pub fn active(&self) -> usize {
        self.counts.lock().map(|g| g.0).unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut guard = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total() {
        let l = ConnectionLimits::new(3, 2, vec![Cidr::parse("10.0.0.0/8").unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(LimitExceeded::PerIp));
        drop(s1);
        let _s3 = l.acquire(a).unwrap();
        let exempt: IpAddr = "10.1.1.1".parse().unwrap();
        let _e = l.acquire(exempt).unwrap();
        assert_eq!(l.acquire(exempt).err(), Some(LimitExceeded::Total));
        assert_eq!(l.active(), 3);
    }
}
