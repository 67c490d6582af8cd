//! `clawn admin ...`: regions, node join tokens, nodes, users, everyone's devices, priority
//! tokens and diagnostics.
//!
//! Every one of these is an explicit admin route on the server, which checks the role and writes
//! an audit event; the CLI only shapes requests and shows answers.

use clawn_proto::api::{AdminDeviceQuery, DeviceState, HealthAlert, PriorityStatus};
use clawn_proto::api::{
    AdminRegionView, AuditEventView, CreateNodeTokenRequest, CreateRegionRequest,
    CreateUserRequest, DeviceDiagnostics, DeviceView, DiagnosticsOverview,
    GrantPriorityTokenRequest, NodeDiagnostics, NodeView, PriorityTokenView, RegionLoad,
    ResetPasswordRequest, UpdateNodeRequest, UpdateRegionRequest, UpdateUserRequest, UserView,
};
use clawn_proto::time::now_millis;
use uuid::Uuid;

use super::auth::health_cell;
use super::device::key_values;
use super::{Context, PasswordSource, read_password};
use crate::cli::{
    AdminCommand, AdminDeviceCommand, DiagArgs, NodeCommand, NodeTokenCommand, PriorityCommand,
    RegionCommand, UserCommand,
};
use crate::client::Client;
use crate::error::CliError;
use crate::output::{Table, describe_ack, emit, emit_json, note, or_dash};
use crate::resolve::{as_id, resolve};
use crate::time::{format_ago, format_utc};

/// Runs a `clawn admin` subcommand.
pub async fn run(ctx: &Context, cmd: AdminCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match cmd {
        AdminCommand::Region(c) => region(&client, c).await,
        AdminCommand::NodeToken(c) => node_token(&client, c).await,
        AdminCommand::Node(c) => node(&client, c).await,
        AdminCommand::User(c) => user(&client, c).await,
        AdminCommand::Device(c) => device(&client, c).await,
        AdminCommand::Priority(c) => priority(&client, c).await,
        AdminCommand::Diag(args) => diag(&client, args).await,
        AdminCommand::Audit(args) => super::audit::run(&client, args).await,
    }
}

// ---------------------------------------------------------------- regions

fn region_table(regions: &[AdminRegionView]) -> String {
    let mut t = Table::new(&[
        "CODE",
        "NAME",
        "POOL",
        "NODE PREFIX",
        "DNS",
        "HEALTH (ELIGIBLE/ALL NODES)",
    ]);
    for r in regions {
        t.row(vec![
            r.code.clone(),
            r.name.clone(),
            r.cidr.clone(),
            format!("/{}", r.node_prefix),
            if r.dns.is_empty() {
                "-".into()
            } else {
                r.dns.join(",")
            },
            health_cell(&r.health),
        ]);
    }
    t.render()
}

async fn region(client: &Client, cmd: RegionCommand) -> Result<(), CliError> {
    match cmd {
        RegionCommand::List(f) => {
            let regions = client.admin_regions().await?;
            if f.json {
                return emit_json(&regions);
            }
            if regions.is_empty() {
                note(
                    "no regions yet; create one with `clawn admin region create CODE --name NAME --cidr 10.100.0.0/16`",
                );
                return Ok(());
            }
            emit(&region_table(&regions))
        }
        RegionCommand::Create {
            code,
            name,
            cidr,
            node_prefix,
            dns,
            json,
        } => {
            let r = client
                .create_region(&CreateRegionRequest {
                    code,
                    name,
                    cidr,
                    node_prefix,
                    dns,
                })
                .await?;
            if json {
                return emit_json(&r);
            }
            emit(&format!(
                "created region {} ({}), pool {} split into /{} per node\nnext: `clawn admin node-token create --region {}`",
                r.code, r.name, r.cidr, r.node_prefix, r.code
            ))
        }
        RegionCommand::Update {
            code,
            name,
            dns,
            no_dns,
            cidr,
            node_prefix,
            json,
        } => {
            let dns = if no_dns {
                Some(Vec::new())
            } else if dns.is_empty() {
                None
            } else {
                Some(dns)
            };
            let req = UpdateRegionRequest {
                name,
                dns,
                cidr,
                node_prefix,
            };
            if req.name.is_none()
                && req.dns.is_none()
                && req.cidr.is_none()
                && req.node_prefix.is_none()
            {
                return Err(CliError::input_with_hint(
                    "nothing to change",
                    "pass --name, --dns, --no-dns, --cidr or --node-prefix",
                ));
            }
            let r = client.update_region(&code, &req).await?;
            if json {
                return emit_json(&r);
            }
            emit(&region_table(std::slice::from_ref(&r)))
        }
    }
}

// ---------------------------------------------------------------- node tokens

async fn node_token(client: &Client, cmd: NodeTokenCommand) -> Result<(), CliError> {
    match cmd {
        NodeTokenCommand::Create {
            region,
            capacity,
            expires_in,
            json,
        } => {
            let t = client
                .create_node_token(&CreateNodeTokenRequest {
                    region,
                    expires_in_secs: expires_in,
                    capacity,
                })
                .await?;
            if json {
                return emit_json(&t);
            }
            emit(&format!(
                "node join token for region {} (one use, expires {} UTC, {}):\n{}\n\nrun this on the new node:\n{}",
                t.region,
                format_utc(t.expires_at),
                format_ago(now_millis(), t.expires_at),
                t.token,
                t.join_command
            ))
        }
    }
}

// ---------------------------------------------------------------- nodes

async fn find_node(client: &Client, query: &str) -> Result<NodeView, CliError> {
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
fn health_text(n: &NodeView) -> String {
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
fn health_verdict(n: &NodeView) -> Option<String> {
    if let Some(r) = &n.health.reason {
        return Some(r.clone());
    }
    (!n.health.alerts.is_empty()).then(|| alerts_text(&n.health.alerts, ", "))
}

/// Alert names joined by `sep`.
fn alerts_text(alerts: &[HealthAlert], sep: &str) -> String {
    alerts
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

async fn node(client: &Client, cmd: NodeCommand) -> Result<(), CliError> {
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

// ---------------------------------------------------------------- users

async fn find_user(client: &Client, query: &str) -> Result<UserView, CliError> {
    let users = client.users().await?;
    Ok(resolve(&users, query)?.clone())
}

fn user_table(users: &[UserView]) -> String {
    let mut t = Table::new(&["ID", "EMAIL", "ROLE", "DEVICES", "STATUS", "CREATED"]);
    for u in users {
        t.row(vec![
            u.id.to_string(),
            u.email.clone(),
            u.role.as_str().into(),
            format!("{}/{}", u.active_devices, u.device_slots),
            if u.disabled {
                "disabled".into()
            } else {
                "enabled".into()
            },
            format_utc(u.created_at),
        ]);
    }
    t.render()
}

fn new_password(stdin: bool) -> Result<crate::store::Secret, CliError> {
    read_password(if stdin {
        PasswordSource::Stdin
    } else {
        PasswordSource::Prompt {
            prompt: "New password: ",
            confirm: true,
        }
    })
}

async fn user(client: &Client, cmd: UserCommand) -> Result<(), CliError> {
    let update = |disabled, device_slots, role| UpdateUserRequest {
        disabled,
        device_slots,
        role,
    };
    let (query, req, done): (String, UpdateUserRequest, &str) = match cmd {
        UserCommand::List(f) => {
            let users = client.users().await?;
            return if f.json {
                emit_json(&users)
            } else {
                emit(&user_table(&users))
            };
        }
        UserCommand::Create {
            email,
            role,
            slots,
            password_stdin,
            json,
        } => {
            let password = new_password(password_stdin)?;
            let u = client
                .create_user(&CreateUserRequest {
                    email,
                    password: password.expose().to_string(),
                    role,
                    device_slots: slots,
                })
                .await?;
            return if json {
                emit_json(&u)
            } else {
                emit(&format!(
                    "created {}\n{}",
                    u.email,
                    user_table(std::slice::from_ref(&u))
                ))
            };
        }
        UserCommand::ResetPassword {
            user,
            password_stdin,
        } => {
            let u = find_user(client, &user).await?;
            let password = new_password(password_stdin)?;
            client
                .reset_password(
                    u.id,
                    &ResetPasswordRequest {
                        password: password.expose().to_string(),
                    },
                )
                .await?;
            return emit(&format!(
                "set a new password for {}; their sessions have ended",
                u.email
            ));
        }
        UserCommand::Disable(r) => (
            r.user,
            update(Some(true), None, None),
            "disabled (sessions ended)",
        ),
        UserCommand::Enable(r) => (r.user, update(Some(false), None, None), "enabled"),
        UserCommand::SetSlots { user, slots } => (user, update(None, Some(slots), None), "updated"),
        UserCommand::SetRole { user, role } => (user, update(None, None, Some(role)), "updated"),
    };
    let u = find_user(client, &query).await?;
    let updated = client.update_user(u.id, &req).await?;
    emit(&format!(
        "{} {done}\n{}",
        updated.email,
        user_table(std::slice::from_ref(&updated))
    ))
}

// ---------------------------------------------------------------- devices

async fn device(client: &Client, cmd: AdminDeviceCommand) -> Result<(), CliError> {
    match cmd {
        AdminDeviceCommand::List {
            user,
            state,
            quarantined,
            waiting,
            json,
        } => {
            let user_id = user_id_of(client, user.as_deref()).await?;
            let devices = client
                .admin_devices(&AdminDeviceQuery {
                    user_id,
                    // clap admits only `active` and `revoked`.
                    state: state.as_deref().map(|s| match s {
                        "revoked" => DeviceState::Revoked,
                        _ => DeviceState::Active,
                    }),
                    quarantined,
                    waiting,
                })
                .await?;
            if json {
                return emit_json(&devices);
            }
            if devices.is_empty() {
                note("no devices match");
                return Ok(());
            }
            emit(&super::device::device_table(&devices, true, None))
        }
        AdminDeviceCommand::Release { device, json } => {
            let id = any_device_id(client, &device).await?;
            let d = client.release_device(id).await?;
            if json {
                return emit_json(&d);
            }
            emit(&format!(
                "released device {} ({}){} from quarantine: region moves and priority work again",
                d.name,
                d.id,
                d.owner_email
                    .as_deref()
                    .map(|e| format!(" of {e}"))
                    .unwrap_or_default()
            ))
        }
        AdminDeviceCommand::Revoke { device, json } => {
            let id = any_device_id(client, &device).await?;
            let resp = client.admin_revoke_device(id).await?;
            if json {
                return emit_json(&resp);
            }
            let owner = resp
                .device
                .owner_email
                .as_deref()
                .map(|e| format!(" of {e}"))
                .unwrap_or_default();
            emit(&format!(
                "revoked device {} ({}){owner}\n{}",
                resp.device.name,
                resp.device.id,
                describe_ack(&resp.node_ack)
            ))
        }
    }
}

/// The id of anyone's device: an id as given, or a name unique across all users.
async fn any_device_id(client: &Client, query: &str) -> Result<Uuid, CliError> {
    Ok(match as_id(query) {
        Some(id) => id,
        None => {
            let all = client.admin_devices(&AdminDeviceQuery::default()).await?;
            resolve(&all, query)?.id
        }
    })
}

/// A user filter: an id as given, or the id of the user with that email.
async fn user_id_of(client: &Client, user: Option<&str>) -> Result<Option<Uuid>, CliError> {
    Ok(match user {
        None => None,
        Some(u) => Some(match as_id(u) {
            Some(id) => id,
            None => find_user(client, u).await?.id,
        }),
    })
}

// ---------------------------------------------------------------- priority tokens

fn priority_table(tokens: &[PriorityTokenView]) -> String {
    let now = now_millis();
    let mut t = Table::new(&[
        "ID",
        "USER",
        "REGION",
        "STATUS",
        "FROM (UTC)",
        "UNTIL (UTC)",
        "NOTE",
    ]);
    for p in tokens {
        let mut status = p.status.to_string();
        match p.status {
            PriorityStatus::Active => {
                status.push_str(&format!(", ends {}", format_ago(now, p.expires_at)));
            }
            PriorityStatus::Scheduled => {
                status.push_str(&format!(", starts {}", format_ago(now, p.starts_at)));
            }
            _ => {}
        }
        if let Some(at) = p.revoked_at {
            status.push_str(&format!(" {}", format_ago(now, at)));
        }
        if p.suspended {
            status.push_str(", suspended (quarantined device)");
        }
        t.row(vec![
            p.id.to_string(),
            p.email.clone(),
            p.region.clone(),
            status,
            format_utc(p.starts_at),
            format_utc(p.expires_at),
            if p.note.is_empty() {
                "-".into()
            } else {
                p.note.clone()
            },
        ]);
    }
    t.render()
}

async fn priority(client: &Client, cmd: PriorityCommand) -> Result<(), CliError> {
    match cmd {
        PriorityCommand::Grant {
            email,
            region,
            duration,
            until,
            start,
            note,
            json,
        } => {
            let now = now_millis();
            let (user_id, email) = match as_id(&email) {
                Some(id) => (Some(id), None),
                None => (None, Some(email)),
            };
            let t = client
                .grant_priority_token(&GrantPriorityTokenRequest {
                    user_id,
                    email,
                    region,
                    starts_at: start.map(|s| s.resolve(now)),
                    expires_at: until.map(|u| u.resolve(now)),
                    duration_secs: duration,
                    note,
                })
                .await?;
            if json {
                return emit_json(&t);
            }
            emit(&format!(
                "granted {} priority in region {} from {} UTC until {} UTC ({})\n{}",
                t.email,
                t.region,
                format_utc(t.starts_at),
                format_utc(t.expires_at),
                t.status,
                priority_table(std::slice::from_ref(&t))
            ))
        }
        PriorityCommand::List { user, json } => {
            let user_id = user_id_of(client, user.as_deref()).await?;
            let tokens = client.priority_tokens(user_id).await?;
            if json {
                return emit_json(&tokens);
            }
            if tokens.is_empty() {
                note(
                    "no priority tokens; grant one with `clawn admin priority grant --email EMAIL --region REGION --duration 2h`",
                );
                return Ok(());
            }
            emit(&priority_table(&tokens))
        }
        PriorityCommand::Revoke { id, json } => {
            let t = client.revoke_priority_token(id).await?;
            if json {
                return emit_json(&t);
            }
            emit(&format!(
                "revoked priority token {} of {} in region {}; their devices there are standard again",
                t.id, t.email, t.region
            ))
        }
    }
}

// ---------------------------------------------------------------- diagnostics

async fn diag(client: &Client, args: DiagArgs) -> Result<(), CliError> {
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
            super::audit::actor_cell(e),
            super::audit::details_cell(e),
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
    let mut rows = super::device::device_rows(dev, None);
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
