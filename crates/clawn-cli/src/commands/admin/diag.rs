//! `clawn admin diag`: region load, node health, waiting and quarantined devices.

use clawn_proto::api::{
    AuditEventView, DeviceDiagnostics, DeviceView, DiagnosticsOverview, NodeDiagnostics, RegionLoad,
};
use clawn_proto::time::now_millis;

use super::devices::any_device_id;
use super::nodes::{alerts_text, find_node, health_text, health_verdict};
use crate::cli::DiagArgs;
use crate::client::Client;
use crate::error::CliError;
use crate::output::device::key_values;
use crate::output::{Table, emit, emit_json, or_dash};
use crate::resolve::as_id;
use crate::time::{format_ago, format_utc};

pub(super) async fn diag(client: &Client, args: DiagArgs) -> Result<(), CliError> {
    if let Some(device) = &args.device {
        let id = any_device_id(client, device).await?;
        let d = client.device_diagnostics(id).await?;
        return if args.json {
            emit_json(&d)
        } else {
            emit(&device_diag_text(&d))
        };
    }
    if let Some(node) = &args.node {
        let id = match as_id(node) {
            Some(id) => id,
            None => find_node(client, node).await?.id,
        };
        let d = client.node_diagnostics(id).await?;
        return if args.json {
            emit_json(&d)
        } else {
            emit(&node_diag_text(&d))
        };
    }
    let overview = client.diagnostics().await?;
    if args.json {
        return emit_json(&overview);
    }
    emit(&overview_text(&overview))
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn region_load_table(regions: &[RegionLoad]) -> String {
    let mut t = Table::new(&["REGION", "LOAD", "P95", "SAMPLES", "SCALE-OUT"]);
    for r in regions {
        t.row(vec![
            r.region.clone(),
            percent(r.load),
            percent(r.load_p95),
            r.samples.to_string(),
            if r.scale_out {
                "yes: add a node".into()
            } else {
                "no".into()
            },
        ]);
    }
    t.render()
}

fn diag_node_table(nodes: &[&NodeDiagnostics]) -> String {
    let mut t = Table::new(&[
        "NAME", "REGION", "STATE", "LINK", "PEERS", "WAITING", "SCORE", "RTT", "LOSS", "ALERTS",
        "HEALTH",
    ]);
    for d in nodes {
        let n = &d.node;
        t.row(vec![
            n.name.clone(),
            n.region.clone(),
            n.state.as_str().into(),
            if n.connected {
                "up".into()
            } else {
                "down".into()
            },
            format!("{}/{}", n.live_peers, n.capacity),
            d.waiting_devices.to_string(),
            format!("{:.2}", n.score.total),
            or_dash(n.health.rtt_ms.map(|r| format!("{r:.1}ms"))),
            or_dash(n.health.loss_ratio.map(|l| format!("{:.1}%", l * 100.0))),
            if n.health.alerts.is_empty() {
                "-".into()
            } else {
                alerts_text(&n.health.alerts, ",")
            },
            health_text(n),
        ]);
    }
    t.render()
}

/// Events as a table: time, subject (node or device name), action, actor, details.
fn event_table(events: &[(&str, &AuditEventView)]) -> String {
    let mut t = Table::new(&["TIME (UTC)", "WHAT", "ACTION", "BY", "DETAILS"]);
    for (subject, e) in events {
        t.row(vec![
            format_utc(e.at),
            (*subject).to_string(),
            e.action.to_string(),
            crate::commands::audit::actor_cell(e),
            crate::commands::audit::details_cell(e),
        ]);
    }
    t.render()
}

/// Devices waiting or quarantined, with their owners.
fn attention_table(devices: &[DeviceView]) -> String {
    let now = now_millis();
    let mut t = Table::new(&[
        "ID",
        "OWNER",
        "NAME",
        "REGION",
        "NODE",
        "SINCE MOVE",
        "REASON",
    ]);
    for d in devices {
        t.row(vec![
            d.id.to_string(),
            or_dash(d.owner_email.clone().or(d.owner_id.map(|i| i.to_string()))),
            d.name.clone(),
            d.region.clone(),
            or_dash(d.node.as_ref().map(|n| n.name.as_str())),
            or_dash(d.moved_at.map(|m| format_ago(now, m))),
            or_dash(d.quarantine_reason.as_deref()),
        ]);
    }
    t.render()
}

/// The operations overview as text sections.
fn overview_text(o: &DiagnosticsOverview) -> String {
    let mut out = String::new();
    out.push_str("REGIONS\n");
    if o.regions.is_empty() {
        out.push_str("(no load samples yet)\n");
    } else {
        out.push_str(&region_load_table(&o.regions));
    }
    out.push_str("\nNODES\n");
    if o.nodes.is_empty() {
        out.push_str("(no nodes)\n");
    } else {
        out.push_str(&diag_node_table(&o.nodes.iter().collect::<Vec<_>>()));
    }
    let mut changes: Vec<(&str, &AuditEventView)> = o
        .nodes
        .iter()
        .flat_map(|d| d.state_changes.iter().map(|e| (d.node.name.as_str(), e)))
        .collect();
    changes.sort_by(|a, b| b.1.at.cmp(&a.1.at).then(b.1.id.cmp(&a.1.id)));
    changes.truncate(10);
    out.push_str("\nRECENT NODE STATE CHANGES\n");
    if changes.is_empty() {
        out.push_str("(none)\n");
    } else {
        out.push_str(&event_table(&changes));
    }
    out.push_str(&format!("\nWAITING FOR CAPACITY ({})\n", o.waiting.len()));
    if !o.waiting.is_empty() {
        out.push_str(&attention_table(&o.waiting));
    }
    out.push_str(&format!("\nQUARANTINED ({})\n", o.quarantined.len()));
    if !o.quarantined.is_empty() {
        out.push_str(&attention_table(&o.quarantined));
        out.push_str("release one with `clawn admin device release DEVICE`\n");
    }
    out
}

fn node_diag_text(d: &NodeDiagnostics) -> String {
    let n = &d.node;
    let now = now_millis();
    let mut rows: Vec<(&str, String)> = vec![
        ("id", n.id.to_string()),
        ("name", n.name.clone()),
        ("region", n.region.clone()),
        (
            "state",
            match n.offline_since {
                Some(at) => format!(
                    "{} (offline since {})",
                    n.state.as_str(),
                    format_ago(now, at)
                ),
                None => n.state.as_str().into(),
            },
        ),
        (
            "stream",
            if n.connected {
                "connected".into()
            } else {
                "not connected".into()
            },
        ),
        ("endpoint", n.endpoint.clone()),
        (
            "peers",
            format!(
                "{}/{} ({} waiting for capacity elsewhere)",
                n.live_peers, n.capacity, d.waiting_devices
            ),
        ),
        (
            "eligible",
            match (&n.ineligible_reason, n.eligible) {
                (_, true) => "yes".into(),
                (Some(r), false) => format!("no ({r})"),
                (None, false) => "no".into(),
            },
        ),
        (
            "score",
            format!(
                "{:.2} (peers {:.2}, bandwidth {:.2}, cpu {:.2}, latency {:.2} band {})",
                n.score.total,
                n.score.peers,
                n.score.bandwidth,
                n.score.cpu,
                n.score.latency,
                n.score.latency_band
            ),
        ),
        ("link", format!("{} Mbit/s", n.link_mbps)),
        (
            "rtt",
            match (n.health.rtt_ms, n.health.baseline_rtt_ms) {
                (Some(r), Some(b)) => format!("{r:.1} ms (baseline {b:.1} ms)"),
                (Some(r), None) => format!("{r:.1} ms"),
                _ => "-".into(),
            },
        ),
        (
            "loss",
            or_dash(
                n.health
                    .loss_ratio
                    .map(|l| format!("{:.1}% of {} probes", l * 100.0, n.health.probes)),
            ),
        ),
        (
            "alerts",
            if n.health.alerts.is_empty() {
                "-".into()
            } else {
                alerts_text(&n.health.alerts, ", ")
            },
        ),
        ("health", health_verdict(n).unwrap_or_else(|| "ok".into())),
        (
            "heartbeat",
            or_dash(n.last_heartbeat.map(|h| format_ago(now, h))),
        ),
    ];
    if let Some(m) = &n.metrics {
        rows.push(("cpu", format!("{:.0}%", m.cpu_percent)));
    }
    let mut out = key_values(&rows);
    out.push_str("\n\nRECENT STATE CHANGES\n");
    if d.state_changes.is_empty() {
        out.push_str("(none)\n");
    } else {
        let events: Vec<(&str, &AuditEventView)> = d
            .state_changes
            .iter()
            .map(|e| (n.name.as_str(), e))
            .collect();
        out.push_str(&event_table(&events));
    }
    out
}

fn device_diag_text(d: &DeviceDiagnostics) -> String {
    let dev = &d.device;
    let mut rows = crate::output::device::device_rows(dev, None);
    rows.push((
        "handshake age",
        or_dash(
            d.handshake_age_ms
                .map(|ms| crate::time::format_duration_secs(u64::try_from(ms / 1000).unwrap_or(0))),
        ),
    ));
    rows.push((
        "signals",
        format!(
            "{} endpoint changes, {} region switches, {} bursts in the current window",
            d.signals.endpoint_changes, d.signals.region_switches, d.signals.bursts
        ),
    ));
    let mut out = key_values(&rows);
    out.push_str("\n\nRECENT MOVES\n");
    if d.moves.is_empty() {
        out.push_str("(none)\n");
    } else {
        let events: Vec<(&str, &AuditEventView)> =
            d.moves.iter().map(|e| (dev.name.as_str(), e)).collect();
        out.push_str(&event_table(&events));
    }
    out
}
