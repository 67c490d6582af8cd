//! Helpers shared by the benchmarks (they report; nothing here asserts on time).

use std::time::Duration;

/// A size from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0–1, nearest rank) of sorted durations, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// A Markdown table row: name, count, p50 / p90 / p99 / max in milliseconds.
pub fn summary(name: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        v.len(),
        pct(&v, 0.50),
        pct(&v, 0.90),
        pct(&v, 0.99),
        pct(&v, 1.0)
    )
}
