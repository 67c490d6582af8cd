//! `clawn-server`: parse configuration, set up logging, serve until Ctrl-C / SIGTERM.
//! With the `with-node` feature (default) `--with-node` also runs a node agent in the
//! process; `cargo build -p clawn-server --no-default-features` gives a control plane
//! with no WireGuard code at all.

#[cfg(feature = "with-node")]
mod allinone;

use clawn_server::config::{Config, ConfigError, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        // `--help`, `--version` or a malformed flag: printed the way clap does (exit 0 or 2).
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}\nhint: see `clawn-server --help` and docs/configuration.md");
            return std::process::ExitCode::from(2);
        }
    };
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
