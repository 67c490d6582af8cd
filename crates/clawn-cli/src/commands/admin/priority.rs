//! `clawn admin priority ...`: priority access tokens.

use clawn_proto::api::PriorityStatus;
use clawn_proto::api::{GrantPriorityTokenRequest, PriorityTokenView};
use clawn_proto::time::now_millis;

use super::devices::user_id_of;
use crate::cli::PriorityCommand;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note};
use crate::resolve::as_id;
use crate::time::{format_ago, format_utc};

fn priority_table(tokens: &[PriorityTokenView]) -> String {
    let now = now_millis();
    let mut t = Table::new(&[
        "ID",
        "USER",
        "REGION",
        "STATUS",
        "FROM (UTC)",
        "UNTIL (UTC)",
        "NOTE",
    ]);
    for p in tokens {
        let mut status = p.status.to_string();
        match p.status {
            PriorityStatus::Active => {
                status.push_str(&format!(", ends {}", format_ago(now, p.expires_at)));
            }
            PriorityStatus::Scheduled => {
                status.push_str(&format!(", starts {}", format_ago(now, p.starts_at)));
            }
            _ => {}
        }
        if let Some(at) = p.revoked_at {
            status.push_str(&format!(" {}", format_ago(now, at)));
        }
        if p.suspended {
            status.push_str(", suspended (quarantined device)");
        }
        t.row(vec![
            p.id.to_string(),
            p.email.clone(),
            p.region.clone(),
            status,
            format_utc(p.starts_at),
            format_utc(p.expires_at),
            if p.note.is_empty() {
                "-".into()
            } else {
                p.note.clone()
            },
        ]);
    }
    t.render()
}

pub(super) async fn priority(client: &Client, cmd: PriorityCommand) -> Result<(), CliError> {
    match cmd {
        PriorityCommand::Grant {
            email,
            region,
            duration,
            until,
            start,
            note,
            json,
        } => {
            let now = now_millis();
            let (user_id, email) = match as_id(&email) {
                Some(id) => (Some(id), None),
                None => (None, Some(email)),
            };
            let t = client
                .grant_priority_token(&GrantPriorityTokenRequest {
                    user_id,
                    email,
                    region,
                    starts_at: start.map(|s| s.resolve(now)),
                    expires_at: until.map(|u| u.resolve(now)),
                    duration_secs: duration,
                    note,
                })
                .await?;
            if json {
                return emit_json(&t);
            }
            emit(&format!(
                "granted {} priority in region {} from {} UTC until {} UTC ({})\n{}",
                t.email,
                t.region,
                format_utc(t.starts_at),
                format_utc(t.expires_at),
                t.status,
                priority_table(std::slice::from_ref(&t))
            ))
        }
        PriorityCommand::List { user, json } => {
            let user_id = user_id_of(client, user.as_deref()).await?;
            let tokens = client.priority_tokens(user_id).await?;
            if json {
                return emit_json(&tokens);
            }
            if tokens.is_empty() {
                note(
                    "no priority tokens; grant one with `clawn admin priority grant --email EMAIL --region REGION --duration 2h`",
                );
                return Ok(());
            }
            emit(&priority_table(&tokens))
        }
        PriorityCommand::Revoke { id, json } => {
            let t = client.revoke_priority_token(id).await?;
            if json {
                return emit_json(&t);
            }
            emit(&format!(
                "revoked priority token {} of {} in region {}; their devices there are standard again",
                t.id, t.email, t.region
            ))
        }
    }
}
