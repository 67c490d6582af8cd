//! A priority access token on a real node and a real tunnel: while the token is valid the
//! device's peer carries `class: priority` in the node's applied state; at expiry the class
//! goes with no disconnect (traffic keeps flowing and WireGuard never re-handshakes, which
//! it would if the node had removed and re-added the peer) and nobody cleans anything up.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const NODE_TUNNEL_IP: &str = "10.100.0.1";

/// The class of `key` in node `short`'s applied state on disk (`None`: peer absent).
fn applied_class(lab: &Lab, short: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(lab.dir.join(short).join("state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let peers = v["peers"].as_array()?;
    peers
        .iter()
        .find(|p| p["public_key"] == key)
        .map(|p| p["class"].as_str().unwrap_or("standard").to_string())
}

#[test]
fn priority_class_comes_and_goes_without_a_disconnect() {
    let mut lab = Lab::new(1, 1);
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = eu_with_node(&mut lab, "uapi").await;
        let alice = user(&lab, &admin, "alice@lab.test", 1).await;
        let (s, body, kp) = alice.add_device("laptop", "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let key = kp.public().to_base64();
        let id = body["device"]["id"].as_str().expect("id").to_string();
        lab.client_up(
            "c1",
            &with_key(body["config_text"].as_str().expect("config"), &kp),
        );
        lab.ping_until_ok("c1", NODE_TUNNEL_IP, Duration::from_secs(20));
        wait_for(
            "peer applied",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || applied_class(&lab, "n1", &key).as_deref() == Some("standard"),
        );
        let handshake = lab.client_handshakes("c1");
        assert!(handshake.iter().all(|h| *h > 0), "{handshake:?}");

        // A short token: the class arrives at the node while traffic flows.
        let (s, t) = admin
            .post(
                "/api/v1/admin/priority-tokens",
                json!({"email": "alice@lab.test", "region": "eu", "duration_secs": 6}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let granted = Instant::now();
        let expires = granted + Duration::from_secs(6);
        let mut pings = (0u32, 0u32);
        let mut saw_priority = false;
        let retry = clawn_testkit::Retry::new(
            "the class comes and goes at the node",
            Duration::from_secs(6 + 15),
            Duration::from_millis(200),
        );
        loop {
            let ok = lab.ping("c1", NODE_TUNNEL_IP);
            pings = (pings.0 + u32::from(ok), pings.1 + 1);
            let class = applied_class(&lab, "n1", &key);
            assert!(class.is_some(), "the peer left the node");
            if class.as_deref() == Some("priority") {
                saw_priority = true;
            }
            if saw_priority && Instant::now() > expires && class.as_deref() == Some("standard") {
                break;
            }
            retry
                .again(format!("saw priority: {saw_priority}, now {class:?}"))
                .await;
        }
        assert!(saw_priority, "the node never had the peer as priority");
        // No disconnect: every ping answered and WireGuard kept its session.
        assert_eq!(
            pings.0,
            pings.1,
            "{} of {} pings lost across the class changes",
            pings.1 - pings.0,
            pings.1
        );
        assert_eq!(
            lab.client_handshakes("c1"),
            handshake,
            "the tunnel re-handshook: the peer was re-added"
        );
        let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
        assert_eq!(d["class"], "standard");
        assert_eq!(d["placement"], "assigned");
        let (_, list) = admin.get("/api/v1/admin/priority-tokens").await;
        assert_eq!(list[0]["status"], "expired");
    });
}
