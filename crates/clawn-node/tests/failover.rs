//! Failover end to end: a real control plane (default failover settings), two real node
//! agents in one region and a real wg-quick/wireguard-go client in the namespace lab.
//!
//! * A node dies (SIGKILL): within 45 s its device is moved to the other node of the
//!   region, its config names that node, the client (same key) passes traffic again with
//!   it, and the move is audited as `device.failover`.
//! * A node is drained by the admin while it stays up: within 45 s its device is on the
//!   other node and passes traffic there, and the drained node ends with no peers, in the
//!   API and on its real WireGuard interface; the old config no longer gets in.
//!
//! Needs root (namespaces, TUN) and the workspace binaries (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use clawn_proto::keys::WgKeyPair;
use clawn_testkit::Client;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

/// The bound with the server's defaults (30 s failover delay, 15 s offline grace):
/// from the kill (or the drain call) until the device is on the other node.
const MOVE_WITHIN: Duration = Duration::from_secs(45);
/// A client's handshake and first answer.
const TRAFFIC_WITHIN: Duration = Duration::from_secs(20);
/// How long a settled fact (a stream seen closed, a removal applied) may take to show.
const SETTLE_WITHIN: Duration = Duration::from_secs(20);

/// What the test needs to know about one node, from the admin API.
struct NodeInfo {
    /// Lab label (`n1`, `n2`): namespace and process.
    short: String,
    id: String,
    endpoint: String,
    public_key: String,
    /// The node's own tunnel address: the first host of its pool.
    tunnel_ip: String,
}

/// The admin node list's entry for `id`.
fn node_in<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|n| n["id"] == id)
}

async fn node_info(admin: &Client, lab: &Lab, short: &str) -> NodeInfo {
    let name = format!("{short}-{}", lab.tag);
    let (s, list) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(s, StatusCode::OK, "list nodes: {list}");
    let n = list
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["name"] == name.as_str()))
        .unwrap_or_else(|| panic!("node {name} is not listed: {list}"));
    let field = |k: &str| {
        n[k].as_str()
            .unwrap_or_else(|| panic!("node {name} has no {k}: {n}"))
            .to_string()
    };
    NodeInfo {
        short: short.to_string(),
        id: field("id"),
        endpoint: field("endpoint"),
        public_key: field("wg_public_key"),
        tunnel_ip: first_host(n["pool"].as_str().expect("pool")),
    }
}

/// The admin view of one node: `GET /api/v1/admin/nodes/{id}` where the server has that
/// route, else its entry in the node list (the same `NodeView`).
async fn node_view(admin: &Client, id: &str) -> Value {
    let (s, one) = admin.get(&format!("/api/v1/admin/nodes/{id}")).await;
    if s == StatusCode::OK {
        return one;
    }
    let (s, list) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(s, StatusCode::OK, "list nodes: {list}");
    node_in(&list, id)
        .unwrap_or_else(|| panic!("node {id} is not listed: {list}"))
        .clone()
}

/// Polls the admin view of node `id` until `done` holds, for at most `within`.
async fn node_view_until(
    admin: &Client,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let retry = clawn_testkit::Retry::new(
        format!("node {id}: condition not met within {within:?}"),
        within,
        Duration::from_millis(50),
    );
    loop {
        let v = node_view(admin, id).await;
        if done(&v) {
            return v;
        }
        retry.again(format!("last view: {v}")).await;
    }
}

/// Creates a device with a fresh key in region `eu`; returns (create answer, key pair).
async fn create_device(user: &Client, name: &str) -> (Value, WgKeyPair) {
    let (s, body, kp) = user.add_device(name, "eu").await;
    assert_eq!(s, StatusCode::CREATED, "create device: {body}");
    assert_eq!(body["device"]["state"], "active", "{body}");
    (body, kp)
}

/// Brings client `c1` up with `config_text` (the key filled in) and checks traffic to
/// `node`: a ping, then a TCP echo on the node's tunnel address that must see the device's
/// tunnel address `device_ip` as the source.
fn client_reaches(lab: &Lab, config_text: &str, key: &WgKeyPair, node: &NodeInfo, device_ip: &str) {
    lab.client_up("c1", &with_key(config_text, key));
    lab.ping_until_ok("c1", &node.tunnel_ip, TRAFFIC_WITHIN);
    let echo = lab.tcp_exchange(&node.short, &format!("{}:9000", node.tunnel_ip), "c1");
    assert_eq!(
        echo,
        format!("clawn-echo@{device_ip}"),
        "TCP through {} did not come from the device's address",
        node.short
    );
}

/// Waits (bounded by what is left of [`MOVE_WITHIN`] since `since`) until device `id` is
/// served by `to`, then checks its config names `to`, and returns the device view.
async fn moved_to(user: &Client, id: &str, to: &NodeInfo, since: Instant, why: &str) -> Value {
    let moved = user
        .get_until(
            &format!("/api/v1/devices/{id}"),
            MOVE_WITHIN.saturating_sub(since.elapsed()),
            |v| v["node"]["id"] == to.id.as_str(),
        )
        .await;
    let took = since.elapsed();
    eprintln!(
        "{why}: the device is on {} {:.1} s later",
        to.short,
        took.as_secs_f64()
    );
    assert!(
        took <= MOVE_WITHIN,
        "{why}: the device reached {} only after {took:?}",
        to.short
    );
    assert_eq!(moved["state"], "active", "{moved}");
    assert_eq!(moved["node"]["endpoint"], to.endpoint.as_str(), "{moved}");

    let (s, cfg) = user.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(s, StatusCode::OK, "config after the move: {cfg}");
    assert_eq!(
        cfg["config"]["endpoint"],
        to.endpoint.as_str(),
        "the config must point at {}: {cfg}",
        to.short
    );
    assert_eq!(
        cfg["config"]["peer_public_key"],
        to.public_key.as_str(),
        "the config must carry {}'s key: {cfg}",
        to.short
    );
    assert_eq!(
        cfg["config"]["address"],
        format!("{}/32", tunnel_ip(&moved)),
        "{cfg}"
    );
    let text = cfg["config_text"].as_str().expect("config text");
    assert!(
        text.contains(clawn_proto::config::PRIVATE_KEY_PLACEHOLDER),
        "the server must not know the private key: {text}"
    );
    assert!(
        text.contains(&format!("Endpoint = {}", to.endpoint)),
        "{text}"
    );
    moved
}

/// SIGKILL the agent serving a device: the server sees its stream end, and with the
/// default failover delay moves the device to the region's other node within 45 s; the
/// client, keeping its key, takes the new config and passes traffic through that node.
#[test]
fn killed_node_fails_over_to_the_other_node_of_its_region() {
    let mut lab = Lab::new(2, 1);
    lab.enter("hub");
    // No failover flags: the bound must hold with the defaults.
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = admin(&lab).await;
        region(&admin, "eu", "10.100.0.0/16").await;
        // The embedded backend keeps the data plane inside the agent's process, so the kill
        // takes the node's WireGuard down with it (a uapi agent leaves wireguard-go running).
        lab.start_node(&admin, "n1", "eu", "embedded").await;
        lab.start_node(&admin, "n2", "eu", "embedded").await;
        let nodes = [
            node_info(&admin, &lab, "n1").await,
            node_info(&admin, &lab, "n2").await,
        ];
        let alice = user(&lab, &admin, "alice@lab.test", 1).await;
        let (created, key) = create_device(&alice, "laptop").await;
        let id = created["device"]["id"].as_str().expect("id").to_string();

        // Placed on either node; the other one is where it must end up.
        let (s, placed) = alice.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{placed}");
        let on = placed["node"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a new device has a node: {placed}"));
        let (from, to) = if on == nodes[0].id {
            (&nodes[0], &nodes[1])
        } else {
            assert_eq!(on, nodes[1].id, "placed outside the region's nodes");
            (&nodes[1], &nodes[0])
        };
        assert_eq!(created["config"]["endpoint"], from.endpoint.as_str());
        client_reaches(
            &lab,
            created["config_text"].as_str().expect("config"),
            &key,
            from,
            &tunnel_ip(&placed),
        );

        let killed = Instant::now();
        lab.stop(&from.short, "KILL");
        // The kill is real: the stream is seen closed and the old tunnel is dead.
        node_view_until(&admin, &from.id, SETTLE_WITHIN, |n| {
            n["connected"] == false && n["state"] == "offline"
        })
        .await;
        wait_for(
            "the killed node's tunnel stops answering",
            SETTLE_WITHIN,
            Duration::from_millis(100),
            || !lab.ping("c1", &from.tunnel_ip),
        );

        let moved = moved_to(&alice, &id, to, killed, "kill").await;
        assert_eq!(
            moved["public_key"], created["device"]["public_key"],
            "failover must keep the device's key"
        );
        let (_, cfg) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
        lab.client_down("c1");
        client_reaches(
            &lab,
            cfg["config_text"].as_str().expect("config"),
            &key,
            to,
            &tunnel_ip(&moved),
        );

        // The move is in the audit log, against the device.
        let audit = admin
            .get_until(
                &format!("/api/v1/admin/audit?action=device.failover&target={id}"),
                SETTLE_WITHIN,
                |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
            )
            .await;
        let event = &audit["items"][0];
        assert_eq!(event["action"], "device.failover", "{audit}");
        assert_eq!(event["target_kind"], "device", "{audit}");
        assert_eq!(event["target_id"], id.as_str(), "{audit}");

        for n in &nodes {
            assert!(
                !lab.log(&n.short).contains("panicked"),
                "agent {} panicked:\n{}",
                n.short,
                lab.log(&n.short)
            );
        }
    });
}

/// The admin drains a live node: its device moves to the region's other node within 45 s
/// and passes traffic there; the drained node, still up, ends with no peers in the API and
/// on its real interface, and the device's old config no longer gets in.
#[test]
fn drained_node_hands_its_device_over_and_ends_with_no_peers() {
    let mut lab = Lab::new(2, 1);
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = admin(&lab).await;
        region(&admin, "eu", "10.100.0.0/16").await;
        // n1 on the uapi backend (wireguard-go): `wg show` reads its real interface.
        lab.start_node(&admin, "n1", "eu", "uapi").await;
        let n1 = node_info(&admin, &lab, "n1").await;
        let alice = user(&lab, &admin, "alice@lab.test", 1).await;
        let (created, key) = create_device(&alice, "laptop").await;
        let id = created["device"]["id"].as_str().expect("id").to_string();
        let public_key = created["device"]["public_key"]
            .as_str()
            .expect("public key")
            .to_string();
        // n1 is the region's only node yet, so the device is on it.
        assert_eq!(created["device"]["node"]["id"], n1.id.as_str(), "{created}");
        let old_config = created["config_text"].as_str().expect("config").to_string();
        client_reaches(&lab, &old_config, &key, &n1, &tunnel_ip(&created["device"]));
        assert_eq!(lab.wg_peers("n1"), vec![public_key.clone()]);

        lab.start_node(&admin, "n2", "eu", "embedded").await;
        let n2 = node_info(&admin, &lab, "n2").await;
        let drained = Instant::now();
        let (s, body) = admin
            .patch(
                &format!("/api/v1/admin/nodes/{}", n1.id),
                json!({"state": "draining"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "drain: {body}");
        assert_eq!(body["state"], "draining", "{body}");

        let moved = moved_to(&alice, &id, &n2, drained, "drain").await;
        assert_eq!(moved["public_key"], public_key.as_str());
        let (_, cfg) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
        lab.client_down("c1");
        client_reaches(
            &lab,
            cfg["config_text"].as_str().expect("config"),
            &key,
            &n2,
            &tunnel_ip(&moved),
        );

        // n1 stays up (its stream connected) and serves no one: in the API and on the
        // interface.
        node_view_until(&admin, &n1.id, SETTLE_WITHIN, |n| {
            n["live_peers"] == 0 && n["connected"] == true
        })
        .await;
        wait_for(
            "n1's WireGuard interface has no peers",
            SETTLE_WITHIN,
            Duration::from_millis(100),
            || lab.wg_peers("n1").is_empty(),
        );

        // The old config, from a fresh client process, no longer handshakes with n1.
        lab.client_down("c1");
        lab.client_up("c1", &with_key(&old_config, &key));
        let window = Instant::now() + Duration::from_secs(6);
        while Instant::now() < window {
            assert!(
                !lab.ping("c1", &n1.tunnel_ip),
                "the old config still passes traffic through the drained node"
            );
        }
        assert_eq!(
            lab.client_handshakes("c1"),
            vec![0],
            "the drained node completed a handshake with the moved device's old config"
        );
        lab.client_down("c1");
    });
    for short in ["n1", "n2"] {
        assert!(
            !lab.log(short).contains("panicked"),
            "agent {short} panicked:\n{}",
            lab.log(short)
        );
    }
}
