//! `clawn admin ...`: regions, node join tokens, nodes, users and everyone's devices.
//!
//! Every one of these is an explicit admin route on the server, which checks the role and writes
//! an audit event; the CLI only shapes requests and shows answers.

use clawn_proto::api::{
    AdminRegionView, CreateNodeTokenRequest, CreateRegionRequest, CreateUserRequest, NodeView,
    ResetPasswordRequest, UpdateNodeRequest, UpdateRegionRequest, UpdateUserRequest, UserView,
};
use clawn_proto::time::now_millis;
use uuid::Uuid;

use super::auth::health_cell;
use super::{Context, PasswordSource, read_password};
use crate::cli::{
    AdminCommand, AdminDeviceCommand, NodeCommand, NodeTokenCommand, RegionCommand, UserCommand,
};
use crate::client::{AdminDeviceQuery, Client};
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
        ]);
    }
    t.render()
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
        AdminDeviceCommand::List { user, state, json } => {
            let user_id = match user {
                None => None,
                Some(u) => Some(match as_id(&u) {
                    Some(id) => id,
                    None => find_user(client, &u).await?.id,
                }),
            };
            let devices = client
                .admin_devices(&AdminDeviceQuery { user_id, state })
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
        AdminDeviceCommand::Revoke { device, json } => {
            let id: Uuid = match as_id(&device) {
                Some(id) => id,
                None => {
                    let all = client.admin_devices(&AdminDeviceQuery::default()).await?;
                    resolve(&all, &device)?.id
                }
            };
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
