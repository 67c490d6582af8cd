//! Host and peer telemetry: counters and timestamps only, never anything about traffic
//! content. Parsers are pure functions of the `/proc` and `/sys` text.

use std::collections::HashMap;

use clawn_proto::keys::WgPublicKey;
use clawn_proto::node::{HostMetrics, PeerStats};
use clawn_proto::time::UnixMillis;

use crate::wireguard::PeerState;

/// A peer is active if it completed a handshake within this window (WireGuard re-keys
/// every two minutes while traffic flows).
pub const ACTIVE_WINDOW_MS: i64 = 180_000;

/// Aggregate CPU jiffies: (busy, total).
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (used, total) bytes from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    let total = field("MemTotal:")? * 1024;
    let avail = field("MemAvailable:")? * 1024;
    Some((total.saturating_sub(avail), total))
}

/// The 1-minute load average.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Samples host and peer statistics and reports what changed.
#[derive(Default)]
pub struct Sampler {
    last_cpu: Option<(u64, u64)>,
    last_bytes: Option<(UnixMillis, u64, u64)>,
    last_peers: HashMap<WgPublicKey, (Option<UnixMillis>, u64, u64)>,
}

impl Sampler {
    /// Host metrics now, with rates since the previous call.
    pub fn host(&mut self, peers: &[PeerState], now: UnixMillis) -> HostMetrics {
        let mut m = HostMetrics::default();
        if let Some(cpu) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_cpu(&s))
        {
            if let Some((busy0, total0)) = self.last_cpu {
                let dt = cpu.1.saturating_sub(total0);
                if dt > 0 {
                    m.cpu_percent = cpu.0.saturating_sub(busy0) as f64 * 100.0 / dt as f64;
                }
            }
            self.last_cpu = Some(cpu);
        }
        if let Some((used, total)) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| parse_meminfo(&s))
        {
            m.memory_used_bytes = used;
            m.memory_total_bytes = total;
        }
        m.load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| parse_loadavg(&s))
            .unwrap_or(0.0);
        m.active_peers = peers
            .iter()
            .filter(|p| {
                p.last_handshake
                    .is_some_and(|h| now.saturating_sub(h) < ACTIVE_WINDOW_MS)
            })
            .count() as u64;
        let rx: u64 = peers.iter().map(|p| p.rx_bytes).sum();
        let tx: u64 = peers.iter().map(|p| p.tx_bytes).sum();
        if let Some((t0, rx0, tx0)) = self.last_bytes {
            let dt = now.saturating_sub(t0);
            if dt > 0 {
                m.rx_bytes_per_sec = rx.saturating_sub(rx0) * 1000 / dt as u64;
                m.tx_bytes_per_sec = tx.saturating_sub(tx0) * 1000 / dt as u64;
            }
        }
        self.last_bytes = Some((now, rx, tx));
        m
    }

    /// Per-peer statistics of peers whose handshake or counters changed since the last
    /// call (all of them the first time).
    pub fn changed_peers(&mut self, peers: &[PeerState]) -> Vec<PeerStats> {
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(peers.len());
        for p in peers {
            let cur = (p.last_handshake, p.rx_bytes, p.tx_bytes);
            if self.last_peers.get(&p.public_key) != Some(&cur) {
                out.push(PeerStats {
                    public_key: p.public_key,
                    last_handshake: p.last_handshake,
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                    endpoint: p.endpoint.map(|e| e.to_string()),
                });
            }
            next.insert(p.public_key, cur);
        }
        self.last_peers = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::keys::WgKeyPair;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_cpu("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 1 1 1\n"),
            Some((20, 100))
        );
        assert_eq!(parse_cpu("nothing"), None);
        assert_eq!(
            parse_meminfo("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:  250 kB\n"),
            Some((750 * 1024, 1000 * 1024))
        );
        assert_eq!(parse_loadavg("0.50 0.40 0.30 1/100 42"), Some(0.5));
    }

    #[test]
    fn reports_only_changed_peers() {
        let k = WgKeyPair::generate().public();
        let p = |rx| PeerState {
            public_key: k,
            allowed_ips: vec![],
            endpoint: Some("10.0.0.1:5".parse().expect("addr")),
            last_handshake: Some(1_000),
            rx_bytes: rx,
            tx_bytes: 0,
        };
        let mut s = Sampler::default();
        assert_eq!(s.changed_peers(&[p(1)]).len(), 1);
        assert!(s.changed_peers(&[p(1)]).is_empty());
        let c = s.changed_peers(&[p(9)]);
        assert_eq!(c[0].rx_bytes, 9);
        assert_eq!(c[0].endpoint.as_deref(), Some("10.0.0.1:5"));
        let h = s.host(&[p(9)], 2_000);
        assert_eq!(h.active_peers, 1);
        let h = s.host(&[p(1009)], 3_000);
        assert_eq!(h.rx_bytes_per_sec, 1000);
    }
}
