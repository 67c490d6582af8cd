//! `clawn device rotate`: a new key pair for an existing device.

use clawn_proto::WgKeyPair;
use clawn_proto::api::RotateDeviceRequest;

use super::{Context, default_conf_path, find_active, key_request_failed};
use crate::cli::ConfigOutput;
use crate::error::CliError;
use crate::output::device::{rotated_summary, say, write_config};
use crate::output::emit_qr;

/// `clawn device rotate`.
pub(super) async fn rotate(
    ctx: &Context,
    query: &str,
    output: ConfigOutput,
) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find_active(&client, query, "add a new device instead").await?;
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
    say(&out, &rotated_summary(&rotated, device.id, &out))?;
    if output.qr {
        emit_qr(&text)?;
    }
    Ok(())
}
