//! `clawn admin device ...`: everyone's devices, quarantine review.

use clawn_proto::api::{AdminDeviceQuery, DeviceState};
use uuid::Uuid;

use super::users::find_user;
use crate::cli::AdminDeviceCommand;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{describe_ack, emit, emit_json, note};
use crate::resolve::{as_id, resolve};

pub(super) async fn device(client: &Client, cmd: AdminDeviceCommand) -> Result<(), CliError> {
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
            emit(&crate::output::device::device_table(&devices, true, None))
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
pub(super) async fn any_device_id(client: &Client, query: &str) -> Result<Uuid, CliError> {
    Ok(match as_id(query) {
        Some(id) => id,
        None => {
            let all = client.admin_devices(&AdminDeviceQuery::default()).await?;
            resolve(&all, query)?.id
        }
    })
}

/// A user filter: an id as given, or the id of the user with that email.
pub(super) async fn user_id_of(
    client: &Client,
    user: Option<&str>,
) -> Result<Option<Uuid>, CliError> {
    Ok(match user {
        None => None,
        Some(u) => Some(match as_id(u) {
            Some(id) => id,
            None => find_user(client, u).await?.id,
        }),
    })
}
