//! `clawn-node`: join a control plane once, then run.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use clawn_node::enroll::{JoinError, JoinOptions, join};
use clawn_node::state::StateDir;
use clawn_node::wireguard::BackendKind;
use clawn_node::{Agent, AgentConfig};
use clawn_proto::sealed::SecretKey;

/// The Clawn node agent: keeps one WireGuard interface in the state the control plane signs.
#[derive(Parser)]
#[command(name = "clawn-node", version, about)]
struct Cli {
    /// State directory (identity, last snapshot). Holds secrets: 0700.
    #[arg(
        long,
        global = true,
        env = "CLAWN_NODE_STATE_DIR",
        default_value = "/var/lib/clawn-node"
    )]
    state_dir: PathBuf,
    /// Log filter (tracing syntax), e.g. `info` or `clawn_node=debug`.
    #[arg(long, global = true, env = "CLAWN_NODE_LOG", default_value = "info")]
    log: String,
    /// File holding the secret key (an age X25519 identity: `clawn-server keygen --out F`
    /// or `age-keygen -o F`) that encrypts identity.json at rest; or put the key itself in
    /// CLAWN_NODE_SECRET_KEY [default: none: identity.json is plaintext, 0600].
    #[arg(long, global = true, env = "CLAWN_NODE_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// The secret key itself, from the environment (a flag would show in `ps`).
    #[arg(
        long,
        global = true,
        env = "CLAWN_NODE_SECRET_KEY",
        hide = true,
        hide_env_values = true
    )]
    secret_key: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll with a control plane using a one-time join token.
    Join {
        /// Control plane URL, e.g. https://vpn.example.com
        #[arg(long, env = "CLAWN_SERVER")]
        server: String,
        /// Join token from `clawn admin node-token create`.
        #[arg(long, env = "CLAWN_JOIN_TOKEN")]
        token: String,
        /// Public endpoint clients dial (host:port). Default: the exit IP and --listen-port.
        #[arg(long)]
        endpoint: Option<String>,
        /// WireGuard backend. Default: kernel where the module exists, else embedded.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
        /// UDP listen port.
        #[arg(long, default_value_t = 51820)]
        listen_port: u16,
        /// Interface name.
        #[arg(long, default_value = "clawn0")]
        interface: String,
        /// Node name shown to admins.
        #[arg(long)]
        name: Option<String>,
        /// The IPv4 clients appear from. Default: the address of the default-route interface.
        #[arg(long)]
        exit_ipv4: Option<Ipv4Addr>,
        /// Do not forward or masquerade clients' traffic (tunnel-only node).
        #[arg(long)]
        no_exit: bool,
    },
    /// Run the agent (after `join`).
    Run {
        /// For the uapi backend: start this userspace WireGuard when its socket is absent.
        #[arg(long, default_value = "wireguard-go")]
        userspace_bin: PathBuf,
        /// The IPv4 clients appear from. Default: detected from the default route.
        #[arg(long)]
        exit_ipv4: Option<Ipv4Addr>,
        /// Do not manage the nftables table (no exit NAT, no client isolation).
        #[arg(long)]
        no_firewall: bool,
        /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9101.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Telemetry interval in seconds.
        #[arg(long, default_value_t = 5)]
        telemetry_secs: u64,
        /// Reconnect backoff ceiling in seconds.
        #[arg(long, default_value_t = 30)]
        backoff_cap_secs: u64,
    },
    /// Show the node's identity (no secrets).
    Status,
    /// Re-encrypt identity.json with a new secret key (atomic; safe to run again), then
    /// run with the new key.
    Rekey {
        /// The new key file.
        #[arg(long)]
        new_secret_key_file: PathBuf,
    },
}

/// The secret key from `--secret-key-file` / `CLAWN_NODE_SECRET_KEY_FILE` or
/// `CLAWN_NODE_SECRET_KEY` (one of them), never echoed in an error.
fn secret_key(cli: &Cli) -> Result<Option<SecretKey>, Failure> {
    match (&cli.secret_key, &cli.secret_key_file) {
        (Some(_), Some(_)) => Err(Failure::Usage(
            "both CLAWN_NODE_SECRET_KEY and a secret key file are set: set one".into(),
        )),
        (Some(text), None) => SecretKey::parse(text)
            .map(Some)
            .map_err(|e| Failure::Usage(format!("CLAWN_NODE_SECRET_KEY: {e}"))),
        (None, Some(path)) => read_key_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_key_file(path: &std::path::Path) -> Result<SecretKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    SecretKey::parse(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match real_main(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::Usage(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(Failure::Other(e)) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

enum Failure {
    Usage(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<clawn_node::state::StateError> for Failure {
    fn from(e: clawn_node::state::StateError) -> Self {
        Self::Other(e.into())
    }
}

impl From<clawn_node::AgentError> for Failure {
    fn from(e: clawn_node::AgentError) -> Self {
        Self::Other(e.into())
    }
}

async fn real_main(cli: Cli) -> Result<(), Failure> {
    clawn_node::install_crypto();
    let key = secret_key(&cli)?;
    if key.is_none() && matches!(cli.cmd, Cmd::Join { .. } | Cmd::Run { .. }) {
        tracing::warn!(
            "no secret key set (CLAWN_NODE_SECRET_KEY or --secret-key-file): identity.json \
             is stored in plaintext, protected by file permissions only"
        );
    }
    let dir = StateDir::open(&cli.state_dir)?.with_secret_key(key.clone());
    match cli.cmd {
        Cmd::Join {
            server,
            token,
            endpoint,
            backend,
            listen_port,
            interface,
            name,
            exit_ipv4,
            no_exit,
        } => {
            let opts = JoinOptions {
                server,
                token,
                endpoint,
                listen_port,
                backend: backend.unwrap_or_else(BackendKind::detect),
                interface_name: interface,
                name,
                exit_ipv4,
                exit: !no_exit,
            };
            match join(&dir, &opts).await {
                Ok(id) => {
                    println!(
                        "joined region {} as node {} ({} backend, interface {}, endpoint {}).\n\
                         start it with: clawn-node --state-dir {} run",
                        id.region,
                        id.node_id,
                        id.backend,
                        id.interface_name,
                        id.endpoint,
                        dir.path().display()
                    );
                    Ok(())
                }
                Err(e @ JoinError::Refused { .. }) => Err(Failure::Usage(e.to_string())),
                Err(e) => Err(Failure::Other(e.into())),
            }
        }
        Cmd::Run {
            userspace_bin,
            exit_ipv4,
            no_firewall,
            metrics_listen,
            telemetry_secs,
            backoff_cap_secs,
        } => {
            if let Some(addr) = metrics_listen {
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .install()
                    .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            }
            let mut cfg = AgentConfig::new(&cli.state_dir);
            cfg.secret_key = key;
            cfg.userspace_bin = Some(userspace_bin);
            cfg.exit_ipv4 = exit_ipv4;
            cfg.firewall = !no_firewall;
            cfg.telemetry_interval = Duration::from_secs(telemetry_secs.max(1));
            cfg.backoff_cap = Duration::from_secs(backoff_cap_secs.max(1));
            let agent = Agent::start(cfg).await?;
            tracing::info!("{}", agent.describe());
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                let _ = stop_tx.send(true);
            });
            agent.run(stop_rx).await;
            Ok(())
        }
        Cmd::Rekey {
            new_secret_key_file,
        } => {
            let new = read_key_file(&new_secret_key_file)?;
            let path = dir.path().join("identity.json");
            if dir.rekey_identity(&new)? {
                println!("re-encrypted {} to {}", path.display(), new.recipient());
            } else {
                println!("{} is already encrypted with the new key", path.display());
            }
            println!(
                "done: run with --secret-key-file {}",
                new_secret_key_file.display()
            );
            Ok(())
        }
        Cmd::Status => {
            let id = dir.load_identity()?;
            let applied = dir.load_applied().ok().flatten();
            println!("node:      {}", id.node_id);
            println!("region:    {}", id.region);
            println!("server:    {}", id.server_url);
            println!("backend:   {}", id.backend);
            println!(
                "interface: {} ({})",
                id.interface_name, id.interface.address
            );
            println!("endpoint:  {}", id.endpoint);
            if let Some(k) = clawn_node::agent::identity_public(&id) {
                println!("identity:  {k}");
            }
            match applied {
                Some(a) => println!(
                    "applied:   version {} with {} peers",
                    a.version,
                    a.peers.len()
                ),
                None => println!("applied:   nothing yet"),
            }
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
