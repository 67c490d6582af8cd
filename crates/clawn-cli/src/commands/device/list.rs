//! `clawn device list`.

use clawn_proto::time::now_millis;

use super::Context;
use crate::error::CliError;
use crate::output::device::{device_table, moved_notice};
use crate::output::{emit, emit_json, note};

/// `clawn device list`.
pub(super) async fn list(ctx: &Context, json: bool) -> Result<(), CliError> {
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
