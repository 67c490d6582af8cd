//! Signing in and out, and the read-only account commands (`whoami`, `regions`).

use clawn_proto::api::{LoginRequest, RegionHealth, SessionKind};
use reqwest::StatusCode;

use super::{Context, PasswordSource, prompt_line, read_password};
use crate::cli::LoginArgs;
use crate::client::{Client, ClientError, is_insecure};
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note, warn};
use crate::store::Credentials;

/// `clawn login`: exchanges email and password for a bearer token and saves it.
pub async fn login(ctx: &Context, args: LoginArgs) -> Result<(), CliError> {
    let saved = ctx.store.load_credentials()?;
    let server = match (&ctx.server, &saved) {
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
        warn(&format!("{server} uses plain http: your password and session token cross the network unencrypted"));
    }
    let email = match args.email {
        Some(e) => e,
        None if args.password_stdin => {
            return Err(CliError::input("--email is required with --password-stdin"));
        }
        None => prompt_line("Email: ")?,
    };
    let email = email.trim().to_string();
    if email.is_empty() {
        return Err(CliError::input("the email is empty"));
    }
    let source = if args.password_stdin {
        PasswordSource::Stdin
    } else if let Some(p) = &ctx.env.password {
        PasswordSource::Env(p)
    } else {
        PasswordSource::Prompt { prompt: "Password: ", confirm: false }
    };
    let password = read_password(source)?;

    let client = ctx.anonymous_client(&server)?;
    let resp = client
        .login(&LoginRequest { email, password: password.expose().to_string(), session: SessionKind::Bearer })
        .await?;
    let token = resp.token.ok_or_else(|| {
        CliError::input_with_hint(
            "the server did not return a bearer token",
            "the server may run an older Clawn version than this client",
        )
    })?;
    let token = crate::store::Secret::new(token);

    // Replacing a session on the same server: end the old one rather than leave it valid.
    if let Some(old) = saved
        && old.server == server
        && old.token != token
        && let Ok(c) = Client::new(&old.server, Some(old.token), ctx.ca_cert.as_deref())
    {
        let _ = c.logout().await;
    }

    ctx.store.save_credentials(&Credentials { server: server.clone(), token, email: resp.user.email.clone() })?;
    emit(&format!("logged in to {server} as {} ({})", resp.user.email, resp.user.role.as_str()))?;
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
        Err(ClientError::Api { status: StatusCode::UNAUTHORIZED, .. }) => {}
        Err(e) => warn(&format!("could not end the session on the server ({e}); forgetting it here anyway")),
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
        if me.disabled { "\naccount: disabled" } else { "" }
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
