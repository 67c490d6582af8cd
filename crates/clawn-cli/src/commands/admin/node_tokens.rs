//! `clawn admin node-token ...`: one-time join tokens for new nodes.

use clawn_proto::api::CreateNodeTokenRequest;
use clawn_proto::time::now_millis;

use crate::cli::NodeTokenCommand;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{emit, emit_json};
use crate::time::{format_ago, format_utc};

pub(super) async fn node_token(client: &Client, cmd: NodeTokenCommand) -> Result<(), CliError> {
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
