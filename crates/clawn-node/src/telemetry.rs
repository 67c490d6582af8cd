//! Host and peer telemetry: counters and timestamps only, never anything about traffic
//! content. Parsers are pure functions of the `/proc` text; [`HostFiles::read`] is the
//! only file access, run on the blocking pool by the agent.

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

/// The raw `/proc` text host metrics are computed from (absent where unreadable).
#[derive(Debug, Clone, Default)]
pub struct HostFiles {
    /// `/proc/stat`.
    pub stat: Option<String>,
    /// `/proc/meminfo`.
    pub meminfo: Option<String>,
    /// `/proc/loadavg`.
    pub loadavg: Option<String>,
}

impl HostFiles {
    /// Reads the files (blocking).
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        Self {
            stat: read("/proc/stat"),
            meminfo: read("/proc/meminfo"),
            loadavg: read("/proc/loadavg"),
        }
    }

    /// Reads the files on the blocking pool.
    pub async fn read_off_thread() -> Self {
        tokio::task::spawn_blocking(Self::read)
            .await
            .unwrap_or_default()
    }
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
    pub fn host(&mut self, files: &HostFiles, peers: &[PeerState], now: UnixMillis) -> HostMetrics {
        let mut m = HostMetrics::default();
        if let Some(cpu) = files.stat.as_deref().and_then(parse_cpu) {
            if let Some((busy0, total0)) = self.last_cpu {
                let dt = cpu.1.saturating_sub(total0);
                if dt > 0 {
                    m.cpu_percent = cpu.0.saturating_sub(busy0) as f64 * 100.0 / dt as f64;
                }
            }
            self.last_cpu = Some(cpu);
        }
        if let Some((used, total)) = files.meminfo.as_deref().and_then(parse_meminfo) {
            m.memory_used_bytes = used;
            m.memory_total_bytes = total;
        }
        m.load1 = files
            .loadavg
            .as_deref()
            .and_then(parse_loadavg)
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
        let files = |busy: u64, idle: u64, load: &str| HostFiles {
            stat: Some(format!("cpu  {busy} 0 0 {idle} 0\n")),
            meminfo: Some("MemTotal:  1000 kB\nMemAvailable:  250 kB\n".into()),
            loadavg: Some(format!("{load} 0.40 0.30 1/100 42")),
        };
        let h = s.host(&files(0, 1000, "0.50"), &[p(9)], 2_000);
        assert_eq!(h.active_peers, 1);
        assert_eq!(h.load1, 0.5);
        assert_eq!(h.memory_used_bytes, 750 * 1024);
        let h = s.host(&files(500, 1500, "0.75"), &[p(1009)], 3_000);
        assert_eq!(h.rx_bytes_per_sec, 1000);
        assert_eq!(
            h.cpu_percent, 50.0,
            "busy 500 of 1000 jiffies since the last sample"
        );
        assert_eq!(h.load1, 0.75);
        // Unreadable files leave the host fields at zero; peer figures still count.
        let h = s.host(&HostFiles::default(), &[p(1009)], 4_000);
        assert_eq!((h.load1, h.memory_total_bytes, h.active_peers), (0.0, 0, 1));
    }
}
