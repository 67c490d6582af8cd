//! `clawn device show`.

use super::{Context, find};
use crate::error::CliError;
use crate::output::device::show_text;
use crate::output::{emit, emit_json};

/// `clawn device show`.
pub(super) async fn show(ctx: &Context, query: &str, json: bool) -> Result<(), CliError> {
    let d = find(&ctx.client()?, query).await?;
    if json {
        return emit_json(&d);
    }
    let key = if ctx.store.has_key(d.id) {
        ctx.store.key_path(d.id).display().to_string()
    } else {
        "not on this machine".to_string()
    };
    emit(&show_text(&d, &key))
}
