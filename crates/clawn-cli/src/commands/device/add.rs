//! `clawn device add`: a new key pair, registered with the server, and the config.

use clawn_proto::WgKeyPair;
use clawn_proto::api::CreateDeviceRequest;

use super::{Context, default_conf_path, key_request_failed};
use crate::cli::ConfigOutput;
use crate::client::Client;
use crate::error::CliError;
use crate::output::device::{added_summary, is_stdout, say, write_config};
use crate::output::emit_qr;

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
pub(super) async fn add(
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

    say(&out, &added_summary(&created, &key_path, &out))?;
    if output.qr {
        emit_qr(&text)?;
    }
    Ok(())
}
