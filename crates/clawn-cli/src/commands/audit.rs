//! `clawn admin audit`: the audit log, newest first, one page at a time.

use clawn_proto::api::AuditEventView;
use clawn_proto::time::now_millis;

use crate::cli::AuditArgs;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note};
use crate::time::format_utc;
use clawn_proto::api::AuditQuery;

/// Runs `clawn admin audit`.
pub async fn run(client: &Client, args: AuditArgs) -> Result<(), CliError> {
    let now = now_millis();
    let query = AuditQuery {
        actor: args.actor.clone(),
        action: args.action.clone(),
        target: args.target.clone(),
        since: args.since.map(|t| t.resolve(now)),
        until: args.until.map(|t| t.resolve(now)),
        limit: args.limit,
        cursor: args.cursor.clone(),
    };
    if let (Some(s), Some(u)) = (query.since, query.until)
        && s >= u
    {
        return Err(CliError::input(format!(
            "--since ({} UTC) is not before --until ({} UTC)",
            format_utc(s),
            format_utc(u)
        )));
    }
    let page = client.audit(&query).await?;
    if args.json {
        return emit_json(&page);
    }
    if page.items.is_empty() {
        note("no audit events match");
    } else {
        emit(&audit_table(&page.items))?;
    }
    if let Some(cursor) = &page.next_cursor {
        note(&format!(
            "more events: {}",
            next_page_command(&args, cursor)
        ));
    }
    Ok(())
}

/// The table: time (UTC), actor, action, target, details.
fn audit_table(events: &[AuditEventView]) -> String {
    let mut t = Table::new(&["TIME (UTC)", "ACTOR", "ACTION", "TARGET", "DETAILS"]);
    for e in events {
        let target = match &e.target_id {
            Some(id) => format!("{}:{id}", e.target_kind),
            None => e.target_kind.clone(),
        };
        t.row(vec![
            format_utc(e.at),
            actor_cell(e),
            e.action.to_string(),
            target,
            details_cell(e),
        ]);
    }
    t.render()
}

/// Who did it: `admin:root@example.com`, `node:<id>`, `system`.
pub(crate) fn actor_cell(e: &AuditEventView) -> String {
    match (&e.actor_label, e.actor_id) {
        (Some(l), _) => format!("{}:{l}", e.actor_kind),
        (None, Some(id)) => format!("{}:{id}", e.actor_kind),
        (None, None) => e.actor_kind.clone(),
    }
}

/// The event's facts as compact JSON, and where the request came from.
pub(crate) fn details_cell(e: &AuditEventView) -> String {
    let mut details = match &e.metadata {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        v => v.to_string(),
    };
    if let Some(addr) = &e.client_addr {
        if !details.is_empty() {
            details.push(' ');
        }
        details.push_str(&format!("from {addr}"));
    }
    details
}

/// The command that fetches the next page with the same filters. Relative times are pinned to
/// the absolute ones this page used, so the pages line up.
fn next_page_command(args: &AuditArgs, cursor: &str) -> String {
    let now = now_millis();
    let mut cmd = String::from("clawn admin audit");
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            cmd.push_str(&format!(" --{flag} {}", shell_quote(&v)));
        }
    };
    push("actor", args.actor.clone());
    push("action", args.action.clone());
    push("target", args.target.clone());
    push("since", args.since.map(|t| t.resolve(now).to_string()));
    push("until", args.until.map(|t| t.resolve(now).to_string()));
    push("limit", args.limit.map(|l| l.to_string()));
    push("cursor", Some(cursor.to_string()));
    cmd
}

/// Quotes a value for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@/+=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn events_read_as_a_table() {
        let id = Uuid::new_v4();
        let e = AuditEventView {
            id: Uuid::now_v7(),
            at: 1_740_830_400_000,
            actor_kind: "admin".into(),
            actor_id: Some(Uuid::new_v4()),
            actor_label: Some("root@example.com".into()),
            action: clawn_proto::api::AuditAction::DeviceRevoke,
            target_kind: "device".into(),
            target_id: Some(id.to_string()),
            metadata: serde_json::json!({"node_ack": "acknowledged"}),
            client_addr: Some("127.0.0.1".into()),
        };
        let table = audit_table(&[e]);
        let row = table.lines().nth(1).unwrap_or_default();
        assert!(
            row.starts_with("2025-03-01 12:00:00  admin:root@example.com  device.revoke  device:"),
            "{row}"
        );
        assert!(
            row.ends_with(r#"{"node_ack":"acknowledged"} from 127.0.0.1"#),
            "{row}"
        );
    }

    #[test]
    fn next_page_keeps_filters() {
        let args = AuditArgs {
            actor: Some("a b".into()),
            action: Some("device.".into()),
            target: None,
            since: Some(crate::time::TimeSpec::At(5)),
            until: None,
            limit: Some(50),
            cursor: Some("old".into()),
            json: false,
        };
        assert_eq!(
            next_page_command(&args, "c1"),
            "clawn admin audit --actor 'a b' --action device. --since 5 --limit 50 --cursor c1"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
