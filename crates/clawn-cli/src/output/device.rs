//! How a device reads on the terminal: the device table (users' and admins' lists), the
//! `show` description, the notices about moved devices and missing keys, and where a config
//! and the summary next to it go (a file or stdout).

use std::path::Path;

use clawn_proto::api::{
    DeviceClass, DeviceState, DeviceView, DeviceWithConfig, Placement, RevokeResponse,
};
use clawn_proto::config::ConfigTemplate;
use clawn_proto::time::{UnixMillis, now_millis};
use uuid::Uuid;

use crate::error::CliError;
use crate::output::{Table, describe_ack, emit, format_bytes, note, or_dash};
use crate::store::write_private_file;
use crate::time::{format_ago, format_utc};

pub(crate) fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Writes a config to a file (0600), or to stdout for `-`.
pub(crate) fn write_config(out: &Path, text: &str) -> Result<(), CliError> {
    if is_stdout(out) {
        emit(text)
    } else {
        Ok(write_private_file(out, text.as_bytes())?)
    }
}

/// How to use a config file that was written, when wg-quick can take it as is.
pub(crate) fn usage_hint(out: &Path) -> Option<String> {
    let stem = out.file_stem()?.to_str()?;
    let ok = out.extension().is_some_and(|e| e == "conf")
        && (1..=15).contains(&stem.len())
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=+.-".contains(c));
    ok.then(|| {
        let shown = if out.is_relative() && out.parent().is_none_or(|p| p.as_os_str().is_empty()) {
            format!("./{}", out.display())
        } else {
            out.display().to_string()
        };
        format!("import it into the WireGuard app, or run `sudo wg-quick up {shown}`")
    })
}

/// Prints a summary: to stdout, unless the config itself went there.
pub(crate) fn say(out: &Path, text: &str) -> Result<(), CliError> {
    if is_stdout(out) {
        note(text);
        Ok(())
    } else {
        emit(text)
    }
}

/// The node a new or moved device is on, and its tunnel address (from the config when the
/// device view has none).
fn node_line(d: &DeviceView, config: &ConfigTemplate) -> Option<String> {
    let node = d.node.as_ref()?;
    Some(format!(
        "node: {} ({}), tunnel address {}",
        node.name,
        node.endpoint,
        d.tunnel_ip.as_deref().unwrap_or(&config.address)
    ))
}

/// What `clawn device add` says: the device, its node, the node's acknowledgement, where the
/// key and (unless it went to stdout) the config are.
pub(crate) fn added_summary(created: &DeviceWithConfig, key_path: &Path, out: &Path) -> String {
    let device = &created.device;
    let mut lines = vec![format!(
        "created device {} ({}) in region {}",
        device.name, device.id, device.region
    )];
    lines.extend(node_line(device, &created.config));
    lines.push(describe_ack(&created.node_ack));
    lines.push(format!("private key: {}", key_path.display()));
    if !is_stdout(out) {
        lines.push(format!("config: {}", out.display()));
        if let Some(h) = usage_hint(out) {
            lines.push(h);
        }
    }
    lines.join("\n")
}

/// What `clawn device rotate` says about device `id`.
pub(crate) fn rotated_summary(rotated: &DeviceWithConfig, id: Uuid, out: &Path) -> String {
    let mut lines = vec![
        format!(
            "rotated the key of device {} ({}); the old key no longer works",
            rotated.device.name, id
        ),
        describe_ack(&rotated.node_ack),
    ];
    if !is_stdout(out) {
        lines.push(format!("config: {}", out.display()));
    }
    lines.join("\n")
}

/// What `clawn device move` says: `before` is the device as it was, `complete` whether the
/// config has its private key (only then is the wg-quick hint any use).
pub(crate) fn moved_summary(
    before: &DeviceView,
    moved: &DeviceWithConfig,
    complete: bool,
    out: &Path,
) -> String {
    let d = &moved.device;
    let mut lines = vec![format!(
        "moved device {} ({}) from region {} to {}; its old config no longer works",
        d.name, d.id, before.region, d.region
    )];
    lines.extend(node_line(d, &moved.config));
    lines.push(describe_ack(&moved.node_ack));
    if !is_stdout(out) {
        lines.push(format!("config: {}", out.display()));
        if complete && let Some(h) = usage_hint(out) {
            lines.push(h);
        }
    }
    lines.join("\n")
}

/// What `clawn device revoke` says; `key_removed` whether its private key was deleted here.
pub(crate) fn revoked_summary(resp: &RevokeResponse, key_removed: bool) -> String {
    let mut text = format!(
        "revoked device {} ({})\n{}",
        resp.device.name,
        resp.device.id,
        describe_ack(&resp.node_ack)
    );
    if key_removed {
        text.push_str("\ndeleted its private key from this machine");
    }
    text
}

/// What `clawn device show` says: the description, `key` where its private key is, and the
/// moved notice if any.
pub(crate) fn show_text(d: &DeviceView, key: &str) -> String {
    let mut text = describe_device(d, Some(key));
    if let Some(n) = moved_notice(d, now_millis()) {
        text.push_str(&format!("\n\n{n}"));
    }
    text
}

/// For a device the system moved to another node (failover, drain, region move): when and
/// why its config changed, and how to get the new one. `None` if it never moved.
pub(crate) fn moved_notice(d: &DeviceView, now: UnixMillis) -> Option<String> {
    if d.state != DeviceState::Active {
        return None;
    }
    let at = d.moved_at?;
    let reason = d.moved_reason.as_deref().unwrap_or("moved");
    Some(format!(
        "config changed {} ({reason}): run `clawn device config {}` to get the new one",
        format_ago(now, at),
        d.name
    ))
}

/// A device's placement in a few words (a table cell).
fn placement_cell(d: &DeviceView) -> &'static str {
    match d.placement {
        Placement::WaitingForCapacity => "waiting",
        other => other.as_str(),
    }
}

/// A device's placement in a sentence.
fn placement_text(d: &DeviceView) -> String {
    match d.placement {
        Placement::Assigned => "assigned".into(),
        Placement::WaitingForCapacity => "waiting for capacity: its node failed or drains and no node of the region has room; it stays where it is meanwhile".into(),
        Placement::Unassigned if d.state == DeviceState::Active => {
            format!("unassigned: no node yet; `clawn device config {}` places it again", d.name)
        }
        other => other.to_string(),
    }
}

/// Devices as a table. `owner` adds an OWNER column (admin lists); `key_here`, when given,
/// adds a KEY column saying whether the device's private key is on this machine.
pub(crate) fn device_table(
    devices: &[DeviceView],
    owner: bool,
    key_here: Option<&dyn Fn(uuid::Uuid) -> bool>,
) -> String {
    let now = now_millis();
    let mut header = vec!["ID"];
    if owner {
        header.push("OWNER");
    }
    header.extend([
        "NAME",
        "REGION",
        "STATE",
        "ADDRESS",
        "NODE",
        "PLACEMENT",
        "CLASS",
        "TUNNEL",
        "HANDSHAKE",
    ]);
    if key_here.is_some() {
        header.push("KEY");
    }
    // Admins see why a device is quarantined.
    let quarantine = owner && devices.iter().any(|d| d.quarantined);
    if quarantine {
        header.push("QUARANTINE");
    }
    let mut t = Table::new(&header);
    for d in devices {
        let mut row = vec![d.id.to_string()];
        if owner {
            row.push(or_dash(
                d.owner_email.clone().or(d.owner_id.map(|i| i.to_string())),
            ));
        }
        row.extend([
            d.name.clone(),
            d.region.clone(),
            if d.quarantined && d.state == DeviceState::Active {
                "quarantined".into()
            } else {
                state_str(d.state).into()
            },
            or_dash(d.tunnel_ip.as_deref()),
            or_dash(d.node.as_ref().map(|n| n.name.as_str())),
            placement_cell(d).to_string(),
            d.class.to_string(),
            d.tunnel.status.to_string(),
            or_dash(d.tunnel.last_handshake.map(|h| format_ago(now, h))),
        ]);
        if let Some(here) = key_here {
            row.push(if here(d.id) {
                "here".into()
            } else {
                "-".into()
            });
        }
        if quarantine {
            row.push(if d.quarantined {
                d.quarantine_reason.clone().unwrap_or_else(|| "yes".into())
            } else {
                "-".into()
            });
        }
        t.row(row);
    }
    t.render()
}

/// The wire spelling of a device state.
pub(crate) fn state_str(s: DeviceState) -> &'static str {
    match s {
        DeviceState::Active => "active",
        DeviceState::Revoked => "revoked",
    }
}

/// Multi-line description of a device; `key` says where its private key is (left out of
/// admin views, which are about someone else's device).
pub(crate) fn describe_device(d: &DeviceView, key: Option<&str>) -> String {
    key_values(&device_rows(d, key))
}

/// `key:  value` lines, the values aligned.
pub(crate) fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:width$}  {v}", format!("{k}:"), width = width + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The facts [`describe_device`] shows, as label and value.
pub(crate) fn device_rows(d: &DeviceView, key: Option<&str>) -> Vec<(&'static str, String)> {
    let now = now_millis();
    let mut rows: Vec<(&'static str, String)> = vec![
        ("id", d.id.to_string()),
        ("name", d.name.clone()),
        (
            "state",
            match d.revoked_at {
                Some(at) => format!("{} ({} UTC)", state_str(d.state), format_utc(at)),
                None => state_str(d.state).into(),
            },
        ),
        ("region", d.region.clone()),
        ("public key", d.public_key.to_string()),
        ("address", or_dash(d.tunnel_ip.as_deref())),
    ];
    if let Some(n) = &d.node {
        let exit = n
            .exit_ipv4
            .as_deref()
            .map(|e| format!(", exit {e}"))
            .unwrap_or_default();
        rows.push(("node", format!("{} ({}{exit})", n.name, n.endpoint)));
    }
    let mut tunnel = d.tunnel.status.to_string();
    if let Some(h) = d.tunnel.last_handshake {
        tunnel.push_str(&format!(", last handshake {}", format_ago(now, h)));
    }
    tunnel.push_str(&format!(
        ", received {} / sent {}",
        format_bytes(d.tunnel.rx_bytes),
        format_bytes(d.tunnel.tx_bytes)
    ));
    if let Some(ep) = &d.tunnel.endpoint {
        tunnel.push_str(&format!(", from {ep}"));
    }
    rows.push(("tunnel", tunnel));
    if d.state == DeviceState::Active {
        rows.push(("placement", placement_text(d)));
        rows.push((
            "class",
            if d.class == DeviceClass::Priority {
                "priority (a priority token for this region holds)".into()
            } else {
                d.class.to_string()
            },
        ));
    }
    if let Some(at) = d.moved_at {
        rows.push((
            "moved",
            format!(
                "{} UTC, {} ({})",
                format_utc(at),
                format_ago(now, at),
                d.moved_reason.as_deref().unwrap_or("moved")
            ),
        ));
    }
    if d.quarantined {
        let why = d
            .quarantine_reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        rows.push((
            "quarantined",
            format!("yes{why}: region moves are blocked and priority is suspended until an admin releases it"),
        ));
    }
    if let Some(at) = d.idle_flagged_at {
        rows.push((
            "idle",
            format!("flagged {} UTC ({})", format_utc(at), format_ago(now, at)),
        ));
    }
    rows.push(("created", format!("{} UTC", format_utc(d.created_at))));
    if let Some(owner) = d
        .owner_email
        .as_deref()
        .map(str::to_string)
        .or(d.owner_id.map(|i| i.to_string()))
    {
        rows.push(("owner", owner));
    }
    if let Some(key) = key {
        rows.push(("private key", key.to_string()));
    }
    rows
}

pub(crate) fn missing_key_note(device: &DeviceView) {
    note(&format!(
        "the config has `PrivateKey = {}`; fill in the device's private key yourself, \
         or run `clawn device rotate {}` to give it a new key pair from this machine",
        clawn_proto::config::PRIVATE_KEY_PLACEHOLDER,
        device.name
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_device;

    #[test]
    fn wg_quick_hint_only_for_valid_interface_names() {
        assert!(
            usage_hint(Path::new("laptop.conf"))
                .is_some_and(|h| h.contains("wg-quick up ./laptop.conf"))
        );
        assert!(
            usage_hint(Path::new("/etc/wireguard/wg0.conf"))
                .is_some_and(|h| h.contains("up /etc/wireguard/wg0.conf"))
        );
        assert!(usage_hint(Path::new("a-very-long-device-name.conf")).is_none());
        assert!(usage_hint(Path::new("laptop.txt")).is_none());
    }

    #[test]
    fn a_moved_device_says_to_fetch_its_config() {
        let mut d = sample_device();
        assert_eq!(moved_notice(&d, 1_000_000), None);
        d.moved_at = Some(1_000_000 - 5 * 60_000);
        d.moved_reason = Some("failover".into());
        assert_eq!(
            moved_notice(&d, 1_000_000).as_deref(),
            Some(
                "config changed 5m ago (failover): run `clawn device config laptop` to get the new one"
            )
        );
        let text = describe_device(&d, None);
        assert!(
            text.contains("(failover)") && !text.contains("private key"),
            "{text}"
        );
        d.state = DeviceState::Revoked;
        assert_eq!(moved_notice(&d, 1_000_000), None);
    }

    #[test]
    fn tables_show_placement_class_and_quarantine() {
        let mut a = sample_device();
        a.class = DeviceClass::Priority;
        let mut b = sample_device();
        b.name = "phone".into();
        b.placement = Placement::WaitingForCapacity;
        b.quarantined = true;
        b.quarantine_reason = Some("6 region switches within 3600 s (threshold 6)".into());
        let user = device_table(&[a.clone(), b.clone()], false, None);
        let header = user.lines().next().unwrap_or_default();
        assert!(
            header.contains("PLACEMENT")
                && header.contains("CLASS")
                && !header.contains("QUARANTINE"),
            "{user}"
        );
        assert!(
            user.lines()
                .any(|l| l.contains("laptop") && l.contains("assigned") && l.contains("priority")),
            "{user}"
        );
        assert!(
            user.lines()
                .any(|l| l.contains("phone") && l.contains("quarantined") && l.contains("waiting")),
            "{user}"
        );
        let admin = device_table(&[a, b], true, None);
        assert!(
            admin
                .lines()
                .any(|l| l.contains("phone") && l.ends_with("(threshold 6)")),
            "{admin}"
        );
    }

    #[test]
    fn summaries_leave_out_the_config_lines_for_stdout_and_the_hint_for_incomplete_configs() {
        let mut before = sample_device();
        before.region = "sg".into();
        let moved = DeviceWithConfig {
            device: sample_device(),
            config: ConfigTemplate {
                address: "10.100.0.7/32".into(),
                dns: vec![],
                peer_public_key: clawn_proto::WgKeyPair::generate().public(),
                endpoint: "eu-1.example.com:51820".into(),
                allowed_ips: vec!["0.0.0.0/0".into()],
                persistent_keepalive: 25,
                mtu: None,
            },
            config_text: String::new(),
            node_ack: clawn_proto::api::NodeAck {
                status: clawn_proto::api::AckStatus::None,
                version: None,
                waited_ms: 0,
            },
        };
        let file = Path::new("laptop.conf");
        let complete = moved_summary(&before, &moved, true, file);
        assert!(
            complete.starts_with("moved device laptop (")
                && complete.contains(") from region sg to eu;")
                && complete.contains("\nconfig: laptop.conf\n")
                && complete.ends_with("`sudo wg-quick up ./laptop.conf`"),
            "{complete}"
        );
        let incomplete = moved_summary(&before, &moved, false, file);
        assert!(
            incomplete.ends_with("\nconfig: laptop.conf"),
            "{incomplete}"
        );
        let key = Path::new("/keys/k");
        let added = added_summary(&moved, key, Path::new("-"));
        assert!(
            added.ends_with("\nprivate key: /keys/k") && !added.contains("config:"),
            "{added}"
        );
    }
}
