//! Signing in and out (and the first admin's `setup`), and the read-only account commands
//! (`whoami`, `regions`).

use clawn_proto::api::{LoginRequest, LoginResponse, RegionHealth, SessionKind, SetupRequest};
use reqwest::StatusCode;

use super::{Context, PasswordSource, prompt_line, read_password};
use crate::cli::{LoginArgs, SetupArgs};
use crate::client::{Client, ClientError, is_insecure};
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note, warn};
use crate::store::{Credentials, Secret};

/// The server to sign in to: `--server`, else the saved session's.
fn login_server(ctx: &Context, saved: Option<&Credentials>) -> Result<String, CliError> {
    let server = match (&ctx.server, saved) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => c.server.clone(),
        (None, None) => {
            return Err(CliError::input_with_hint(
                "no server to log in to",
                "pass --server https://vpn.example.com or set CLAWN_SERVER",
            ));
        }
    };
    if is_insecure(&server) {
        warn(&format!(
            "{server} uses plain http: your password and session token cross the network unencrypted"
        ));
    }
    Ok(server)
}

/// `--email`, or a prompt (not possible when stdin carries the password).
fn read_email(email: Option<String>, password_stdin: bool) -> Result<String, CliError> {
    let email = match email {
        Some(e) => e,
        None if password_stdin => {
            return Err(CliError::input("--email is required with --password-stdin"));
        }
        None => prompt_line("Email: ", "--email")?,
    };
    let email = email.trim().to_string();
    if email.is_empty() {
        return Err(CliError::input("the email is empty"));
    }
    Ok(email)
}

/// Reads a password from standard input, `CLAWN_PASSWORD`, or a prompt, in that order.
fn password_for(
    ctx: &Context,
    stdin: bool,
    prompt: &'static str,
    confirm: bool,
) -> Result<Secret, CliError> {
    let source = if stdin {
        PasswordSource::Stdin
    } else if let Some(p) = &ctx.env.password {
        PasswordSource::Env(p)
    } else {
        PasswordSource::Prompt { prompt, confirm }
    };
    read_password(source)
}

/// `clawn login`: exchanges email and password for a bearer token and saves it.
pub async fn login(ctx: &Context, args: LoginArgs) -> Result<(), CliError> {
    let saved = ctx.store.load_credentials()?;
    let server = login_server(ctx, saved.as_ref())?;
    let email = read_email(args.email, args.password_stdin)?;
    let password = password_for(ctx, args.password_stdin, "Password: ", false)?;
    let resp = ctx
        .anonymous_client(&server)?
        .login(&LoginRequest {
            email,
            password: password.expose().to_string(),
            session: SessionKind::Bearer,
        })
        .await?;
    save_session(ctx, server, saved, resp).await
}

/// `clawn setup`: creates the first admin of a fresh server and signs in as it.
pub async fn setup(ctx: &Context, args: SetupArgs) -> Result<(), CliError> {
    let saved = ctx.store.load_credentials()?;
    let server = login_server(ctx, saved.as_ref())?;
    let email = read_email(args.email, args.password_stdin)?;
    let password = password_for(
        ctx,
        args.password_stdin,
        "New admin password (at least 10 characters): ",
        true,
    )?;
    let resp = ctx
        .anonymous_client(&server)?
        .setup(&SetupRequest {
            setup_token: args.token.trim().to_string(),
            email,
            password: password.expose().to_string(),
            session: Some(SessionKind::Bearer),
        })
        .await?;
    save_session(ctx, server, saved, resp).await?;
    note(
        "next: create a region with `clawn admin region create CODE --name NAME --cidr 10.100.0.0/16`",
    );
    Ok(())
}

/// Saves the bearer session of a login/setup answer, ending the session it replaces.
async fn save_session(
    ctx: &Context,
    server: String,
    saved: Option<Credentials>,
    resp: LoginResponse,
) -> Result<(), CliError> {
    let token = resp.token.map(Secret::new).ok_or_else(|| {
        CliError::input_with_hint(
            "the server did not return a bearer token",
            "the server may run an older Clawn version than this client",
        )
    })?;

    // Replacing a session on the same server: end the old one rather than leave it valid.
    if let Some(old) = saved
        && old.server == server
        && old.token != token
        && let Ok(c) = Client::new(&old.server, Some(old.token), ctx.ca_cert.as_deref())
    {
        let _ = c.logout().await;
    }

    ctx.store.save_credentials(&Credentials {
        server: server.clone(),
        token,
        email: resp.user.email.clone(),
    })?;
    emit(&format!(
        "logged in to {server} as {} ({})",
        resp.user.email,
        resp.user.role.as_str()
    ))?;
    if ctx.env.token.is_some() {
        note("note: CLAWN_TOKEN is set and takes precedence over this session");
    }
    Ok(())
}

/// `clawn logout`: ends the saved session on the server, then forgets it.
pub async fn logout(ctx: &Context) -> Result<(), CliError> {
    let Some(saved) = ctx.store.load_credentials()? else {
        emit("not logged in")?;
        return Ok(());
    };
    let server = saved.server.clone();
    let client = Client::new(&saved.server, Some(saved.token), ctx.ca_cert.as_deref())?;
    match client.logout().await {
        Ok(()) => {}
        // The session had already ended (expired, revoked, user disabled): nothing to end.
        Err(ClientError::Api {
            status: StatusCode::UNAUTHORIZED,
            ..
        }) => {}
        Err(e) => warn(&format!(
            "could not end the session on the server ({e}); forgetting it here anyway"
        )),
    }
    ctx.store.remove_credentials()?;
    emit(&format!("logged out of {server}"))?;
    if ctx.env.token.is_some() {
        note("note: CLAWN_TOKEN is still set in the environment");
    }
    Ok(())
}

/// `clawn whoami`.
pub async fn whoami(ctx: &Context, json: bool) -> Result<(), CliError> {
    let client = ctx.client()?;
    let me = client.me().await?;
    if json {
        return emit_json(&me);
    }
    emit(&format!(
        "{} ({}) on {}\ndevices: {} of {} slots in use{}",
        me.email,
        me.role.as_str(),
        client.server(),
        me.active_devices,
        me.device_slots,
        if me.disabled {
            "\naccount: disabled"
        } else {
            ""
        }
    ))
}

/// A region's health in a table cell: `healthy 2/2`, `degraded 1/2 (reason)`.
pub(crate) fn health_cell(h: &RegionHealth) -> String {
    let mut s = format!("{} {}/{}", h.status, h.eligible_nodes, h.total_nodes);
    if let Some(r) = &h.reason {
        s.push_str(&format!(" ({r})"));
    }
    s
}

/// `clawn regions`.
pub async fn regions(ctx: &Context, json: bool) -> Result<(), CliError> {
    let regions = ctx.client()?.regions().await?;
    if json {
        return emit_json(&regions);
    }
    if regions.is_empty() {
        note("no regions yet; an admin creates them with `clawn admin region create`");
        return Ok(());
    }
    let mut t = Table::new(&["CODE", "NAME", "HEALTH (ELIGIBLE/ALL NODES)"]);
    for r in &regions {
        t.row(vec![r.code.clone(), r.name.clone(), health_cell(&r.health)]);
    }
    emit(&t.render())
}
