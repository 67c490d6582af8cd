//! Node health: the control plane's probes of each node and the verdict.
//!
//! **Measurements.** Every `probe_interval_ms` the node's stream task sends a WebSocket
//! ping carrying a sequence number; the node's WebSocket stack answers with a pong
//! carrying the same bytes. The round trip of each answered probe is measured on the
//! control plane's monotonic clock; a probe not answered within `probe_timeout_ms` is
//! lost. Over the last `probe_window` probes: `rtt` is the median of the answered ones,
//! `loss` the lost share of the resolved ones. (The stream is TCP, so a lost probe means
//! the path or the node stalled for longer than the timeout; brief packet loss shows up
//! as retransmission delay in `rtt`.)
//!
//! **Baseline.** The lowest median seen, rising slowly (0.1 % of the gap per report,
//! about 1 % a minute at 5 s telemetry), so a node's baseline learns a lasting route
//! change over hours but a spike of minutes never becomes the norm.
//!
//! **Local stalls.** Pongs are timed when the stream task reads them; while it was busy
//! with a slow store write the probes in flight are excused (neither answered nor lost),
//! so the control plane's own load is not blamed on the node.
//!
//! **Verdict.** The seed's alert conditions, each of which makes an `online` node
//! `degraded`: CPU above `cpu_percent` for `cpu_sustain_secs`; loss above `loss_percent`;
//! rtt above `latency_factor` × baseline and at least `latency_floor_ms` above it; live
//! peers above capacity.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use clawn_proto::api::{HealthAlert, NodeHealth};
use serde::{Deserialize, Serialize};

use crate::config::HealthConfig;

#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u64,
    sent: Instant,
    rtt: Option<Duration>,
}

/// The probes of one stream.
#[derive(Debug)]
pub struct Probes {
    window: usize,
    timeout: Duration,
    next_seq: u64,
    entries: VecDeque<Probe>,
}

/// Probe results over the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProbeStats {
    /// Median round trip of the most recent answered probes, ms.
    pub rtt_ms: Option<f64>,
    /// Lost / resolved, once enough probes resolved to judge (half the window).
    pub loss_ratio: Option<f64>,
    /// Probes in the window.
    pub probes: u32,
}

/// A busy spell this long excuses the probes in flight.
const STALL: Duration = Duration::from_millis(50);

/// Answered probes the rtt median is taken over.
const RTT_SAMPLES: usize = 10;

impl Probes {
    /// A window of `window` probes, each lost after `timeout`.
    pub fn new(window: usize, timeout: Duration) -> Self {
        Self {
            window: window.max(1),
            timeout,
            next_seq: 1,
            entries: VecDeque::new(),
        }
    }

    /// Records a probe sent now; returns the payload to put in the ping.
    pub fn sent(&mut self, now: Instant) -> [u8; 8] {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Probe {
            seq,
            sent: now,
            rtt: None,
        });
        while self.entries.len() > self.window {
            self.entries.pop_front();
        }
        seq.to_be_bytes()
    }

    /// A pong arrived with `payload`. Late answers (after the timeout) still count as
    /// lost; unknown payloads are ignored.
    pub fn answered(&mut self, payload: &[u8], now: Instant) {
        let Ok(bytes) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let seq = u64::from_be_bytes(bytes);
        let timeout = self.timeout;
        if let Some(p) = self.entries.iter_mut().find(|p| p.seq == seq)
            && p.rtt.is_none()
        {
            let rtt = now.saturating_duration_since(p.sent);
            if rtt <= timeout {
                p.rtt = Some(rtt);
            }
        }
    }

    /// The stream task was busy from `from` to `to` (a store write): probes in flight
    /// then cannot be judged and leave the window.
    pub fn excuse(&mut self, from: Instant, to: Instant) {
        if to.saturating_duration_since(from) < STALL {
            return;
        }
        self.entries.retain(|p| p.rtt.is_some() || p.sent > to);
    }

    /// The stats now.
    pub fn stats(&self, now: Instant) -> ProbeStats {
        let mut answered: Vec<f64> = self
            .entries
            .iter()
            .rev()
            .filter_map(|p| p.rtt)
            .take(RTT_SAMPLES)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        answered.sort_by(f64::total_cmp);
        let rtt_ms = (!answered.is_empty()).then(|| answered[answered.len() / 2]);
        let lost = self
            .entries
            .iter()
            .filter(|p| p.rtt.is_none() && now.saturating_duration_since(p.sent) > self.timeout)
            .count();
        let resolved = self.entries.iter().filter(|p| p.rtt.is_some()).count() + lost;
        let loss_ratio =
            (resolved >= self.window.div_ceil(2)).then(|| lost as f64 / resolved as f64);
        ProbeStats {
            rtt_ms,
            loss_ratio,
            probes: u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
        }
    }
}

/// What survives a reconnect (kept in the node's `health` column).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Latency baseline, ms.
    pub baseline_ms: Option<f64>,
    /// Since when CPU is above the threshold, Unix ms.
    pub cpu_high_since: Option<i64>,
}

/// One evaluation's inputs.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Now, Unix ms.
    pub now_ms: i64,
    /// CPU, percent.
    pub cpu_percent: f64,
    /// Live peers.
    pub live_peers: u32,
    /// Capacity.
    pub capacity: u32,
    /// Probe stats.
    pub probes: ProbeStats,
}

/// How fast the baseline follows a higher normal.
const BASELINE_RISE: f64 = 0.001;

/// Evaluates the alert conditions and updates `mem`.
pub fn evaluate(cfg: &HealthConfig, mem: &mut Memory, i: Inputs) -> NodeHealth {
    let mut alerts = Vec::new();
    let mut reasons = Vec::new();
    if i.cpu_percent > cfg.cpu_percent {
        let since = *mem.cpu_high_since.get_or_insert(i.now_ms);
        let held = i.now_ms.saturating_sub(since);
        if held >= i64::try_from(cfg.cpu_sustain_secs.saturating_mul(1000)).unwrap_or(i64::MAX) {
            alerts.push(HealthAlert::CpuHigh);
            reasons.push(format!(
                "CPU {:.0}% > {:.0}% for {}s",
                i.cpu_percent,
                cfg.cpu_percent,
                held / 1000
            ));
        }
    } else {
        mem.cpu_high_since = None;
    }
    if let Some(loss) = i.probes.loss_ratio
        && loss * 100.0 > cfg.loss_percent
    {
        alerts.push(HealthAlert::PacketLoss);
        reasons.push(format!(
            "probe loss {:.1}% > {}%",
            loss * 100.0,
            cfg.loss_percent
        ));
    }
    if let (Some(rtt), Some(base)) = (i.probes.rtt_ms, mem.baseline_ms)
        && rtt > base * cfg.latency_factor
        && rtt - base >= cfg.latency_floor_ms
    {
        alerts.push(HealthAlert::LatencyHigh);
        reasons.push(format!(
            "latency {rtt:.1} ms > {}x baseline {base:.1} ms",
            cfg.latency_factor
        ));
    }
    if let Some(rtt) = i.probes.rtt_ms {
        mem.baseline_ms = Some(match mem.baseline_ms {
            None => rtt,
            Some(b) if rtt < b => rtt,
            // Rising slowly even while the alert fires: a lasting route change becomes the
            // new normal in hours, a spike of minutes moves it by well under 1 %.
            Some(b) => b + (rtt - b) * BASELINE_RISE,
        });
    }
    if i.live_peers > i.capacity {
        alerts.push(HealthAlert::OverCapacity);
        reasons.push(format!(
            "{} live peers > capacity {}",
            i.live_peers, i.capacity
        ));
    }
    NodeHealth {
        rtt_ms: i.probes.rtt_ms,
        baseline_rtt_ms: mem.baseline_ms,
        loss_ratio: i.probes.loss_ratio,
        probes: i.probes.probes,
        cpu_high_since: mem.cpu_high_since,
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        alerts,
        at: Some(i.now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(now_ms: i64, cpu: f64, probes: ProbeStats) -> Inputs {
        Inputs {
            now_ms,
            cpu_percent: cpu,
            live_peers: 1,
            capacity: 10,
            probes,
        }
    }

    #[test]
    fn probes_measure_rtt_and_count_lost_ones() {
        let mut p = Probes::new(4, Duration::from_millis(100));
        let t0 = Instant::now();
        let a = p.sent(t0);
        let _b = p.sent(t0);
        p.answered(&a, t0 + Duration::from_millis(8));
        let s = p.stats(t0 + Duration::from_millis(50));
        assert_eq!(s.rtt_ms.map(f64::round), Some(8.0));
        assert_eq!(
            s.loss_ratio, None,
            "b is still in flight; 1 resolved < half the window"
        );
        let s = p.stats(t0 + Duration::from_millis(200));
        assert_eq!(s.loss_ratio, Some(0.5), "b timed out");
        p.answered(&[1, 2, 3], t0);
        assert_eq!(p.stats(t0 + Duration::from_millis(200)).probes, 2);
    }

    #[test]
    fn probes_in_flight_during_a_local_stall_are_excused() {
        let mut p = Probes::new(2, Duration::from_millis(10));
        let t0 = Instant::now();
        let _a = p.sent(t0);
        p.excuse(t0, t0 + Duration::from_millis(100));
        let b = p.sent(t0 + Duration::from_millis(101));
        p.answered(&b, t0 + Duration::from_millis(103));
        let s = p.stats(t0 + Duration::from_millis(200));
        assert_eq!(s.loss_ratio, Some(0.0), "a was excused, not lost");
        assert_eq!(s.probes, 1);
    }

    #[test]
    fn a_late_pong_is_still_lost() {
        let mut p = Probes::new(2, Duration::from_millis(10));
        let t0 = Instant::now();
        let a = p.sent(t0);
        p.answered(&a, t0 + Duration::from_millis(50));
        let s = p.stats(t0 + Duration::from_millis(60));
        assert_eq!(s.loss_ratio, Some(1.0));
        assert_eq!(s.rtt_ms, None);
    }

    #[test]
    fn cpu_must_stay_high_for_the_sustain_time() {
        let cfg = HealthConfig {
            cpu_sustain_secs: 60,
            ..HealthConfig::default()
        };
        let mut m = Memory::default();
        assert!(
            evaluate(&cfg, &mut m, inputs(0, 90.0, ProbeStats::default()))
                .alerts
                .is_empty()
        );
        assert!(
            evaluate(&cfg, &mut m, inputs(59_000, 90.0, ProbeStats::default()))
                .alerts
                .is_empty()
        );
        let h = evaluate(&cfg, &mut m, inputs(60_000, 90.0, ProbeStats::default()));
        assert_eq!(h.alerts, [HealthAlert::CpuHigh]);
        assert!(
            evaluate(&cfg, &mut m, inputs(61_000, 20.0, ProbeStats::default()))
                .alerts
                .is_empty()
        );
        assert_eq!(m.cpu_high_since, None, "a dip restarts the clock");
    }

    #[test]
    fn loss_latency_and_capacity_alerts() {
        let cfg = HealthConfig::default();
        let mut m = Memory::default();
        let ok = ProbeStats {
            rtt_ms: Some(10.0),
            loss_ratio: Some(0.0),
            probes: 60,
        };
        assert!(evaluate(&cfg, &mut m, inputs(0, 5.0, ok)).alerts.is_empty());
        assert_eq!(m.baseline_ms, Some(10.0));
        let slow = ProbeStats {
            rtt_ms: Some(25.0),
            ..ok
        };
        let h = evaluate(&cfg, &mut m, inputs(1, 5.0, slow));
        assert_eq!(h.alerts, [HealthAlert::LatencyHigh]);
        assert!(
            m.baseline_ms.is_some_and(|b| b > 10.0 && b < 10.1),
            "a spike barely moves the baseline: {m:?}"
        );
        let lossy = ProbeStats {
            loss_ratio: Some(0.05),
            ..ok
        };
        assert_eq!(
            evaluate(&cfg, &mut m, inputs(2, 5.0, lossy)).alerts,
            [HealthAlert::PacketLoss]
        );
        let mut over = inputs(3, 5.0, ok);
        over.live_peers = 11;
        assert_eq!(
            evaluate(&cfg, &mut m, over).alerts,
            [HealthAlert::OverCapacity]
        );
        // Sub-millisecond LAN jitter: 3x but under the floor.
        let mut lan = Memory {
            baseline_ms: Some(0.2),
            cpu_high_since: None,
        };
        let jitter = ProbeStats {
            rtt_ms: Some(0.6),
            ..ok
        };
        assert!(
            evaluate(&cfg, &mut lan, inputs(4, 5.0, jitter))
                .alerts
                .is_empty()
        );
    }
}
