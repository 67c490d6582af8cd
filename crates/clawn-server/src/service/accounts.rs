//! Accounts: sign-in, sessions, personal API tokens, self-registration, the first admin
//! (setup token or environment). Cookies and other HTTP rendering stay in the handlers;
//! these functions decide and write.

use axum::http::StatusCode;
use clawn_proto::api::{ApiTokenView, LoginResponse, Role, SessionKind, UserView};
use clawn_proto::api::{AuditAction, ErrorCode};
use clawn_proto::time::now_millis;
use serde_json::json;
use uuid::Uuid;

use super::{Error, Result};
use crate::app::AppState;
use crate::auth::{self, MIN_PASSWORD_LEN, TokenKind, new_token, token_hash};
use crate::policy::Actor;
use crate::store::StoreResult;
use crate::store::audit::{self, AuditActor};
use crate::store::users::{self, NewSession};

/// Live API tokens one user may hold.
pub const MAX_API_TOKENS: usize = 50;

/// Settings key of the setup token hash.
pub const SETUP_TOKEN_KEY: &str = "setup_token_hash";

/// Normalises an email for lookup and storage; rejects obviously invalid ones.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(char::is_whitespace);
    if valid {
        Ok(e)
    } else {
        Err(Error::bad_request(
            ErrorCode::InvalidEmail,
            "that is not a valid email address",
        ))
    }
}

/// Checks password strength rules.
pub fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD_LEN || p.len() > 1024 {
        return Err(Error::bad_request(
            ErrorCode::WeakPassword,
            format!("passwords must be {MIN_PASSWORD_LEN} to 1024 characters long"),
        ));
    }
    Ok(())
}

/// Hashes off the async runtime.
pub async fn hash_password(p: String) -> Result<String> {
    tokio::task::spawn_blocking(move || auth::hash_password(&p))
        .await
        .map_err(|e| Error::internal(&e))?
        .map_err(|e| Error::internal(&e))
}

async fn verify_password(p: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || auth::verify_password(&p, &hash))
        .await
        .map_err(|e| Error::internal(&e))
}

/// Takes a sign-in attempt (login, registration, setup) from the account's and the
/// address's budgets.
fn rate_limit(app: &AppState, account: &str, addr: Option<&str>) -> Result<()> {
    app.limiter
        .check(account, addr.unwrap_or("unknown"))
        .map_err(|secs| {
            tracing::warn!(client = ?addr, "sign-in rate limit hit");
            let mut e = Error::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many sign-in attempts",
            )
            .hint(format!("wait {secs} s and try again"));
            e.retry_after = Some(secs);
            e
        })
}

/// Where a sign-in comes from.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// Client address.
    pub addr: Option<String>,
    /// User agent (shown in the session list).
    pub user_agent: Option<String>,
}

/// A new session: the answer body, and the secrets the handler turns into cookies (for
/// cookie sessions) or returns in the body (bearer sessions, already in `body.token`).
/// Its `Debug` never shows a secret.
pub struct NewSessionOut {
    /// The answer.
    pub body: LoginResponse,
    /// The session token (cookie sessions: goes into the session cookie).
    pub token: String,
    /// The CSRF token of a cookie session.
    pub csrf: Option<String>,
}

impl std::fmt::Debug for NewSessionOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSessionOut")
            .field("user", &self.body.user.id)
            .field("session_id", &self.body.session_id)
            .field("expires_at", &self.body.expires_at)
            .finish_non_exhaustive()
    }
}

/// Creates a session for `user`.
async fn start_session(
    app: &AppState,
    user: UserView,
    kind: SessionKind,
    client: Client,
) -> Result<NewSessionOut> {
    let token = new_token(TokenKind::Session);
    let csrf = (kind == SessionKind::Cookie).then(|| new_token(TokenKind::Csrf));
    let now = now_millis();
    let max_ms = i64::try_from(app.config.session_max.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(max_ms);
    let hash = token_hash(&token);
    let csrf_hash = csrf.as_deref().map(token_hash);
    let idle_ms = i64::try_from(app.config.session_idle.as_millis()).unwrap_or(i64::MAX);
    let mut w = app.store.write().await?;
    users::sweep_sessions(&mut w.tx, user.id, now, now.saturating_sub(idle_ms)).await?;
    let session_id = users::insert_session(
        &mut w.tx,
        &NewSession {
            user_id: user.id,
            token_hash: &hash,
            csrf_hash: csrf_hash.as_deref(),
            kind,
            now,
            expires_at,
            client_addr: client.addr,
            user_agent: client.user_agent,
        },
    )
    .await?;
    w.commit().await?;
    Ok(NewSessionOut {
        body: LoginResponse {
            user,
            session_id,
            token: (kind == SessionKind::Bearer).then(|| token.clone()),
            csrf_token: csrf.clone(),
            expires_at,
        },
        token,
        csrf,
    })
}

/// Signs in with email and password. Unknown users are verified against a dummy hash so
/// both cases take the same time.
pub async fn login(
    app: &AppState,
    email: &str,
    password: String,
    kind: SessionKind,
    client: Client,
) -> Result<NewSessionOut> {
    let email = email.trim().to_lowercase();
    rate_limit(app, &email, client.addr.as_deref())?;
    let user = app.store.user_by_email(&email).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| app.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = verify_password(password, hash).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials,
            "wrong email or password",
        ));
    };
    if user.view.disabled {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccountDisabled,
            "this account is disabled",
        )
        .hint("ask an admin to enable it"));
    }
    start_session(app, user.view, kind, client).await
}

/// Ends the actor's current session.
pub async fn logout(app: &AppState, actor: &Actor) -> Result<()> {
    if let Some(id) = actor.session_id {
        app.store.delete_session(actor.user.id, id).await?;
    }
    Ok(())
}

/// Creates an account (only when self-registration is on) and signs it in.
pub async fn register(
    app: &AppState,
    email: &str,
    password: String,
    kind: SessionKind,
    client: Client,
) -> Result<NewSessionOut> {
    if !app.config.self_registration {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            ErrorCode::RegistrationClosed,
            "self-registration is off",
        )
        .hint("ask an admin to create your account"));
    }
    let email = normalize_email(email)?;
    check_password(&password)?;
    rate_limit(app, &email, client.addr.as_deref())?;
    let hash = hash_password(password).await?;
    let now = now_millis();
    let mut w = app.store.write().await?;
    let user = match users::insert(
        &mut w.tx,
        &email,
        &hash,
        Role::User,
        app.config.default_device_slots,
        now,
    )
    .await
    {
        Ok(u) => u,
        Err(e) if e.is_unique_violation() => {
            return Err(Error::conflict(
                ErrorCode::EmailTaken,
                "an account with this email exists",
            )
            .hint("sign in instead"));
        }
        Err(e) => return Err(e.into()),
    };
    let actor = AuditActor {
        kind: "user",
        id: Some(user.id),
        label: Some(email.clone()),
        client_addr: client.addr.clone(),
    };
    audit::record(
        &mut w.tx,
        &actor,
        AuditAction::UserRegister,
        "user",
        Some(user.id.to_string()),
        json!({"email": email}),
    )
    .await?;
    w.commit().await?;
    start_session(app, user, kind, client).await
}

/// Creates the first admin with the one-time setup token printed at first start.
pub async fn setup(
    app: &AppState,
    setup_token: &str,
    email: &str,
    password: String,
    kind: SessionKind,
    client: Client,
) -> Result<NewSessionOut> {
    let email = normalize_email(email)?;
    check_password(&password)?;
    rate_limit(app, "setup", client.addr.as_deref())?;
    let invalid = || {
        Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSetupToken,
            "the setup token is wrong or was used",
        )
        .hint("the token is printed by the server at a start with an empty database")
    };
    let stored = app.store.setting(SETUP_TOKEN_KEY).await?;
    let presented = token_hash(setup_token);
    if !stored
        .as_deref()
        .is_some_and(|h| auth::hashes_equal(h, &presented))
    {
        return Err(invalid());
    }
    let hash = hash_password(password).await?;
    let mut w = app.store.write().await?;
    // Consuming the token is the lock: of two concurrent setups exactly one deletes the row.
    if !users::consume_setting(&mut w.tx, SETUP_TOKEN_KEY, &presented).await? {
        return Err(invalid());
    }
    if users::count_users(&mut w.tx).await? > 0 {
        return Err(Error::conflict(
            ErrorCode::AlreadySetUp,
            "an account exists already; setup is done",
        ));
    }
    let actor = AuditActor {
        kind: "system",
        id: None,
        label: Some("setup".into()),
        client_addr: client.addr.clone(),
    };
    let user = insert_first_admin(app, &mut w.tx, &email, &hash, &actor, "setup_token").await?;
    w.commit().await?;
    start_session(app, user, kind, client).await
}

/// First start with no users and `CLAWN_ADMIN_EMAIL` / `CLAWN_ADMIN_PASSWORD` set: the
/// bootstrap admin (email normalised and password checked and hashed by the caller, which
/// names the variable in its errors), audited as the system. Never logs the password.
/// Start-up errors keep the store's cause.
pub async fn bootstrap_admin(app: &AppState, email: &str, hash: &str) -> StoreResult<()> {
    let mut w = app.store.write().await?;
    insert_first_admin(
        app,
        &mut w.tx,
        email,
        hash,
        &AuditActor::system(),
        "environment",
    )
    .await?;
    w.commit().await
}

/// The first admin, audited as `user.bootstrap` with how it was made.
async fn insert_first_admin(
    app: &AppState,
    tx: &mut sqlx::AnyConnection,
    email: &str,
    hash: &str,
    actor: &AuditActor,
    via: &str,
) -> StoreResult<UserView> {
    let user = users::insert(
        tx,
        email,
        hash,
        Role::Admin,
        app.config.default_device_slots.max(1),
        now_millis(),
    )
    .await?;
    audit::record(
        tx,
        actor,
        AuditAction::UserBootstrap,
        "user",
        Some(user.id.to_string()),
        json!({"email": email, "via": via}),
    )
    .await?;
    Ok(user)
}

/// Makes (or replaces) the one-time setup token; only its hash is stored.
pub async fn new_setup_token(app: &AppState) -> StoreResult<String> {
    let token = new_token(TokenKind::Setup);
    app.store
        .set_setting(SETUP_TOKEN_KEY, &token_hash(&token))
        .await?;
    Ok(token)
}

/// Ends all of the actor's sessions, this one included (audited).
pub async fn end_all_sessions(app: &AppState, actor: &Actor) -> Result<()> {
    let mut w = app.store.write().await?;
    let n = users::end_all_sessions(&mut w.tx, actor.user.id).await?;
    audit::record(
        &mut w.tx,
        &actor.audit(),
        AuditAction::SessionEndAll,
        "user",
        Some(actor.user.id.to_string()),
        json!({"ended": n}),
    )
    .await?;
    w.commit().await?;
    Ok(())
}

/// Ends one of the actor's sessions.
pub async fn end_session(app: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    if app.store.delete_session(actor.user.id, id).await? {
        Ok(())
    } else {
        Err(Error::not_found("session"))
    }
}

/// Creates a personal API token (the secret is in the answer, once).
pub async fn create_api_token(
    app: &AppState,
    actor: &Actor,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<ApiTokenView> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            "token names are 1 to 64 characters",
        ));
    }
    let days = expires_in_days.unwrap_or(90);
    if !(1..=365).contains(&days) {
        return Err(Error::bad_request(
            ErrorCode::InvalidExpiry,
            "expires_in_days must be 1 to 365",
        ));
    }
    if app.store.list_api_tokens(actor.user.id).await?.len() >= MAX_API_TOKENS {
        return Err(Error::conflict(
            ErrorCode::TooManyTokens,
            format!("at most {MAX_API_TOKENS} live API tokens per user"),
        )
        .hint("revoke tokens you no longer use"));
    }
    let token = new_token(TokenKind::ApiToken);
    let now = now_millis();
    let mut view = app
        .store
        .insert_api_token(
            &actor.audit(),
            actor.user.id,
            name,
            &token_hash(&token),
            now,
            now + i64::from(days) * 86_400_000,
        )
        .await?;
    view.token = Some(token);
    Ok(view)
}

/// Revokes one of the actor's API tokens.
pub async fn revoke_api_token(app: &AppState, actor: &Actor, id: Uuid) -> Result<()> {
    if app
        .store
        .revoke_api_token(&actor.audit(), actor.user.id, id, now_millis())
        .await?
    {
        Ok(())
    } else {
        Err(Error::not_found("token"))
    }
}
