//! `clawn device revoke`: revoke on the server, then delete the local key.

use super::{Context, find};
use crate::error::CliError;
use crate::output::device::revoked_summary;
use crate::output::{emit, emit_json, warn};

/// `clawn device revoke`.
pub(super) async fn revoke(ctx: &Context, query: &str, json: bool) -> Result<(), CliError> {
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
    emit(&revoked_summary(&resp, removed))
}
