//! `clawn admin ...`: regions, node join tokens, nodes, users, everyone's devices, priority
//! tokens and diagnostics.
//!
//! Every one of these is an explicit admin route on the server, which checks the role and writes
//! an audit event; the CLI only shapes requests and shows answers.

mod devices;
mod diag;
mod node_tokens;
mod nodes;
mod priority;
mod regions;
mod users;

use crate::cli::AdminCommand;
use crate::error::CliError;

use super::Context;

/// Runs a `clawn admin` subcommand.
pub async fn run(ctx: &Context, cmd: AdminCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match cmd {
        AdminCommand::Region(c) => regions::region(&client, c).await,
        AdminCommand::NodeToken(c) => node_tokens::node_token(&client, c).await,
        AdminCommand::Node(c) => nodes::node(&client, c).await,
        AdminCommand::User(c) => users::user(&client, c).await,
        AdminCommand::Device(c) => devices::device(&client, c).await,
        AdminCommand::Priority(c) => priority::priority(&client, c).await,
        AdminCommand::Diag(args) => diag::diag(&client, args).await,
        AdminCommand::Audit(args) => super::audit::run(&client, args).await,
    }
}
