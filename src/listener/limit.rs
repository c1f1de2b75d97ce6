//! Connection caps (`client.max_connections`, `client.max_connections_per_ip`), checked at
//! accept, before any TLS work: a connection over a cap is closed at once, so a flood of idle
//! sockets from one address cannot use up descriptors and memory meant for everyone else.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::metrics::Metrics;

/// Which cap refused a connection; also the `reason` label of
/// `rampart_connections_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `client.max_connections`: every listener's connections together.
    Total,
    /// `client.max_connections_per_ip`: one client address (an IPv6 client by its /64).
    PerIp,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

/// The caps in force; read from the snapshot at every accept, so a reload applies to the next
/// connection (connections already open are never closed by a lower cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    /// 0: no per-address cap (behind a load balancer every connection has its address).
    pub per_ip: usize,
}

/// Open connections of the https and http listeners, overall and per client address. Shared
/// by both listeners; the admin listener is not counted (it is private).
#[derive(Debug, Default)]
pub struct ConnectionLimiter {
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses with an open connection: an entry is removed when its count reaches 0,
    /// so the map never holds more than `total` entries.
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectionLimiter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a new connection from `peer`, or says which cap it would exceed. The permit
    /// uncounts it when dropped, however the connection ends.
    pub fn try_acquire(
        self: &Arc<Self>,
        peer: IpAddr,
        caps: Caps,
    ) -> Result<ConnectionPermit, Refused> {
        let key = client_key(peer);
        let mut counts = self.lock();
        if counts.total >= caps.total {
            return Err(Refused::Total);
        }
        let per_ip = counts.per_ip.get(&key).copied().unwrap_or(0);
        if caps.per_ip != 0 && per_ip >= caps.per_ip {
            return Err(Refused::PerIp);
        }
        counts.total += 1;
        counts.per_ip.insert(key, per_ip + 1);
        Ok(ConnectionPermit {
            limiter: self.clone(),
            key,
        })
    }

    /// [`Self::try_acquire`] for a listener's accept loop: a refusal is counted in
    /// `rampart_connections_refused_total` and logged at debug (a flood must not flood the log).
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        caps: Caps,
        metrics: &Metrics,
    ) -> Option<ConnectionPermit> {
        match self.try_acquire(peer.ip(), caps) {
            Ok(permit) => Some(permit),
            Err(refused) => {
                metrics
                    .connections_refused
                    .with_label_values(&[refused.label()])
                    .inc();
                tracing::debug!(%peer, cap = refused.label(), "connection refused at accept");
                None
            }
        }
    }

    /// Open connections counted now (all addresses).
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Addresses with at least one open connection (the size of the per-address map).
    pub fn addresses(&self) -> usize {
        self.lock().per_ip.len()
    }

    fn release(&self, key: IpAddr) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_ip.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_ip.remove(&key);
            }
        }
    }

    // The counts stay consistent whatever panicked while holding the lock (every update is
    // one statement), so a poisoned lock is used as is rather than refusing every client.
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    key: IpAddr,
}

impl ConnectionPermit {
    /// Counts this connection against `client` instead of the address it was accepted from:
    /// a load balancer's connection, once its PROXY protocol header named the client. Refused
    /// (and left as it was) when `client` already has `per_ip` connections; the total is
    /// unchanged.
    pub fn rekey(&mut self, client: IpAddr, per_ip: usize) -> Result<(), Refused> {
        let key = client_key(client);
        if key == self.key {
            return Ok(());
        }
        let mut counts = self.limiter.lock();
        let current = counts.per_ip.get(&key).copied().unwrap_or(0);
        if per_ip != 0 && current >= per_ip {
            return Err(Refused::PerIp);
        }
        counts.per_ip.insert(key, current + 1);
        if let Some(count) = counts.per_ip.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
        drop(counts);
        self.key = key;
        Ok(())
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

/// The address a per-IP cap counts: IPv4 (also when IPv4-mapped, as a dual-stack listener
/// reports it) as is, IPv6 by its /64, which one host usually holds whole and could rotate
/// through (the rate limiter keys the same way).
fn client_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 4,
        per_ip: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_balancer_connection_is_counted_against_its_client() {
        let limiter = ConnectionLimiter::new();
        let open = Caps {
            total: 10,
            per_ip: 0,
        };
        let mut first = limiter.try_acquire(ip("10.0.0.1"), open).unwrap();
        let mut second = limiter.try_acquire(ip("10.0.0.1"), open).unwrap();
        let mut third = limiter.try_acquire(ip("10.0.0.1"), open).unwrap();
        first.rekey(ip("192.0.2.1"), 2).unwrap();
        second.rekey(ip("192.0.2.1"), 2).unwrap();
        assert_eq!(third.rekey(ip("192.0.2.1"), 2), Err(Refused::PerIp));
        third.rekey(ip("192.0.2.2"), 2).unwrap();
        assert_eq!(limiter.open(), 3);
        assert_eq!(
            limiter.addresses(),
            2,
            "the balancer's own address is not counted"
        );
        drop((first, second, third));
        assert_eq!((limiter.open(), limiter.addresses()), (0, 0));
    }

    #[test]
    fn per_ip_cap_then_total_cap() {
        let limiter = ConnectionLimiter::new();
        let a1 = limiter.try_acquire(ip("192.0.2.1"), CAPS).unwrap();
        let _a2 = limiter.try_acquire(ip("192.0.2.1"), CAPS).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.1"), CAPS).unwrap_err(),
            Refused::PerIp
        );
        let _b1 = limiter.try_acquire(ip("192.0.2.2"), CAPS).unwrap();
        let _b2 = limiter.try_acquire(ip("192.0.2.2"), CAPS).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.3"), CAPS).unwrap_err(),
            Refused::Total
        );
        assert_eq!(limiter.open(), 4);
        drop(a1);
        assert_eq!(limiter.open(), 3);
        let _a3 = limiter.try_acquire(ip("192.0.2.1"), CAPS).unwrap();
    }

    #[test]
    fn entries_are_removed_at_zero() {
        let limiter = ConnectionLimiter::new();
        let permits: Vec<_> = (0..4)
            .map(|i| {
                limiter
                    .try_acquire(ip(&format!("198.51.100.{i}")), CAPS)
                    .unwrap()
            })
            .collect();
        assert_eq!(limiter.addresses(), 4);
        drop(permits);
        assert_eq!(limiter.addresses(), 0);
        assert_eq!(limiter.open(), 0);
    }

    #[test]
    fn zero_per_ip_means_no_per_ip_cap() {
        let limiter = ConnectionLimiter::new();
        let caps = Caps {
            total: 3,
            per_ip: 0,
        };
        let _p: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire(ip("192.0.2.1"), caps).unwrap())
            .collect();
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.1"), caps).unwrap_err(),
            Refused::Total
        );
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let limiter = ConnectionLimiter::new();
        let _a = limiter.try_acquire(ip("2001:db8:1:2::1"), CAPS).unwrap();
        let _b = limiter.try_acquire(ip("2001:db8:1:2::ffff"), CAPS).unwrap();
        assert_eq!(
            limiter
                .try_acquire(ip("2001:db8:1:2:aaaa::1"), CAPS)
                .unwrap_err(),
            Refused::PerIp
        );
        let _c = limiter.try_acquire(ip("2001:db8:1:3::1"), CAPS).unwrap();
        assert_eq!(limiter.addresses(), 2);

        let limiter = ConnectionLimiter::new();
        let _v4 = limiter.try_acquire(ip("192.0.2.9"), CAPS).unwrap();
        let _mapped = limiter.try_acquire(ip("::ffff:192.0.2.9"), CAPS).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("192.0.2.9"), CAPS).unwrap_err(),
            Refused::PerIp
        );
    }
}
