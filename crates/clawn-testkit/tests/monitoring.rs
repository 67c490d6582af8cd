//! The Prometheus alerting rules in `docs/alerts/clawn-rules.yml` against the server:
//! every `clawn_*` metric the file names is exported by a running control plane with a
//! node, under that name and with the labels the rules select on, and the rules alert on
//! the seed's thresholds, which are the server's health defaults. Renaming a metric in the
//! server, or a typo in the rules, fails here.
//!
//! No YAML parser is a dependency of this crate, so the file is read as text: rules start
//! at `- alert:`, and an `expr:` is its line or, for a block scalar (`expr: >-`), the more
//! indented lines after it.

use std::collections::BTreeSet;
use std::time::Duration;

use clawn_proto::node::{HostMetrics, Telemetry};
use clawn_proto::time::now_millis;
use clawn_server::config::HealthConfig;
use clawn_testkit::{Db, TestServer};

const RULES: &str = include_str!("../../../docs/alerts/clawn-rules.yml");
/// Where the counters are incremented: they are exported only from their first
/// increment, so their names are checked against the code that creates them.
const MONITOR_SRC: &str = include_str!("../../clawn-server/src/monitor.rs");

/// One alerting rule, as text.
#[derive(Debug)]
struct Rule {
    alert: String,
    /// The expression with whitespace runs collapsed to one space.
    expr: String,
    for_: Option<String>,
    /// The rule's whole text (labels, annotations).
    body: String,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn rules() -> Vec<Rule> {
    let lines: Vec<&str> = RULES.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("- alert:"))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(lines.len());
        let block = &lines[start..end];
        let alert = block[0]
            .trim_start()
            .trim_start_matches("- alert:")
            .trim()
            .to_string();
        let mut expr = None;
        let mut for_ = None;
        for (i, line) in block.iter().enumerate() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("expr:") {
                let rest = rest.trim();
                let text = if rest.starts_with('|') || rest.starts_with('>') {
                    block[i + 1..]
                        .iter()
                        .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    rest.to_string()
                };
                expr = Some(text.split_whitespace().collect::<Vec<_>>().join(" "));
            } else if let Some(rest) = t.strip_prefix("for:") {
                for_ = Some(rest.trim().to_string());
            }
        }
        out.push(Rule {
            expr: expr.unwrap_or_else(|| panic!("rule {alert} has no expr")),
            alert,
            for_,
            body: block.join("\n"),
        });
    }
    out
}

/// Every `clawn_[a-z0-9_]+` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("clawn_") {
        let at = from + pos;
        let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let len = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        if at == 0 || !word_char(bytes[at - 1]) {
            names.insert(text[at..at + len].to_string());
        }
        from = at + len;
    }
    names
}

/// The value of the first sample of `name` in Prometheus text whose labels include all of
/// `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let matches = metric == name
            && labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

/// The names the rules read that `/metrics` does not show (per-node metrics for `node_id`,
/// per-region ones for `region`); counters not yet incremented pass if the server code
/// creates them under that name.
fn missing(text: &str, names: &BTreeSet<String>, node_id: &str, region: &str) -> Vec<String> {
    names
        .iter()
        .filter(|name| {
            let labels: &[(&str, &str)] = if name.starts_with("clawn_node_") {
                &[("node_id", node_id)]
            } else if name.starts_with("clawn_region_") {
                &[("region", region)]
            } else {
                &[]
            };
            if sample(text, name, labels).is_some() {
                return false;
            }
            !(name.ends_with("_total") && MONITOR_SRC.contains(&format!("\"{name}\"")))
        })
        .cloned()
        .collect()
}

/// The rule whose expression contains `needle`.
fn find_rule<'a>(rules: &'a [Rule], what: &str, needle: &str) -> &'a Rule {
    rules
        .iter()
        .find(|r| r.expr.contains(needle))
        .unwrap_or_else(|| panic!("no rule for {what}: no expr contains `{needle}`"))
}

#[test]
fn rules_file_alerts_on_the_seed_thresholds() {
    let rules = rules();
    assert!(rules.len() >= 10, "{} rules parsed", rules.len());
    for r in &rules {
        assert!(r.alert.starts_with("Clawn"), "rule name {}", r.alert);
        for key in ["severity:", "summary:", "description:"] {
            assert!(r.body.contains(key), "rule {} has no {key}", r.alert);
        }
        if r.expr.contains("clawn_node_") && !r.expr.contains("sum by") {
            assert!(
                r.body.contains("{{ $labels.node }}"),
                "per-node rule {} does not name the node",
                r.alert
            );
        }
    }
    let h = HealthConfig::default();
    let find = |what: &str, needle: &str| find_rule(&rules, what, needle);
    let offline = find("node offline", r#"clawn_node_state{state="offline"} == 1"#);
    assert_eq!(offline.for_.as_deref(), Some("1m"), "{}", offline.alert);
    find(
        "node degraded",
        r#"clawn_node_state{state="degraded"} == 1"#,
    );
    // The seed's thresholds, which are the server's defaults for its own health verdict.
    let cpu = find(
        "CPU",
        &format!("clawn_node_cpu_percent > {}", h.cpu_percent),
    );
    assert_eq!(h.cpu_percent, 75.0);
    assert!(cpu.for_.is_some(), "CPU must be sustained: {}", cpu.alert);
    assert_eq!(h.loss_percent, 2.0);
    find(
        "packet loss",
        &format!("clawn_node_packet_loss_ratio > {}", h.loss_percent / 100.0),
    );
    assert_eq!(h.latency_factor, 2.0);
    let latency = find(
        "latency",
        &format!(
            "clawn_node_latency_ms > {} * clawn_node_latency_baseline_ms",
            h.latency_factor
        ),
    );
    assert!(
        latency.expr.contains(&format!(
            "(clawn_node_latency_ms - clawn_node_latency_baseline_ms) >= {}",
            h.latency_floor_ms
        )),
        "the latency rule keeps the server's floor: {}",
        latency.expr
    );
    find("capacity", "clawn_node_live_peers > clawn_node_capacity");
    assert_eq!(h.scale_out_load_percent, 70.0);
    let scale = find(
        "scale-out",
        &format!(
            "clawn_region_load_p95_ratio > {}",
            h.scale_out_load_percent / 100.0
        ),
    );
    assert!(scale.for_.is_some(), "scale-out must be sustained");
    let waiting = find("waiting devices", "clawn_devices_waiting_for_capacity > 0");
    assert_eq!(waiting.for_.as_deref(), Some("5m"));
    find("quarantines", "increase(clawn_quarantines_total[");
    find("failovers", "increase(clawn_failovers_total{");
    // The extraction sees the expressions' metrics.
    let in_exprs: BTreeSet<String> = rules.iter().flat_map(|r| metric_names(&r.expr)).collect();
    assert!(in_exprs.len() >= 12, "{in_exprs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_name_is_exported() {
    let srv = TestServer::start_with(Db::Sqlite, |c| {
        // Sample every second (the window / 360, at least 1 s) rather than every 10 s.
        c.health.scale_out_window_secs = 360;
        // Probe fast over a short window, so rtt, loss and the baseline are known within
        // the first reports.
        c.health.probe_interval_ms = 50;
        c.health.probe_timeout_ms = 1000;
        c.health.probe_window = 4;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "mon", "10.120.0.0/16").await;
    let node_id = node.node_id.to_string();
    // Every identifier in the file: the expressions, and the queries in annotations.
    let names = metric_names(RULES);
    assert!(
        names.contains("clawn_node_state") && names.contains("clawn_failovers_total"),
        "{names:?}"
    );
    let http = reqwest::Client::new();
    let retry = clawn_testkit::Retry::new(
        "every metric the rules name is exported",
        Duration::from_secs(30),
        Duration::from_millis(250),
    );
    let text = loop {
        // Health is judged on each report; the server takes one a second (extra ones
        // are dropped, which is harmless here).
        node.telemetry(Telemetry {
            at: now_millis(),
            host: HostMetrics {
                cpu_percent: 20.0,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 4 << 30,
                load1: 0.2,
                active_peers: 0,
                rx_bytes_per_sec: 1000,
                tx_bytes_per_sec: 2000,
            },
            peers: vec![],
            exit_ipv4: None,
        })
        .await
        .expect("telemetry");
        let text = http
            .get(format!("{}/metrics", srv.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        let gone = missing(&text, &names, &node_id, "mon");
        let reported =
            sample(&text, "clawn_node_cpu_percent", &[("node_id", &node_id)]) == Some(20.0);
        if gone.is_empty() && reported {
            break text;
        }
        retry
            .again(format!(
                "missing {gone:?} (telemetry seen: {reported})\nlast /metrics:\n{text}"
            ))
            .await;
    };
    // The values mean what the rules assume: a healthy connected node, online.
    let node_labels = [("node_id", node_id.as_str()), ("region", "mon")];
    let at = |name: &str, extra: &[(&str, &str)]| {
        let mut l = node_labels.to_vec();
        l.extend_from_slice(extra);
        sample(&text, name, &l).unwrap_or_else(|| panic!("{name} {extra:?} missing"))
    };
    assert_eq!(at("clawn_node_state", &[("state", "online")]), 1.0);
    assert_eq!(at("clawn_node_state", &[("state", "offline")]), 0.0);
    assert_eq!(at("clawn_node_up", &[]), 1.0);
    assert_eq!(at("clawn_node_capacity", &[]), 1000.0);
    assert_eq!(at("clawn_node_live_peers", &[]), 0.0);
    assert_eq!(at("clawn_node_eligible", &[]), 1.0);
    assert_eq!(at("clawn_node_packet_loss_ratio", &[]), 0.0);
    assert!(at("clawn_node_latency_ms", &[]) >= 0.0);
    assert!(at("clawn_node_latency_baseline_ms", &[]) <= at("clawn_node_latency_ms", &[]));
    for alert in ["cpu_high", "packet_loss", "latency_high", "over_capacity"] {
        assert_eq!(at("clawn_node_alert", &[("alert", alert)]), 0.0, "{alert}");
    }
    let region = [("region", "mon")];
    assert_eq!(
        sample(&text, "clawn_region_scale_out_needed", &region),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "clawn_devices_waiting_for_capacity", &[]),
        Some(0.0)
    );
    srv.stop().await;
}
