//! The `clawn` binary against a real control plane: `clawn-server` in-process on a loopback
//! port with a fresh SQLite file (via `clawn-testkit`), and a protocol node that applies and
//! acknowledges what the server pushes. Every step runs the built binary as a user would, with
//! its own config directory and working directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use clawn_proto::api::{AuditEventView, DeviceView, Page, UserView};
use clawn_proto::{WgKeyPair, WgPublicKey};
use clawn_testkit::node::Applied;
use clawn_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, Db, TempDir, TestServer};
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
    assert_eq!(page.items[0].action, "device.revoke");
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
