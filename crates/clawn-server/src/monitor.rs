//! The control plane's watch over its nodes and devices, once a second, on one replica at
//! a time (the holder of the monitor lease, [`crate::store::lease`]; every write it makes
//! is fenced by the lease's term):
//!
//! - nodes with no heartbeat for the offline grace become `offline`;
//! - nodes offline beyond the failover delay, and draining nodes, have their live peers
//!   moved to the best eligible nodes of the same region (priority class first); devices
//!   that find no room wait, marked, and are retried every tick;
//! - peer classes follow priority tokens (start, expiry, revocation, quarantine);
//! - idle peers are flagged or removed by policy (every `sweep_interval_secs`);
//! - region load is sampled for the p95 scale-out signal, and the Prometheus gauges are set.
//!
//! Abuse signals are counted as they arrive (telemetry, region moves) by [`Abuse`].
//! Revocation never waits for this loop: it pushes at once (docs/architecture.md §5).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use clawn_proto::api::{AbuseSignals, NodeState, RegionLoad};
use clawn_proto::time::now_millis;
use uuid::Uuid;

use crate::app::AppState;
use crate::config::{AbuseConfig, HealthConfig};
use crate::store::Store;
use crate::store::nodes::PeerSignal;
use crate::store::routing::MoveOutcome;

/// Shared monitor state.
#[derive(Debug, Default)]
pub struct MonitorState {
    /// Abuse counters.
    pub abuse: Abuse,
    loads: Mutex<HashMap<String, VecDeque<(i64, f64)>>>,
    /// The monitor lease term this replica leads under; 0 while another replica leads.
    term: std::sync::atomic::AtomicI64,
}

/// Per-device abuse counters over a sliding window (in memory: a restart forgets them,
/// which errs on the side of the user).
#[derive(Debug, Default)]
pub struct Abuse {
    devices: Mutex<HashMap<Uuid, Counters>>,
}

#[derive(Debug, Default)]
struct Counters {
    endpoint_changes: VecDeque<i64>,
    region_switches: VecDeque<i64>,
    bursts: VecDeque<i64>,
}

/// A signal kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The node saw the device at a new endpoint.
    EndpointChange,
    /// The device asked to move region.
    RegionSwitch,
    /// A telemetry interval above the burst rate.
    Burst,
}

impl Abuse {
    /// Counts a signal; returns the quarantine reason if a threshold is now crossed.
    pub fn record(&self, cfg: &AbuseConfig, device: Uuid, s: Signal, now: i64) -> Option<String> {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(device).or_default();
        let window = i64::try_from(cfg.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let (q, limit, what) = match s {
            Signal::EndpointChange => (
                &mut c.endpoint_changes,
                cfg.endpoint_changes,
                "endpoint changes",
            ),
            Signal::RegionSwitch => (
                &mut c.region_switches,
                cfg.region_switches,
                "region switches",
            ),
            Signal::Burst => (&mut c.bursts, cfg.bursts, "byte bursts"),
        };
        q.push_back(now);
        while q.front().is_some_and(|t| *t <= now - window) || q.len() > limit.max(1) as usize {
            q.pop_front();
        }
        (limit > 0 && q.len() >= limit as usize).then(|| {
            format!(
                "{} {what} within {} s (threshold {limit})",
                q.len(),
                cfg.window_secs
            )
        })
    }

    /// The counts within the window now.
    pub fn signals(&self, cfg: &AbuseConfig, device: Uuid, now: i64) -> AbuseSignals {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let window = i64::try_from(cfg.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let n = |q: &VecDeque<i64>| {
            u32::try_from(q.iter().filter(|t| **t > now - window).count()).unwrap_or(u32::MAX)
        };
        map.get(&device)
            .map(|c| AbuseSignals {
                endpoint_changes: n(&c.endpoint_changes),
                region_switches: n(&c.region_switches),
                bursts: n(&c.bursts),
            })
            .unwrap_or_default()
    }
}

impl MonitorState {
    /// The term this replica runs the monitor under, if it does.
    pub fn leading(&self) -> Option<i64> {
        Some(self.term.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t > 0)
    }

    fn set_leading(&self, term: Option<i64>) {
        self.term
            .store(term.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// Region loads now and their p95 over the window.
    pub fn region_loads(&self, cfg: &HealthConfig) -> Vec<RegionLoad> {
        let loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<RegionLoad> = loads
            .iter()
            .map(|(region, samples)| {
                let mut v: Vec<f64> = samples.iter().map(|(_, l)| *l).collect();
                v.sort_by(f64::total_cmp);
                let p95 = percentile(&v, 0.95);
                let window_ms = cfg.scale_out_window_secs.saturating_mul(1000) as f64;
                let covered = match (samples.front(), samples.back()) {
                    (Some(a), Some(b)) => (b.0 - a.0) as f64,
                    _ => 0.0,
                };
                RegionLoad {
                    region: region.clone(),
                    load: samples.back().map(|(_, l)| *l).unwrap_or(0.0),
                    load_p95: p95,
                    samples: u32::try_from(v.len()).unwrap_or(u32::MAX),
                    // "Sustained": the samples must span at least half the window.
                    scale_out: p95 * 100.0 > cfg.scale_out_load_percent
                        && covered >= window_ms / 2.0,
                }
            })
            .collect();
        out.sort_by(|a, b| a.region.cmp(&b.region));
        out
    }

    fn sample(&self, cfg: &HealthConfig, region: &str, load: f64, now: i64) {
        let mut loads = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        let q = loads.entry(region.to_string()).or_default();
        q.push_back((now, load));
        let window =
            i64::try_from(cfg.scale_out_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        while q.front().is_some_and(|(t, _)| *t < now - window) {
            q.pop_front();
        }
    }
}

/// The nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Handles the abuse signals of one telemetry report.
pub async fn telemetry_signals(app: &AppState, signals: &[PeerSignal]) {
    let cfg = &app.config.abuse;
    let now = now_millis();
    for s in signals {
        let mut reasons = Vec::new();
        if s.endpoint_changed
            && let Some(r) = app
                .monitor
                .abuse
                .record(cfg, s.device_id, Signal::EndpointChange, now)
        {
            reasons.push(r);
        }
        if s.bytes_per_sec > cfg.burst_bytes_per_sec
            && let Some(r) = app
                .monitor
                .abuse
                .record(cfg, s.device_id, Signal::Burst, now)
        {
            reasons.push(r);
        }
        if let Some(reason) = reasons.first() {
            crate::service::routing::quarantine(app, s.device_id, reason).await;
        }
    }
}

/// Runs until shutdown: each tick, checks (or tries to take) the monitor lease and, while
/// this replica holds it, does one pass with writes fenced by the lease's term.
pub async fn run(app: AppState) {
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Counters exist from the start (at 0), so `increase()` sees their first event.
    for reason in ["failover", "drain"] {
        metrics::counter!("clawn_failovers_total", "reason" => reason).increment(0);
    }
    metrics::counter!("clawn_quarantines_total").increment(0);
    let mut contender = crate::store::lease::Contender::new(app.replica_id);
    let mut led: Option<(i64, i64)> = None; // (term, since)
    let mut last_sweep = 0i64;
    let mut last_sample = 0i64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let now = now_millis();
        let term = match contender.lead(&app.store, now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the monitor lease; not acting this tick");
                None
            }
        };
        let Some(term) = term else {
            if let Some((old, _)) = led.take() {
                tracing::warn!(term = old, "this replica no longer runs the monitor");
            }
            app.monitor.set_leading(None);
            metrics::gauge!("clawn_monitor_leader").set(0.0);
            continue;
        };
        // A node's silence and its offline time only count from when this replica took
        // the monitor, so a restart or a leader change never looks like every node
        // failing at once.
        let since = match led {
            Some((t, since)) if t == term => since,
            _ => {
                tracing::info!(term, replica = %app.replica_id, "this replica runs the monitor");
                led = Some((term, now));
                // A new leader starts its own sampling window and sweep clock.
                last_sweep = now;
                now
            }
        };
        app.monitor.set_leading(Some(term));
        metrics::gauge!("clawn_monitor_leader").set(1.0);
        metrics::gauge!("clawn_monitor_term").set(term as f64);
        let store = app.store.fenced(term);
        if let Err(e) = step(&app, &store, now, since).await {
            tracing::warn!(error = %e, "monitor step failed; retrying next tick");
        }
        let sweep_ms = i64::try_from(app.config.hygiene.sweep_interval_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        if now - last_sweep >= sweep_ms {
            last_sweep = now;
            if let Err(e) = idle_sweep(&app, &store, now).await {
                tracing::warn!(error = %e, "idle sweep failed");
            }
        }
        let sample_ms = i64::try_from(
            (app.config.health.scale_out_window_secs * 1000 / 360).clamp(1000, 10_000),
        )
        .unwrap_or(10_000);
        if now - last_sample >= sample_ms {
            last_sample = now;
            if let Err(e) = sample_and_export(&app, now).await {
                tracing::warn!(error = %e, "metrics sample failed");
            }
        }
    }
    // Hand the lease over at once rather than after the database notices a dead session.
    app.monitor.set_leading(None);
    contender.resign().await;
}

/// Moves per tick at most (the rest follow on the next ticks, so one large node cannot
/// hold up offline marking and classes for everyone else). Moves are committed in
/// batches of [`crate::store::routing::EVACUATION_BATCH`].
const MOVES_PER_TICK: usize = 2_000;

/// Added to a node's lease before its devices move: message delay and clock-rate slack.
const LEASE_MARGIN_MS: i64 = 1_000;

/// How long nodes get to reconnect after the control plane starts before silence counts:
/// their reconnect backoff is capped at 30 s.
const RECONNECT_ALLOWANCE_MS: i64 = 30_000;

/// One pass: offline marking, evacuations, waiting retries, classes. `started`: when this
/// control plane started; a node's silence and its offline time only count from then, so
/// a control-plane restart never looks like every node failing at once.
///
/// `store` is the handle every write goes through: the monitor's fenced one (a deposed
/// leader's writes are refused), or the plain store in tests.
pub async fn step(app: &AppState, store: &Store, now: i64, started: i64) -> anyhow::Result<()> {
    let h = &app.config.health;
    let grace = i64::try_from(h.offline_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Nodes not heard from since this control plane started get the reconnect allowance
    // on top; nodes that connected since are judged by the grace and delay alone.
    let settled = started.saturating_add(RECONNECT_ALLOWANCE_MS);
    for id in store
        .mark_silent_offline(now, grace, started, settled)
        .await?
    {
        tracing::warn!(node = %id, "node silent beyond the grace; marked offline");
    }
    let delay = i64::try_from(h.failover_delay_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut budget = MOVES_PER_TICK;
    // A lease granted at time g follows a heartbeat write at most HEARTBEAT_WRITE_MS
    // before g, and ends at g + lease on the node (the store adds the node's lease).
    let lease_slack = crate::http::node::HEARTBEAT_WRITE_MS + LEASE_MARGIN_MS;
    'nodes: for ev in store
        .evacuations(now, delay, started, settled, lease_slack)
        .await?
    {
        let devices = store.devices_on_node(ev.node_id).await?;
        let mut done = 0;
        while done < devices.len() && budget > 0 {
            let take = (devices.len() - done)
                .min(budget)
                .min(crate::store::routing::EVACUATION_BATCH);
            let batch = &devices[done..done + take];
            let results = match crate::service::routing::evacuate_batch(app, store, ev, batch).await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(node = %ev.node_id, error = %e, "evacuation batch failed");
                    continue 'nodes;
                }
            };
            done += results.len();
            budget = budget.saturating_sub(results.len());
            for (device, outcome) in results {
                match outcome {
                    MoveOutcome::Moved { to_node, .. } => {
                        metrics::counter!("clawn_failovers_total", "reason" => ev.reason.as_str())
                            .increment(1);
                        tracing::info!(device = %device, from = %ev.node_id, to = %to_node, reason = ev.reason.as_str(), "device moved");
                    }
                    // No room in the region: the rest of this node's devices would not fit
                    // either; they are all marked waiting at once.
                    MoveOutcome::Waiting { newly } => {
                        if newly {
                            tracing::warn!(device = %device, node = %ev.node_id, "no capacity to move device; waiting");
                        }
                        let marked = store.mark_waiting(&devices[done..], now).await?;
                        if marked > 0 {
                            tracing::warn!(node = %ev.node_id, devices = marked, "no capacity in the region; devices wait");
                        }
                        continue 'nodes;
                    }
                    MoveOutcome::Nothing => {}
                }
            }
        }
    }
    store.clear_recovered_waiting().await?;
    crate::service::routing::sync_peer_classes(app, store, now).await?;
    Ok(())
}

async fn idle_sweep(app: &AppState, store: &Store, now: i64) -> anyhow::Result<()> {
    let (flagged, removed) = crate::service::routing::idle_sweep(app, store, now).await?;
    if flagged > 0 {
        tracing::info!(flagged, removed, "idle peers");
    }
    Ok(())
}

async fn sample_and_export(app: &AppState, now: i64) -> anyhow::Result<()> {
    let h = &app.config.health;
    for (region, load) in app.store.region_loads().await? {
        app.monitor.sample(h, &region, load, now);
    }
    for r in app.monitor.region_loads(h) {
        let labels = [("region", r.region.clone())];
        metrics::gauge!("clawn_region_load_ratio", &labels).set(r.load);
        metrics::gauge!("clawn_region_load_p95_ratio", &labels).set(r.load_p95);
        metrics::gauge!("clawn_region_scale_out_needed", &labels).set(if r.scale_out {
            1.0
        } else {
            0.0
        });
    }
    let nodes = app.store.list_nodes(|n| app.hub.is_connected(n)).await?;
    for n in &nodes {
        let labels = [
            ("node", n.name.clone()),
            ("node_id", n.id.to_string()),
            ("region", n.region.clone()),
        ];
        for s in NodeState::ALL {
            let mut l = labels.to_vec();
            l.push(("state", s.as_str().to_string()));
            metrics::gauge!("clawn_node_state", &l).set(if n.state == s { 1.0 } else { 0.0 });
        }
        metrics::gauge!("clawn_node_up", &labels).set(if n.connected { 1.0 } else { 0.0 });
        metrics::gauge!("clawn_node_score", &labels).set(n.score.total);
        metrics::gauge!("clawn_node_live_peers", &labels).set(f64::from(n.live_peers));
        metrics::gauge!("clawn_node_capacity", &labels).set(f64::from(n.capacity));
        metrics::gauge!("clawn_node_eligible", &labels).set(if n.eligible { 1.0 } else { 0.0 });
        let m = n.metrics.clone().unwrap_or_default();
        metrics::gauge!("clawn_node_cpu_percent", &labels).set(m.cpu_percent);
        let mut rx = labels.to_vec();
        rx.push(("direction", "rx".into()));
        metrics::gauge!("clawn_node_bandwidth_bytes_per_second", &rx)
            .set(m.rx_bytes_per_sec as f64);
        let mut tx = labels.to_vec();
        tx.push(("direction", "tx".into()));
        metrics::gauge!("clawn_node_bandwidth_bytes_per_second", &tx)
            .set(m.tx_bytes_per_sec as f64);
        metrics::gauge!("clawn_node_bandwidth_utilisation_ratio", &labels).set(n.score.bandwidth);
        metrics::gauge!("clawn_node_link_capacity_mbps", &labels).set(n.link_mbps as f64);
        if let Some(l) = n.health.loss_ratio {
            metrics::gauge!("clawn_node_packet_loss_ratio", &labels).set(l);
        }
        if let Some(r) = n.health.rtt_ms {
            metrics::gauge!("clawn_node_latency_ms", &labels).set(r);
        }
        if let Some(b) = n.health.baseline_rtt_ms {
            metrics::gauge!("clawn_node_latency_baseline_ms", &labels).set(b);
        }
        for &alert in clawn_proto::api::HealthAlert::ALL {
            let mut l = labels.to_vec();
            l.push(("alert", alert.to_string()));
            let firing = n.health.alerts.contains(&alert)
                && matches!(n.state, NodeState::Online | NodeState::Degraded);
            metrics::gauge!("clawn_node_alert", &l).set(if firing { 1.0 } else { 0.0 });
        }
    }
    let (waiting, quarantined, idle) = app.store.hygiene_counts().await?;
    metrics::gauge!("clawn_devices_waiting_for_capacity").set(waiting as f64);
    metrics::gauge!("clawn_devices_quarantined").set(quarantined as f64);
    metrics::gauge!("clawn_peers_idle_flagged").set(idle as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&[0.5], 0.95), 0.5);
        assert_eq!(percentile(&[], 0.95), 0.0);
    }

    #[test]
    fn abuse_thresholds_within_the_window() {
        let cfg = AbuseConfig {
            window_secs: 10,
            endpoint_changes: 3,
            ..AbuseConfig::default()
        };
        let a = Abuse::default();
        let d = Uuid::new_v4();
        assert!(a.record(&cfg, d, Signal::EndpointChange, 0).is_none());
        assert!(a.record(&cfg, d, Signal::EndpointChange, 1_000).is_none());
        // The first falls out of the window: still two.
        assert!(a.record(&cfg, d, Signal::EndpointChange, 10_500).is_none());
        assert!(a.record(&cfg, d, Signal::EndpointChange, 10_800).is_some());
        assert_eq!(a.signals(&cfg, d, 10_800).endpoint_changes, 3);
        assert_eq!(
            a.signals(&cfg, Uuid::new_v4(), 11_000),
            AbuseSignals::default()
        );
    }
}
