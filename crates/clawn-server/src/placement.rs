//! The load score and node choice (docs/architecture.md §4), as pure functions of what the store
//! knows about each node, so they are property-tested without a database.
//!
//! Hard constraints first: state `online`, heartbeat fresh, live peers below the seats
//! the device may use, right region (the caller only passes the region's nodes). Then a
//! score in 0..=1 from live peers / capacity, bandwidth utilisation, CPU and latency
//! band, weighted by configuration; the lowest wins, ties broken by node id.
//!
//! Seats: a standard device may use `capacity - reserve` seats of a node, where the
//! reserve is `priority_reserve_percent` of capacity rounded down; a device whose owner
//! holds a valid priority token for the region may use them all. So a priority device
//! gets the best node with headroom even when standard devices already filled it.

use clawn_proto::api::{NodeState, ScoreParts};
use uuid::Uuid;

use crate::config::PlacementConfig;

/// What placement needs to know about one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Node id.
    pub id: Uuid,
    /// State.
    pub state: NodeState,
    /// Whether its last heartbeat is within the offline grace.
    pub heartbeat_fresh: bool,
    /// Live peers.
    pub live_peers: u32,
    /// Capacity.
    pub capacity: u32,
    /// Receive + transmit rate, bytes/s (from telemetry), if reported.
    pub bytes_per_sec: Option<u64>,
    /// Link capacity, Mbit/s.
    pub link_mbps: u64,
    /// CPU use, percent, if reported.
    pub cpu_percent: Option<f64>,
    /// Probe round trip, ms, if measured.
    pub rtt_ms: Option<f64>,
}

/// Why a node cannot take a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    /// Not `online` (degraded, offline, maintenance, draining, experimental, pending).
    State(NodeState),
    /// No heartbeat within the grace.
    Stale,
    /// No seat this device may use.
    Full,
}

/// Seats a node offers a device: all of them for a priority device, capacity minus the
/// priority reserve otherwise.
pub fn seats(capacity: u32, reserve_percent: u32, priority: bool) -> u32 {
    if priority {
        capacity
    } else {
        capacity - capacity * reserve_percent.min(100) / 100
    }
}

/// The reserve percent a device's seat check uses: none for a priority device.
pub fn reserve_percent(cfg: &PlacementConfig, priority: bool) -> u32 {
    if priority {
        0
    } else {
        cfg.priority_reserve_percent.min(100)
    }
}

/// The hard constraints.
pub fn eligible(c: &Candidate, cfg: &PlacementConfig, priority: bool) -> Result<(), Ineligible> {
    if c.state != NodeState::Online {
        return Err(Ineligible::State(c.state));
    }
    if !c.heartbeat_fresh {
        return Err(Ineligible::Stale);
    }
    if c.live_peers >= seats(c.capacity, reserve_percent(cfg, priority), false) {
        return Err(Ineligible::Full);
    }
    Ok(())
}

/// The latency band of a round trip: 0 for the first bound, `bands.len()` above the last.
/// An unmeasured node sits in the middle band (neither favoured nor shunned).
pub fn latency_band(rtt_ms: Option<f64>, bands: &[f64]) -> u32 {
    let n = u32::try_from(bands.len()).unwrap_or(u32::MAX);
    match rtt_ms {
        None => n / 2,
        Some(rtt) => u32::try_from(bands.iter().take_while(|b| rtt > **b).count()).unwrap_or(n),
    }
}

/// The load score and its parts (each part 0..=1 before weighting).
pub fn score(c: &Candidate, cfg: &PlacementConfig) -> ScoreParts {
    let clamp = |v: f64| {
        if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            1.0
        }
    };
    let peers = if c.capacity == 0 {
        1.0
    } else {
        clamp(f64::from(c.live_peers) / f64::from(c.capacity))
    };
    let link_bytes = c.link_mbps.max(1) as f64 * 1_000_000.0 / 8.0;
    let bandwidth = clamp(c.bytes_per_sec.unwrap_or(0) as f64 / link_bytes);
    let cpu = clamp(c.cpu_percent.unwrap_or(0.0) / 100.0);
    let band = latency_band(c.rtt_ms, &cfg.latency_bands_ms);
    let latency = if cfg.latency_bands_ms.is_empty() {
        0.0
    } else {
        f64::from(band) / cfg.latency_bands_ms.len() as f64
    };
    let weights = cfg.weight_peers + cfg.weight_bandwidth + cfg.weight_cpu + cfg.weight_latency;
    let total = if weights > 0.0 {
        (cfg.weight_peers * peers
            + cfg.weight_bandwidth * bandwidth
            + cfg.weight_cpu * cpu
            + cfg.weight_latency * latency)
            / weights
    } else {
        0.0
    };
    ScoreParts {
        total,
        peers,
        bandwidth,
        cpu,
        latency,
        latency_band: band,
    }
}

/// The best eligible candidate: lowest score, then lowest id. `None` if none qualifies.
pub fn choose<'a>(
    candidates: &'a [Candidate],
    cfg: &PlacementConfig,
    priority: bool,
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| eligible(c, cfg, priority).is_ok())
        .map(|c| (score(c, cfg).total, c))
        .min_by(|(a, ca), (b, cb)| a.total_cmp(b).then_with(|| ca.id.cmp(&cb.id)))
        .map(|(_, c)| c)
}

/// The candidates in preference order (eligible ones only), for claiming under
/// concurrency: if the best is taken meanwhile the next is tried.
pub fn ranked<'a>(
    candidates: &'a [Candidate],
    cfg: &PlacementConfig,
    priority: bool,
) -> Vec<&'a Candidate> {
    let mut v: Vec<(f64, &Candidate)> = candidates
        .iter()
        .filter(|c| eligible(c, cfg, priority).is_ok())
        .map(|c| (score(c, cfg).total, c))
        .collect();
    v.sort_by(|(a, ca), (b, cb)| a.total_cmp(b).then_with(|| ca.id.cmp(&cb.id)));
    v.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = NodeState> {
        prop::sample::select(NodeState::ALL.to_vec())
    }

    prop_compose! {
        fn candidate()(
            id in any::<u128>(),
            state in prop_oneof![3 => Just(NodeState::Online), 1 => state()],
            heartbeat_fresh in prop::bool::weighted(0.85),
            capacity in 0u32..50,
            live in 0u32..55,
            bps in prop::option::of(0u64..400_000_000),
            link in 1u64..10_000,
            cpu in prop::option::of(0.0f64..100.0),
            rtt in prop::option::of(0.0f64..400.0),
        ) -> Candidate {
            Candidate {
                id: Uuid::from_u128(id),
                state,
                heartbeat_fresh,
                live_peers: live,
                capacity,
                bytes_per_sec: bps,
                link_mbps: link,
                cpu_percent: cpu,
                rtt_ms: rtt,
            }
        }
    }

    prop_compose! {
        fn weights()(
            p in 0.01f64..1.0, b in 0.01f64..1.0, c in 0.01f64..1.0, l in 0.01f64..1.0,
            reserve in 0u32..50,
        ) -> PlacementConfig {
            PlacementConfig {
                weight_peers: p,
                weight_bandwidth: b,
                weight_cpu: c,
                weight_latency: l,
                priority_reserve_percent: reserve,
                ..PlacementConfig::default()
            }
        }
    }

    proptest! {
        /// Never an ineligible node: wrong state, stale heartbeat or no seat.
        #[test]
        fn never_picks_an_ineligible_node(
            cands in prop::collection::vec(candidate(), 0..12),
            cfg in weights(),
            priority in any::<bool>(),
        ) {
            if let Some(c) = choose(&cands, &cfg, priority) {
                prop_assert_eq!(c.state, NodeState::Online);
                prop_assert!(c.heartbeat_fresh);
                prop_assert!(c.live_peers < seats(c.capacity, cfg.priority_reserve_percent, priority));
                prop_assert!(c.live_peers < c.capacity);
            } else {
                prop_assert!(cands.iter().all(|c| eligible(c, &cfg, priority).is_err()));
            }
        }

        /// The choice has the lowest score of all eligible nodes, and a node that is
        /// strictly better on one part and no worse on the others always wins over it.
        #[test]
        fn a_strictly_better_node_is_preferred(
            base in candidate(),
            cfg in weights(),
            which in 0usize..4,
            others in prop::collection::vec(candidate(), 0..6),
        ) {
            let mut worse = Candidate { state: NodeState::Online, heartbeat_fresh: true, ..base };
            worse.capacity = worse.capacity.max(20);
            worse.live_peers = worse.live_peers.clamp(1, 10);
            worse.bytes_per_sec = Some(worse.bytes_per_sec.unwrap_or(0).max(1_000_000));
            worse.cpu_percent = Some(worse.cpu_percent.unwrap_or(50.0).max(10.0));
            worse.rtt_ms = Some(worse.rtt_ms.unwrap_or(300.0).max(60.0));
            worse.link_mbps = 100;
            let mut better = worse.clone();
            better.id = Uuid::from_u128(worse.id.as_u128().wrapping_add(1));
            match which {
                0 => better.live_peers = worse.live_peers - 1,
                1 => better.bytes_per_sec = Some(0),
                2 => better.cpu_percent = Some(worse.cpu_percent.unwrap_or(0.0) / 2.0),
                _ => better.rtt_ms = Some(0.0),
            }
            let mut all = others;
            all.push(worse.clone());
            all.push(better.clone());
            let chosen = choose(&all, &cfg, false).expect("two eligible nodes");
            prop_assert_ne!(chosen.id, worse.id, "a dominated node was chosen");
            let best = score(chosen, &cfg).total;
            for c in all.iter().filter(|c| eligible(c, &cfg, false).is_ok()) {
                prop_assert!(best <= score(c, &cfg).total);
            }
        }

        /// Every part and the total stay within 0..=1, whatever the inputs.
        #[test]
        fn scores_are_bounded(c in candidate(), cfg in weights()) {
            let s = score(&c, &cfg);
            for v in [s.total, s.peers, s.bandwidth, s.cpu, s.latency] {
                prop_assert!((0.0..=1.0).contains(&v), "{v}");
            }
        }
    }

    #[test]
    fn reserve_keeps_seats_for_priority_devices() {
        assert_eq!(seats(10, 10, false), 9);
        assert_eq!(seats(10, 10, true), 10);
        assert_eq!(
            seats(5, 10, false),
            5,
            "rounded down: small nodes keep no reserve"
        );
        assert_eq!(seats(100, 0, false), 100);
    }

    #[test]
    fn latency_bands() {
        let b = [20.0, 50.0, 100.0, 200.0];
        assert_eq!(latency_band(Some(3.0), &b), 0);
        assert_eq!(latency_band(Some(20.0), &b), 0);
        assert_eq!(latency_band(Some(20.5), &b), 1);
        assert_eq!(latency_band(Some(500.0), &b), 4);
        assert_eq!(latency_band(None, &b), 2);
    }
}
