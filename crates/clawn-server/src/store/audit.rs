//! The audit log: append-only, written in the same transaction as the change it records.

use clawn_proto::api::{AuditAction, AuditEventView, Page};
use clawn_proto::time::now_millis;
use serde_json::Value;
use sqlx::{Any, AssertSqlSafe, Row};
use uuid::Uuid;

use super::{StoreResult, uuid};

/// Who did it.
#[derive(Debug, Clone)]
pub struct AuditActor {
    /// `user`, `admin`, `system` or `node`.
    pub kind: &'static str,
    /// User or node id.
    pub id: Option<Uuid>,
    /// Email or node name.
    pub label: Option<String>,
    /// Client address of the request.
    pub client_addr: Option<String>,
}

impl AuditActor {
    /// The server itself (bootstrap, background jobs).
    pub fn system() -> Self {
        Self {
            kind: "system",
            id: None,
            label: None,
            client_addr: None,
        }
    }
}

/// Appends one event inside `tx`.
pub async fn record(
    tx: &mut sqlx::AnyConnection,
    actor: &AuditActor,
    action: AuditAction,
    target_kind: &str,
    target_id: Option<String>,
    metadata: Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor_kind, actor_id, actor_label, action, target_kind, target_id, metadata, client_addr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(now_millis())
    .bind(actor.kind)
    .bind(actor.id.map(|u| u.to_string()))
    .bind(actor.label.clone())
    .bind(action.as_str())
    .bind(target_kind)
    .bind(target_id)
    .bind(metadata.to_string())
    .bind(actor.client_addr.clone())
    .execute(tx)
    .await?;
    Ok(())
}

/// Filters for the audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actor id or label (email / node name).
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (e.g. `device.`).
    pub action: Option<String>,
    /// Target id.
    pub target: Option<String>,
    /// From this time (inclusive), ms.
    pub since: Option<i64>,
    /// Until this time (exclusive), ms.
    pub until: Option<i64>,
    /// Page size (1–500).
    pub limit: u32,
    /// Cursor: the last id of the previous page; newest first.
    pub cursor: Option<String>,
}

/// Queries the log, newest first, keyset-paginated by the time-ordered id.
pub async fn query(pool: &sqlx::AnyPool, f: &AuditFilter) -> StoreResult<Page<AuditEventView>> {
    let mut sql = String::from(
        "SELECT id, at, actor_kind, actor_id, actor_label, action, target_kind, target_id, metadata, client_addr \
         FROM audit_events WHERE 1 = 1",
    );
    let mut binds: Vec<BindVal> = Vec::new();
    let mut push = |sql: &mut String, clause: &str, v: BindVal| {
        binds.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(a) = &f.actor {
        push(&mut sql, " AND (actor_id = ? ", BindVal::S(a.clone()));
        push(&mut sql, "OR actor_label = ?)", BindVal::S(a.clone()));
    }
    if let Some(a) = &f.action {
        if let Some(prefix) = a.strip_suffix('.') {
            push(
                &mut sql,
                " AND action LIKE ?",
                BindVal::S(format!("{prefix}.%")),
            );
        } else {
            push(&mut sql, " AND action = ?", BindVal::S(a.clone()));
        }
    }
    if let Some(t) = &f.target {
        push(&mut sql, " AND target_id = ?", BindVal::S(t.clone()));
    }
    if let Some(s) = f.since {
        push(&mut sql, " AND at >= ?", BindVal::I(s));
    }
    if let Some(u) = f.until {
        push(&mut sql, " AND at < ?", BindVal::I(u));
    }
    if let Some(c) = &f.cursor {
        push(&mut sql, " AND id < ?", BindVal::S(c.clone()));
    }
    let limit = f.limit.clamp(1, 500);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let mut q = sqlx::query::<Any>(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            BindVal::S(s) => q.bind(s),
            BindVal::I(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(pool).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get("id")?;
        let actor_id: Option<String> = r.try_get("actor_id")?;
        let metadata: String = r.try_get("metadata")?;
        items.push(AuditEventView {
            id: uuid(&id, "audit_events.id")?,
            at: r.try_get("at")?,
            actor_kind: r.try_get("actor_kind")?,
            actor_id: actor_id
                .as_deref()
                .map(|s| uuid(s, "audit_events.actor_id"))
                .transpose()?,
            actor_label: r.try_get("actor_label")?,
            action: AuditAction::parse(&r.try_get::<String, _>("action")?),
            target_kind: r.try_get("target_kind")?,
            target_id: r.try_get("target_id")?,
            metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
            client_addr: r.try_get("client_addr")?,
        });
    }
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

enum BindVal {
    S(String),
    I(i64),
}
