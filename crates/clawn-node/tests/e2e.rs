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
        let admin = admin(&lab).await;
        region(&admin, "eu", "10.100.0.0/16").await;
        lab.start_node(&admin, "n1", "eu", backend).await;
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
