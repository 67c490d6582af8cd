//! `clawn-server`: parse configuration, set up logging, serve until Ctrl-C / SIGTERM; or
//! run a maintenance subcommand (`keygen`, `rekey`, `backup`, `restore`: `commands.rs`).
//! With the `with-node` feature (default) `--with-node` also runs a node agent in the
//! process; `cargo build -p clawn-server --no-default-features` gives a control plane
//! with no WireGuard code at all.

#[cfg(feature = "with-node")]
mod allinone;

mod commands;

use clawn_server::config::{Config, ConfigError, LogFormat, ServerCommand, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config_error = |e: ConfigError| {
        eprintln!("error: {e}\nhint: see `clawn-server --help` and docs/configuration.md");
        std::process::ExitCode::from(2)
    };
    let mut settings = match Settings::from_args(std::env::args_os()) {
        Ok(s) => s,
        // `--help`, `--version` or a malformed flag: printed the way clap does (exit 0 or 2).
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => return config_error(e),
    };
    let command = settings.command.take();
    // A new key needs no configuration (the configured key file may be the one to make).
    if let Some(ServerCommand::Keygen { out }) = &command {
        return commands::keygen(out.as_deref());
    }
    let config = match settings.resolve() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    if let Some(command) = command {
        return commands::run(command, config).await;
    }
    let filter = EnvFilter::try_from_env("CLAWN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e}\nhint: pick another address with --listen",
                config.listen
            );
            return std::process::ExitCode::from(1);
        }
    };
    let companion = match node_companion(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match clawn_server::serve(config, listener, shutdown_signal(), companion).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The in-process node agent, when `--with-node` asks for it.
#[cfg(feature = "with-node")]
fn node_companion(config: &Config) -> Result<Option<clawn_server::Companion>, String> {
    Ok(config.with_node.then(|| {
        Box::new(|app, addr| tokio::spawn(allinone::run(app, addr))) as clawn_server::Companion
    }))
}

/// A build without the node agent refuses `--with-node` with the way out.
#[cfg(not(feature = "with-node"))]
fn node_companion(config: &Config) -> Result<Option<clawn_server::Companion>, String> {
    if config.with_node {
        return Err("--with-node needs a build with the `with-node` feature\n\
             hint: build with default features, or run clawn-node separately"
            .into());
    }
    Ok(None)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
