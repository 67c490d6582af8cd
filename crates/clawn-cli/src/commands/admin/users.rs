//! `clawn admin user ...`: accounts, roles, slots and passwords.

use clawn_proto::api::{CreateUserRequest, ResetPasswordRequest, UpdateUserRequest, UserView};

use crate::cli::UserCommand;
use crate::client::Client;
use crate::commands::{PasswordSource, read_password};
use crate::error::CliError;
use crate::output::{Table, emit, emit_json};
use crate::resolve::resolve;
use crate::time::format_utc;

pub(super) async fn find_user(client: &Client, query: &str) -> Result<UserView, CliError> {
    let users = client.users().await?;
    Ok(resolve(&users, query)?.clone())
}

fn user_table(users: &[UserView]) -> String {
    let mut t = Table::new(&["ID", "EMAIL", "ROLE", "DEVICES", "STATUS", "CREATED"]);
    for u in users {
        t.row(vec![
            u.id.to_string(),
            u.email.clone(),
            u.role.as_str().into(),
            format!("{}/{}", u.active_devices, u.device_slots),
            if u.disabled {
                "disabled".into()
            } else {
                "enabled".into()
            },
            format_utc(u.created_at),
        ]);
    }
    t.render()
}

fn new_password(stdin: bool) -> Result<crate::store::Secret, CliError> {
    read_password(if stdin {
        PasswordSource::Stdin
    } else {
        PasswordSource::Prompt {
            prompt: "New password: ",
            confirm: true,
        }
    })
}

pub(super) async fn user(client: &Client, cmd: UserCommand) -> Result<(), CliError> {
    let update = |disabled, device_slots, role| UpdateUserRequest {
        disabled,
        device_slots,
        role,
    };
    let (query, req, done): (String, UpdateUserRequest, &str) = match cmd {
        UserCommand::List(f) => {
            let users = client.users().await?;
            return if f.json {
                emit_json(&users)
            } else {
                emit(&user_table(&users))
            };
        }
        UserCommand::Create {
            email,
            role,
            slots,
            password_stdin,
            json,
        } => {
            let password = new_password(password_stdin)?;
            let u = client
                .create_user(&CreateUserRequest {
                    email,
                    password: password.expose().to_string(),
                    role,
                    device_slots: slots,
                })
                .await?;
            return if json {
                emit_json(&u)
            } else {
                emit(&format!(
                    "created {}\n{}",
                    u.email,
                    user_table(std::slice::from_ref(&u))
                ))
            };
        }
        UserCommand::ResetPassword {
            user,
            password_stdin,
        } => {
            let u = find_user(client, &user).await?;
            let password = new_password(password_stdin)?;
            client
                .reset_password(
                    u.id,
                    &ResetPasswordRequest {
                        password: password.expose().to_string(),
                    },
                )
                .await?;
            return emit(&format!(
                "set a new password for {}; their sessions have ended",
                u.email
            ));
        }
        UserCommand::Disable(r) => (
            r.user,
            update(Some(true), None, None),
            "disabled (sessions ended)",
        ),
        UserCommand::Enable(r) => (r.user, update(Some(false), None, None), "enabled"),
        UserCommand::SetSlots { user, slots } => (user, update(None, Some(slots), None), "updated"),
        UserCommand::SetRole { user, role } => (user, update(None, None, Some(role)), "updated"),
    };
    let u = find_user(client, &query).await?;
    let updated = client.update_user(u.id, &req).await?;
    emit(&format!(
        "{} {done}\n{}",
        updated.email,
        user_table(std::slice::from_ref(&updated))
    ))
}
