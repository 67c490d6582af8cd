//! Server configuration: flags, then `CLAWN_*` environment variables, then an optional
//! TOML file, then built-in defaults. With nothing set the server listens on
//! 127.0.0.1:8080 and keeps everything in `./clawn-data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Command-line interface of `clawn-server`.
#[derive(Debug, Clone, Parser, Default)]
#[command(
    name = "clawn-server",
    version,
    about = "Clawn control plane: accounts, devices, regions, nodes and the node streams."
)]
pub struct Cli {
    /// TOML configuration file (same keys as the long flags, with `_` for `-`).
    #[arg(long, env = "CLAWN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CLAWN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite database and the snapshot-signing key [default: ./clawn-data].
    #[arg(long, env = "CLAWN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite:///path/file.db` or `postgres://user:pass@host/db`
    /// [default: SQLite file `clawn.db` in the data directory].
    #[arg(long, env = "CLAWN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// URL users and nodes reach this server at, used in join commands [default: http://LISTEN].
    #[arg(long, env = "CLAWN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "CLAWN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Allow anyone to register an account [default: false].
    #[arg(long, env = "CLAWN_SELF_REGISTRATION")]
    pub self_registration: Option<bool>,
    /// Device slots of new users [default: 1].
    #[arg(long, env = "CLAWN_DEFAULT_DEVICE_SLOTS")]
    pub default_device_slots: Option<u32>,
    /// Session idle expiry in seconds [default: 43200 = 12 h].
    #[arg(long, env = "CLAWN_SESSION_IDLE_SECS")]
    pub session_idle_secs: Option<u64>,
    /// Session absolute expiry in seconds [default: 604800 = 7 days].
    #[arg(long, env = "CLAWN_SESSION_MAX_SECS")]
    pub session_max_secs: Option<u64>,
    /// How long revoke/rotate wait for the node's acknowledgement, ms [default: 2000].
    #[arg(long, env = "CLAWN_ACK_TIMEOUT_MS")]
    pub ack_timeout_ms: Option<u64>,
    /// Login attempts per account per minute [default: 10].
    #[arg(long, env = "CLAWN_LOGIN_LIMIT_PER_ACCOUNT")]
    pub login_limit_per_account: Option<u32>,
    /// Login attempts per client address per minute [default: 30].
    #[arg(long, env = "CLAWN_LOGIN_LIMIT_PER_ADDR")]
    pub login_limit_per_addr: Option<u32>,
    /// PersistentKeepalive put in device configs, seconds [default: 25].
    #[arg(long, env = "CLAWN_KEEPALIVE_SECS")]
    pub keepalive_secs: Option<u16>,
    /// AllowedIPs put in device configs, comma-separated [default: 0.0.0.0/0,::/0].
    #[arg(long, env = "CLAWN_CLIENT_ALLOWED_IPS", value_delimiter = ',')]
    pub client_allowed_ips: Option<Vec<String>>,
    /// How long a node may serve its last snapshot without the control plane before it
    /// removes all peers, seconds; 0 = forever [default: 86400].
    #[arg(long, env = "CLAWN_NODE_OFFLINE_GRACE_SECS")]
    pub node_offline_grace_secs: Option<u64>,
    /// Let clients of one node reach each other's tunnel addresses [default: false].
    #[arg(long, env = "CLAWN_ALLOW_CLIENT_TO_CLIENT")]
    pub allow_client_to_client: Option<bool>,
    /// Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For is believed for the
    /// client address used by rate limits and the audit log [default: none].
    #[arg(long, env = "CLAWN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// All-in-one: run a WireGuard node inside this process (embedded userspace backend
    /// unless the kernel module exists), enrolled into region `default` (created if there
    /// are no regions). Needs root / CAP_NET_ADMIN [default: false].
    #[arg(long, env = "CLAWN_WITH_NODE", num_args = 0..=1, default_missing_value = "true")]
    pub with_node: Option<bool>,
    /// All-in-one node: endpoint clients dial, `host:port` [default: the address of the
    /// default-route interface and --node-listen-port].
    #[arg(long, env = "CLAWN_NODE_ENDPOINT")]
    pub node_endpoint: Option<String>,
    /// All-in-one node: WireGuard UDP port [default: 51820].
    #[arg(long, env = "CLAWN_NODE_LISTEN_PORT")]
    pub node_listen_port: Option<u16>,
    /// All-in-one node: interface name [default: clawn0].
    #[arg(long, env = "CLAWN_NODE_INTERFACE")]
    pub node_interface: Option<String>,
    /// A node with no heartbeat for this long is offline, seconds [default: 15].
    #[arg(long, env = "CLAWN_OFFLINE_GRACE_SECS")]
    pub offline_grace_secs: Option<u64>,
    /// An offline node's peers move to other nodes of its region after this long,
    /// seconds [default: 30].
    #[arg(long, env = "CLAWN_FAILOVER_DELAY_SECS")]
    pub failover_delay_secs: Option<u64>,
}

/// The TOML file: every key optional, same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    log_format: Option<String>,
    self_registration: Option<bool>,
    default_device_slots: Option<u32>,
    session_idle_secs: Option<u64>,
    session_max_secs: Option<u64>,
    ack_timeout_ms: Option<u64>,
    login_limit_per_account: Option<u32>,
    login_limit_per_addr: Option<u32>,
    keepalive_secs: Option<u16>,
    client_allowed_ips: Option<Vec<String>>,
    node_offline_grace_secs: Option<u64>,
    allow_client_to_client: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
    with_node: Option<bool>,
    node_endpoint: Option<String>,
    node_listen_port: Option<u16>,
    node_interface: Option<String>,
    offline_grace_secs: Option<u64>,
    failover_delay_secs: Option<u64>,
    #[serde(default)]
    placement: PlacementConfig,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    hygiene: HygieneConfig,
    #[serde(default)]
    abuse: AbuseConfig,
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

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
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
    /// Resolves flags/env over the optional file over defaults.
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = cli
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./clawn-data"));
        let database_url = cli
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("clawn.db").display()));
        let public_url = cli
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        let log_format = match cli.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "log_format",
                    message: format!("`{other}`: use text or json"),
                });
            }
        };
        let cfg = Self {
            listen,
            data_dir,
            database_url,
            public_url,
            log_format,
            self_registration: cli
                .self_registration
                .or(file.self_registration)
                .unwrap_or(false),
            default_device_slots: cli
                .default_device_slots
                .or(file.default_device_slots)
                .unwrap_or(1),
            session_idle: Duration::from_secs(
                cli.session_idle_secs
                    .or(file.session_idle_secs)
                    .unwrap_or(43_200),
            ),
            session_max: Duration::from_secs(
                cli.session_max_secs
                    .or(file.session_max_secs)
                    .unwrap_or(604_800),
            ),
            ack_timeout: Duration::from_millis(
                cli.ack_timeout_ms.or(file.ack_timeout_ms).unwrap_or(2_000),
            ),
            login_limit_per_account: cli
                .login_limit_per_account
                .or(file.login_limit_per_account)
                .unwrap_or(10),
            login_limit_per_addr: cli
                .login_limit_per_addr
                .or(file.login_limit_per_addr)
                .unwrap_or(30),
            keepalive_secs: cli.keepalive_secs.or(file.keepalive_secs).unwrap_or(25),
            client_allowed_ips: cli
                .client_allowed_ips
                .or(file.client_allowed_ips)
                .unwrap_or_else(|| vec!["0.0.0.0/0".into(), "::/0".into()]),
            node_offline_grace_secs: cli
                .node_offline_grace_secs
                .or(file.node_offline_grace_secs)
                .unwrap_or(86_400),
            allow_client_to_client: cli
                .allow_client_to_client
                .or(file.allow_client_to_client)
                .unwrap_or(false),
            trusted_proxies: parse_cidrs(
                cli.trusted_proxies
                    .or(file.trusted_proxies)
                    .unwrap_or_default(),
            )?,
            with_node: cli.with_node.or(file.with_node).unwrap_or(false),
            node_endpoint: cli.node_endpoint.or(file.node_endpoint),
            node_listen_port: cli
                .node_listen_port
                .or(file.node_listen_port)
                .unwrap_or(51820),
            node_interface: cli
                .node_interface
                .or(file.node_interface)
                .unwrap_or_else(|| "clawn0".into()),
            health: HealthConfig {
                offline_grace_secs: cli
                    .offline_grace_secs
                    .or(file.offline_grace_secs)
                    .unwrap_or(15),
                failover_delay_secs: cli
                    .failover_delay_secs
                    .or(file.failover_delay_secs)
                    .unwrap_or(30),
                ..file.health
            },
            placement: file.placement,
            hygiene: file.hygiene,
            abuse: file.abuse,
        };
        cfg.validate()?;
        Ok(cfg)
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

    /// Defaults for a data directory (tests and embedding).
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let cli = Cli {
            data_dir: Some(data_dir.to_path_buf()),
            ..Cli::default()
        };
        match Self::resolve(cli) {
            Ok(c) => c,
            Err(e) => unreachable!("defaults are valid: {e}"),
        }
    }

    /// Whether the database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
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

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
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
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("clawn-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nself_registration = true\nack_timeout_ms = 500\n",
        )
        .expect("write");
        let cli = Cli {
            config: Some(file.clone()),
            ack_timeout_ms: Some(100),
            ..Cli::default()
        };
        let c = Config::resolve(cli).expect("valid");
        assert_eq!(c.listen.port(), 9000);
        assert!(c.self_registration);
        assert_eq!(c.ack_timeout, Duration::from_millis(100));
        assert_eq!(c.public_url, "http://127.0.0.1:9000");
        assert!(c.database_url.ends_with("clawn-data/clawn.db"));

        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nnot_a_key = 1\n").expect("write");
        let err = Config::resolve(Cli {
            config: Some(file),
            ..Cli::default()
        })
        .expect_err("unknown key");
        assert!(err.to_string().contains("not_a_key"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn defaults_are_zero_config() {
        let c = Config::resolve(Cli::default()).expect("valid");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert!(c.is_sqlite());
        assert!(!c.self_registration);
        assert_eq!(c.default_device_slots, 1);
    }
}
