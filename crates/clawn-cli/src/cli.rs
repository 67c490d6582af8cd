//! The command line, declared with clap's derive API.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand};
use clawn_proto::api::{NodeState, Role};

use crate::time::{FutureSpec, TimeSpec, parse_duration_secs, parse_future_spec, parse_time_spec};

/// clawn: sign in to a Clawn control plane and manage WireGuard devices.
///
/// Device private keys are generated on this machine and never sent anywhere; they are kept in
/// the config directory (mode 0600) so configs can be rebuilt later.
#[derive(Debug, Parser)]
#[command(
    name = "clawn",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Control-plane URL, e.g. https://vpn.example.com [default: the one saved by `clawn login`]
    #[arg(long, global = true, env = "CLAWN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Directory for the session and device keys [default: <user config dir>/clawn]
    #[arg(long, global = true, env = "CLAWN_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust, for a server with a private CA
    #[arg(long, global = true, env = "CLAWN_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in and save the session
    ///
    /// The password is read from a prompt, from CLAWN_PASSWORD, or from the first line of
    /// standard input with --password-stdin.
    Login(LoginArgs),
    /// End the session on the server and forget it here
    Logout,
    /// Create the first admin account of a new server with its one-time setup token, and sign in
    Setup(SetupArgs),
    /// Show the signed-in account
    Whoami(JsonFlag),
    /// List the regions devices can be placed in
    Regions(JsonFlag),
    /// Manage your devices
    #[command(subcommand, alias = "devices")]
    Device(DeviceCommand),
    /// Operator commands (admin accounts only)
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a shell completion script, e.g. `clawn completions bash > /etc/bash_completion.d/clawn`
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `clawn login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Email address [default: prompt]
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

/// `clawn setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The one-time setup token the server printed at its first start
    #[arg(long, env = "CLAWN_SETUP_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Email of the admin account [default: prompt]
    #[arg(long)]
    pub email: Option<String>,
    /// Read the new password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

/// Where a config goes: a file, and/or a QR code on the terminal.
#[derive(Debug, Args)]
pub struct ConfigOutput {
    /// Write the WireGuard config to FILE (mode 0600); `-` prints it
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Show the config as a QR code (for the WireGuard mobile apps)
    #[arg(long)]
    pub qr: bool,
}

/// `clawn device ...`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a new device: generate its key pair here, send only the public key, write its config
    Add {
        /// Device name
        name: String,
        /// Region code (see `clawn regions`) [default: the only region, if there is one]
        #[arg(long, short)]
        region: Option<String>,
        /// Where the config goes [default: ./NAME.conf]
        #[command(flatten)]
        output: ConfigOutput,
        /// Overwrite the output file if it exists
        #[arg(long)]
        force: bool,
    },
    /// List your devices
    #[command(alias = "ls")]
    List(JsonFlag),
    /// Show one device
    Show {
        /// Device id or name
        device: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print (or write) a device's config, with the private key stored on this machine
    Config {
        /// Device id or name
        device: String,
        /// Where the config goes [default: print it]
        #[command(flatten)]
        output: ConfigOutput,
    },
    /// Revoke a device for good; its tunnel stops working
    Revoke {
        /// Device id or name
        device: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Replace a device's key pair; the old key stops working
    Rotate {
        /// Device id or name
        device: String,
        /// Where the new config goes [default: ./NAME.conf]
        #[command(flatten)]
        output: ConfigOutput,
    },
    /// Move a device to another region: same key pair, a new node and address there
    ///
    /// Writes the new config (the old one stops working). A device may move region a few
    /// times per hour (the server's limit, 3 by default).
    Move {
        /// Device id or name
        device: String,
        /// The region to move to (see `clawn regions`)
        #[arg(long, short)]
        region: String,
        /// Where the new config goes [default: ./NAME.conf]
        #[command(flatten)]
        output: ConfigOutput,
    },
    /// Rename a device
    Rename {
        /// Device id or name
        device: String,
        /// The new name
        new_name: String,
    },
}

/// `clawn admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Regions and their address pools
    #[command(subcommand)]
    Region(RegionCommand),
    /// One-time tokens that let a new node join
    #[command(subcommand)]
    NodeToken(NodeTokenCommand),
    /// WireGuard nodes
    #[command(subcommand)]
    Node(NodeCommand),
    /// User accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Every user's devices
    #[command(subcommand)]
    Device(AdminDeviceCommand),
    /// Priority access tokens: a user's devices in a region get reserved capacity for a while
    #[command(subcommand)]
    Priority(PriorityCommand),
    /// Diagnostics: region load, node health and state changes, waiting and quarantined devices
    Diag(DiagArgs),
    /// Read the audit log, newest first
    Audit(AuditArgs),
}

/// `clawn admin priority ...`.
#[derive(Debug, Subcommand)]
pub enum PriorityCommand {
    /// Grant a user a priority token for one region and a time window
    Grant {
        /// The user's email (or id)
        #[arg(long, visible_alias = "user", value_name = "EMAIL")]
        email: String,
        /// Region code
        #[arg(long, short)]
        region: String,
        /// Length of the window: seconds, or 30m, 2h, 1d, 1w
        #[arg(
            long,
            value_name = "DURATION",
            value_parser = parse_duration_secs,
            required_unless_present = "until",
            conflicts_with = "until"
        )]
        duration: Option<u64>,
        /// End of the window instead of --duration: YYYY-MM-DD[THH:MM[:SS]] (UTC), Unix ms, or a duration from now
        #[arg(long, value_name = "TIME", value_parser = parse_future_spec)]
        until: Option<FutureSpec>,
        /// Start of the window [default: now]; same forms as --until
        #[arg(long, value_name = "TIME", value_parser = parse_future_spec)]
        start: Option<FutureSpec>,
        /// Why it was granted (at most 200 characters)
        #[arg(long)]
        note: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// List priority tokens, newest first
    #[command(alias = "ls")]
    List {
        /// Only this user's tokens (id or email)
        #[arg(long, short)]
        user: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke a priority token; the holder's devices lose priority at once
    Revoke {
        /// Token id (see `clawn admin priority list`)
        id: uuid::Uuid,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `clawn admin diag`.
#[derive(Debug, Args)]
pub struct DiagArgs {
    /// One device instead of the overview: its node, exit IP, handshake, bytes, moves and signals (id or name)
    #[arg(long, conflicts_with = "node")]
    pub device: Option<String>,
    /// One node instead of the overview: state, score, health and recent state changes (id or name)
    #[arg(long)]
    pub node: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `clawn admin region ...`.
#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// List regions with their pools and health
    List(JsonFlag),
    /// Create a region
    Create {
        /// Short code: 2-32 of a-z, 0-9 and -
        code: String,
        /// Display name
        #[arg(long)]
        name: String,
        /// IPv4 tunnel pool, e.g. 10.100.0.0/16
        #[arg(long)]
        cidr: String,
        /// Prefix length of each node's share of the pool [server default: 20]
        #[arg(long)]
        node_prefix: Option<u8>,
        /// DNS server for device configs (repeatable)
        #[arg(long = "dns", value_name = "IP")]
        dns: Vec<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Change a region (pool and prefix only while it has no nodes)
    Update {
        /// Region code
        code: String,
        /// New display name
        #[arg(long)]
        name: Option<String>,
        /// New DNS servers (repeatable; replaces the list)
        #[arg(long = "dns", value_name = "IP", conflicts_with = "no_dns")]
        dns: Vec<String>,
        /// Remove all DNS servers
        #[arg(long)]
        no_dns: bool,
        /// New IPv4 pool
        #[arg(long)]
        cidr: Option<String>,
        /// New node prefix length
        #[arg(long)]
        node_prefix: Option<u8>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `clawn admin node-token ...`.
#[derive(Debug, Subcommand)]
pub enum NodeTokenCommand {
    /// Create a join token and print the command to run on the new node
    Create {
        /// Region the node joins
        #[arg(long, short)]
        region: String,
        /// Max peers of the node [server default: 1000]
        #[arg(long)]
        capacity: Option<u32>,
        /// Token lifetime: seconds, or 30m, 2h, 1d [server default: 1h]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        expires_in: Option<u64>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

fn node_state_parser() -> impl clap::builder::TypedValueParser<Value = NodeState> {
    PossibleValuesParser::new(NodeState::ALL.map(NodeState::as_str))
        .try_map(|s| NodeState::parse(&s).ok_or_else(|| format!("unknown node state {s:?}")))
}

fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    PossibleValuesParser::new([Role::User.as_str(), Role::Admin.as_str()])
        .try_map(|s| Role::parse(&s).ok_or_else(|| format!("unknown role {s:?}")))
}

/// `clawn admin node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes with state, load and versions
    List {
        /// Only nodes of this region
        #[arg(long, short)]
        region: Option<String>,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Set a node's state (online, maintenance, draining, experimental)
    SetState {
        /// Node id or name
        node: String,
        /// The new state
        #[arg(value_parser = node_state_parser())]
        state: NodeState,
    },
    /// Change a node's name, capacity, state or link capacity
    Update {
        /// Node id or name
        node: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New capacity (max peers)
        #[arg(long)]
        capacity: Option<u32>,
        /// New state
        #[arg(long, value_parser = node_state_parser())]
        state: Option<NodeState>,
        /// Link capacity in Mbit/s (bandwidth utilisation in the load score)
        #[arg(long)]
        link_mbps: Option<u64>,
    },
    /// Remove a node
    Remove {
        /// Node id or name
        node: String,
        /// Remove it even if it still has live peers (their devices lose their node until reassigned)
        #[arg(long)]
        force: bool,
    },
}

/// Which user.
#[derive(Debug, Args)]
pub struct UserRef {
    /// User id or email
    pub user: String,
}

/// `clawn admin user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users
    List(JsonFlag),
    /// Create a user (password from a prompt or --password-stdin)
    Create {
        /// Email address
        email: String,
        /// Role
        #[arg(long, value_parser = role_parser())]
        role: Option<Role>,
        /// Device slots [server default: 1]
        #[arg(long)]
        slots: Option<u32>,
        /// Read the initial password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: ends their sessions and blocks sign-in
    Disable(UserRef),
    /// Enable a disabled user
    Enable(UserRef),
    /// Set how many active devices a user may have
    SetSlots {
        /// User id or email
        user: String,
        /// Number of device slots
        slots: u32,
    },
    /// Make a user an admin or a normal user
    SetRole {
        /// User id or email
        user: String,
        /// The role
        #[arg(value_parser = role_parser())]
        role: Role,
    },
    /// Set a new password for a user (ends their sessions)
    ResetPassword {
        /// User id or email
        user: String,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `clawn admin device ...`.
#[derive(Debug, Subcommand)]
pub enum AdminDeviceCommand {
    /// List devices of all users
    List {
        /// Only this user's devices (id or email)
        #[arg(long, short)]
        user: Option<String>,
        /// Only devices in this state
        #[arg(long, value_parser = ["active", "revoked"])]
        state: Option<String>,
        /// Only quarantined devices (for review)
        #[arg(long)]
        quarantined: bool,
        /// Only devices waiting for capacity
        #[arg(long)]
        waiting: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Release a quarantined device: region moves and its owner's priority work again
    Release {
        /// Device id (or a name that is unique across all users)
        device: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke any user's device
    Revoke {
        /// Device id (or a name that is unique across all users)
        device: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `clawn admin audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Actor id, email or node name
    #[arg(long)]
    pub actor: Option<String>,
    /// Action, e.g. device.revoke, or a prefix ending in a dot: device.
    #[arg(long)]
    pub action: Option<String>,
    /// Target id
    #[arg(long)]
    pub target: Option<String>,
    /// From this time: 2h or 7d (ago), 2025-03-01[T12:00[:00]] (UTC), or Unix ms
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub since: Option<TimeSpec>,
    /// Until this time (exclusive); same forms as --since
    #[arg(long, value_name = "TIME", value_parser = parse_time_spec)]
    pub until: Option<TimeSpec>,
    /// Events per page (1-500)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Continue from a previous page
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON (the whole page, with next_cursor)
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_typical_invocations() {
        let cli =
            Cli::try_parse_from(["clawn", "device", "add", "laptop", "--region", "eu", "--qr"])
                .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Device(DeviceCommand::Add { ref name, ref region, output: ConfigOutput { qr: true, .. }, .. })
                if name == "laptop" && region.as_deref() == Some("eu")
        ));
        let cli = Cli::try_parse_from(["clawn", "admin", "node", "set-state", "eu-1", "draining"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Node(NodeCommand::SetState {
                state: NodeState::Draining,
                ..
            }))
        ));
        assert!(
            Cli::try_parse_from(["clawn", "admin", "node", "set-state", "eu-1", "sleeping"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "clawn",
            "admin",
            "node-token",
            "create",
            "--region",
            "eu",
            "--expires-in",
            "2h",
        ])
        .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::NodeToken(NodeTokenCommand::Create {
                expires_in: Some(7200),
                ..
            }))
        ));
        let cli = Cli::try_parse_from([
            "clawn",
            "admin",
            "priority",
            "grant",
            "--email",
            "a@b.c",
            "--region",
            "eu",
            "--duration",
            "2h",
        ])
        .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Priority(PriorityCommand::Grant {
                duration: Some(7200),
                until: None,
                ..
            }))
        ));
        // A window needs an end, and only one.
        assert!(
            Cli::try_parse_from([
                "clawn", "admin", "priority", "grant", "--email", "a@b.c", "--region", "eu"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "clawn",
                "admin",
                "priority",
                "grant",
                "--email",
                "a@b.c",
                "--region",
                "eu",
                "--duration",
                "2h",
                "--until",
                "3h"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["clawn", "device", "move", "laptop", "--region", "sg"])
            .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Device(DeviceCommand::Move { ref region, .. }) if region == "sg"
        ));
        assert!(
            Cli::try_parse_from(["clawn", "admin", "diag", "--device", "a", "--node", "b"])
                .is_err()
        );
        let cli =
            Cli::try_parse_from(["clawn", "admin", "audit", "--since", "1d", "--limit", "10"])
                .expect("parse");
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::Audit(AuditArgs {
                since: Some(TimeSpec::Ago(86_400)),
                limit: Some(10),
                ..
            }))
        ));
    }
}
