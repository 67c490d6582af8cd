//! The `clawn` binary against a real control plane: `clawn-server` in-process on a loopback
//! port with a fresh SQLite file (via `clawn-testkit`), and a protocol node that applies and
//! acknowledges what the server pushes. Every step runs the built binary as a user would, with
//! its own config directory and working directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use clawn_proto::api::{
    AuditEventView, DeviceView, DiagnosticsOverview, NodeView, Page, PriorityTokenView, UserView,
};
use clawn_proto::{WgKeyPair, WgPublicKey};
use clawn_testkit::node::Applied;
use clawn_testkit::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Db, ProtoNode, TempDir, TestServer, USER_PASSWORD,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

const ALICE: &str = "alice@example.com";
const ALICE_PASSWORD: &str = "alice-password-1";

/// One user of the CLI: a config directory and a working directory of their own.
struct User {
    config: TempDir,
    cwd: TempDir,
    server: String,
}

/// What a run of the binary produced.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    fn out(self) -> String {
        assert!(
            self.ok,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts failure and returns stderr.
    #[track_caller]
    fn err(self) -> String {
        assert!(
            !self.ok,
            "command succeeded unexpectedly\nstdout:\n{}",
            self.stdout
        );
        self.stderr
    }
}

impl User {
    fn new(server: &str) -> Self {
        Self {
            config: TempDir::new("cli-cfg"),
            cwd: TempDir::new("cli-cwd"),
            server: server.to_string(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.config.0.join("clawn")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.cwd.0.join(name)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_clawn"));
        c.args(args)
            .current_dir(&self.cwd.0)
            .env("CLAWN_CONFIG_DIR", self.config_dir())
            .env_remove("CLAWN_SERVER")
            .env_remove("CLAWN_TOKEN")
            .env_remove("CLAWN_PASSWORD")
            .env_remove("CLAWN_CA_CERT")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().await.expect("run clawn").into()
    }

    async fn run_env(&self, args: &[&str], key: &str, value: &str) -> Run {
        self.command(args)
            .env(key, value)
            .output()
            .await
            .expect("run clawn")
            .into()
    }

    async fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn clawn");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.as_bytes())
            .await
            .expect("write stdin");
        drop(input);
        child.wait_with_output().await.expect("wait clawn").into()
    }

    async fn login(&self, email: &str, password: &str) {
        let out = self
            .run_stdin(
                &[
                    "--server",
                    &self.server,
                    "login",
                    "--email",
                    email,
                    "--password-stdin",
                ],
                &format!("{password}\n"),
            )
            .await
            .out();
        assert!(
            out.contains(&format!("logged in to {} as {email}", self.server)),
            "{out}"
        );
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The public key of the private key in a wg-quick file.
fn public_key_of(conf: &str) -> WgPublicKey {
    let line = conf
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("PrivateKey line");
    WgKeyPair::from_private_base64(line)
        .expect("a real private key")
        .public()
}

/// Starts a server with region `eu` and one connected node that applies and acknowledges
/// everything in the background, reporting what it applied.
async fn server_with_node() -> (
    TestServer,
    mpsc::UnboundedReceiver<Applied>,
    tokio::task::JoinHandle<()>,
) {
    let srv = TestServer::start(Db::Sqlite).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(applied) = node.next_state(Duration::from_secs(600)).await {
            if tx.send(applied).is_err() {
                break;
            }
        }
    });
    (srv, rx, task)
}

async fn next_delta(
    rx: &mut mpsc::UnboundedReceiver<Applied>,
) -> (Vec<WgPublicKey>, Vec<WgPublicKey>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Applied::Delta { added, removed, .. })) => return (added, removed),
            Ok(Some(Applied::Snapshot { .. })) => continue,
            other => panic!("no delta reached the node: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_device_lifecycle() {
    let (srv, mut applied, node_task) = server_with_node().await;

    // The admin creates Alice's account with the CLI.
    let admin = User::new(&srv.url);
    admin.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let out = admin
        .run_stdin(
            &[
                "admin",
                "user",
                "create",
                ALICE,
                "--slots",
                "2",
                "--password-stdin",
            ],
            &format!("{ALICE_PASSWORD}\n"),
        )
        .await
        .out();
    assert!(out.contains(&format!("created {ALICE}")), "{out}");

    // Alice signs in with CLAWN_PASSWORD; the session is private to her.
    let alice = User::new(&srv.url);
    let out = alice
        .run_env(
            &["--server", &srv.url, "login", "--email", ALICE],
            "CLAWN_PASSWORD",
            ALICE_PASSWORD,
        )
        .await
        .out();
    assert!(
        out.contains(&format!("logged in to {} as {ALICE} (user)", srv.url)),
        "{out}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&alice.config_dir()), 0o700);
        assert_eq!(mode(&alice.config_dir().join("credentials.json")), 0o600);
    }
    assert!(
        alice
            .run(&["whoami"])
            .await
            .out()
            .contains(&format!("{ALICE} (user)"))
    );
    assert!(alice.run(&["regions"]).await.out().contains("eu"));

    // Add a device: the key pair is made here, only the public half reaches the node.
    let out = alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .out();
    assert!(out.contains("created device laptop"), "{out}");
    assert!(out.contains("to the node"), "{out}");
    let conf = std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf");
    assert!(!conf.contains(clawn_proto::config::PRIVATE_KEY_PLACEHOLDER));
    assert!(
        conf.contains("Address = 10.100.0.2/32") && conf.contains("Endpoint = 192.0.2.10:51820"),
        "{conf}"
    );
    let laptop_key = public_key_of(&conf);
    assert_eq!(next_delta(&mut applied).await, (vec![laptop_key], vec![]));

    let devices: Vec<DeviceView> =
        serde_json::from_str(&alice.run(&["device", "list", "--json"]).await.out())
            .expect("device list JSON");
    assert_eq!(devices.len(), 1);
    let laptop = &devices[0];
    assert_eq!(
        (laptop.name.as_str(), laptop.public_key),
        ("laptop", laptop_key)
    );
    let key_file = alice
        .config_dir()
        .join("keys")
        .join(format!("{}.key", laptop.id));
    #[cfg(unix)]
    {
        assert_eq!(mode(&alice.file("laptop.conf")), 0o600);
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(mode(&alice.config_dir().join("keys")), 0o700);
    }
    let table = alice.run(&["device", "list"]).await.out();
    assert!(
        table
            .lines()
            .any(|l| l.contains("laptop") && l.contains("10.100.0.2") && l.ends_with("here")),
        "{table}"
    );

    // A fresh output file is refused rather than overwritten, before anything is created.
    let err = alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .err();
    assert!(err.contains("laptop.conf already exists"), "{err}");

    // The config is rebuilt from the server's template and the stored key, by name or id.
    assert_eq!(alice.run(&["device", "config", "laptop"]).await.out(), conf);
    assert_eq!(
        alice
            .run(&["device", "config", &laptop.id.to_string()])
            .await
            .out(),
        conf
    );
    let qr = alice
        .run(&["device", "config", "laptop", "--qr"])
        .await
        .out();
    assert!(qr.lines().count() > 20 && qr.contains('█'), "{qr}");

    // Rename, then rotate: the node swaps keys, the stored key and the file follow.
    let out = alice
        .run(&["device", "rename", "laptop", "work"])
        .await
        .out();
    assert!(out.contains("renamed device laptop to work"), "{out}");
    let shown = alice.run(&["device", "show", "work"]).await.out();
    assert!(
        shown.contains("address:      10.100.0.2")
            && shown.contains(&format!("private key:  {}", key_file.display())),
        "{shown}"
    );
    let out = alice.run(&["device", "rotate", "work"]).await.out();
    assert!(
        out.contains("the old key no longer works") && out.contains("node acknowledged"),
        "{out}"
    );
    let rotated = std::fs::read_to_string(alice.file("work.conf")).expect("work.conf");
    let new_key = public_key_of(&rotated);
    assert_ne!(new_key, laptop_key);
    assert_eq!(
        next_delta(&mut applied).await,
        (vec![new_key], vec![laptop_key])
    );
    assert_eq!(
        alice.run(&["device", "config", "work"]).await.out(),
        rotated
    );
    assert!(
        !alice
            .config_dir()
            .join("keys")
            .join(format!("{}.key.new", laptop.id))
            .exists()
    );

    // Without --region the only region is used; the third device hits the slot limit, and the
    // key generated for it is thrown away.
    let out = alice.run(&["device", "add", "phone", "--out", "-"]).await;
    let phone_conf = out.out();
    assert!(
        phone_conf.starts_with("[Interface]\nPrivateKey = "),
        "{phone_conf}"
    );
    let phone_key = public_key_of(&phone_conf);
    assert_eq!(next_delta(&mut applied).await, (vec![phone_key], vec![]));
    let err = alice
        .run(&["device", "add", "tablet", "--region", "eu"])
        .await
        .err();
    assert!(
        err.starts_with("error: all 2 of your device slots are in use (slots_exhausted)\nhint: "),
        "{err}"
    );
    assert!(!alice.file("tablet.conf").exists());
    let pending: Vec<_> = std::fs::read_dir(alice.config_dir().join("keys"))
        .expect("keys dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("pending-"))
        .collect();
    assert!(pending.is_empty(), "{pending:?}");

    // Unknown names are clear errors.
    let err = alice.run(&["device", "config", "Phone"]).await.err();
    assert!(
        err.contains("error: no device \"Phone\"") && err.contains("did you mean \"phone\"?"),
        "{err}"
    );

    // Revoke: the node confirms, the local key is deleted.
    let out = alice.run(&["device", "revoke", "phone"]).await.out();
    assert!(
        out.contains("revoked device phone") && out.contains("node acknowledged"),
        "{out}"
    );
    assert!(out.contains("deleted its private key"), "{out}");
    assert_eq!(next_delta(&mut applied).await, (vec![], vec![phone_key]));

    // A device whose key is not on this machine: say so, print the template, exit 0.
    std::fs::remove_file(&key_file).expect("remove key");
    let run = alice.run(&["device", "config", "work"]).await;
    assert!(
        run.stderr.contains("is not stored on this machine"),
        "{}",
        run.stderr
    );
    let template = run.out();
    assert!(
        template.contains(clawn_proto::config::PRIVATE_KEY_PLACEHOLDER),
        "{template}"
    );

    // Logout ends the session on the server too.
    let token = {
        let creds: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(alice.config_dir().join("credentials.json"))
                .expect("credentials"),
        )
        .expect("credentials JSON");
        creds["token"].as_str().expect("token").to_string()
    };
    assert!(alice.run(&["logout"]).await.out().contains("logged out"));
    assert!(!alice.config_dir().join("credentials.json").exists());
    let err = alice.run(&["device", "list"]).await.err();
    assert!(
        err.starts_with("error: not logged in\nhint: run `clawn login"),
        "{err}"
    );
    let err = alice
        .run_env(
            &["--server", &srv.url, "device", "list"],
            "CLAWN_TOKEN",
            &token,
        )
        .await
        .err();
    assert!(
        err.contains("(unauthenticated)") && err.contains("run `clawn login`"),
        "{err}"
    );

    srv.stop().await;
    node_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands() {
    let (srv, mut applied, node_task) = server_with_node().await;
    let admin = User::new(&srv.url);
    admin.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // Regions.
    let out = admin
        .run(&[
            "admin",
            "region",
            "create",
            "sg",
            "--name",
            "Singapore",
            "--cidr",
            "10.200.0.0/16",
            "--dns",
            "1.1.1.1",
        ])
        .await
        .out();
    assert!(out.contains("created region sg (Singapore)"), "{out}");
    let out = admin
        .run(&["admin", "region", "update", "sg", "--name", "SG"])
        .await
        .out();
    assert!(
        out.lines()
            .any(|l| l.starts_with("sg") && l.contains("SG") && l.contains("1.1.1.1")),
        "{out}"
    );
    let list = admin.run(&["admin", "region", "list"]).await.out();
    assert!(
        list.contains("10.100.0.0/16") && list.contains("10.200.0.0/16"),
        "{list}"
    );
    let err = admin
        .run(&["admin", "region", "update", "nowhere", "--name", "x"])
        .await
        .err();
    assert!(err.contains("(not_found)"), "{err}");

    // Node join tokens and nodes.
    let out = admin
        .run(&[
            "admin",
            "node-token",
            "create",
            "--region",
            "sg",
            "--capacity",
            "10",
            "--expires-in",
            "30m",
        ])
        .await
        .out();
    assert!(
        out.contains(&format!("clawn-node join --server {}", srv.url)),
        "{out}"
    );
    let nodes = admin.run(&["admin", "node", "list"]).await.out();
    let node_id = nodes
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a node row")
        .to_string();
    assert!(
        nodes.contains("online") && nodes.contains(" up "),
        "{nodes}"
    );
    let out = admin
        .run(&["admin", "node", "set-state", &node_id, "maintenance"])
        .await
        .out();
    assert!(out.ends_with("is now maintenance\n"), "{out}");
    admin
        .run(&["admin", "node", "set-state", &node_id, "online"])
        .await
        .out();

    // Users.
    admin
        .run_stdin(
            &["admin", "user", "create", ALICE, "--password-stdin"],
            &format!("{ALICE_PASSWORD}\n"),
        )
        .await
        .out();
    let out = admin
        .run(&["admin", "user", "set-slots", "Alice@Example.com", "3"])
        .await
        .out();
    assert!(
        out.lines().any(|l| l.contains(ALICE) && l.contains("0/3")),
        "{out}"
    );
    let users: Vec<UserView> =
        serde_json::from_str(&admin.run(&["admin", "user", "list", "--json"]).await.out())
            .expect("users JSON");
    assert_eq!(
        users
            .iter()
            .find(|u| u.email == ALICE)
            .map(|u| u.device_slots),
        Some(3)
    );

    let alice = User::new(&srv.url);
    alice.login(ALICE, ALICE_PASSWORD).await;
    let err = alice.run(&["admin", "user", "list"]).await.err();
    assert!(
        err.starts_with("error: this needs an admin account (forbidden)"),
        "{err}"
    );
    alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .out();
    let (added, _) = next_delta(&mut applied).await;

    // Disabling ends Alice's session; enabling and a new password let her back in.
    admin.run(&["admin", "user", "disable", ALICE]).await.out();
    let err = alice.run(&["device", "list"]).await.err();
    assert!(err.contains("(unauthenticated)"), "{err}");
    admin.run(&["admin", "user", "enable", ALICE]).await.out();
    admin
        .run_stdin(
            &["admin", "user", "reset-password", ALICE, "--password-stdin"],
            "a-brand-new-password\n",
        )
        .await
        .out();
    alice.login(ALICE, "a-brand-new-password").await;

    // Everyone's devices, filtered by owner; an admin revoke is acknowledged by the node.
    let out = admin
        .run(&["admin", "device", "list", "--user", ALICE])
        .await
        .out();
    let device_id = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("device row")
        .to_string();
    assert!(out.contains(ALICE) && out.contains("laptop"), "{out}");
    let out = admin
        .run(&["admin", "device", "revoke", &device_id])
        .await
        .out();
    assert!(
        out.contains(&format!("revoked device laptop ({device_id}) of {ALICE}")),
        "{out}"
    );
    assert!(out.contains("node acknowledged"), "{out}");
    assert_eq!(next_delta(&mut applied).await, (vec![], added));
    let out = admin
        .run(&["admin", "device", "list", "--state", "active"])
        .await;
    assert!(out.stderr.contains("no devices match"), "{}", out.stderr);

    // The audit log, paged.
    let page: Page<AuditEventView> = serde_json::from_str(
        &admin
            .run(&[
                "admin", "audit", "--action", "device.", "--limit", "1", "--json",
            ])
            .await
            .out(),
    )
    .expect("audit JSON");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].action.as_str(), "device.revoke");
    let cursor = page.next_cursor.expect("a second page");
    let first = admin
        .run(&["admin", "audit", "--action", "device.", "--limit", "1"])
        .await;
    assert!(
        first.stderr.contains(&format!(
            "more events: clawn admin audit --action device. --limit 1 --cursor {cursor}"
        )),
        "{}",
        first.stderr
    );
    assert!(first.out().contains("device.revoke"));
    let run = admin
        .run(&[
            "admin", "audit", "--action", "device.", "--limit", "1", "--cursor", &cursor,
        ])
        .await;
    assert!(!run.stderr.contains("more events"), "{}", run.stderr);
    let out = run.out();
    assert!(
        out.contains(&format!("user:{ALICE}")) && out.contains("device.create"),
        "{out}"
    );
    let out = admin
        .run(&["admin", "audit", "--since", "1h", "--actor", ADMIN_EMAIL])
        .await
        .out();
    assert!(
        out.contains("user.create") && !out.contains("device.create"),
        "{out}"
    );

    srv.stop().await;
    node_task.abort();
}

/// `clawn setup` with the given token, password on stdin.
async fn setup(user: &User, token: &str) -> Run {
    let args = [
        "--server",
        &user.server,
        "setup",
        "--token",
        token,
        "--email",
        "root@example.com",
        "--password-stdin",
    ];
    user.run_stdin(&args, "root-password-1\n").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_admin_setup_signs_in() {
    clawn_testkit::init_crypto();
    let dir = TempDir::new("cli-setup-srv");
    let mut config = clawn_server::config::Config::for_data_dir(&dir.0);
    config.database_url = clawn_testkit::fresh_database(Db::Sqlite, &dir.0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    config.listen = addr;
    config.public_url = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = clawn_server::build_app(config, stop_rx)
        .await
        .expect("server builds");
    // The server printed a setup token and kept only its hash; plant a known one the same way.
    let token = "clawn_setup_cli-test-token";
    app.store
        .set_setting(
            clawn_server::http::account::SETUP_TOKEN_KEY,
            &clawn_server::auth::token_hash(token),
        )
        .await
        .expect("setting");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(clawn_server::serve_app(
        app,
        listener,
        async move {
            let _ = rx.await;
        },
        stop_tx,
    ));

    let url = format!("http://{addr}");
    let root = User::new(&url);
    let err = setup(&root, "clawn_setup_wrong").await.err();
    assert!(
        err.starts_with(
            "error: the setup token is wrong or was used (invalid_setup_token)\nhint: "
        ),
        "{err}"
    );
    let out = setup(&root, token).await.out();
    assert!(
        out.contains(&format!("logged in to {url} as root@example.com (admin)")),
        "{out}"
    );
    assert!(
        root.run(&["admin", "user", "list"])
            .await
            .out()
            .contains("root@example.com")
    );
    let err = setup(&root, token).await.err();
    assert!(err.contains("(invalid_setup_token)"), "{err}");

    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

#[tokio::test]
async fn unreachable_server_names_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let server = format!("http://127.0.0.1:{port}");
    let user = User::new(&server);
    let err = user
        .run_stdin(
            &[
                "--server",
                &server,
                "login",
                "--email",
                "a@example.com",
                "--password-stdin",
            ],
            "x\n",
        )
        .await
        .err();
    assert!(
        err.starts_with(&format!("error: cannot reach {server}/api/v1/auth/login: ")),
        "{err}"
    );
    assert!(
        err.contains("hint: check the server URL (--server"),
        "{err}"
    );

    let err = user.run(&["device", "list"]).await.err();
    assert!(err.starts_with("error: not logged in"), "{err}");
}

// ---------------------------------------------------------------- routing and operations

clawn_testkit::both_dbs!(
    device_moves_between_regions_until_the_limit,
    priority_tokens_round_trip,
    diagnostics_and_a_drained_node,
);

/// Keeps a node applying and acknowledging in the background; reports what it applied.
fn drive(
    mut node: ProtoNode,
) -> (
    mpsc::UnboundedReceiver<Applied>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(applied) = node.next_state(Duration::from_secs(600)).await {
            if tx.send(applied).is_err() {
                break;
            }
        }
    });
    (rx, task)
}

/// The line of a wg-quick file that starts with `key = `, without the key.
fn conf_value<'a>(conf: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    conf.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} in\n{conf}"))
}

/// The admin's view of the nodes, through the CLI.
async fn node_views(admin: &User) -> Vec<NodeView> {
    serde_json::from_str(&admin.run(&["admin", "node", "list", "--json"]).await.out())
        .expect("node list JSON")
}

/// Signs the admin in with the CLI and creates Alice (through the API) with `slots`.
async fn admin_and_alice(srv: &TestServer, slots: u32) -> (User, User) {
    let api = srv.admin().await;
    srv.user(&api, ALICE, slots).await;
    let admin = User::new(&srv.url);
    admin.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let alice = User::new(&srv.url);
    alice.login(ALICE, USER_PASSWORD).await;
    (admin, alice)
}

async fn device_moves_between_regions_until_the_limit(db: Db) {
    // Pinned so the test does not drift with the defaults: 3 moves an hour, and the sixth
    // move asked for within the window quarantines the device.
    let srv = TestServer::start_with(db, |c| {
        c.placement.reassign_per_hour = 3;
        c.abuse.region_switches = 6;
    })
    .await;
    let api = srv.admin().await;
    let eu = srv.region_with_node(&api, "eu", "10.100.0.0/16").await;
    let sg = srv.region_with_node(&api, "sg", "10.200.0.0/16").await;
    let (eu_key, sg_key) = (eu.wg.public(), sg.wg.public());
    let (mut eu_applied, eu_task) = drive(eu);
    let (mut sg_applied, sg_task) = drive(sg);
    let (admin, alice) = admin_and_alice(&srv, 1).await;

    alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .out();
    let first = std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf");
    assert_eq!(conf_value(&first, "PublicKey"), eu_key.to_string());
    let laptop_key = public_key_of(&first);
    assert_eq!(
        next_delta(&mut eu_applied).await,
        (vec![laptop_key], vec![])
    );

    // Move 1: the config written names the Singapore node and its pool, same private key.
    let out = alice
        .run(&["device", "move", "laptop", "--region", "sg"])
        .await
        .out();
    assert!(
        out.contains("from region eu to sg") && out.contains("node acknowledged"),
        "{out}"
    );
    assert!(out.contains("config: laptop.conf"), "{out}");
    let moved = std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf");
    assert_eq!(
        conf_value(&moved, "PublicKey"),
        sg_key.to_string(),
        "{moved}"
    );
    assert_eq!(conf_value(&moved, "Address"), "10.200.0.2/32", "{moved}");
    assert_eq!(conf_value(&moved, "Endpoint"), "192.0.2.10:51820");
    assert_eq!(public_key_of(&moved), laptop_key);
    assert_eq!(
        next_delta(&mut sg_applied).await,
        (vec![laptop_key], vec![])
    );
    assert_eq!(
        next_delta(&mut eu_applied).await,
        (vec![], vec![laptop_key])
    );
    // `device config` returns the same new config; show and list say it changed.
    assert_eq!(
        alice.run(&["device", "config", "laptop"]).await.out(),
        moved
    );
    let shown = alice.run(&["device", "show", "laptop"]).await.out();
    assert!(
        shown.contains("region:       sg") && shown.contains("placement:    assigned"),
        "{shown}"
    );
    // "just now" unless the machine is very slow: the time is not the point here.
    let notice = shown
        .lines()
        .find(|l| l.starts_with("config changed "))
        .unwrap_or_else(|| panic!("no notice in\n{shown}"));
    assert!(
        notice.ends_with(" (reassign): run `clawn device config laptop` to get the new one"),
        "{shown}"
    );
    let list = alice.run(&["device", "list"]).await;
    assert!(
        list.stderr
            .lines()
            .any(|l| l.starts_with("laptop: config changed ")
                && l.ends_with(" (reassign): run `clawn device config laptop` to get the new one")),
        "{}",
        list.stderr
    );
    assert!(
        list.out()
            .lines()
            .any(|l| l.contains("laptop") && l.contains(" sg ") && l.contains("assigned")),
    );

    // Refusals that never reach the rate limit: same region, unknown region.
    let err = alice
        .run(&["device", "move", "laptop", "--region", "sg"])
        .await
        .err();
    assert!(
        err.contains("error: device laptop is already in region sg (same_region)"),
        "{err}"
    );
    let err = alice
        .run(&["device", "move", "laptop", "--region", "nowhere"])
        .await
        .err();
    assert!(
        err.contains("error: there is no region \"nowhere\"") && err.contains("clawn regions"),
        "{err}"
    );

    // Moves 2 and 3 go through; the 4th within the hour is refused with the wait.
    for (to, key) in [("eu", eu_key), ("sg", sg_key)] {
        alice
            .run(&["device", "move", "laptop", "--region", to])
            .await
            .out();
        let conf = std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf");
        assert_eq!(conf_value(&conf, "PublicKey"), key.to_string(), "{conf}");
    }
    let before = std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf");
    let err = alice
        .run(&["device", "move", "laptop", "--region", "eu"])
        .await
        .err();
    assert!(
        err.starts_with(
            "error: device laptop cannot move region again yet: a device may move region at most 3 times per hour (reassign_rate_limited)\nhint: try again in "
        ),
        "{err}"
    );
    assert!(err.contains(" UTC)"), "{err}");
    assert_eq!(
        std::fs::read_to_string(alice.file("laptop.conf")).expect("laptop.conf"),
        before,
        "a refused move leaves the config alone"
    );

    // Asking again and again trips the abuse signal: the 6th request quarantines it.
    alice
        .run(&["device", "move", "laptop", "--region", "eu"])
        .await
        .err();
    let err = alice
        .run(&["device", "move", "laptop", "--region", "eu"])
        .await
        .err();
    assert!(
        err.contains(
            "error: device laptop is quarantined: region moves are blocked (device_quarantined)"
        ),
        "{err}"
    );
    assert!(
        alice
            .run(&["device", "show", "laptop"])
            .await
            .out()
            .contains("quarantined:  yes"),
    );

    // The admin reviews and releases it.
    let out = admin
        .run(&["admin", "device", "list", "--quarantined"])
        .await
        .out();
    assert!(
        out.lines()
            .next()
            .is_some_and(|h| h.ends_with("QUARANTINE"))
            && out.lines().any(|l| l.contains("laptop")
                && l.contains("quarantined")
                && l.contains("region switches")),
        "{out}"
    );
    let out = admin
        .run(&["admin", "device", "release", "laptop"])
        .await
        .out();
    assert!(
        out.starts_with("released device laptop (") && out.contains(&format!("of {ALICE}")),
        "{out}"
    );
    let run = admin
        .run(&["admin", "device", "list", "--quarantined"])
        .await;
    assert!(run.stderr.contains("no devices match"), "{}", run.stderr);
    let err = admin
        .run(&["admin", "device", "release", "laptop"])
        .await
        .err();
    assert!(err.contains("(not_quarantined)"), "{err}");

    srv.stop().await;
    eu_task.abort();
    sg_task.abort();
}

async fn priority_tokens_round_trip(db: Db) {
    let srv = TestServer::start(db).await;
    let api = srv.admin().await;
    let node = srv.region_with_node(&api, "eu", "10.100.0.0/16").await;
    let (_applied, task) = drive(node);
    let (admin, alice) = admin_and_alice(&srv, 1).await;
    alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .out();
    assert!(
        alice
            .run(&["device", "show", "laptop"])
            .await
            .out()
            .contains("class:        standard")
    );

    let run = admin.run(&["admin", "priority", "list"]).await;
    assert!(run.stderr.contains("no priority tokens"), "{}", run.stderr);
    let out = admin
        .run(&[
            "admin",
            "priority",
            "grant",
            "--email",
            ALICE,
            "--region",
            "eu",
            "--duration",
            "2h",
            "--note",
            "on call this week",
        ])
        .await
        .out();
    assert!(
        out.starts_with(&format!("granted {ALICE} priority in region eu from ")),
        "{out}"
    );
    assert!(
        out.contains("(active)") && out.contains("on call this week"),
        "{out}"
    );

    // Listed, also filtered by the user; the window is the 2 hours asked for.
    let tokens: Vec<PriorityTokenView> = serde_json::from_str(
        &admin
            .run(&["admin", "priority", "list", "--user", ALICE, "--json"])
            .await
            .out(),
    )
    .expect("priority JSON");
    assert_eq!(tokens.len(), 1);
    let t = &tokens[0];
    assert_eq!(
        (t.email.as_str(), t.region.as_str(), t.status.as_str()),
        (ALICE, "eu", "active")
    );
    assert_eq!(t.expires_at - t.starts_at, 2 * 3_600_000);
    assert_eq!(t.note, "on call this week");
    let table = admin.run(&["admin", "priority", "list"]).await.out();
    assert!(
        table.lines().any(|l| l.starts_with(&t.id.to_string())
            && l.contains(ALICE)
            && l.contains("active, ends in 1h")),
        "{table}"
    );
    let run = admin
        .run(&["admin", "priority", "list", "--user", ADMIN_EMAIL])
        .await;
    assert!(run.stderr.contains("no priority tokens"), "{}", run.stderr);
    // Alice's device in the region is priority class now.
    let shown = alice.run(&["device", "show", "laptop"]).await.out();
    assert!(shown.contains("class:        priority"), "{shown}");

    // Revoke: the token says so, the device is standard again; twice is a conflict.
    let id = t.id.to_string();
    let out = admin.run(&["admin", "priority", "revoke", &id]).await.out();
    assert!(
        out.contains(&format!(
            "revoked priority token {id} of {ALICE} in region eu"
        )),
        "{out}"
    );
    let table = admin.run(&["admin", "priority", "list"]).await.out();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{table}"
    );
    assert!(
        alice
            .run(&["device", "show", "laptop"])
            .await
            .out()
            .contains("class:        standard")
    );
    let err = admin.run(&["admin", "priority", "revoke", &id]).await.err();
    assert!(err.contains("(already_revoked)"), "{err}");
    // Bad input is refused before (or by) the server, clearly.
    let err = admin
        .run(&[
            "admin",
            "priority",
            "grant",
            "--email",
            "nobody@example.com",
            "--region",
            "eu",
            "--duration",
            "1h",
        ])
        .await
        .err();
    assert!(err.contains("(not_found)"), "{err}");
    let err = admin
        .run(&[
            "admin",
            "priority",
            "grant",
            "--email",
            ALICE,
            "--region",
            "eu",
            "--duration",
            "soon",
        ])
        .await
        .err();
    assert!(err.contains("invalid duration"), "{err}");

    srv.stop().await;
    task.abort();
}

async fn diagnostics_and_a_drained_node(db: Db) {
    let srv = TestServer::start(db).await;
    let api = srv.admin().await;
    let n1 = srv.region_with_node(&api, "eu", "10.100.0.0/16").await;
    let n1_id = n1.node_id;
    let (_a1, t1) = drive(n1);
    let (admin, alice) = admin_and_alice(&srv, 1).await;
    // The device lands on the only node; a second node joins afterwards.
    alice
        .run(&["device", "add", "laptop", "--region", "eu"])
        .await
        .out();
    let n2 = srv.node(&api, "eu", 1000).await;
    let (n2_id, n2_key) = (n2.node_id, n2.wg.public());
    let (_a2, t2) = drive(n2);
    let nodes = node_views(&admin).await;
    let name_of = |id| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
            .expect("node listed")
    };
    let (n1_name, n2_name) = (name_of(n1_id), name_of(n2_id));

    // The node table has the score and health columns.
    let table = admin.run(&["admin", "node", "list"]).await.out();
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("SCORE") && header.ends_with("HEALTH"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&n1_name) && l.ends_with(" ok")),
        "{table}"
    );

    // Draining the first node moves the device; its config now names the second node.
    admin
        .run(&["admin", "node", "set-state", &n1_name, "draining"])
        .await
        .out();
    let alice_api = srv.login(ALICE, USER_PASSWORD).await;
    alice_api
        .get_until("/api/v1/devices", Duration::from_secs(15), |l| {
            l[0]["node"]["id"] == n2_id.to_string()
        })
        .await;
    let shown = alice.run(&["device", "show", "laptop"]).await.out();
    assert!(
        shown.contains("(drain): run `clawn device config laptop` to get the new one"),
        "{shown}"
    );
    let conf = alice.run(&["device", "config", "laptop"]).await.out();
    assert_eq!(conf_value(&conf, "PublicKey"), n2_key.to_string(), "{conf}");
    assert!(!conf.contains(clawn_proto::config::PRIVATE_KEY_PLACEHOLDER));

    // The overview: regions, both nodes by name with state and health, state changes.
    let out = admin.run(&["admin", "diag"]).await.out();
    for section in [
        "REGIONS\n",
        "\nNODES\n",
        "\nRECENT NODE STATE CHANGES\n",
        "\nWAITING FOR CAPACITY (0)\n",
        "\nQUARANTINED (0)\n",
    ] {
        assert!(out.contains(section), "{section:?} missing:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with(&n1_name) && l.contains("draining")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&n2_name) && l.contains("online")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(&n1_name) && l.contains("node.update")),
        "{out}"
    );
    let overview: DiagnosticsOverview =
        serde_json::from_str(&admin.run(&["admin", "diag", "--json"]).await.out())
            .expect("diagnostics JSON");
    assert_eq!(overview.nodes.len(), 2);

    // One node, one device.
    let out = admin
        .run(&["admin", "diag", "--node", &n1_name])
        .await
        .out();
    assert!(
        out.contains(&format!("name:       {n1_name}"))
            && out.contains("state:      draining")
            && out.contains("eligible:   no")
            && out.contains("RECENT STATE CHANGES"),
        "{out}"
    );
    let out = admin
        .run(&["admin", "diag", "--device", "laptop"])
        .await
        .out();
    assert!(
        out.contains("owner:") && out.contains(ALICE) && out.contains("signals:"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("laptop") && l.contains("device.drain")),
        "{out}"
    );
    let err = admin
        .run(&["admin", "diag", "--node", "nowhere"])
        .await
        .err();
    assert!(err.contains("no node \"nowhere\""), "{err}");

    srv.stop().await;
    t1.abort();
    t2.abort();
}
