//! Agent states through the real edge: the API (GET /agents, PUT /agents/{id}/state
//! with 403 for another agent), a not_ready agent gets neither queue calls nor
//! chats, ready brings both back (one person for calls and chats), a call puts the
//! agent busy and then in wrap-up for its time, and the console hears every change.

use edge_tests::http;
use edge_tests::ua::{Uac, Uas};
use edge_tests::ws::Ws;
use edge_tests::{wait_until, Edge, ADMIN_TOKEN, AGENT_TOKEN};
use serde_json::{json, Value};
use std::time::Duration;

const DEE: &str = "dee-token-1";

/// Agent 3001 (console user `dee`) takes calls on 3000 and chats in `deskchat`;
/// its phone is the harness's route port (a [`Uas`] answers there).
const EXTRA: &str = r#"
[[queues]]
name = "desk"
numbers = ["3000"]
agents = ["3001"]
max_wait = "30s"
[[queues]]
name = "deskchat"
channel = "chat"
agents = ["dee"]
[[agents]]
id = "3001"
name = "Dee"
contact = "sip:3001@127.0.0.1:{route_port}"
user = "dee"
wrap_up = "2s"
[[users]]
name = "dee"
role = "agent"
token = "dee-token-1"
"#;

fn agents(edge: &Edge, token: &str) -> Vec<Value> {
    http::get(edge.http, "/api/v1/agents", Some(token))
        .unwrap()
        .json()["agents"]
        .as_array()
        .cloned()
        .unwrap()
}

fn state(edge: &Edge, id: &str) -> (String, Value) {
    let a = agents(edge, ADMIN_TOKEN)
        .into_iter()
        .find(|a| a["id"] == id)
        .unwrap();
    (
        a["state"].as_str().unwrap().to_string(),
        a["reason"].clone(),
    )
}

fn put_state(edge: &Edge, id: &str, token: &str, body: Value) -> (u16, Value) {
    let r = http::request_body(
        edge.http,
        "PUT",
        &format!("/api/v1/agents/{id}/state"),
        Some(token),
        &body.to_string(),
    )
    .unwrap();
    (r.status, r.json())
}

fn is_state(s: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "agent_state" && v["state"] == s
}

#[test]
fn states_by_api_govern_calls_and_chats_and_wrap_up_follows_a_call() {
    let edge = Edge::start_with(EXTRA);
    let phone = Uas::spawn(edge.route_port);

    // The list: admins see every agent, an agent sees itself, another agent nothing.
    let all = agents(&edge, ADMIN_TOKEN);
    assert_eq!(all.len(), 3, "{all:?}");
    let dee = all.iter().find(|a| a["id"] == "3001").unwrap();
    assert_eq!(dee["state"], "ready");
    assert_eq!(dee["user"], "dee");
    assert_eq!(dee["static_contact"], true);
    let mine = agents(&edge, DEE);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], "3001");
    assert!(agents(&edge, AGENT_TOKEN).is_empty());

    // Who may set what.
    let (code, _) = put_state(
        &edge,
        "1001",
        DEE,
        json!({"state":"not_ready","reason":"x"}),
    );
    assert_eq!(code, 403, "another agent's state");
    let (code, _) = put_state(&edge, "3001", AGENT_TOKEN, json!({"state":"ready"}));
    assert_eq!(code, 403);
    let (code, body) = put_state(&edge, "3001", DEE, json!({"state":"away"}));
    assert_eq!(code, 422, "{body}");
    let (code, _) = put_state(&edge, "3001", DEE, json!({"state":"not_ready"}));
    assert_eq!(code, 422, "not_ready needs a reason");
    let (code, _) = put_state(&edge, "9999", ADMIN_TOKEN, json!({"state":"ready"}));
    assert_eq!(code, 404);

    let mut console = Ws::connect(edge.http, "/ws/agent", Some(DEE));
    console.until("hello", 5.0, |v| v["type"] == "hello");
    let (code, body) = put_state(
        &edge,
        "3001",
        DEE,
        json!({"state":"not_ready","reason":"lunch"}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "not_ready");
    assert_eq!(body["reason"], "lunch");
    let frame = console.until("not_ready frame", 5.0, is_state("not_ready"));
    assert_eq!(frame["reason"], "lunch");

    // Not ready: a chat waits unoffered, a call waits unrung.
    let mut cust = Ws::connect(edge.http, "/ws/chat", None);
    cust.send(json!({"type":"start","queue":"deskchat","fields":{"name":"Cy"}}));
    cust.until("started", 5.0, |v| v["type"] == "started");
    let sip = edge.sip;
    let caller = std::thread::spawn(move || {
        let mut uac = Uac::new(sip);
        let code = uac.call("3000");
        (uac, code)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !console.drain(0.2).iter().any(|v| v["type"] == "offer"),
        "no chat offer while not ready"
    );
    assert_eq!(phone.invites.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Ready: the waiting call rings (and is answered), the chat is offered too —
    // a call does not stop chats (busy takes chats up to max_chats).
    let (code, _) = put_state(&edge, "3001", DEE, json!({"state":"ready"}));
    assert_eq!(code, 200);
    let (mut uac, code) = caller.join().unwrap();
    assert_eq!(code, 200, "the waiting call reaches the ready agent");
    assert!(wait_until(5, || state(&edge, "3001").0 == "busy"));
    console.until("chat offer", 5.0, |v| v["type"] == "offer");

    // The call ends: wrap-up for 2 s, then ready; the console hears both.
    assert_eq!(uac.bye(), 200);
    assert!(wait_until(5, || state(&edge, "3001").0 == "wrap_up"));
    console.until("wrap_up frame", 5.0, is_state("wrap_up"));
    console.until("ready frame", 5.0, is_state("ready"));
    assert_eq!(state(&edge, "3001").0, "ready");
    let dee = agents(&edge, DEE).remove(0);
    assert_eq!(dee["calls_today"], 1);
    assert!(edge.metric("edge_agent_state_changes_total{state=\"wrap_up\"}") >= 1.0);

    // Signed out: logged_out until ready.
    let (code, body) = put_state(&edge, "3001", ADMIN_TOKEN, json!({"state":"logged_out"}));
    assert_eq!(code, 200);
    assert_eq!(body["state"], "logged_out");
    assert_eq!(body["reason"], "signed_out");
}
