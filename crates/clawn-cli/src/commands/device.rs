//! `clawn device ...`: the user's own devices.
//!
//! Key handling follows one rule: a private key is generated here, written to the store before
//! its public half is sent, and becomes *the* key of a device only once the server accepted it
//! (see [`crate::store`]). The server never sees a private key; the config the server returns
//! is a template that this module completes locally.

use std::path::{Path, PathBuf};

use clawn_proto::WgKeyPair;
use clawn_proto::api::{
    CreateDeviceRequest, DeviceClass, DeviceState, DeviceView, ErrorCode, Placement,
    ReassignDeviceRequest, RotateDeviceRequest,
};
use clawn_proto::config::ConfigTemplate;
use clawn_proto::time::{UnixMillis, now_millis};
use reqwest::StatusCode;

use super::Context;
use crate::cli::{ConfigOutput, DeviceCommand};
use crate::client::{Client, ClientError};
use crate::error::CliError;
use crate::output::{
    Table, describe_ack, emit, emit_json, emit_qr, format_bytes, note, or_dash, warn,
};
use crate::resolve::{as_id, resolve};
use crate::store::{KeyLookup, PendingKey, write_private_file};
use crate::time::{format_ago, format_duration_secs, format_utc};

/// Runs a `clawn device` subcommand.
pub async fn run(ctx: &Context, cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::Add {
            name,
            region,
            output,
            force,
        } => add(ctx, name, region, output, force).await,
        DeviceCommand::List(f) => list(ctx, f.json).await,
        DeviceCommand::Show { device, json } => show(ctx, &device, json).await,
        DeviceCommand::Config { device, output } => config(ctx, &device, output).await,
        DeviceCommand::Revoke { device, json } => revoke(ctx, &device, json).await,
        DeviceCommand::Rotate { device, output } => rotate(ctx, &device, output).await,
        DeviceCommand::Move {
            device,
            region,
            output,
        } => move_region(ctx, &device, &region, output).await,
        DeviceCommand::Rename { device, new_name } => rename(ctx, &device, &new_name).await,
    }
}

/// Finds one of the user's devices by id or exact name.
async fn find(client: &Client, query: &str) -> Result<DeviceView, CliError> {
    if let Some(id) = as_id(query) {
        return Ok(client.device(id).await?);
    }
    let all = client.devices().await?;
    Ok(resolve(&all, query)?.clone())
}

/// `./NAME.conf`, with everything but `A-Z a-z 0-9 . _ -` replaced so a name cannot point
/// the file elsewhere (`../x`, `/etc/x`).
pub fn default_conf_path(name: &str) -> PathBuf {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    if stem.is_empty() {
        stem.push_str("device");
    }
    PathBuf::from(format!("{stem}.conf"))
}

fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Writes a config to a file (0600), or to stdout for `-`.
fn write_config(out: &Path, text: &str) -> Result<(), CliError> {
    if is_stdout(out) {
        emit(text)
    } else {
        Ok(write_private_file(out, text.as_bytes())?)
    }
}

/// How to use a config file that was written, when wg-quick can take it as is.
fn usage_hint(out: &Path) -> Option<String> {
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

/// The request that registers a new public key failed: forget the key if the server surely
/// did not take it, keep it (and say where) if it might have.
fn key_request_failed(
    ctx: &Context,
    e: ClientError,
    pending: &PendingKey,
    device: &str,
) -> CliError {
    if e.outcome_unknown() {
        return CliError::from(e).after(format!(
            "the server may have accepted the new key; it is kept at {} and `clawn device config {device}` uses it if so",
            pending.path().display()
        ));
    }
    if let Err(d) = ctx.store.discard_key(pending) {
        warn(&format!("could not delete the unused key: {d}"));
    }
    e.into()
}

async fn default_region(client: &Client) -> Result<String, CliError> {
    let regions = client.regions().await?;
    match regions.as_slice() {
        [one] => Ok(one.code.clone()),
        [] => Err(CliError::input_with_hint(
            "the server has no regions yet",
            "an admin creates one with `clawn admin region create`",
        )),
        many => Err(CliError::input_with_hint(
            "--region is required",
            format!(
                "choose one of: {}",
                many.iter()
                    .map(|r| r.code.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `clawn device add`.
async fn add(
    ctx: &Context,
    name: String,
    region: Option<String>,
    output: ConfigOutput,
    force: bool,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let out = output.out.unwrap_or_else(|| default_conf_path(&name));
    if !is_stdout(&out) && !force && out.exists() {
        return Err(CliError::input_with_hint(
            format!("{} already exists", out.display()),
            "pass --force to overwrite it, or --out FILE to write elsewhere",
        ));
    }
    let region = match region {
        Some(r) => r,
        None => default_region(&client).await?,
    };

    let key = WgKeyPair::generate();
    let pending = ctx.store.stash_new_device_key(&key)?;
    let req = CreateDeviceRequest {
        name: name.clone(),
        public_key: key.public(),
        region,
    };
    let created = match client.create_device(&req).await {
        Ok(c) => c,
        Err(e) => return Err(key_request_failed(ctx, e, &pending, &name)),
    };
    let device = &created.device;
    let key_path = ctx.store.commit_key(&pending, device.id).map_err(|e| {
        CliError::from(e).after(format!(
            "device {name} was created; its key is at {} and `clawn device config {}` picks it up",
            pending.path().display(),
            device.id
        ))
    })?;

    let text = created.config.render(Some(&key.private_base64()));
    write_config(&out, &text).map_err(|e| {
        e.after(format!(
            "device {name} was created and its key is stored; write the config with `clawn device config {} --out FILE`",
            device.id
        ))
    })?;

    let mut lines = vec![format!(
        "created device {} ({}) in region {}",
        device.name, device.id, device.region
    )];
    if let Some(node) = &device.node {
        lines.push(format!(
            "node: {} ({}), tunnel address {}",
            node.name,
            node.endpoint,
            device
                .tunnel_ip
                .as_deref()
                .unwrap_or(&created.config.address)
        ));
    }
    lines.push(describe_ack(&created.node_ack));
    lines.push(format!("private key: {}", key_path.display()));
    if !is_stdout(&out) {
        lines.push(format!("config: {}", out.display()));
        if let Some(h) = usage_hint(&out) {
            lines.push(h);
        }
    }
    say(&out, &lines.join("\n"))?;
    if output.qr {
        emit_qr(&text)?;
    }
    Ok(())
}

/// Prints a summary: to stdout, unless the config itself went there.
fn say(out: &Path, text: &str) -> Result<(), CliError> {
    if is_stdout(out) {
        note(text);
        Ok(())
    } else {
        emit(text)
    }
}

/// `clawn device list`.
async fn list(ctx: &Context, json: bool) -> Result<(), CliError> {
    let devices = ctx.client()?.devices().await?;
    if json {
        return emit_json(&devices);
    }
    if devices.is_empty() {
        note("no devices yet; add one with `clawn device add NAME --region REGION`");
        return Ok(());
    }
    emit(&device_table(
        &devices,
        false,
        Some(&|id| ctx.store.has_key(id)),
    ))?;
    let now = now_millis();
    for d in &devices {
        if let Some(n) = moved_notice(d, now) {
            note(&format!("{}: {n}", d.name));
        }
    }
    Ok(())
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

/// `clawn device show`.
async fn show(ctx: &Context, query: &str, json: bool) -> Result<(), CliError> {
    let d = find(&ctx.client()?, query).await?;
    if json {
        return emit_json(&d);
    }
    let key = if ctx.store.has_key(d.id) {
        ctx.store.key_path(d.id).display().to_string()
    } else {
        "not on this machine".to_string()
    };
    let mut text = describe_device(&d, Some(&key));
    if let Some(n) = moved_notice(&d, now_millis()) {
        text.push_str(&format!("\n\n{n}"));
    }
    emit(&text)
}

/// `clawn device config`.
async fn config(ctx: &Context, query: &str, output: ConfigOutput) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    if device.state == DeviceState::Revoked {
        return Err(CliError::input(format!(
            "device {} is revoked; it has no config",
            device.name
        )));
    }
    let cfg = client.device_config(device.id).await?;
    let (text, complete) = render_with_stored_key(ctx, &device, &cfg.config)?;

    match (&output.out, output.qr) {
        (Some(out), _) => {
            write_config(out, &text)?;
            if !is_stdout(out) {
                note(&format!("wrote {}", out.display()));
            }
        }
        (None, false) => emit(&text)?,
        (None, true) => {}
    }
    if output.qr {
        if complete {
            emit_qr(&text)?;
        } else {
            warn("no QR code: a config without its private key cannot be imported");
        }
    }
    Ok(())
}

/// Completes a config template with the device's private key from the store. Without the key
/// (not on this machine, or an older key pair), warns and leaves the placeholder; the flag
/// says whether the config is complete.
fn render_with_stored_key(
    ctx: &Context,
    device: &DeviceView,
    template: &ConfigTemplate,
) -> Result<(String, bool), CliError> {
    Ok(match ctx.store.find_key(device.id, &device.public_key)? {
        KeyLookup::Found(key) => (template.render(Some(&key.private_base64())), true),
        KeyLookup::Stale(path) => {
            warn(&format!(
                "the private key stored at {} belongs to an older key pair of device {} (rotated on another machine?)",
                path.display(),
                device.name
            ));
            missing_key_note(device);
            (template.render(None), false)
        }
        KeyLookup::Missing(path) => {
            warn(&format!(
                "the private key of device {} is not stored on this machine (looked for {})",
                device.name,
                path.display()
            ));
            missing_key_note(device);
            (template.render(None), false)
        }
    })
}

fn missing_key_note(device: &DeviceView) {
    note(&format!(
        "the config has `PrivateKey = {}`; fill in the device's private key yourself, \
         or run `clawn device rotate {}` to give it a new key pair from this machine",
        clawn_proto::config::PRIVATE_KEY_PLACEHOLDER,
        device.name
    ));
}

/// `clawn device revoke`.
async fn revoke(ctx: &Context, query: &str, json: bool) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    let resp = client.revoke_device(device.id).await?;
    let removed = match ctx.store.remove_keys(device.id) {
        Ok(r) => r,
        Err(e) => {
            warn(&format!("could not delete the device's private key: {e}"));
            false
        }
    };
    if json {
        return emit_json(&resp);
    }
    let mut text = format!(
        "revoked device {} ({})\n{}",
        resp.device.name,
        resp.device.id,
        describe_ack(&resp.node_ack)
    );
    if removed {
        text.push_str("\ndeleted its private key from this machine");
    }
    emit(&text)
}

/// `clawn device rotate`.
async fn rotate(ctx: &Context, query: &str, output: ConfigOutput) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    if device.state == DeviceState::Revoked {
        return Err(CliError::input(format!(
            "device {} is revoked; add a new device instead",
            device.name
        )));
    }
    let key = WgKeyPair::generate();
    let pending = ctx.store.stash_rotation_key(device.id, &key)?;
    let rotated = match client
        .rotate_device(
            device.id,
            &RotateDeviceRequest {
                public_key: key.public(),
            },
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(key_request_failed(ctx, e, &pending, &device.id.to_string())),
    };
    ctx.store.commit_key(&pending, device.id).map_err(|e| {
        CliError::from(e).after(format!(
            "the server switched to the new key; it is at {} and `clawn device config {}` picks it up",
            pending.path().display(),
            device.id
        ))
    })?;
    let text = rotated.config.render(Some(&key.private_base64()));
    let out = output
        .out
        .unwrap_or_else(|| default_conf_path(&rotated.device.name));
    write_config(&out, &text).map_err(|e| {
        e.after(format!(
            "the new key is stored; write the config with `clawn device config {} --out FILE`",
            device.id
        ))
    })?;
    let mut lines = vec![
        format!(
            "rotated the key of device {} ({}); the old key no longer works",
            rotated.device.name, device.id
        ),
        describe_ack(&rotated.node_ack),
    ];
    if !is_stdout(&out) {
        lines.push(format!("config: {}", out.display()));
    }
    say(&out, &lines.join("\n"))?;
    if output.qr {
        emit_qr(&text)?;
    }
    Ok(())
}

/// `clawn device move`.
async fn move_region(
    ctx: &Context,
    query: &str,
    region: &str,
    output: ConfigOutput,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    if device.state == DeviceState::Revoked {
        return Err(CliError::input(format!(
            "device {} is revoked; add a new device instead",
            device.name
        )));
    }
    let region = region.trim();
    // Refused moves count towards the server's abuse signals too: do not ask for the
    // ones that cannot succeed.
    if device.region == region {
        return Err(same_region(&device));
    }
    if device.quarantined {
        return Err(quarantined(&device));
    }
    let moved = client
        .move_device(
            device.id,
            &ReassignDeviceRequest {
                region: region.to_string(),
            },
        )
        .await
        .map_err(|e| move_failed(e, &device, region))?;
    let d = &moved.device;
    let (text, complete) = render_with_stored_key(ctx, d, &moved.config)?;
    let out = output.out.unwrap_or_else(|| default_conf_path(&d.name));
    write_config(&out, &text).map_err(|e| {
        e.after(format!(
            "the device was moved to region {}; write its new config with `clawn device config {} --out FILE`",
            d.region, d.id
        ))
    })?;
    let mut lines = vec![format!(
        "moved device {} ({}) from region {} to {}; its old config no longer works",
        d.name, d.id, device.region, d.region
    )];
    if let Some(node) = &d.node {
        lines.push(format!(
            "node: {} ({}), tunnel address {}",
            node.name,
            node.endpoint,
            d.tunnel_ip.as_deref().unwrap_or(&moved.config.address)
        ));
    }
    lines.push(describe_ack(&moved.node_ack));
    if !is_stdout(&out) {
        lines.push(format!("config: {}", out.display()));
        if complete && let Some(h) = usage_hint(&out) {
            lines.push(h);
        }
    }
    say(&out, &lines.join("\n"))?;
    if output.qr {
        if complete {
            emit_qr(&text)?;
        } else {
            warn("no QR code: a config without its private key cannot be imported");
        }
    }
    Ok(())
}

fn same_region(device: &DeviceView) -> CliError {
    CliError::input_with_hint(
        format!(
            "device {} is already in region {} (same_region)",
            device.name, device.region
        ),
        "choose another region; `clawn regions` lists them",
    )
}

fn quarantined(device: &DeviceView) -> CliError {
    CliError::input_with_hint(
        format!(
            "device {} is quarantined: region moves are blocked (device_quarantined)",
            device.name
        ),
        "an admin reviews quarantined devices and can release it with `clawn admin device release`; ask yours",
    )
}

/// The region move was refused: say why in terms of this device and what to do.
fn move_failed(e: ClientError, device: &DeviceView, region: &str) -> CliError {
    let ClientError::Api {
        status,
        error,
        retry_after,
    } = &e
    else {
        return e.into();
    };
    match error.code {
        ErrorCode::ReassignRateLimited => {
            let mut hint = "try again later".to_string();
            if let Some(secs) = *retry_after {
                let at = now_millis().saturating_add(i64::try_from(secs).unwrap_or(0) * 1000);
                hint = format!(
                    "try again in {} (after {} UTC)",
                    format_duration_secs(secs),
                    format_utc(at)
                );
            }
            CliError::input_with_hint(
                format!(
                    "device {} cannot move region again yet: {} (reassign_rate_limited)",
                    device.name, error.message
                ),
                hint,
            )
        }
        ErrorCode::DeviceQuarantined => quarantined(device),
        ErrorCode::SameRegion => same_region(device),
        // The device was found (in the caller's own list) just before, and devices are never
        // deleted, only revoked: a 404 from the move is about the region.
        ErrorCode::NotFound if *status == StatusCode::NOT_FOUND => CliError::input_with_hint(
            format!("there is no region {region:?} (not_found)"),
            "`clawn regions` lists the regions",
        ),
        _ => e.into(),
    }
}

/// `clawn device rename`.
async fn rename(ctx: &Context, query: &str, new_name: &str) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    let renamed = client.rename_device(device.id, new_name).await?;
    emit(&format!(
        "renamed device {} to {} ({})",
        device.name, renamed.name, renamed.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::config::{ConfigTemplate, PRIVATE_KEY_PLACEHOLDER};

    #[test]
    fn default_config_paths_stay_in_the_current_directory() {
        assert_eq!(default_conf_path("laptop"), PathBuf::from("laptop.conf"));
        assert_eq!(
            default_conf_path("../../etc/passwd"),
            PathBuf::from("_._.._etc_passwd.conf")
        );
        assert_eq!(default_conf_path("/abs"), PathBuf::from("_abs.conf"));
        assert_eq!(
            default_conf_path("my phone ü"),
            PathBuf::from("my_phone__.conf")
        );
        assert_eq!(default_conf_path(""), PathBuf::from("device.conf"));
        assert_eq!(default_conf_path(".hidden"), PathBuf::from("_hidden.conf"));
    }

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

    fn sample_device() -> DeviceView {
        DeviceView {
            id: uuid::Uuid::new_v4(),
            name: "laptop".into(),
            state: DeviceState::Active,
            region: "eu".into(),
            public_key: WgKeyPair::generate().public(),
            tunnel_ip: Some("10.100.0.2".into()),
            node: None,
            tunnel: clawn_proto::api::TunnelStatus {
                status: clawn_proto::api::TunnelState::Inactive,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                endpoint: None,
            },
            created_at: 0,
            revoked_at: None,
            owner_id: None,
            owner_email: None,
            placement: Placement::Assigned,
            class: DeviceClass::Standard,
            moved_at: None,
            moved_reason: None,
            quarantined: false,
            quarantine_reason: None,
            idle_flagged_at: None,
        }
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
    fn the_wait_comes_from_retry_after_not_the_hint() {
        let limited = |hint: &str, retry_after| ClientError::Api {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: clawn_proto::api::ApiError {
                code: ErrorCode::ReassignRateLimited,
                message: "a device may move region at most 3 times per hour".into(),
                hint: Some(hint.into()),
            },
            retry_after,
        };
        let d = sample_device();
        let with_header = move_failed(limited("soon", Some(42)), &d, "sg").report();
        assert!(
            with_header.contains("\nhint: try again in 42s (after "),
            "{with_header}"
        );
        // The server's hint is prose for people; without the header the CLI does not guess.
        let without = move_failed(limited("try again in 42 s", None), &d, "sg").report();
        assert!(without.ends_with("\nhint: try again later"), "{without}");
    }

    #[test]
    fn refused_moves_read_in_terms_of_the_device() {
        let d = sample_device();
        let api = |status, code: ErrorCode, message: &str, hint: Option<&str>, retry_after| {
            ClientError::Api {
                status,
                error: clawn_proto::api::ApiError {
                    code,
                    message: message.into(),
                    hint: hint.map(str::to_string),
                },
                retry_after,
            }
        };
        let e = move_failed(
            api(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ReassignRateLimited,
                "a device may move region at most 3 times per hour",
                Some("try again in 3599 s"),
                Some(3599),
            ),
            &d,
            "sg",
        );
        let report = e.report();
        assert!(
            report.starts_with("error: device laptop cannot move region again yet: a device may move region at most 3 times per hour (reassign_rate_limited)\nhint: try again in 59m59s (after "),
            "{report}"
        );
        let e = move_failed(
            api(
                StatusCode::CONFLICT,
                ErrorCode::DeviceQuarantined,
                "q",
                None,
                None,
            ),
            &d,
            "sg",
        );
        assert!(
            e.report().contains("laptop is quarantined"),
            "{}",
            e.report()
        );
        let e = move_failed(
            api(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "region not found",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert!(e.report().contains("no region \"xx\""), "{}", e.report());
        // Decided by the code, not by the wording of the message.
        let e = move_failed(
            api(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "gone",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert!(e.report().contains("no region \"xx\""), "{}", e.report());
        let e = move_failed(
            api(
                StatusCode::CONFLICT,
                ErrorCode::Unknown,
                "region",
                None,
                None,
            ),
            &d,
            "xx",
        );
        assert_eq!(e.report(), "error: region (unknown)");
        let e = move_failed(
            api(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoCapacity,
                "no node in region sg can take a new device right now",
                Some("try another region or try again later"),
                None,
            ),
            &d,
            "sg",
        );
        assert!(
            e.report()
                .contains("(no_capacity)\nhint: try another region"),
            "{}",
            e.report()
        );
    }

    #[test]
    fn stored_key_completes_the_server_template() {
        let t = crate::test_support::TempDir::new("render");
        let store = crate::store::Store::open(Some(t.path().to_path_buf())).expect("store");
        let key = WgKeyPair::generate();
        let id = uuid::Uuid::new_v4();
        let pending = store.stash_new_device_key(&key).expect("stash");
        store.commit_key(&pending, id).expect("commit");

        let template = ConfigTemplate {
            address: "10.100.0.7/32".into(),
            dns: vec!["10.100.0.1".into()],
            peer_public_key: WgKeyPair::generate().public(),
            endpoint: "eu-1.example.com:51820".into(),
            allowed_ips: vec!["0.0.0.0/0".into()],
            persistent_keepalive: 25,
            mtu: Some(1380),
        };
        let KeyLookup::Found(found) = store.find_key(id, &key.public()).expect("find") else {
            panic!("key not found");
        };
        let text = template.render(Some(&found.private_base64()));
        assert!(text.starts_with(&format!(
            "[Interface]\nPrivateKey = {}\n",
            key.private_base64()
        )));
        assert!(!text.contains(PRIVATE_KEY_PLACEHOLDER));
        assert!(text.contains("Endpoint = eu-1.example.com:51820\n"));

        let out = t.path().join("out.conf");
        write_config(&out, &text).expect("write");
        assert_eq!(std::fs::read_to_string(&out).expect("read"), text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
