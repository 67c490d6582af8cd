//! Users as admins manage them: create, role and slots, disable/enable (which suspends
//! and restores the user's tunnels at the nodes), password reset.

use clawn_proto::api::{AuditAction, ErrorCode};
use clawn_proto::api::{CreateUserRequest, Role, UpdateUserRequest, UserView};
use clawn_proto::time::now_millis;
use serde_json::json;
use uuid::Uuid;

use super::accounts::{check_password, hash_password, normalize_email};
use super::{Changes, Error, Result, run};
use crate::app::AppState;
use crate::store::audit::{self, AuditActor};
use crate::store::{devices, users};

fn check_slots(slots: Option<u32>) -> Result<()> {
    if slots.is_some_and(|s| s > 1000) {
        return Err(Error::bad_request(
            ErrorCode::InvalidSlots,
            "device_slots must be 0 to 1000",
        ));
    }
    Ok(())
}

/// Creates a user (audited).
pub async fn create(
    app: &AppState,
    req: CreateUserRequest,
    actor: &AuditActor,
) -> Result<UserView> {
    let email = normalize_email(&req.email)?;
    check_password(&req.password)?;
    let slots = req.device_slots.unwrap_or(app.config.default_device_slots);
    check_slots(Some(slots))?;
    let role = req.role.unwrap_or(Role::User);
    let hash = hash_password(req.password).await?;
    let mut w = app.store.write().await?;
    let user = match users::insert(&mut w.tx, &email, &hash, role, slots, now_millis()).await {
        Err(e) if e.is_unique_violation() => {
            return Err(Error::conflict(
                ErrorCode::EmailTaken,
                "a user with this email exists",
            ));
        }
        r => r?,
    };
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::UserCreate,
        "user",
        Some(user.id.to_string()),
        json!({"email": email, "role": role.as_str(), "device_slots": slots}),
    )
    .await?;
    w.commit().await?;
    Ok(user)
}

/// Disables/enables a user, sets slots or role (audited). Disabling ends the user's
/// sessions and API tokens and retires their peers at the nodes; enabling gives the
/// devices their peers back where there is room. `admin` may not lock themself out.
pub async fn update(
    app: &AppState,
    id: Uuid,
    req: UpdateUserRequest,
    admin: Uuid,
    actor: &AuditActor,
) -> Result<UserView> {
    check_slots(req.device_slots)?;
    if id == admin && (req.disabled == Some(true) || req.role == Some(Role::User)) {
        return Err(Error::conflict(
            ErrorCode::SelfLockout,
            "you cannot disable or demote yourself",
        )
        .hint("ask another admin"));
    }
    let actor = actor.clone();
    run(app, move |app| async move {
        let now = now_millis();
        let mut w = app.store.write().await?;
        // Did this request flip the disabled flag? (The conditional update also row-locks.)
        let flipped = match req.disabled {
            Some(d) => users::flip_disabled(&mut w.tx, id, d).await?,
            None => false,
        };
        if !users::update(&mut w.tx, id, req.disabled, req.device_slots, req.role, now).await? {
            return Err(Error::not_found("user"));
        }
        let mut ended = 0;
        let mut changes = Vec::new();
        let mut without_room = 0;
        if flipped && req.disabled == Some(true) {
            // Disabling cuts everything: sessions, API tokens, and the tunnels at the nodes.
            ended = users::end_all_sessions(&mut w.tx, id).await?;
            users::revoke_all_api_tokens(&mut w.tx, id, now).await?;
            changes = devices::suspend_user(&mut w.tx, id, now).await?;
        } else if flipped && req.disabled == Some(false) {
            (changes, without_room) =
                devices::restore_user(&mut w.tx, app.store.tuning(), id, now).await?;
        }
        audit::record(&mut w.tx, &actor, AuditAction::UserUpdate, "user", Some(id.to_string()),
            json!({"disabled": req.disabled, "device_slots": req.device_slots, "role": req.role,
                   "sessions_ended": ended, "peers_changed": changes.len(), "devices_without_room": without_room})).await?;
        w.commit().await?;
        Ok(((), Changes::versions(changes)))
    })
    .await?;
    app.store
        .user_by_id(id)
        .await?
        .map(|u| u.view)
        .ok_or_else(|| Error::not_found("user"))
}

/// Sets a new password for a user; ends their sessions and API tokens (audited).
pub async fn reset_password(
    app: &AppState,
    id: Uuid,
    password: String,
    actor: &AuditActor,
) -> Result<()> {
    check_password(&password)?;
    let hash = hash_password(password).await?;
    let mut w = app.store.write().await?;
    if !users::set_password(&mut w.tx, id, &hash, now_millis()).await? {
        return Err(Error::not_found("user"));
    }
    let ended = users::end_all_sessions(&mut w.tx, id).await?;
    // A reset is what an admin does after a takeover: the attacker's API tokens go too.
    users::revoke_all_api_tokens(&mut w.tx, id, now_millis()).await?;
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::UserResetPassword,
        "user",
        Some(id.to_string()),
        json!({"sessions_ended": ended}),
    )
    .await?;
    w.commit().await?;
    Ok(())
}
