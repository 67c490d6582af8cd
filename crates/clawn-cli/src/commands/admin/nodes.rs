//! `clawn admin node ...`: the nodes, their load score and health.

use clawn_proto::api::HealthAlert;
use clawn_proto::api::{NodeView, UpdateNodeRequest};
use clawn_proto::time::now_millis;

use crate::cli::NodeCommand;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note, or_dash};
use crate::resolve::resolve;
use crate::time::format_ago;

pub(super) async fn find_node(client: &Client, query: &str) -> Result<NodeView, CliError> {
    let nodes = client.nodes().await?;
    Ok(resolve(&nodes, query)?.clone())
}

fn node_table(nodes: &[&NodeView]) -> String {
    let now = now_millis();
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "REGION",
        "STATE",
        "LINK",
        "ENDPOINT",
        "PEERS",
        "VERSION",
        "HEARTBEAT",
        "CPU",
        "SCORE",
        "HEALTH",
    ]);
    for n in nodes {
        let version = match n.acked_version {
            Some(a) if a == n.version => format!("{}", n.version),
            Some(a) => format!("{a}/{}", n.version),
            None => format!("-/{}", n.version),
        };
        t.row(vec![
            n.id.to_string(),
            n.name.clone(),
            n.region.clone(),
            n.state.as_str().into(),
            if n.connected {
                "up".into()
            } else {
                "down".into()
            },
            n.endpoint.clone(),
            format!("{}/{}", n.live_peers, n.capacity),
            version,
            or_dash(n.last_heartbeat.map(|h| format_ago(now, h))),
            or_dash(n.metrics.as_ref().map(|m| format!("{:.0}%", m.cpu_percent))),
            format!("{:.2}", n.score.total),
            health_text(n),
        ]);
    }
    t.render()
}

/// A node's health in a few words: the alert reason, else why placement skips it, else `ok`.
pub(super) fn health_text(n: &NodeView) -> String {
    if let Some(v) = health_verdict(n) {
        return v;
    }
    match (&n.ineligible_reason, n.eligible) {
        (Some(r), _) => format!("not eligible: {r}"),
        (None, false) => "not eligible".into(),
        (None, true) => "ok".into(),
    }
}

/// The health check's verdict when something is wrong: its reason, or the alerts holding.
pub(super) fn health_verdict(n: &NodeView) -> Option<String> {
    if let Some(r) = &n.health.reason {
        return Some(r.clone());
    }
    (!n.health.alerts.is_empty()).then(|| alerts_text(&n.health.alerts, ", "))
}

/// Alert names joined by `sep`.
pub(super) fn alerts_text(alerts: &[HealthAlert], sep: &str) -> String {
    alerts
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

pub(super) async fn node(client: &Client, cmd: NodeCommand) -> Result<(), CliError> {
    match cmd {
        NodeCommand::List { region, json } => {
            let nodes = client.nodes().await?;
            let nodes: Vec<&NodeView> = nodes
                .iter()
                .filter(|n| region.as_deref().is_none_or(|r| n.region == r))
                .collect();
            if json {
                return emit_json(&nodes);
            }
            if nodes.is_empty() {
                note("no nodes; enroll one with `clawn admin node-token create --region REGION`");
                return Ok(());
            }
            emit(&node_table(&nodes))?;
            if nodes.iter().any(|n| {
                n.acked_version.is_some_and(|a| a != n.version) || n.acked_version.is_none()
            }) {
                note("VERSION a/b: the node acknowledged version a of its desired state b");
            }
            Ok(())
        }
        NodeCommand::SetState { node, state } => {
            let n = find_node(client, &node).await?;
            let updated = client
                .update_node(
                    n.id,
                    &UpdateNodeRequest {
                        state: Some(state),
                        ..Default::default()
                    },
                )
                .await?;
            emit(&format!(
                "node {} is now {}",
                updated.name,
                updated.state.as_str()
            ))
        }
        NodeCommand::Update {
            node,
            name,
            capacity,
            state,
            link_mbps,
        } => {
            if name.is_none() && capacity.is_none() && state.is_none() && link_mbps.is_none() {
                return Err(CliError::input_with_hint(
                    "nothing to change",
                    "pass --name, --capacity, --state or --link-mbps",
                ));
            }
            let n = find_node(client, &node).await?;
            let updated = client
                .update_node(
                    n.id,
                    &UpdateNodeRequest {
                        state,
                        capacity,
                        name,
                        link_mbps,
                    },
                )
                .await?;
            emit(&node_table(&[&updated]))
        }
        NodeCommand::Remove { node, force } => {
            let n = find_node(client, &node).await?;
            client.remove_node(n.id, force).await?;
            emit(&format!("removed node {} ({})", n.name, n.id))
        }
    }
}
