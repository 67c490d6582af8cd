//! Users, sessions and personal API tokens.

use clawn_proto::api::AuditAction;
use clawn_proto::api::{ApiTokenView, Role, SessionKind, SessionView, UserView};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, count, uuid};

/// A user row including its password hash (never leaves the server).
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Public view.
    pub view: UserView,
    /// argon2id PHC string.
    pub password_hash: String,
}

const USER_COLS: &str =
    "id, email, password_hash, role, device_slots, active_devices, disabled, created_at";

fn user_from_row(r: &AnyRow) -> StoreResult<UserRecord> {
    let id: String = r.try_get("id")?;
    let role: String = r.try_get("role")?;
    Ok(UserRecord {
        view: UserView {
            id: uuid(&id, "users.id")?,
            email: r.try_get("email")?,
            role: Role::parse(&role).ok_or(StoreError::Corrupt("users.role"))?,
            device_slots: count(r.try_get("device_slots")?),
            active_devices: count(r.try_get("active_devices")?),
            disabled: r.try_get::<i64, _>("disabled")? != 0,
            created_at: r.try_get("created_at")?,
        },
        password_hash: r.try_get("password_hash")?,
    })
}

/// Inserts a user inside `tx`.
pub async fn insert(
    tx: &mut sqlx::AnyConnection,
    email: &str,
    password_hash: &str,
    role: Role,
    slots: u32,
    now: i64,
) -> StoreResult<UserView> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, role, device_slots, active_devices, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6)",
    )
    .bind(id.to_string())
    .bind(email)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(i64::from(slots))
    .bind(now)
    .execute(tx)
    .await?;
    Ok(UserView {
        id,
        email: email.to_string(),
        role,
        device_slots: slots,
        active_devices: 0,
        disabled: false,
        created_at: now,
    })
}

impl Store {
    /// Number of users.
    pub async fn user_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?)
    }

    /// Finds a user by (lower-cased) email.
    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Finds a user by id.
    pub async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// All users, by email.
    pub async fn list_users(&self) -> StoreResult<Vec<UserView>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY email");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| user_from_row(r).map(|u| u.view))
            .collect()
    }
}

/// Updates a user's flags inside `tx`; returns false if there is no such user.
pub async fn update(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    disabled: Option<bool>,
    slots: Option<u32>,
    role: Option<Role>,
    now: i64,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE users SET disabled = COALESCE($2, disabled), device_slots = COALESCE($3, device_slots), \
         role = COALESCE($4, role), updated_at = $5 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(disabled.map(i64::from))
    .bind(slots.map(i64::from))
    .bind(role.map(Role::as_str))
    .bind(now)
    .execute(tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Sets a password hash inside `tx`.
pub async fn set_password(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let r = sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(hash)
        .bind(now)
        .execute(tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes every session of a user inside `tx`; returns how many.
pub async fn end_all_sessions(tx: &mut sqlx::AnyConnection, user_id: Uuid) -> StoreResult<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id.to_string())
        .execute(tx)
        .await?;
    Ok(r.rows_affected())
}

/// Revokes every live API token of a user inside `tx`.
pub async fn revoke_all_api_tokens(
    tx: &mut sqlx::AnyConnection,
    user_id: Uuid,
    now: i64,
) -> StoreResult<u64> {
    let r = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id.to_string())
    .bind(now)
    .execute(tx)
    .await?;
    Ok(r.rows_affected())
}

/// A new session to store.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// Owner.
    pub user_id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: &'a str,
    /// SHA-256 of the CSRF token (cookie sessions).
    pub csrf_hash: Option<&'a str>,
    /// Kind.
    pub kind: SessionKind,
    /// Now.
    pub now: i64,
    /// Absolute expiry.
    pub expires_at: i64,
    /// Client address.
    pub client_addr: Option<String>,
    /// User agent (truncated).
    pub user_agent: Option<String>,
}

/// Stores a session inside `tx`.
pub async fn insert_session(tx: &mut sqlx::AnyConnection, s: &NewSession<'_>) -> StoreResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, token_hash, csrf_hash, kind, created_at, last_seen_at, expires_at, client_addr, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(s.user_id.to_string())
    .bind(s.token_hash)
    .bind(s.csrf_hash)
    .bind(kind_str(s.kind))
    .bind(s.now)
    .bind(s.expires_at)
    .bind(s.client_addr.clone())
    .bind(s.user_agent.clone())
    .execute(tx)
    .await?;
    Ok(id)
}

fn kind_str(k: SessionKind) -> &'static str {
    match k {
        SessionKind::Cookie => "cookie",
        SessionKind::Bearer => "bearer",
    }
}

/// What authenticates a request.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A session.
    Session {
        /// Session id.
        id: Uuid,
        /// Kind.
        kind: SessionKind,
        /// CSRF hash, for cookie sessions.
        csrf_hash: Option<String>,
        /// Last seen.
        last_seen_at: i64,
    },
    /// A personal API token.
    ApiToken {
        /// Token id.
        id: Uuid,
        /// Last used.
        last_used_at: Option<i64>,
    },
}

/// The user behind a credential.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: UserView,
    /// The credential used.
    pub credential: Credential,
}

impl Store {
    /// Resolves a session token hash; expired (idle or absolute) sessions and disabled users
    /// resolve to nothing.
    pub async fn session_by_hash(
        &self,
        hash: &str,
        now: i64,
        idle_ms: i64,
    ) -> StoreResult<Option<Authenticated>> {
        let row = sqlx::query(
            "SELECT s.id AS sid, s.kind, s.csrf_hash, s.last_seen_at, s.expires_at, \
             u.id, u.email, u.password_hash, u.role, u.device_slots, u.active_devices, u.disabled, u.created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let last_seen: i64 = r.try_get("last_seen_at")?;
        let expires: i64 = r.try_get("expires_at")?;
        let user = user_from_row(&r)?;
        if user.view.disabled || now >= expires || now - last_seen >= idle_ms {
            return Ok(None);
        }
        let sid: String = r.try_get("sid")?;
        let kind: String = r.try_get("kind")?;
        Ok(Some(Authenticated {
            user: user.view,
            credential: Credential::Session {
                id: uuid(&sid, "sessions.id")?,
                kind: if kind == "cookie" {
                    SessionKind::Cookie
                } else {
                    SessionKind::Bearer
                },
                csrf_hash: r.try_get("csrf_hash")?,
                last_seen_at: last_seen,
            },
        }))
    }

    /// Resolves an API token hash.
    pub async fn api_token_by_hash(
        &self,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<Authenticated>> {
        let row = sqlx::query(
            "SELECT t.id AS tid, t.expires_at, t.revoked_at, t.last_used_at, \
             u.id, u.email, u.password_hash, u.role, u.device_slots, u.active_devices, u.disabled, u.created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let expires: i64 = r.try_get("expires_at")?;
        let revoked: Option<i64> = r.try_get("revoked_at")?;
        let user = user_from_row(&r)?;
        if user.view.disabled || now >= expires || revoked.is_some() {
            return Ok(None);
        }
        let tid: String = r.try_get("tid")?;
        Ok(Some(Authenticated {
            user: user.view,
            credential: Credential::ApiToken {
                id: uuid(&tid, "api_tokens.id")?,
                last_used_at: r.try_get("last_used_at")?,
            },
        }))
    }

    /// Marks a session as used (callers throttle this to once a minute).
    pub async fn touch_session(&self, id: Uuid, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks an API token as used.
    pub async fn touch_api_token(&self, id: Uuid, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sessions of one user.
    pub async fn list_sessions(
        &self,
        user_id: Uuid,
        current: Option<Uuid>,
    ) -> StoreResult<Vec<SessionView>> {
        let rows = sqlx::query(
            "SELECT id, kind, created_at, last_seen_at, expires_at, client_addr, user_agent FROM sessions \
             WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id = uuid(&r.try_get::<String, _>("id")?, "sessions.id")?;
                let kind: String = r.try_get("kind")?;
                Ok(SessionView {
                    id,
                    kind: if kind == "cookie" {
                        SessionKind::Cookie
                    } else {
                        SessionKind::Bearer
                    },
                    created_at: r.try_get("created_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                    expires_at: r.try_get("expires_at")?,
                    client_addr: r.try_get("client_addr")?,
                    user_agent: r.try_get("user_agent")?,
                    current: Some(id) == current,
                })
            })
            .collect()
    }

    /// Deletes one session of a user (owner-scoped); false if none.
    pub async fn delete_session(&self, user_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let r = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores a personal API token.
    pub async fn insert_api_token(
        &self,
        actor: &super::audit::AuditActor,
        user_id: Uuid,
        name: &str,
        hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<ApiTokenView> {
        let id = Uuid::now_v7();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(user_id.to_string())
        .bind(name)
        .bind(hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        super::audit::record(
            &mut tx.tx,
            actor,
            AuditAction::ApiTokenCreate,
            "api_token",
            Some(id.to_string()),
            serde_json::json!({"name": name, "expires_at": expires_at}),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiTokenView {
            id,
            name: name.to_string(),
            created_at: now,
            expires_at,
            last_used_at: None,
            token: None,
        })
    }

    /// Live (unrevoked) API tokens of a user.
    pub async fn list_api_tokens(&self, user_id: Uuid) -> StoreResult<Vec<ApiTokenView>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, expires_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC",
        )
        .bind(user_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenView {
                    id: uuid(&r.try_get::<String, _>("id")?, "api_tokens.id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                    token: None,
                })
            })
            .collect()
    }

    /// Revokes an API token of a user (owner-scoped); false if none.
    pub async fn revoke_api_token(
        &self,
        actor: &super::audit::AuditActor,
        user_id: Uuid,
        id: Uuid,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        if r.rows_affected() == 1 {
            super::audit::record(
                &mut tx.tx,
                actor,
                AuditAction::ApiTokenRevoke,
                "api_token",
                Some(id.to_string()),
                serde_json::json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}

/// Sets a user's disabled flag inside `tx` (row-locking it); true if this flipped it.
pub async fn flip_disabled(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    disabled: bool,
) -> StoreResult<bool> {
    Ok(
        sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1 AND disabled <> $2")
            .bind(id.to_string())
            .bind(i64::from(disabled))
            .execute(tx)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Deletes a user's expired or idle sessions inside `tx` (run at each sign-in, so the
/// table stays bounded).
pub async fn sweep_sessions(
    tx: &mut sqlx::AnyConnection,
    user: Uuid,
    now: i64,
    idle_cutoff: i64,
) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM sessions WHERE user_id = $1 AND (expires_at <= $2 OR last_seen_at <= $3)",
    )
    .bind(user.to_string())
    .bind(now)
    .bind(idle_cutoff)
    .execute(tx)
    .await?;
    Ok(())
}

/// Consumes the one-time setup token inside `tx`: of two concurrent setups exactly one
/// deletes the row. True if this call consumed it.
pub async fn consume_setting(
    tx: &mut sqlx::AnyConnection,
    key: &str,
    value: &str,
) -> StoreResult<bool> {
    Ok(
        sqlx::query("DELETE FROM settings WHERE key = $1 AND value = $2")
            .bind(key)
            .bind(value)
            .execute(tx)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Number of users, inside `tx`.
pub async fn count_users(tx: &mut sqlx::AnyConnection) -> StoreResult<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(tx)
        .await?)
}
