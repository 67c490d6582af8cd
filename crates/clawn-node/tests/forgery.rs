//! Test 7: a node never applies a forged snapshot (wrong key), a replayed older one, or
//! one addressed to another node. The control plane here is a stub that signs whatever
//! the test asks, so each forgery reaches the real agent over a real stream; the
//! interface is a real wireguard-go (uapi backend) the test reads with `wg show`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use clawn_proto::keys::{WgKeyPair, WgPublicKey};
use clawn_proto::node::{
    Delta, DesiredState, NodeMessage, NodePolicy, PeerSpec, ServerMessage, Snapshot,
};
use clawn_proto::sign::sign;
use ed25519_dalek::SigningKey;
use support::stub;
use support::*;
use tokio::sync::mpsc;
use uuid::Uuid;

fn peer(n: u8) -> (PeerSpec, WgPublicKey) {
    let k = WgKeyPair::generate().public();
    (
        PeerSpec {
            public_key: k,
            allowed_ips: vec![format!("10.100.0.{n}/32")],
            device_id: Uuid::new_v4(),
            class: Default::default(),
        },
        k,
    )
}

fn snapshot(node_id: Uuid, version: u64, peers: Vec<PeerSpec>) -> DesiredState {
    DesiredState::Snapshot(Snapshot {
        node_id,
        version,
        issued_at: 1,
        interface: stub::iface("10.100.0.1/24", "10.100.0.0/24"),
        policy: NodePolicy {
            client_isolation: true,
            offline_grace_secs: 0,
        },
        peers,
    })
}

/// Waits for the next message from the node that answers a state (not telemetry, not a
/// lease renewal: this stub grants none), bounded.
async fn next_reply(rx: &mut mpsc::Receiver<NodeMessage>, within: Duration) -> Option<NodeMessage> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(NodeMessage::Telemetry(_) | NodeMessage::LeaseRequest { .. })) => continue,
            Ok(m) => return m,
            Err(_) => return None,
        }
    }
}

#[test]
fn forged_replayed_and_foreign_snapshots_are_rejected() {
    let mut lab = Lab::new(1, 0);
    lab.enter("hub");
    let rt = runtime();
    let node_id = Uuid::new_v4();
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    rt.block_on(async {
        let (out_tx, mut in_rx) = stub::start(
            node_id,
            key.clone(),
            stub::iface("10.100.0.1/24", "10.100.0.0/24"),
        )
        .await;
        lab.join_node("n1", "anything", "uapi");
        lab.run_node("n1");
        let wg_peers = |lab: &Lab| -> Vec<String> {
            let out = must(
                lab.cmd("n1", "wg")
                    .args(["show", &lab.wg_if("n1"), "peers"]),
            );
            let mut v: Vec<String> = out.lines().map(str::to_string).collect();
            v.sort();
            v
        };

        // A genuine snapshot is applied and acknowledged.
        let (p1, k1) = peer(2);
        out_tx
            .send(ServerMessage::State(sign(
                &key,
                &snapshot(node_id, 5, vec![p1.clone()]),
            )))
            .await
            .expect("send");
        assert_eq!(
            next_reply(&mut in_rx, Duration::from_secs(30)).await,
            Some(NodeMessage::Ack { version: 5 })
        );
        assert_eq!(wg_peers(&lab), vec![k1.to_base64()]);

        // Replayed: an older, genuinely signed snapshot. Foreign: another node's. Neither
        // gets any answer (no ack, and no resync: the node is where it should be).
        let (p2, _) = peer(3);
        out_tx
            .send(ServerMessage::State(sign(
                &key,
                &snapshot(node_id, 4, vec![p2.clone()]),
            )))
            .await
            .expect("send");
        out_tx
            .send(ServerMessage::State(sign(
                &key,
                &snapshot(Uuid::new_v4(), 10, vec![p2.clone()]),
            )))
            .await
            .expect("send");
        // A genuine delta after them is applied: the stream is fine, only forgeries fail.
        let (p4, k4) = peer(4);
        out_tx
            .send(ServerMessage::State(sign(
                &key,
                &DesiredState::Delta(Delta {
                    node_id,
                    from_version: 5,
                    to_version: 6,
                    issued_at: 1,
                    remove: vec![],
                    add: vec![p4],
                    update: vec![],
                }),
            )))
            .await
            .expect("send");
        assert_eq!(
            next_reply(&mut in_rx, Duration::from_secs(10)).await,
            Some(NodeMessage::Ack { version: 6 }),
            "the replayed and foreign snapshots must get no answer"
        );
        // Forged: signed by another key. Not applied; the node asks for a real snapshot.
        let forger = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        out_tx
            .send(ServerMessage::State(sign(
                &forger,
                &snapshot(node_id, 9, vec![p1.clone(), p2.clone()]),
            )))
            .await
            .expect("send");
        assert_eq!(
            next_reply(&mut in_rx, Duration::from_secs(10)).await,
            Some(NodeMessage::Resync)
        );
        // A forged delta too.
        let (p5, _) = peer(5);
        out_tx
            .send(ServerMessage::State(sign(
                &forger,
                &DesiredState::Delta(Delta {
                    node_id,
                    from_version: 6,
                    to_version: 7,
                    issued_at: 1,
                    remove: vec![k1],
                    add: vec![p5],
                    update: vec![],
                }),
            )))
            .await
            .expect("send");
        // (Its resync request is rate-limited behind the one above; the agent sends it
        // within 5 s. Whatever it sends, it must not be an ack.)
        let reply = next_reply(&mut in_rx, Duration::from_secs(10)).await;
        assert_eq!(reply, Some(NodeMessage::Resync), "forged delta");

        let mut want = vec![k1.to_base64(), k4.to_base64()];
        want.sort();
        assert_eq!(
            wg_peers(&lab),
            want,
            "a rejected snapshot touched the interface"
        );

        let metrics = node_metrics(1).await;
        for (reason, n) in [("bad_signature", 2), ("stale", 1), ("wrong_node", 1)] {
            assert!(
                metrics.contains(&format!(
                    "clawn_node_rejected_total{{reason=\"{reason}\"}} {n}"
                )),
                "{reason} not counted:\n{metrics}"
            );
        }
        let saved = std::fs::read_to_string(lab.dir.join("n1/state.json")).expect("state");
        assert!(saved.contains("\"version\":6"), "{saved}");
    });
    let log = lab.log("n1");
    assert!(
        log.contains("bad signature") && log.contains("stale version"),
        "{log}"
    );
}
