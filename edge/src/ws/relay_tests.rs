//! A console's links: which frames reach the console, where the agent's chats
//! are, and the `elsewhere` counts each node is told.

use super::*;
use serde_json::{json, Value};

fn links() -> Links {
    let user = control::User {
        name: "cat".into(),
        role: control::Role::Agent,
        token: "cat-token-1".into(),
        contact: None,
        max_chats: 2,
    };
    Links::new(&user, true)
}

fn text(v: Value) -> Down {
    Down::Text(v.to_string())
}

/// Link `node` up; its frames come out of the returned receiver.
fn open(l: &mut Links, node: &str) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    assert!(l.on_down(node, Down::Opened(tx)).is_none());
    rx
}

fn told(rx: &mut mpsc::Receiver<String>) -> Vec<u64> {
    let mut v = Vec::new();
    while let Ok(t) = rx.try_recv() {
        let f: Value = serde_json::from_str(&t).unwrap();
        if f["type"] == "elsewhere" {
            v.push(f["chats"].as_u64().unwrap());
        }
    }
    v
}

#[test]
fn a_links_hello_and_agent_state_stay_offers_and_room_frames_pass() {
    let mut l = links();
    let _a = open(&mut l, "edge-a");
    let hello = json!({"type":"hello","user":"cat","chats":["ch-1"]});
    assert!(l.on_down("edge-a", text(hello)).is_none());
    let state = json!({"type":"agent_state","agent":"1001","state":"ready"});
    assert!(l.on_down("edge-a", text(state)).is_none());
    let offer = json!({"type":"offer","chat":"ch-2","queue":"one"});
    assert_eq!(
        l.on_down("edge-a", text(offer.clone())),
        Some(offer.to_string())
    );
    let call = json!({"type":"call","call":"c1","state":"ringing"});
    assert!(l.on_down("edge-a", text(call)).is_some());
    // The chats named are A's; the one in its hello is the agent's.
    assert_eq!(l.owner.get("ch-2").map(String::as_str), Some("edge-a"));
    assert_eq!(l.remote_active(), 1);
    // Not JSON: dropped.
    assert!(l.on_down("edge-a", Down::Text("{oops".into())).is_none());
}

#[test]
fn each_node_is_told_the_chats_the_agent_has_on_the_others() {
    let mut l = links();
    let mut a = open(&mut l, "edge-a");
    let mut b = open(&mut l, "edge-b");
    let mut here = Vec::new();
    // One chat here, none elsewhere: A and B are told 1, this node 0.
    l.tell_counts(1, |n| here.push(n));
    assert_eq!(
        (here.clone(), told(&mut a), told(&mut b)),
        (vec![0], vec![1], vec![1])
    );
    // The agent accepts a chat of A's: this node 1, A 1 (the one here), B 2.
    let acc = json!({"type":"accepted","chat":"ch-a"});
    assert!(l.on_down("edge-a", text(acc)).is_some());
    l.tell_counts(1, |n| here.push(n));
    assert_eq!(
        (here.clone(), told(&mut a), told(&mut b)),
        (vec![0, 1], vec![], vec![2])
    );
    // Nothing changed: nobody is told again.
    l.tell_counts(1, |n| here.push(n));
    assert_eq!(
        (here.len(), told(&mut a), told(&mut b)),
        (2, vec![], vec![])
    );
    // A's chat ends; then A's link closes: its chats are forgotten.
    let end = json!({"type":"chat_ended","chat":"ch-a"});
    assert!(l.on_down("edge-a", text(end)).is_some());
    l.tell_counts(1, |n| here.push(n));
    assert_eq!((here.clone(), told(&mut b)), (vec![0, 1, 0], vec![1]));
    let acc = json!({"type":"accepted","chat":"ch-a2"});
    l.on_down("edge-a", text(acc));
    assert_eq!(l.remote_active(), 1);
    assert!(l.on_down("edge-a", Down::Closed(None)).is_none());
    assert_eq!(l.remote_active(), 0);
    assert!(l.owner.is_empty());
}
