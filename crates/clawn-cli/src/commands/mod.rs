//! The commands: one module per area, all sharing a [`Context`].

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::CommandFactory as _;

use crate::cli::{Cli, Command};
use crate::client::{Client, normalize_server_url};
use crate::error::CliError;
use crate::store::{Secret, Store};

pub mod admin;
pub mod audit;
pub mod auth;
pub mod device;

/// Values the process environment provides besides the command line. Read once at the edge
/// (`main`) and passed down, so commands and tests never consult the environment themselves.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CLAWN_TOKEN`: an API token that replaces the saved session.
    pub token: Option<Secret>,
    /// `CLAWN_PASSWORD`: the password for `clawn login`.
    pub password: Option<Secret>,
}

impl Env {
    /// Reads `CLAWN_TOKEN` and `CLAWN_PASSWORD` (empty values count as unset).
    pub fn from_process() -> Self {
        let secret = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        Self {
            token: secret("CLAWN_TOKEN"),
            password: secret("CLAWN_PASSWORD"),
        }
    }
}

/// What every command needs: where state lives, which server, which credentials.
#[derive(Debug)]
pub struct Context {
    /// The local store.
    pub store: Store,
    /// `--server` / `CLAWN_SERVER`, normalised.
    pub server: Option<String>,
    /// Extra CA bundle.
    pub ca_cert: Option<PathBuf>,
    /// Environment-provided secrets.
    pub env: Env,
}

impl Context {
    /// A client without credentials (for login).
    pub fn anonymous_client(&self, server: &str) -> Result<Client, CliError> {
        Ok(Client::new(server, None, self.ca_cert.as_deref())?)
    }

    /// An authenticated client: `CLAWN_TOKEN` if set, else the saved session. The saved token is
    /// only ever sent to the server it was issued by.
    pub fn client(&self) -> Result<Client, CliError> {
        let saved = self.store.load_credentials()?;
        let server = match (&self.server, &saved) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => c.server.clone(),
            (None, None) => {
                return Err(CliError::NotLoggedIn {
                    server: None,
                    saved_for: None,
                });
            }
        };
        let token = match (&self.env.token, saved) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) if c.server == server => c.token,
            (None, Some(c)) => {
                return Err(CliError::NotLoggedIn {
                    server: Some(server),
                    saved_for: Some(c.server),
                });
            }
            (None, None) => {
                return Err(CliError::NotLoggedIn {
                    server: Some(server),
                    saved_for: None,
                });
            }
        };
        Ok(Client::new(&server, Some(token), self.ca_cert.as_deref())?)
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, env: Env) -> Result<(), CliError> {
    let server = cli
        .global
        .server
        .as_deref()
        .map(normalize_server_url)
        .transpose()?;
    let ctx = Context {
        store: Store::open(cli.global.config_dir)?,
        server,
        ca_cert: cli.global.ca_cert,
        env,
    };
    match cli.command {
        Command::Login(args) => auth::login(&ctx, args).await,
        Command::Logout => auth::logout(&ctx).await,
        Command::Setup(args) => auth::setup(&ctx, args).await,
        Command::Whoami(f) => auth::whoami(&ctx, f.json).await,
        Command::Regions(f) => auth::regions(&ctx, f.json).await,
        Command::Device(cmd) => device::run(&ctx, cmd).await,
        Command::Admin(cmd) => admin::run(&ctx, cmd).await,
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "clawn", &mut buf);
            crate::output::emit(&String::from_utf8_lossy(&buf))
        }
    }
}

// ---------------------------------------------------------------- interactive input

/// Reads one line from stdin (without the line ending).
pub(crate) fn read_stdin_line(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Io {
            what: format!("cannot read {what} from stdin"),
            source: e,
        })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks for a line of text on the terminal; without one, says which `flag` to pass instead.
pub(crate) fn prompt_line(prompt: &str, flag: &str) -> Result<String, CliError> {
    if !io::stdin().is_terminal() {
        return Err(CliError::input(format!(
            "{flag} is required when there is no terminal to ask on"
        )));
    }
    let mut err = io::stderr().lock();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    drop(err);
    read_stdin_line(prompt)
}

/// Where a password comes from.
pub(crate) enum PasswordSource<'a> {
    /// The first line of stdin.
    Stdin,
    /// An environment variable's value.
    Env(&'a Secret),
    /// A prompt on the terminal, asked twice when `confirm`.
    Prompt {
        /// Text before the input.
        prompt: &'a str,
        /// Ask a second time and compare (setting a new password).
        confirm: bool,
    },
}

/// Reads a password; an empty one is refused.
pub(crate) fn read_password(source: PasswordSource<'_>) -> Result<Secret, CliError> {
    let password = match source {
        PasswordSource::Stdin => read_stdin_line("the password")?,
        PasswordSource::Env(s) => s.expose().to_string(),
        PasswordSource::Prompt { prompt, confirm } => {
            let ask = |p: &str| {
                rpassword::prompt_password(p).map_err(|e| {
                    CliError::input_with_hint(
                        format!("cannot prompt for a password: {e}"),
                        "use --password-stdin (or CLAWN_PASSWORD for `clawn login`)",
                    )
                })
            };
            let first = ask(prompt)?;
            if confirm && ask("Repeat password: ")? != first {
                return Err(CliError::input("the passwords do not match"));
            }
            first
        }
    };
    if password.is_empty() {
        return Err(CliError::input("the password is empty"));
    }
    Ok(Secret::new(password))
}
