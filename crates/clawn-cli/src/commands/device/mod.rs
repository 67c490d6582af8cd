//! `clawn device ...`: the user's own devices.
//!
//! Key handling follows one rule: a private key is generated here, written to the store before
//! its public half is sent, and becomes *the* key of a device only once the server accepted it
//! (see [`crate::store`]). The server never sees a private key; the config the server returns
//! is a template that this module completes locally.
//!
//! One file per subcommand; how devices read on the terminal is [`crate::output::device`].

mod add;
mod config;
mod list;
mod move_region;
mod rename;
mod revoke;
mod rotate;
mod show;

use std::path::PathBuf;

use clawn_proto::api::{DeviceState, DeviceView};

use super::Context;
use crate::cli::DeviceCommand;
use crate::client::{Client, ClientError};
use crate::error::CliError;
use crate::output::warn;
use crate::resolve::{as_id, resolve};
use crate::store::PendingKey;

/// Runs a `clawn device` subcommand.
pub async fn run(ctx: &Context, cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::Add {
            name,
            region,
            output,
            force,
        } => add::add(ctx, name, region, output, force).await,
        DeviceCommand::List(f) => list::list(ctx, f.json).await,
        DeviceCommand::Show { device, json } => show::show(ctx, &device, json).await,
        DeviceCommand::Config { device, output } => config::config(ctx, &device, output).await,
        DeviceCommand::Revoke { device, json } => revoke::revoke(ctx, &device, json).await,
        DeviceCommand::Rotate { device, output } => rotate::rotate(ctx, &device, output).await,
        DeviceCommand::Move {
            device,
            region,
            output,
        } => move_region::move_region(ctx, &device, &region, output).await,
        DeviceCommand::Rename { device, new_name } => rename::rename(ctx, &device, &new_name).await,
    }
}

/// Finds one of the user's devices by id or exact name.
pub(super) async fn find(client: &Client, query: &str) -> Result<DeviceView, CliError> {
    if let Some(id) = as_id(query) {
        return Ok(client.device(id).await?);
    }
    let all = client.devices().await?;
    Ok(resolve(&all, query)?.clone())
}

/// Like [`find`], but a revoked device is refused with `why_not` ("it has no config").
pub(super) async fn find_active(
    client: &Client,
    query: &str,
    why_not: &str,
) -> Result<DeviceView, CliError> {
    let device = find(client, query).await?;
    if device.state == DeviceState::Revoked {
        return Err(CliError::input(format!(
            "device {} is revoked; {why_not}",
            device.name
        )));
    }
    Ok(device)
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

/// The request that registers a new public key failed: forget the key if the server surely
/// did not take it, keep it (and say where) if it might have.
pub(super) fn key_request_failed(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
