//! End-to-end: a real control plane, real node agents and real WireGuard clients
//! (Debian's wireguard-go + wg-quick) in network namespaces, with real traffic.
//!
//! Needs root (namespaces, TUN). `scripts/test.sh` installs the tools and builds the
//! binaries these tests start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clawn_proto::keys::WgKeyPair;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const NODE_TUNNEL_IP: &str = "10.100.0.1";

/// Creates a device through the API and returns (body, key pair).
async fn api_device(user: &clawn_testkit::Client, name: &str, region: &str) -> (Value, WgKeyPair) {
    let (s, body, kp) = user.add_device(name, region).await;
    assert_eq!(s, StatusCode::CREATED, "create device: {body}");
    assert_eq!(body["device"]["state"], "active", "{body}");
    (body, kp)
}

/// A UDP prober: sends a numbered datagram every 2 ms from `client` to an echo on the
/// node's tunnel address and records which got an answer.
struct Probe {
    stop_at: Arc<std::sync::Mutex<Option<Instant>>>,
    handle: Option<std::thread::JoinHandle<Vec<(Instant, bool)>>>,
    echo_stop: Arc<AtomicBool>,
}

impl Probe {
    fn start(lab: &Lab, client: &str, node: &str) -> Self {
        let echo_stop = Arc::new(AtomicBool::new(false));
        let es = echo_stop.clone();
        let echo = lab.in_ns(node, || {
            UdpSocket::bind((NODE_TUNNEL_IP, 7777)).expect("bind echo")
        });
        echo.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !es.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        });
        let sock = lab.in_ns(client, || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind probe");
            s.connect((NODE_TUNNEL_IP, 7777)).expect("connect");
            s
        });
        let stop_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let st = stop_at.clone();
        let handle = std::thread::spawn(move || {
            let rx = sock.try_clone().expect("clone");
            rx.set_read_timeout(Some(Duration::from_millis(5)))
                .expect("timeout");
            let mut sent: Vec<(Instant, bool)> = Vec::new();
            let mut buf = [0u8; 8];
            // Bounded: at most 60 s of probing.
            let hard_stop = Instant::now() + Duration::from_secs(60);
            while Instant::now() < hard_stop
                && st.lock().expect("lock").is_none_or(|t| Instant::now() < t)
            {
                let seq = sent.len() as u64;
                let _ = sock.send(&seq.to_be_bytes());
                sent.push((Instant::now(), false));
                let until = Instant::now() + Duration::from_millis(2);
                while Instant::now() < until {
                    if let Ok(8) = rx.recv(&mut buf) {
                        let s = u64::from_be_bytes(buf) as usize;
                        if let Some(e) = sent.get_mut(s) {
                            e.1 = true;
                        }
                    }
                }
            }
            // Late answers.
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                if let Ok(8) = rx.recv(&mut buf) {
                    let s = u64::from_be_bytes(buf) as usize;
                    if let Some(e) = sent.get_mut(s) {
                        e.1 = true;
                    }
                }
            }
            sent
        });
        Self {
            stop_at,
            handle: Some(handle),
            echo_stop,
        }
    }

    /// Probes on until `at`, then returns every probe with whether it was answered.
    fn finish_at(mut self, at: Instant) -> Vec<(Instant, bool)> {
        *self.stop_at.lock().expect("lock") = Some(at);
        let r = self.handle.take().expect("once").join().expect("probe");
        self.echo_stop.store(true, Ordering::Relaxed);
        r
    }
}

/// Tests 1–3 (and 8: run on each backend): reach, revoke, rotate.
fn reach_revoke_rotate(backend: &str) {
    let mut lab = Lab::new(1, 3);
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = eu_with_node(&mut lab, backend).await;
        let alice = user(&lab, &admin, "alice@lab.test", 5).await;

        // 1a. A device created through the API reaches the node: ping and TCP.
        let (d1, k1) = api_device(&alice, "laptop", "eu").await;
        let cfg1 = with_key(d1["config_text"].as_str().expect("config"), &k1);
        lab.client_up("c1", &cfg1);
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
        let echo = lab.tcp_exchange("n1", &format!("{NODE_TUNNEL_IP}:9000"), "c1");
        assert_eq!(echo, format!("clawn-echo@{}", tunnel_ip(&d1["device"])));

        // 1b. A device created with the CLI (keys made by the CLI) reaches it too.
        let cli_dir = lab.dir.join("cli");
        let conf = lab.dir.join("phone.conf");
        let mut login = lab.cmd("hub", bin("clawn"));
        login
            .arg("--server")
            .arg(lab.server_url())
            .arg("--config-dir")
            .arg(&cli_dir)
            .args(["login", "--email", "alice@lab.test", "--password-stdin"]);
        let mut child = login
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("clawn login");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "{USER_PASSWORD}").expect("password");
        }
        let out = child.wait_with_output().expect("login");
        assert!(out.status.success(), "clawn login: {}", String::from_utf8_lossy(&out.stderr));
        must(
            lab.cmd("hub", bin("clawn"))
                .arg("--config-dir")
                .arg(&cli_dir)
                .args(["device", "add", "phone", "--region", "eu", "--out"])
                .arg(&conf),
        );
        let cli_conf = std::fs::read_to_string(&conf).expect("cli config");
        assert!(cli_conf.contains("PrivateKey"));
        lab.client_up("c2", &cli_conf);
        lab.ping_until_ok("c2", NODE_TUNNEL_IP, Duration::from_secs(20));

        // 2. Revocation: traffic stops; time from the API call to the first lost packet.
        let probe = Probe::start(&lab, "c1", "n1");
        // Traffic flows before the call.
        let warm = Instant::now() + Duration::from_secs(5);
        while Instant::now() < warm && !lab.ping("c1", NODE_TUNNEL_IP) {}
        let id1 = d1["device"]["id"].as_str().expect("id").to_string();
        let called = Instant::now();
        let (s, body) = alice
            .post(&format!("/api/v1/devices/{id1}/revoke"), json!({}))
            .await;
        let returned = Instant::now();
        assert_eq!(s, StatusCode::OK, "revoke: {body}");
        assert_eq!(body["node_ack"]["status"], "acknowledged", "{body}");
        // Keep probing for 500 ms after the call returned, then look.
        let samples = probe.finish_at(returned + Duration::from_millis(500));
        let before: Vec<_> = samples.iter().filter(|(t, _)| *t < called).collect();
        assert!(
            before.iter().any(|(_, ok)| *ok),
            "no probe got through before the revoke (probe broken?)"
        );
        let after_return: Vec<_> = samples.iter().filter(|(t, _)| *t > returned).collect();
        assert!(!after_return.is_empty());
        assert!(
            after_return.iter().all(|(_, ok)| !ok),
            "{} of {} probes sent after the revoke returned still got answers",
            after_return.iter().filter(|(_, ok)| *ok).count(),
            after_return.len()
        );
        let first_lost = samples
            .iter()
            .filter(|(t, ok)| *t >= called && !ok)
            .map(|(t, _)| t.duration_since(called))
            .next()
            .expect("a lost probe");
        eprintln!(
            "[{backend}] revoke: API call -> first lost packet {:.1} ms (API answered after {:.1} ms)",
            first_lost.as_secs_f64() * 1e3,
            returned.duration_since(called).as_secs_f64() * 1e3
        );
        // The revoked config, from a fresh client process, never handshakes again.
        lab.client_down("c1");
        lab.client_up("c1", &cfg1);
        assert_eq!(lab.client_handshakes("c1"), vec![0]);
        let window = Instant::now() + Duration::from_secs(6);
        while Instant::now() < window {
            assert!(!lab.ping("c1", NODE_TUNNEL_IP), "revoked config passes traffic");
        }
        assert_eq!(
            lab.client_handshakes("c1"),
            vec![0],
            "the revoked key completed a handshake"
        );
        lab.client_down("c1");

        // 3. Rotation: old key dead, new key works, same tunnel IP.
        let (d3, k3) = api_device(&alice, "desktop", "eu").await;
        let id3 = d3["device"]["id"].as_str().expect("id").to_string();
        lab.client_up("c3", &with_key(d3["config_text"].as_str().expect("c"), &k3));
        lab.ping_until_ok("c3", NODE_TUNNEL_IP, Duration::from_secs(20));
        let k3b = WgKeyPair::generate();
        let (s, rotated) = alice
            .post(
                &format!("/api/v1/devices/{id3}/rotate"),
                json!({"public_key": k3b.public().to_base64()}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "rotate: {rotated}");
        assert_eq!(rotated["node_ack"]["status"], "acknowledged", "{rotated}");
        assert_eq!(tunnel_ip(&rotated["device"]), tunnel_ip(&d3["device"]));
        // The old key's live session is cut at once.
        assert!(!lab.ping("c3", NODE_TUNNEL_IP), "old key still passes traffic");
        lab.client_down("c3");
        lab.client_up(
            "c3",
            &with_key(rotated["config_text"].as_str().expect("c"), &k3b),
        );
        lab.ping_until_ok("c3", NODE_TUNNEL_IP, Duration::from_secs(20));
        let echo = lab.tcp_exchange("n1", &format!("{NODE_TUNNEL_IP}:9001"), "c3");
        assert_eq!(echo, format!("clawn-echo@{}", tunnel_ip(&d3["device"])));
        // And the old config from a fresh process does not get in.
        lab.client_down("c3");
        lab.client_up("c3", &with_key(d3["config_text"].as_str().expect("c"), &k3));
        let window = Instant::now() + Duration::from_secs(6);
        while Instant::now() < window {
            assert!(!lab.ping("c3", NODE_TUNNEL_IP), "old key passes traffic after rotation");
        }
        assert_eq!(lab.client_handshakes("c3"), vec![0]);
    });
    assert!(
        !lab.log("n1").contains("panicked"),
        "the node agent panicked:\n{}",
        lab.log("n1")
    );
}

#[test]
fn embedded_backend_reach_revoke_rotate() {
    reach_revoke_rotate("embedded");
}

#[test]
fn uapi_backend_reach_revoke_rotate() {
    reach_revoke_rotate("uapi");
}

/// Creates a device in region `eu` and brings its client up in `client`, traffic checked.
async fn device_on(lab: &Lab, user: &clawn_testkit::Client, name: &str, client: &str) -> Value {
    device_at(lab, user, name, "eu", client, NODE_TUNNEL_IP).await
}

/// Creates a device in `region`, brings its client up and waits until it reaches `node_ip`.
async fn device_at(
    lab: &Lab,
    user: &clawn_testkit::Client,
    name: &str,
    region: &str,
    client: &str,
    node_ip: &str,
) -> Value {
    let (d, k) = api_device(user, name, region).await;
    lab.client_up(
        client,
        &with_key(d["config_text"].as_str().expect("config"), &k),
    );
    lab.ping_until_ok(client, node_ip, Duration::from_secs(20));
    d["device"].clone()
}

/// Tests 4 and 4b: clients of one node are isolated from each other; a full-tunnel client
/// reaches an outside host that sees the node's exit IP, which the API shows per device.
#[test]
fn client_isolation_and_exit_nat() {
    let mut lab = Lab::new(1, 2);
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = eu_with_node(&mut lab, "embedded").await;
        let alice = user(&lab, &admin, "alice@lab.test", 2).await;
        let bob = user(&lab, &admin, "bob@lab.test", 2).await;
        let a = device_on(&lab, &alice, "a", "c1").await;
        let b = device_on(&lab, &bob, "b", "c2").await;
        let (ip_a, ip_b) = (tunnel_ip(&a), tunnel_ip(&b));

        // 4. Both reach the node, neither reaches the other.
        for _ in 0..3 {
            assert!(!lab.ping("c1", &ip_b), "alice reached bob's tunnel IP");
            assert!(!lab.ping("c2", &ip_a), "bob reached alice's tunnel IP");
        }
        assert!(lab.ping("c1", NODE_TUNNEL_IP) && lab.ping("c2", NODE_TUNNEL_IP));
        // Control: without the agent's table, the node would forward between them.
        let table = format!("clawn_{}", lab.wg_if("n1"));
        must(
            lab.cmd("n1", "nft")
                .args(["delete", "table", "inet", &table]),
        );
        lab.ping_until_ok("c1", &ip_b, Duration::from_secs(10));
        // Restore it the way the agent does on a policy change: restart the agent.
        lab.stop("n1", "TERM");
        lab.run_node("n1");
        wait_for(
            "isolation back",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                run(lab.cmd("n1", "nft").args(["list", "table", "inet", &table]))
                    .status
                    .success()
            },
        );
        lab.client_down("c1");
        lab.client_up(
            "c1",
            &std::fs::read_to_string(lab.dir.join(format!("{}.conf", lab.wg_if("c1"))))
                .expect("conf"),
        );
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
        assert!(!lab.ping("c1", &ip_b), "isolation not restored");

        // 4b. Full tunnel out through the node, masqueraded behind its exit IP.
        let seen = lab.tcp_exchange("out", &format!("{OUT_IP}:9100"), "c1");
        assert_eq!(seen, format!("clawn-echo@{EXIT_IP}"));
        let id = a["id"].as_str().expect("id");
        let (_, view) = alice.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(view["node"]["exit_ipv4"], EXIT_IP, "{view}");
        // Telemetry reaches the API: the tunnel shows as active with its traffic.
        let view = alice
            .get_until(
                &format!("/api/v1/devices/{id}"),
                Duration::from_secs(20),
                |v| v["tunnel"]["status"] == "active" && v["tunnel"]["rx_bytes"].as_u64() > Some(0),
            )
            .await;
        assert!(
            view["tunnel"]["endpoint"]
                .as_str()
                .is_some_and(|e| e.starts_with("10.200.0.21:")),
            "{view}"
        );
    });
}

/// Test 5: the control plane dies; tunnels keep working; changes made while the node was
/// cut off reach it when it is back; new devices work after the restart.
#[test]
fn control_plane_outage_and_catch_up() {
    let mut lab = Lab::new(2, 4);
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin0 = eu_with_node(&mut lab, "embedded").await;
        // A second node in another region stays connected throughout.
        region(&admin0, "us", "10.101.0.0/16").await;
        lab.start_node(&admin0, "n2", "us", "uapi").await;
        let alice = user(&lab, &admin0, "alice@lab.test", 4).await;
        device_on(&lab, &alice, "a", "c1").await;
        let b = device_on(&lab, &alice, "b", "c2").await;

        lab.stop("server", "KILL");
        for _ in 0..5 {
            assert!(
                lab.ping("c1", NODE_TUNNEL_IP),
                "tunnel broke with the control plane"
            );
        }
        // Cut the node off, restart the control plane, and change things meanwhile.
        must(
            lab.cmd("n1", "ip")
                .args(["route", "add", "blackhole", &format!("{HUB_IP}/32")]),
        );
        lab.start_server(&[]);
        let alice = login(&lab, "alice@lab.test", USER_PASSWORD).await;
        let admin = admin(&lab).await;
        let bid = b["id"].as_str().expect("id");
        let (s, body) = alice
            .post(&format!("/api/v1/devices/{bid}/revoke"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_ne!(
            body["node_ack"]["status"], "acknowledged",
            "node was cut off: {body}"
        );
        assert!(
            lab.ping("c2", NODE_TUNNEL_IP),
            "B must still work until the node hears of it"
        );
        // The other region's node is unaffected: a new device there works at once.
        device_at(&lab, &alice, "d", "us", "c4", "10.101.0.1").await;
        // Reconnect: the node catches up.
        must(
            lab.cmd("n1", "ip")
                .args(["route", "del", "blackhole", &format!("{HUB_IP}/32")]),
        );
        admin
            .get_until("/api/v1/admin/nodes", Duration::from_secs(30), |b| {
                b.as_array()
                    .is_some_and(|ns| ns.len() == 2 && ns.iter().all(|n| n["state"] == "online"))
            })
            .await;
        wait_for(
            "B is cut after catch-up",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || !lab.ping("c2", NODE_TUNNEL_IP),
        );
        assert!(lab.ping("c1", NODE_TUNNEL_IP), "A must keep working");
        device_on(&lab, &alice, "c", "c3").await;
    });
    assert!(lab.log("n1").contains("control plane unreachable"));
}

/// Test 6: a node restarted while the control plane is down brings its peers back from
/// its state file. Also: with a short offline grace it fails closed, and recovers.
#[test]
fn node_restart_from_state_and_fail_closed() {
    let mut lab = Lab::new(1, 1);
    lab.enter("hub");
    lab.start_server(&["--node-offline-grace-secs", "30"]);
    let rt = runtime();
    rt.block_on(async {
        let admin = eu_with_node(&mut lab, "uapi").await;
        let alice = user(&lab, &admin, "alice@lab.test", 1).await;
        device_on(&lab, &alice, "a", "c1").await;

        let wg_peers = |lab: &Lab| {
            must(
                lab.cmd("n1", "wg")
                    .args(["show", &lab.wg_if("n1"), "peers"]),
            )
            .lines()
            .count()
        };
        lab.stop("server", "KILL");
        let killed = Instant::now();
        lab.stop("n1", "TERM");
        assert!(!lab.ping("c1", NODE_TUNNEL_IP), "node is down");
        lab.run_node("n1");
        // The client's old session died with the interface; a fresh client handshakes.
        let conf = lab.dir.join(format!("{}.conf", lab.wg_if("c1")));
        let text = std::fs::read_to_string(&conf).expect("conf");
        lab.client_down("c1");
        lab.client_up("c1", &text);
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
        assert!(lab.log("n1").contains("restored the saved snapshot"));

        assert_eq!(wg_peers(&lab), 1);

        // Past the 30 s grace without the control plane the node removes all peers. The
        // grace counts from the last contact, at most one 15 s ping interval before the
        // kill, so not before 15 s after it.
        wait_for(
            "node fails closed",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || wg_peers(&lab) == 0,
        );
        let after = killed.elapsed();
        assert!(
            after >= Duration::from_secs(14),
            "failed closed {after:?} after the control plane died, before the 30 s grace"
        );
        assert!(lab.log("n1").contains("failing closed"));
        assert!(
            !lab.ping("c1", NODE_TUNNEL_IP),
            "peers must be gone after failing closed"
        );
        let metrics = node_metrics(1).await;
        assert!(metrics.contains("clawn_node_failed_closed 1"), "{metrics}");

        // The control plane comes back: the node serves its peers again.
        lab.start_server(&["--node-offline-grace-secs", "30"]);
        wait_for(
            "node serves again",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || lab.log("n1").contains("control plane is back"),
        );
        lab.client_down("c1");
        lab.client_up("c1", &text);
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
    });
}

/// All-in-one: `clawn-server --with-node` alone gives a working VPN.
#[test]
fn all_in_one_server_with_node() {
    let mut lab = Lab::new(0, 1);
    lab.enter("hub");
    let wg = lab.wg_if("h");
    lab.start_server(&[
        "--with-node",
        "--node-endpoint",
        &format!("{HUB_IP}:51820"),
        "--node-interface",
        &wg,
    ]);
    let rt = runtime();
    rt.block_on(async {
        let admin = admin(&lab).await;
        let nodes = admin
            .get_until("/api/v1/admin/nodes", Duration::from_secs(30), |b| {
                b[0]["state"] == "online"
            })
            .await;
        assert_eq!(nodes[0]["region"], "default", "{nodes}");
        let alice = user(&lab, &admin, "alice@lab.test", 1).await;
        let (s, d, k) = alice.add_device("laptop", "default").await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        lab.client_up("c1", &with_key(d["config_text"].as_str().expect("c"), &k));
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
        let (_, audit) = admin.get("/api/v1/admin/audit?action=region.create").await;
        assert!(audit.to_string().contains("all-in-one"), "{audit}");
    });
    // A graceful stop removes the node's firewall table.
    let table = format!("clawn_{wg}");
    assert!(
        run(lab
            .cmd("hub", "nft")
            .args(["list", "table", "inet", &table]))
        .status
        .success()
    );
    lab.stop("server", "TERM");
    assert!(
        !run(lab
            .cmd("hub", "nft")
            .args(["list", "table", "inet", &table]))
        .status
        .success(),
        "firewall table left behind"
    );
}
