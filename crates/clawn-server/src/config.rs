//! Server configuration: flags, then `CLAWN_*` environment variables, then an optional
//! TOML file, then built-in defaults. With nothing set the server listens on
//! 127.0.0.1:8080 and keeps everything in `./clawn-data`.
//!
//! Every setting is declared once, as a field of [`Settings`]: its type, its doc comment
//! (the `--help` text), its flag and environment variable (`#[arg]`), its TOML key (the
//! field name; `#[serde]`) and its default (`default_value`, which `--help` prints and
//! [`Settings::default`] reads, so the file layer falls back to the same value). The
//! layering is clap's own: the file is deserialised into a `Settings` whose missing keys
//! take the defaults, then every value clap took from a flag or an environment variable
//! is laid over it ([`clap::FromArgMatches::update_from_arg_matches`]), after dropping
//! the values clap filled in from `default_value` so those cannot hide the file's.
//! [`Settings::resolve`] then turns the settings into the typed [`Config`] the rest of the
//! server uses (durations, parsed CIDRs, the defaults that depend on another setting) and
//! checks their ranges.
//!
//! Why not a layered-configuration crate such as figment: its environment provider
//! would read `CLAWN_*` a second time beside clap (which must know the variables anyway to
//! list them in `--help`), with its own parsing of lists and booleans, and it would still
//! need a second, all-`Option` struct for the flags. figment 0.10 also brings a second
//! `toml` major version into the build. One struct with serde defaults and clap's `env`
//! needs no new dependency and keeps today's parsing and messages exactly.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use clawn_proto::sealed::SecretKey;
use serde::Deserialize;

/// Every setting of `clawn-server`: its command line, its `CLAWN_*` variables and its
/// TOML file (same keys as the long flags, with `_` for `-`, plus the TOML-only sections).
#[derive(Debug, Clone, PartialEq, Parser, Deserialize)]
#[command(
    name = "clawn-server",
    version,
    about = "Clawn control plane: accounts, devices, regions, nodes and the node streams."
)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file (same keys as the long flags, with `_` for `-`).
    #[arg(long, env = "CLAWN_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "CLAWN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the snapshot-signing key.
    #[arg(
        long,
        env = "CLAWN_DATA_DIR",
        default_value = "./clawn-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite:///path/file.db` or `postgres://user:pass@host/db`
    /// [default: SQLite file `clawn.db` in the data directory].
    #[arg(long, env = "CLAWN_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// The snapshot-signing key file; all replicas must use the same signing key
    /// [default: `signing.key` in the data directory].
    #[arg(long, env = "CLAWN_SIGNING_KEY_FILE", global = true)]
    pub signing_key_file: Option<PathBuf>,
    /// File holding the secret key (an age X25519 identity, made by `clawn-server keygen`)
    /// that encrypts the signing key and the all-in-one node's identity at rest; or put
    /// the key itself in CLAWN_SECRET_KEY [default: none: key files are plaintext, 0600].
    #[arg(long, env = "CLAWN_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,
    /// The secret key itself, from the environment (a flag would show in `ps`; prefer
    /// the variable or --secret-key-file). Never read from the TOML file.
    #[arg(
        long,
        env = "CLAWN_SECRET_KEY",
        hide = true,
        hide_env_values = true,
        global = true
    )]
    #[serde(skip)]
    pub secret_key: Option<SecretText>,
    /// URL users and nodes reach this server at, used in join commands [default: http://LISTEN].
    #[arg(long, env = "CLAWN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "CLAWN_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Allow anyone to register an account.
    #[arg(long, env = "CLAWN_SELF_REGISTRATION", action = ArgAction::Set, default_value_t = false)]
    pub self_registration: bool,
    /// Device slots of new users.
    #[arg(long, env = "CLAWN_DEFAULT_DEVICE_SLOTS", default_value_t = 1)]
    pub default_device_slots: u32,
    /// Session idle expiry in seconds (12 h).
    #[arg(long, env = "CLAWN_SESSION_IDLE_SECS", default_value_t = 43_200)]
    pub session_idle_secs: u64,
    /// Session absolute expiry in seconds (7 days).
    #[arg(long, env = "CLAWN_SESSION_MAX_SECS", default_value_t = 604_800)]
    pub session_max_secs: u64,
    /// How long revoke/rotate wait for the node's acknowledgement, ms.
    #[arg(long, env = "CLAWN_ACK_TIMEOUT_MS", default_value_t = 2_000)]
    pub ack_timeout_ms: u64,
    /// Login attempts per account per minute.
    #[arg(long, env = "CLAWN_LOGIN_LIMIT_PER_ACCOUNT", default_value_t = 10)]
    pub login_limit_per_account: u32,
    /// Login attempts per client address per minute.
    #[arg(long, env = "CLAWN_LOGIN_LIMIT_PER_ADDR", default_value_t = 30)]
    pub login_limit_per_addr: u32,
    /// PersistentKeepalive put in device configs, seconds.
    #[arg(long, env = "CLAWN_KEEPALIVE_SECS", default_value_t = 25)]
    pub keepalive_secs: u16,
    /// AllowedIPs put in device configs, comma-separated.
    #[arg(
        long,
        env = "CLAWN_CLIENT_ALLOWED_IPS",
        value_delimiter = ',',
        default_value = "0.0.0.0/0,::/0"
    )]
    pub client_allowed_ips: Vec<String>,
    /// How long a node may serve its last snapshot without the control plane before it
    /// removes all peers, seconds; 0 = forever.
    #[arg(long, env = "CLAWN_NODE_OFFLINE_GRACE_SECS", default_value_t = 86_400)]
    pub node_offline_grace_secs: u64,
    /// A node's lease, seconds: a node cut off from the control plane while its region's
    /// other nodes are not removes its peers this long after its last renewal, and a
    /// dead node's devices move only once its lease has surely ended; 0 = no leases.
    #[arg(long, env = "CLAWN_NODE_LEASE_SECS", default_value_t = 30)]
    pub node_lease_secs: u64,
    /// Let clients of one node reach each other's tunnel addresses.
    #[arg(long, env = "CLAWN_ALLOW_CLIENT_TO_CLIENT", action = ArgAction::Set, default_value_t = false)]
    pub allow_client_to_client: bool,
    /// Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed for the
    /// client address used by rate limits and the audit log [default: none].
    #[arg(long, env = "CLAWN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// All-in-one: run a WireGuard node inside this process (embedded userspace backend
    /// unless the kernel module exists), enrolled into region `default` (created if there
    /// are no regions). Needs root / CAP_NET_ADMIN.
    #[arg(
        long,
        env = "CLAWN_WITH_NODE",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false
    )]
    pub with_node: bool,
    /// All-in-one node: endpoint clients dial, `host:port` [default: the address of the
    /// default-route interface and --node-listen-port].
    #[arg(long, env = "CLAWN_NODE_ENDPOINT")]
    pub node_endpoint: Option<String>,
    /// All-in-one node: WireGuard UDP port.
    #[arg(long, env = "CLAWN_NODE_LISTEN_PORT", default_value_t = 51820)]
    pub node_listen_port: u16,
    /// All-in-one node: interface name.
    #[arg(long, env = "CLAWN_NODE_INTERFACE", default_value = "clawn0")]
    pub node_interface: String,
    /// A node with no heartbeat for this long is offline, seconds.
    #[arg(
        long,
        env = "CLAWN_OFFLINE_GRACE_SECS",
        default_value_t = HealthConfig::default().offline_grace_secs
    )]
    pub offline_grace_secs: u64,
    /// An offline node's peers move to other nodes of its region after this long, seconds.
    #[arg(
        long,
        env = "CLAWN_FAILOVER_DELAY_SECS",
        default_value_t = HealthConfig::default().failover_delay_secs
    )]
    pub failover_delay_secs: u64,
    /// `[placement]` (TOML only).
    #[arg(skip)]
    pub placement: PlacementConfig,
    /// `[health]` (TOML only; its `offline_grace_secs` and `failover_delay_secs` are the
    /// top-level settings above, copied in by [`Settings::resolve`]).
    #[arg(skip)]
    pub health: HealthConfig,
    /// `[hygiene]` (TOML only).
    #[arg(skip)]
    pub hygiene: HygieneConfig,
    /// `[abuse]` (TOML only).
    #[arg(skip)]
    pub abuse: AbuseConfig,
    /// What to do instead of serving (none: serve). Parsed by [`Settings::from_args`],
    /// whose command ([`Settings::cli`]) adds the subcommands.
    #[arg(skip)]
    #[serde(skip)]
    pub command: Option<ServerCommand>,
}

/// `clawn-server SUBCOMMAND`: maintenance instead of serving. Settings such as
/// `--data-dir`, `--database-url`, `--signing-key-file` and `--secret-key-file` may be
/// given before or after the subcommand; the others come before it (or from the
/// environment and the file).
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum ServerCommand {
    /// Make a new secret key (an age X25519 identity) and write it 0600 to --out, or print
    /// it; its public key goes to stderr.
    Keygen {
        /// Write the key to this file (refused if it exists) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-encrypt the key material with a new secret key (each file replaced atomically;
    /// safe to run again after an interruption). Start the server with the new key
    /// afterwards.
    Rekey {
        /// The new key, made by `clawn-server keygen --out FILE`.
        #[arg(long)]
        new_secret_key_file: PathBuf,
    },
    /// Write one encrypted archive with a consistent copy of the SQLite database (online:
    /// the server may keep running) and the key material. On PostgreSQL the archive holds
    /// the key material only and the `pg_dump` command to run is printed.
    Backup {
        /// The archive to write (replaced atomically, 0600).
        #[arg(long)]
        out: PathBuf,
        /// Encrypt to this age public key (`age1…`) as well as the secret key's; repeatable.
        /// Required when no secret key is set.
        #[arg(long)]
        recipient: Vec<String>,
    },
    /// Restore an archive made by `backup` into the data directory (stop the server first).
    /// The whole archive is checked before anything is written.
    Restore {
        /// The archive.
        #[arg(long)]
        from: PathBuf,
        /// Replace an existing database and key files.
        #[arg(long)]
        force: bool,
        /// A secret key file that opens the archive, when it was encrypted to another key
        /// than the configured secret key (for example, before a rekey).
        #[arg(long)]
        identity: Option<PathBuf>,
    },
}

/// A secret given as text (the secret key from `CLAWN_SECRET_KEY`): its `Debug` never
/// shows it.
#[derive(Clone, PartialEq)]
pub struct SecretText(String);

impl SecretText {
    /// The secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl Default for Settings {
    /// Every setting at its default (what `--help` prints); flags, environment variables
    /// and files are not read.
    fn default() -> Self {
        let defaults = Self::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["clawn-server"])
            .and_then(|matches| Self::from_arg_matches(&matches));
        match defaults {
            Ok(settings) => settings,
            Err(e) => unreachable!("every setting has a default or is optional: {e}"),
        }
    }
}

impl Settings {
    /// The settings `args` (program name first) and the `CLAWN_*` environment give: flags,
    /// then environment variables, then the file named by `--config` / `CLAWN_CONFIG`, then
    /// the defaults. `--help`, `--version` and malformed flags come back as
    /// [`ConfigError::Args`] (see [`clap::Error::exit`]).
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        layered(Self::cli(), args)
    }

    /// The whole command line: the settings and the subcommands. (The subcommand is kept
    /// out of the derived parsing so that none, the usual case, is not an error when the
    /// flags are laid over the file's settings.)
    pub fn cli() -> clap::Command {
        let base = Self::command();
        let (about, long_about) = (base.get_about().cloned(), base.get_long_about().cloned());
        // Adding the subcommands would also take the enum's doc comment as the program's.
        let cli = <ServerCommand as clap::Subcommand>::augment_subcommands(base);
        let cli = match about {
            Some(a) => cli.about(a),
            None => cli.about(None::<&'static str>),
        };
        match long_about {
            Some(a) => cli.long_about(a),
            None => cli.long_about(None::<&'static str>),
        }
    }

    /// Converts the settings into the [`Config`] the server runs with, refusing values out
    /// of range with the setting's name.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let log_format = match self.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    key: "log_format",
                    message: format!("`{other}`: use text or json"),
                });
            }
        };
        let database_url = self
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("clawn.db").display()));
        let secret_key = match (&self.secret_key, &self.secret_key_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "secret_key_file",
                    message: "both CLAWN_SECRET_KEY and a secret key file are set: set one".into(),
                });
            }
            (Some(text), None) => {
                Some(
                    SecretKey::parse(text.expose()).map_err(|e| ConfigError::Invalid {
                        key: "secret_key",
                        message: format!("CLAWN_SECRET_KEY: {e}"),
                    })?,
                )
            }
            (None, Some(path)) => Some(read_secret_key(path)?),
            (None, None) => None,
        };
        let signing_key_file = self
            .signing_key_file
            .unwrap_or_else(|| self.data_dir.join("signing.key"));
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string();
        let cfg = Config {
            listen: self.listen,
            data_dir: self.data_dir,
            database_url,
            signing_key_file,
            secret_key,
            public_url,
            log_format,
            self_registration: self.self_registration,
            default_device_slots: self.default_device_slots,
            session_idle: Duration::from_secs(self.session_idle_secs),
            session_max: Duration::from_secs(self.session_max_secs),
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            login_limit_per_account: self.login_limit_per_account,
            login_limit_per_addr: self.login_limit_per_addr,
            keepalive_secs: self.keepalive_secs,
            client_allowed_ips: self.client_allowed_ips,
            node_offline_grace_secs: self.node_offline_grace_secs,
            node_lease_secs: self.node_lease_secs,
            allow_client_to_client: self.allow_client_to_client,
            trusted_proxies: parse_cidrs(self.trusted_proxies)?,
            with_node: self.with_node,
            node_endpoint: self.node_endpoint,
            node_listen_port: self.node_listen_port,
            node_interface: self.node_interface,
            health: HealthConfig {
                offline_grace_secs: self.offline_grace_secs,
                failover_delay_secs: self.failover_delay_secs,
                ..self.health
            },
            placement: self.placement,
            hygiene: self.hygiene,
            abuse: self.abuse,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The layering behind [`Settings::from_args`], over any command built from [`Settings`]
/// (tests pass one that reads no environment).
fn layered<I, T>(command: clap::Command, args: I) -> Result<Settings, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut given = command.try_get_matches_from(args)?;
    let mut settings = match given.get_one::<PathBuf>("config") {
        Some(path) => read_file(path)?,
        None => Settings::default(),
    };
    // What clap filled in from `default_value` must not hide the file: drop it, so only
    // flags and environment variables are laid over the file's settings.
    let defaulted: Vec<String> = given
        .ids()
        .filter(|id| given.value_source(id.as_str()) == Some(ValueSource::DefaultValue))
        .map(|id| id.as_str().to_owned())
        .collect();
    for id in &defaulted {
        let _ = given.try_clear_id(id);
    }
    let command = match given.subcommand_name() {
        Some(_) => Some(ServerCommand::from_arg_matches_mut(&mut given)?),
        None => None,
    };
    settings.update_from_arg_matches_mut(&mut given)?;
    settings.command = command;
    Ok(settings)
}

/// `[placement]`: the load score and its use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    /// Weight of live peers / capacity.
    pub weight_peers: f64,
    /// Weight of bandwidth utilisation (rx + tx rate against the link capacity).
    pub weight_bandwidth: f64,
    /// Weight of CPU use.
    pub weight_cpu: f64,
    /// Weight of the latency band.
    pub weight_latency: f64,
    /// Link capacity of a node whose admin set none, Mbit/s.
    pub link_mbps: u64,
    /// Upper bounds of the latency bands, ms, ascending: band i is `rtt <= bands[i]`, the
    /// last band is anything above. The band's share of the score is `i / bands.len()`.
    pub latency_bands_ms: Vec<f64>,
    /// Share of each node's capacity (rounded down) kept for devices of users with a
    /// valid priority access token, percent.
    pub priority_reserve_percent: u32,
    /// Region moves a device may make per hour.
    pub reassign_per_hour: u32,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            weight_peers: 0.5,
            weight_bandwidth: 0.25,
            weight_cpu: 0.15,
            weight_latency: 0.10,
            link_mbps: 1000,
            latency_bands_ms: vec![20.0, 50.0, 100.0, 200.0],
            priority_reserve_percent: 10,
            reassign_per_hour: 3,
        }
    }
}

/// `[health]`: when a node is offline or degraded, and when its peers move.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// No heartbeat for this long: offline, seconds (the `offline_grace_secs` key/flag).
    #[serde(skip)]
    pub offline_grace_secs: u64,
    /// Offline this long: peers move, seconds (the `failover_delay_secs` key/flag).
    #[serde(skip)]
    pub failover_delay_secs: u64,
    /// CPU above this, percent...
    pub cpu_percent: f64,
    /// ...for this long, seconds: degraded.
    pub cpu_sustain_secs: u64,
    /// Probe loss above this over the probe window, percent: degraded.
    pub loss_percent: f64,
    /// Probe round trip above this many times the node's baseline: degraded...
    pub latency_factor: f64,
    /// ...and at least this many ms above it (keeps sub-millisecond jitter on a LAN
    /// from tripping the ratio).
    pub latency_floor_ms: f64,
    /// How often the control plane probes each node over its stream (WebSocket ping), ms.
    pub probe_interval_ms: u64,
    /// A probe not answered within this is lost, ms.
    pub probe_timeout_ms: u64,
    /// Probes in the loss / latency window.
    pub probe_window: usize,
    /// A region whose load p95 over the window is above this, percent, signals scale-out.
    pub scale_out_load_percent: f64,
    /// The scale-out window, seconds.
    pub scale_out_window_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            offline_grace_secs: 15,
            failover_delay_secs: 30,
            cpu_percent: 75.0,
            cpu_sustain_secs: 60,
            loss_percent: 2.0,
            latency_factor: 2.0,
            latency_floor_ms: 10.0,
            probe_interval_ms: 1000,
            probe_timeout_ms: 2000,
            probe_window: 60,
            scale_out_load_percent: 70.0,
            scale_out_window_secs: 3600,
        }
    }
}

/// What the idle-peer policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleAction {
    /// Flag the peer (admins see it); nothing else.
    Flag,
    /// Remove the peer from its node; the device stays and gets a peer again when its
    /// config is fetched.
    Remove,
}

/// `[hygiene]`: idle peers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HygieneConfig {
    /// A peer with no handshake (or never one since it was created) for this many days is idle.
    pub idle_peer_days: f64,
    /// `flag` or `remove`.
    pub idle_action: IdleAction,
    /// How often idle peers are looked for, seconds.
    pub sweep_interval_secs: u64,
}

impl Default for HygieneConfig {
    fn default() -> Self {
        Self {
            idle_peer_days: 30.0,
            idle_action: IdleAction::Flag,
            sweep_interval_secs: 300,
        }
    }
}

/// `[abuse]`: per-device signals and the thresholds that quarantine a device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseConfig {
    /// The window every signal is counted over, seconds.
    pub window_secs: u64,
    /// Endpoint changes seen by the node within the window.
    pub endpoint_changes: u32,
    /// Region moves asked for (granted or refused) within the window.
    pub region_switches: u32,
    /// A telemetry interval in which the device moved more than this, bytes/s, is a burst...
    pub burst_bytes_per_sec: u64,
    /// ...and this many bursts within the window quarantine it.
    pub bursts: u32,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        Self {
            window_secs: 3600,
            endpoint_changes: 30,
            region_switches: 6,
            burst_bytes_per_sec: 50_000_000,
            bursts: 30,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration the server runs with: [`Settings`] turned into types
/// (durations, parsed CIDRs) and checked by [`Settings::resolve`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
    /// The snapshot-signing key file.
    pub signing_key_file: PathBuf,
    /// The key that encrypts key files at rest (`None`: plaintext, 0600).
    pub secret_key: Option<SecretKey>,
    /// Public URL (no trailing slash).
    pub public_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Self-registration on/off.
    pub self_registration: bool,
    /// Slots of new users.
    pub default_device_slots: u32,
    /// Session idle expiry.
    pub session_idle: Duration,
    /// Session absolute expiry.
    pub session_max: Duration,
    /// Ack wait bound.
    pub ack_timeout: Duration,
    /// Failed logins per account per minute.
    pub login_limit_per_account: u32,
    /// Login attempts per address per minute.
    pub login_limit_per_addr: u32,
    /// Keepalive in device configs.
    pub keepalive_secs: u16,
    /// AllowedIPs in device configs.
    pub client_allowed_ips: Vec<String>,
    /// Node fail-closed bound.
    pub node_offline_grace_secs: u64,
    /// Node lease (partition bound), seconds; 0 = none.
    pub node_lease_secs: u64,
    /// Client-to-client traffic on a node.
    pub allow_client_to_client: bool,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Run a node inside the server process.
    pub with_node: bool,
    /// The in-process node's endpoint (`None` = detect).
    pub node_endpoint: Option<String>,
    /// The in-process node's UDP port.
    pub node_listen_port: u16,
    /// The in-process node's interface name.
    pub node_interface: String,
    /// `[placement]`.
    pub placement: PlacementConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[hygiene]`.
    pub hygiene: HygieneConfig,
    /// `[abuse]`.
    pub abuse: AbuseConfig,
}

/// A configuration problem, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or environment variable is malformed, or `--help` / `--version` was asked
    /// for: [`clap::Error::exit`] prints it the way clap does.
    #[error("{0}")]
    Args(#[from] clap::Error),
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// The configuration `args` (program name first) and the `CLAWN_*` environment give,
    /// layered as [`Settings::from_args`] says, resolved and checked.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Settings::from_args(args)?.resolve()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            return bad("database_url", "must start with sqlite: or postgres://");
        }
        if self.login_limit_per_account == 0 || self.login_limit_per_addr == 0 {
            return bad("login_limit", "must be at least 1");
        }
        if self.session_idle.is_zero() || self.session_max < self.session_idle {
            return bad(
                "session_max_secs",
                "must be at least session_idle_secs, and both above 0",
            );
        }
        if self.default_device_slots > 1000 {
            return bad("default_device_slots", "must be 0..=1000");
        }
        let p = &self.placement;
        let weights = [
            p.weight_peers,
            p.weight_bandwidth,
            p.weight_cpu,
            p.weight_latency,
        ];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0
        {
            return bad(
                "placement.weight_*",
                "weights must be finite, not negative, and not all zero",
            );
        }
        if p.link_mbps == 0 {
            return bad("placement.link_mbps", "must be at least 1");
        }
        if p.latency_bands_ms.windows(2).any(|w| w[0] >= w[1])
            || p.latency_bands_ms
                .iter()
                .any(|b| !b.is_finite() || *b < 0.0)
        {
            return bad(
                "placement.latency_bands_ms",
                "must be ascending, finite and not negative",
            );
        }
        if p.priority_reserve_percent > 90 {
            return bad("placement.priority_reserve_percent", "must be 0..=90");
        }
        let h = &self.health;
        if h.offline_grace_secs == 0 || h.probe_interval_ms == 0 || h.probe_window == 0 {
            return bad(
                "health",
                "offline_grace_secs, probe_interval_ms and probe_window must be above 0",
            );
        }
        if h.probe_timeout_ms < h.probe_interval_ms / 2 {
            return bad(
                "health.probe_timeout_ms",
                "must be at least half of probe_interval_ms",
            );
        }
        if !h.latency_factor.is_finite()
            || h.latency_factor <= 1.0
            || !(0.0..=100.0).contains(&h.cpu_percent)
        {
            return bad(
                "health",
                "latency_factor must be above 1 and cpu_percent within 0..=100",
            );
        }
        if !self.hygiene.idle_peer_days.is_finite()
            || self.hygiene.idle_peer_days <= 0.0
            || self.hygiene.sweep_interval_secs == 0
        {
            return bad(
                "hygiene",
                "idle_peer_days and sweep_interval_secs must be above 0",
            );
        }
        if self.abuse.window_secs == 0 {
            return bad("abuse.window_secs", "must be above 0");
        }
        for ip in &self.client_allowed_ips {
            if ip.parse::<ipnet::IpNet>().is_err() {
                return bad(
                    "client_allowed_ips",
                    "each entry must be a CIDR like 0.0.0.0/0",
                );
            }
        }
        Ok(())
    }

    /// Defaults for a data directory (tests and embedding); flags, environment variables
    /// and files are not read.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let settings = Settings {
            data_dir: data_dir.to_path_buf(),
            ..Settings::default()
        };
        match settings.resolve() {
            Ok(c) => c,
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }

    /// Whether the database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// The SQLite database file (`None` on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        Some(PathBuf::from(path))
    }
}

fn parse_cidrs(v: Vec<String>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    v.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let s = s.trim();
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    key: "trusted_proxies",
                    message: format!("`{s}` is not an IP or CIDR"),
                })
        })
        .collect()
}

/// Reads a secret key file (`clawn-server keygen`, `age-keygen`). Its content is never
/// put in an error.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key: "secret_key_file",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    SecretKey::parse(&text).map_err(|e| ConfigError::Invalid {
        key: "secret_key_file",
        message: format!("{}: {e}", path.display()),
    })
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// A directory for config files, removed at the end of the test.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("clawn-cfg-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("tmp");
            Self(dir)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Settings from these flags alone: the command reads no environment variables, so a
    /// `CLAWN_*` variable in the shell running the tests cannot change the outcome.
    fn settings(flags: &[&str]) -> Result<Settings, ConfigError> {
        let command = Settings::cli().mut_args(|arg| arg.env(None));
        layered(
            command,
            std::iter::once("clawn-server").chain(flags.iter().copied()),
        )
    }

    fn config(flags: &[&str]) -> Result<Config, ConfigError> {
        settings(flags)?.resolve()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Settings::cli().debug_assert();
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = TempDir::new();
        let file = dir.file(
            "c.toml",
            "listen = \"127.0.0.1:9000\"\nself_registration = true\nack_timeout_ms = 500\n",
        );
        let path = file.to_str().expect("utf-8 path");
        let c = config(&["--config", path, "--ack-timeout-ms", "100"]).expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert!(c.self_registration);
        assert_eq!(c.ack_timeout, Duration::from_millis(100));
        assert_eq!(c.public_url, "http://127.0.0.1:9000");
        assert!(c.database_url.ends_with("clawn-data/clawn.db"));
        assert_eq!(c.keepalive_secs, 25, "neither flag nor file: the default");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = TempDir::new();
        for (text, key) in [
            ("listen = \"127.0.0.1:9000\"\nnot_a_key = 1\n", "not_a_key"),
            // The file cannot name another file: `config` is a flag and variable only.
            ("config = \"other.toml\"\n", "config"),
            (
                "[placement]\nweight_peers = 1.0\nweight_pears = 1.0\n",
                "weight_pears",
            ),
            // Top-level keys, not `[health]` ones.
            ("[health]\noffline_grace_secs = 5\n", "offline_grace_secs"),
        ] {
            let file = dir.file("c.toml", text);
            let err =
                config(&["--config", file.to_str().expect("utf-8 path")]).expect_err("unknown key");
            assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = config(&[]).expect("valid");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert!(c.is_sqlite());
        assert!(!c.self_registration);
        assert_eq!(c.default_device_slots, 1);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.session_idle, Duration::from_secs(43_200));
        assert_eq!(c.client_allowed_ips, ["0.0.0.0/0", "::/0"]);
        assert!(c.trusted_proxies.is_empty());
        assert!(!c.with_node);
        assert_eq!(c.node_endpoint, None);
        assert_eq!(c.node_interface, "clawn0");
        assert_eq!(c.health, HealthConfig::default());
        assert_eq!(c.placement, PlacementConfig::default());
        // The file layer falls back to the very defaults `--help` prints.
        assert_eq!(settings(&[]).expect("valid"), Settings::default());
    }

    #[test]
    fn sections_come_from_the_file_and_top_level_health_keys_land_in_health() {
        let dir = TempDir::new();
        let file = dir.file(
            "c.toml",
            "offline_grace_secs = 5\nfailover_delay_secs = 20\n\
             [health]\ncpu_sustain_secs = 120\n\
             [hygiene]\nidle_peer_days = 14\nidle_action = \"remove\"\n\
             [placement]\nlink_mbps = 10000\n",
        );
        let path = file.to_str().expect("utf-8 path");
        let c = config(&["--config", path, "--failover-delay-secs", "60"]).expect("valid");
        assert_eq!(c.health.offline_grace_secs, 5);
        assert_eq!(c.health.failover_delay_secs, 60, "the flag beats the file");
        assert_eq!(c.health.cpu_sustain_secs, 120);
        assert_eq!(c.health.probe_window, HealthConfig::default().probe_window);
        assert_eq!(c.hygiene.idle_action, IdleAction::Remove);
        assert!((c.hygiene.idle_peer_days - 14.0).abs() < f64::EPSILON);
        assert_eq!(c.placement.link_mbps, 10_000);
        assert_eq!(c.abuse, AbuseConfig::default());
    }

    #[test]
    fn booleans_take_a_value_and_with_node_may_stand_alone() {
        let s = settings(&[
            "--self-registration",
            "true",
            "--allow-client-to-client",
            "true",
        ])
        .expect("valid");
        assert!(s.self_registration && s.allow_client_to_client);
        assert!(matches!(
            settings(&["--self-registration"]),
            Err(ConfigError::Args(_))
        ));
        assert!(settings(&["--with-node"]).expect("valid").with_node);
        assert!(
            !settings(&["--with-node", "false"])
                .expect("valid")
                .with_node
        );
        assert!(!settings(&["--with-node=false"]).expect("valid").with_node);
        // A flag given as `false` still beats a file's `true`.
        let dir = TempDir::new();
        let file = dir.file("c.toml", "with_node = true\nself_registration = true\n");
        let path = file.to_str().expect("utf-8 path");
        let s = settings(&["--config", path, "--self-registration", "false"]).expect("valid");
        assert!(s.with_node && !s.self_registration);
    }

    #[test]
    fn lists_split_on_commas_from_flags_and_come_whole_from_the_file() {
        let s = settings(&["--client-allowed-ips", "10.0.0.0/8,fd00::/8"]).expect("valid");
        assert_eq!(s.client_allowed_ips, ["10.0.0.0/8", "fd00::/8"]);
        let dir = TempDir::new();
        let file = dir.file(
            "c.toml",
            "trusted_proxies = [\"10.1.2.3\", \"192.168.0.0/16\"]\n",
        );
        let c = config(&["--config", file.to_str().expect("utf-8 path")]).expect("valid");
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(
            c.trusted_proxies[0].to_string(),
            "10.1.2.3/32",
            "a bare IP is a /32"
        );
    }

    #[test]
    fn bad_values_name_their_setting() {
        let invalid = |flags: &[&str]| config(flags).expect_err("invalid").to_string();
        assert_eq!(
            invalid(&["--log-format", "xml"]),
            "invalid setting log_format: `xml`: use text or json"
        );
        assert!(invalid(&["--database-url", "mysql://x"]).contains("database_url"));
        assert!(invalid(&["--trusted-proxies", "10.0.0.1,bogus"]).contains("`bogus`"));
        assert!(invalid(&["--client-allowed-ips", "bogus"]).contains("client_allowed_ips"));
        assert!(invalid(&["--default-device-slots", "1001"]).contains("default_device_slots"));
        assert!(invalid(&["--session-max-secs", "10"]).contains("session_max_secs"));
        assert!(invalid(&["--offline-grace-secs", "0"]).contains("offline_grace_secs"));
        assert!(
            invalid(&["--config", "/nonexistent/clawn.toml"]).contains("cannot read config file")
        );
        assert!(matches!(
            config(&["--listen", "not-an-address"]),
            Err(ConfigError::Args(_))
        ));
        let dir = TempDir::new();
        let file = dir.file("c.toml", "log_format = \"xml\"\n");
        assert_eq!(
            invalid(&["--config", file.to_str().expect("utf-8 path")]),
            "invalid setting log_format: `xml`: use text or json"
        );
        let file = dir.file("c.toml", "listen = 8080\n");
        let err = invalid(&["--config", file.to_str().expect("utf-8 path")]);
        assert!(
            err.starts_with("invalid config file") && err.contains("listen"),
            "{err}"
        );
    }

    #[test]
    fn the_secret_key_comes_from_a_file_or_the_variable_and_never_from_the_toml_file() {
        let dir = TempDir::new();
        let key = SecretKey::generate();
        let file = dir.file("clawn.key", &key.to_file_text());
        let path = file.to_str().expect("utf-8 path");
        let c = config(&["--secret-key-file", path]).expect("valid");
        assert_eq!(c.secret_key, Some(key.clone()));
        assert!(c.signing_key_file.ends_with("clawn-data/signing.key"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("AGE-SECRET-KEY"), "Debug shows no secret");

        // The hidden flag is CLAWN_SECRET_KEY (this test's command reads no variables).
        let line = key
            .to_file_text()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY"))
            .expect("key line")
            .to_string();
        let s = settings(&["--secret-key", &line]).expect("valid");
        assert!(!format!("{s:?}").contains("AGE-SECRET-KEY"));
        assert_eq!(s.resolve().expect("valid").secret_key, Some(key));
        let err = config(&["--secret-key", &line, "--secret-key-file", path])
            .expect_err("both")
            .to_string();
        assert!(err.contains("set one"), "{err}");
        let err = config(&["--secret-key", "AGE-SECRET-KEY-1BOGUS"])
            .expect_err("bad key")
            .to_string();
        assert!(
            err.contains("CLAWN_SECRET_KEY") && !err.contains("BOGUS"),
            "{err}"
        );
        let bad = dir.file("bad.key", "not a key\n");
        let err = config(&["--secret-key-file", bad.to_str().expect("utf-8 path")])
            .expect_err("bad file")
            .to_string();
        assert!(
            err.contains("secret_key_file") && !err.contains("not a key"),
            "{err}"
        );

        // The file may name the key file and the signing key, never hold the key.
        let toml = dir.file(
            "c.toml",
            &format!(
                "secret_key_file = \"{path}\"\nsigning_key_file = \"/etc/clawn/signing.key\"\n"
            ),
        );
        let c = config(&["--config", toml.to_str().expect("utf-8 path")]).expect("valid");
        assert!(c.secret_key.is_some());
        assert_eq!(c.signing_key_file, PathBuf::from("/etc/clawn/signing.key"));
        let toml = dir.file("c.toml", &format!("secret_key = \"{line}\"\n"));
        let err = config(&["--config", toml.to_str().expect("utf-8 path")]).expect_err("refused");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn subcommands_take_the_storage_settings_before_or_after_them_and_none_serves() {
        assert_eq!(settings(&[]).expect("valid").command, None);
        let s = settings(&["backup", "--out", "/tmp/b.age", "--data-dir", "/srv/clawn"])
            .expect("valid");
        assert_eq!(s.data_dir, PathBuf::from("/srv/clawn"));
        assert_eq!(
            s.command,
            Some(ServerCommand::Backup {
                out: "/tmp/b.age".into(),
                recipient: vec![],
            })
        );
        let s = settings(&[
            "--data-dir",
            "/srv/clawn",
            "--listen",
            "127.0.0.1:9000",
            "restore",
            "--from",
            "/tmp/b.age",
            "--force",
        ])
        .expect("valid");
        assert_eq!(s.data_dir, PathBuf::from("/srv/clawn"));
        assert_eq!(s.listen.port(), 9000);
        assert!(matches!(
            s.command,
            Some(ServerCommand::Restore { force: true, .. })
        ));
        let s = settings(&["rekey", "--new-secret-key-file", "/k"]).expect("valid");
        assert!(matches!(s.command, Some(ServerCommand::Rekey { .. })));
        assert!(matches!(settings(&["backup"]), Err(ConfigError::Args(_))));
    }

    /// Set by [`flag_beats_env_beats_file_beats_default`] for the copy of this test binary it
    /// starts: a running test cannot safely change its own environment.
    const CHILD: &str = "CLAWN_TEST_PRECEDENCE_CHILD";

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = TempDir::new();
        let file = dir.file(
            "c.toml",
            "listen = \"127.0.0.1:9001\"\ndefault_device_slots = 5\n\
             client_allowed_ips = [\"192.168.0.0/16\"]\nself_registration = true\n\
             log_format = \"text\"\nack_timeout_ms = 500\n",
        );
        let other = dir.file("other.toml", "ack_timeout_ms = 600\n");
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "config::tests::precedence_in_child",
                "--exact",
                "--nocapture",
            ])
            .env_clear()
            .env(CHILD, &other)
            .env("CLAWN_CONFIG", &file)
            .env("CLAWN_LISTEN", "127.0.0.1:9002")
            .env("CLAWN_DEFAULT_DEVICE_SLOTS", "7")
            .env("CLAWN_CLIENT_ALLOWED_IPS", "10.0.0.0/8,fd00::/8")
            .env("CLAWN_SELF_REGISTRATION", "false")
            .env("CLAWN_LOG_FORMAT", "json")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run:\n{stdout}"
        );
    }

    /// Runs only inside [`flag_beats_env_beats_file_beats_default`]'s child process.
    #[test]
    fn precedence_in_child() {
        let Some(other) = std::env::var_os(CHILD) else {
            return;
        };
        // Flags beat the environment (and the file under it).
        let c = Config::from_args([
            "clawn-server",
            "--listen",
            "127.0.0.1:9003",
            "--default-device-slots",
            "9",
            "--client-allowed-ips",
            "172.16.0.0/12",
            "--self-registration",
            "true",
            "--log-format",
            "text",
        ])
        .expect("valid");
        assert_eq!(c.listen.port(), 9003);
        assert_eq!(c.default_device_slots, 9);
        assert_eq!(c.client_allowed_ips, ["172.16.0.0/12"]);
        assert!(c.self_registration);
        assert_eq!(c.log_format, LogFormat::Text);

        // The environment beats the file (named by CLAWN_CONFIG), even with `false`...
        let c = Config::from_args(["clawn-server"]).expect("valid");
        assert_eq!(c.listen.port(), 9002);
        assert_eq!(c.default_device_slots, 7);
        assert_eq!(c.client_allowed_ips, ["10.0.0.0/8", "fd00::/8"]);
        assert!(!c.self_registration);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.public_url, "http://127.0.0.1:9002");
        // ...the file beats the default where no variable is set...
        assert_eq!(c.ack_timeout, Duration::from_millis(500));
        // ...and the default stands where nothing is set.
        assert_eq!(c.keepalive_secs, 25);
        assert_eq!(c.login_limit_per_addr, 30);
        assert_eq!(c.node_interface, "clawn0");

        // `--config` beats `CLAWN_CONFIG`.
        let other = other.to_str().expect("utf-8 path");
        let c = Config::from_args(["clawn-server", "--config", other]).expect("valid");
        assert_eq!(c.ack_timeout, Duration::from_millis(600));
        assert_eq!(c.listen.port(), 9002);
    }
}
