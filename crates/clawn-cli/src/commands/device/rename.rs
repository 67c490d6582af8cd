//! `clawn device rename`.

use super::{Context, find};
use crate::error::CliError;
use crate::output::emit;

/// `clawn device rename`.
pub(super) async fn rename(ctx: &Context, query: &str, new_name: &str) -> Result<(), CliError> {
    let client = ctx.client()?;
    let device = find(&client, query).await?;
    let renamed = client.rename_device(device.id, new_name).await?;
    emit(&format!(
        "renamed device {} to {} ({})",
        device.name, renamed.name, renamed.id
    ))
}
