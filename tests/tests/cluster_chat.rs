//! Chat in cluster mode against real NATS servers (three, JetStream): every room
//! entry is on JetStream before anyone sees it, so a `kill -9` of the node that
//! holds a chat loses no acknowledged message; another node takes its chats over
//! (the customer resumes by offset there, the agent's console gets its chat back,
//! a queued chat is offered with its original wait time) and serves the
//! transcript. While no NATS server can be reached a message is not acknowledged;
//! it is once NATS is back.

use edge_tests::nats::NatsCluster;
use edge_tests::ws::Ws;
use edge_tests::{http, wait_until, Edge, AGENT_TOKEN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BEA: &str = "bea-token-1";

fn node(nats: &NatsCluster, name: &str) -> Edge {
    Edge::start_with(&format!(
        "[cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         node_lease = \"3s\"\nnats_grace = \"3s\"\n\
         [[queues]]\nname = \"web\"\nchannel = \"chat\"\nagents = [\"ann\"]\n\
         [[queues]]\nname = \"later\"\nchannel = \"chat\"\nagents = [\"bea\"]\nabandon_after = \"5m\"\n\
         [[users]]\nname = \"bea\"\nrole = \"agent\"\ntoken = \"{BEA}\"\n",
        nats.toml_list()
    ))
}

fn is(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

fn text_is(t: String) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "message" && v["text"] == t.as_str()
}

fn joined(e: &Edge) -> bool {
    e.metric("edge_cluster_nodes") >= 1.0 && e.metric("edge_held") == 0.0
}

/// Wait until every node of `nodes` takes work and sees all the others.
fn all_joined(nodes: &[&Edge]) {
    let n = nodes.len() as f64;
    assert!(
        wait_until(20, || nodes
            .iter()
            .all(|e| joined(e) && e.metric("edge_cluster_nodes") == n)),
        "the nodes did not join; the first one's log:\n{}",
        nodes[0].log_text()
    );
}

/// A customer of `queue` on `e`: (socket, chat, token).
fn start(e: &Edge, queue: &str) -> (Ws, String, String) {
    let mut c = Ws::connect(e.http, "/ws/chat", None);
    c.send(json!({"type":"start","queue":queue,"fields":{"name":"Cy"}}));
    let s = c.until("started", 10.0, is("started"));
    (
        c,
        s["chat"].as_str().unwrap().to_string(),
        s["token"].as_str().unwrap().to_string(),
    )
}

/// Agent ann on `e` takes a customer's chat of queue `web`, and the customer's
/// first message `text` is echoed (stored, in cluster mode): (ann, customer).
fn ann_takes_a_web_chat(e: &Edge, text: &str) -> (Ws, Ws) {
    let mut ann = Ws::connect(e.http, "/ws/agent", Some(AGENT_TOKEN));
    ann.until("hello", 5.0, is("hello"));
    let (mut cust, chat, _) = start(e, "web");
    ann.until("offer", 10.0, is("offer"));
    ann.send(json!({"type":"accept","chat":chat}));
    ann.until("accepted", 5.0, is("accepted"));
    cust.send(json!({"type":"message","client_id":"k0","text":text}));
    cust.until("echo", 10.0, text_is(text.into()));
    (ann, cust)
}

/// Resume `token` on `e` from offset 1, retrying while the chat's old node is
/// still within its lease (close 4010 names it).
fn resume(e: &Edge, token: &str, secs: u64) -> Ws {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut c = Ws::connect(e.http, "/ws/chat", None);
        c.send(json!({"type":"resume","token":token,"offset":1}));
        let deadline_frame = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline_frame && c.close.is_none() {
            if let Some(v) = c.recv(0.2) {
                if v["type"] == "resumed" {
                    return c;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the chat was not resumed on the other node; last: {:?}, close {:?}",
            c.seen,
            c.close
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_killed_nodes_chats_lose_no_acknowledged_message_and_go_on_elsewhere() {
    let nats = NatsCluster::start(3);
    let mut a = node(&nats, "edge-a");
    let b = node(&nats, "edge-b");
    all_joined(&[&a, &b]);

    // On A: ann takes a chat; the customer sends 20 messages, each acknowledged
    // (its echo with an offset) before the next.
    let mut ann = Ws::connect(a.http, "/ws/agent", Some(AGENT_TOKEN));
    ann.until("hello", 5.0, is("hello"));
    let (mut cust, chat, token) = start(&a, "web");
    ann.until("offer", 10.0, is("offer"));
    ann.send(json!({"type":"accept","chat":chat}));
    ann.until("accepted", 5.0, is("accepted"));
    let mut acked = Vec::new();
    for i in 0..20 {
        let text = format!("message {i}");
        cust.send(json!({"type":"message","client_id":format!("k{i}"),"text":text}));
        let echo = cust.until("echo", 5.0, text_is(text.clone()));
        acked.push((echo["offset"].as_u64().unwrap(), text));
    }
    ann.until("the last message", 5.0, text_is("message 19".into()));
    assert!(a.metric("edge_cluster_chat_entries_total") >= 21.0);
    assert_eq!(a.metric("edge_cluster_chat_unconfirmed"), 0.0);
    // A chat no agent of A takes: it waits in its queue.
    let (_waiting, queued, _) = start(&a, "later");
    let queued_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));

    // kill -9: no goodbye, nothing flushed.
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = Instant::now();

    // ann's console comes back on B at once, before B knows A is gone.
    let mut ann = Ws::connect(b.http, "/ws/agent", Some(AGENT_TOKEN));
    let hello = ann.until("hello", 5.0, is("hello"));
    assert_eq!(hello["chats"], json!([]), "B cannot have the chat yet");
    // The customer resumes on B from the start: every acknowledged message, same
    // offsets, same order.
    let mut cust = resume(&b, &token, 20);
    let replay = cust.drain(1.0);
    let seen: Vec<(u64, String)> = replay
        .iter()
        .filter(|v| v["type"] == "message" && v["from"] == "customer")
        .map(|v| {
            (
                v["offset"].as_u64().unwrap(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seen, acked, "acknowledged messages lost or reordered");
    assert!(b.log_text().contains("chat taken over"), "{}", b.log_text());
    // The agent's console on B gets the chat it had, and the chat goes on.
    let got = ann.until("the chat back", 10.0, |v| {
        v["type"] == "accepted" && v["chat"] == chat.as_str()
    });
    assert_eq!(got["chat"], chat.as_str());
    cust.send(json!({"type":"message","client_id":"after","text":"still there?"}));
    ann.until(
        "a message after the move",
        5.0,
        text_is("still there?".into()),
    );
    ann.send(json!({"type":"message","chat":chat,"client_id":"a1","text":"yes"}));
    let reply = cust.until("the agent's reply", 5.0, text_is("yes".into()));
    assert!(reply["offset"].as_u64().unwrap() > acked.last().unwrap().0);
    // A resend of a message acknowledged on A is recognised on B.
    cust.send(json!({"type":"message","client_id":"k3","text":"message 3"}));
    assert!(
        !cust
            .drain(1.0)
            .iter()
            .any(|v| v["type"] == "message" && v["text"] == "message 3"),
        "a resend was delivered twice"
    );

    // The queued chat is offered on B, with the wait it had on A.
    let mut bea = Ws::connect(b.http, "/ws/agent", Some(BEA));
    bea.until("hello", 5.0, is("hello"));
    let offer = bea.until("the queued chat", 15.0, is("offer"));
    assert_eq!(offer["chat"], queued.as_str());
    let moved_in = killed.elapsed();
    let r = http::get(b.http, "/api/v1/chats", Some(edge_tests::ADMIN_TOKEN)).unwrap();
    let list = r.json();
    let q = list["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == queued.as_str())
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    let waited = queued_at.elapsed().as_secs_f64();
    let shown = q["wait_secs"].as_f64().unwrap_or(0.0);
    assert!(
        q["state"] == "offered" || shown >= waited - 1.5,
        "wait time not kept: shown {shown} s, waited {waited} s: {q}"
    );
    eprintln!("queued chat offered on B {moved_in:?} after the kill");

    // B serves the whole transcript, from before and after the kill.
    let r = http::get(
        b.http,
        &format!("/api/v1/chats/{chat}/transcript"),
        Some(edge_tests::ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    let texts: Vec<&str> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"message 0") && texts.contains(&"yes"),
        "{t}"
    );
    assert_eq!(t["chat"]["agents"], json!(["ann"]), "{t}");
}

#[test]
fn a_message_is_not_acknowledged_until_jetstream_has_it() {
    let mut nats = NatsCluster::start(3);
    let a = node(&nats, "edge-a");
    assert!(wait_until(20, || joined(&a)), "{}", a.log_text());
    let (mut ann, mut cust) = ann_takes_a_web_chat(&a, "before");

    for i in 0..3 {
        nats.kill(i);
    }
    cust.send(json!({"type":"message","client_id":"k1","text":"while NATS is gone"}));
    let early = cust.drain(2.0);
    assert!(
        !early.iter().any(|v| v["text"] == "while NATS is gone"),
        "acknowledged without JetStream: {early:?}"
    );
    assert!(
        !ann.drain(0.5)
            .iter()
            .any(|v| v["text"] == "while NATS is gone"),
        "delivered without JetStream"
    );
    assert!(a.metric("edge_cluster_chat_unconfirmed") >= 1.0);
    for i in 0..3 {
        nats.start_server(i);
    }
    let echo = cust.until(
        "the echo once NATS is back",
        30.0,
        text_is("while NATS is gone".into()),
    );
    assert!(echo["offset"].as_u64().unwrap() > 0);
    ann.until(
        "delivery once NATS is back",
        5.0,
        text_is("while NATS is gone".into()),
    );
    assert!(
        wait_until(10, || a.metric("edge_cluster_chat_unconfirmed") == 0.0),
        "entries left unconfirmed"
    );
}

const CAT: &str = "cat-token-1";
const SUE: &str = "sue-token-1";

/// A node whose queue `one` has a single agent, `cat`, who takes one chat at a
/// time; `sue` supervises.
fn node_one(nats: &NatsCluster, name: &str) -> Edge {
    Edge::start_with(&one_config(nats, name))
}

/// `node_one`'s configuration (after the standard one).
fn one_config(nats: &NatsCluster, name: &str) -> String {
    format!(
        "[cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         node_lease = \"3s\"\n\
         [[queues]]\nname = \"one\"\nchannel = \"chat\"\nagents = [\"cat\"]\n\
         [[users]]\nname = \"cat\"\nrole = \"agent\"\ntoken = \"{CAT}\"\nmax_chats = 1\n\
         [[agents]]\nid = \"7100\"\nuser = \"cat\"\ncontact = \"sip:7100@127.0.0.1:9\"\n\
         [[users]]\nname = \"sue\"\nrole = \"supervisor\"\ntoken = \"{SUE}\"\n",
        nats.toml_list()
    )
}

/// cat's console on `b` gets the offer of a chat a customer starts on `a` (over
/// the console's link to `a`) and accepts it: (cat, customer, chat, token).
fn cat_on_b_takes_a_chat_of_a(a: &Edge, b: &Edge) -> (Ws, Ws, String, String) {
    let mut cat = Ws::connect(b.http, "/ws/agent", Some(CAT));
    cat.until("hello", 5.0, is("hello"));
    let (cust, chat, token) = start(a, "one");
    cat.until("A's offer", 10.0, chat_is("offer", chat.clone()));
    cat.send(json!({"type":"accept","chat":chat}));
    cat.until("accepted", 5.0, chat_is("accepted", chat.clone()));
    (cat, cust, chat, token)
}

fn chat_is(t: &'static str, chat: String) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t && v["chat"] == chat.as_str()
}

/// Room messages seen by a client: (offset, text).
fn messages(frames: &[Value]) -> Vec<(u64, String)> {
    frames
        .iter()
        .filter(|v| v["type"] == "message")
        .map(|v| {
            (
                v["offset"].as_u64().unwrap_or(0),
                v["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_customer_an_agent_and_a_supervisor_on_three_nodes_share_one_chat() {
    let nats = NatsCluster::start(3);
    let a = node_one(&nats, "edge-a");
    let b = node_one(&nats, "edge-b");
    let c = node_one(&nats, "edge-c");
    all_joined(&[&a, &b, &c]);
    // cat's console is on B; the customer's chat starts on A: A offers it to cat
    // through the console's link.
    let (mut cat, mut cust, chat, token) = cat_on_b_takes_a_chat_of_a(&a, &b);
    // Every node counts cat's chat, whichever node has it.
    for e in [&a, &b, &c] {
        let r = http::get(e.http, "/api/v1/agents", Some(edge_tests::ADMIN_TOKEN)).unwrap();
        let v = r.json();
        let cat_agent = v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["user"] == "cat")
            .cloned()
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(cat_agent["chats_now"], 1, "{cat_agent}");
    }
    cust.send(json!({"type":"message","client_id":"c1","text":"from the customer on A"}));
    cat.until(
        "the customer's message",
        5.0,
        text_is("from the customer on A".into()),
    );
    cat.send(json!({"type":"message","chat":chat,"client_id":"k1","text":"from cat on B"}));
    cust.until("cat's message", 5.0, text_is("from cat on B".into()));

    // sue, on C, watches A's chat: everything so far, at A's offsets.
    let mut sue = Ws::connect(c.http, "/ws/agent", Some(SUE));
    sue.until("hello", 5.0, is("hello"));
    // (A fresh NATS cluster can be slow to answer the lookup of the chat's node:
    // sue is told to try again.)
    let watching = (0..10).any(|_| {
        sue.send(json!({"type":"watch","chat":chat,"offset":1}));
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            match sue.recv(0.5) {
                Some(v) if v["type"] == "watching" => return true,
                Some(v) if v["type"] == "error" => {
                    let e = v["error"].as_str().unwrap_or("");
                    assert!(e.contains("try again"), "{v}");
                    return false;
                }
                _ => {}
            }
        }
        false
    });
    assert!(
        watching,
        "sue could not watch A's chat from C: {:?}",
        sue.seen
    );

    sue.until("the replay", 5.0, text_is("from cat on B".into()));

    // The customer comes back through B: relayed to A, it resumes by offset.
    drop(cust);
    let mut cust = Ws::connect(b.http, "/ws/chat", None);
    cust.send(json!({"type":"resume","token":token,"offset":1}));
    cust.until("resumed through B", 10.0, is("resumed"));
    cust.until("the replay", 5.0, text_is("from cat on B".into()));
    cust.send(json!({"type":"message","client_id":"c2","text":"again, through B"}));
    cust.until("its echo", 5.0, text_is("again, through B".into()));
    cat.until("the message", 5.0, text_is("again, through B".into()));
    sue.until("the message", 5.0, text_is("again, through B".into()));
    // One order for all three.
    let whole = |ws: &mut Ws| {
        let mut m = messages(&ws.seen);
        m.sort();
        m.dedup();
        m.into_iter()
            .filter(|(_, t)| t != "from the customer on A")
            .collect::<Vec<_>>()
    };
    let (for_cat, for_sue, for_cust) = (whole(&mut cat), whole(&mut sue), whole(&mut cust));
    assert!(for_cat.len() >= 2, "{for_cat:?}");
    assert_eq!(for_cat, for_sue, "cat and sue saw different orders");
    assert_eq!(
        for_cust
            .iter()
            .filter(|(o, _)| *o >= for_cat[0].0)
            .cloned()
            .collect::<Vec<_>>(),
        for_cat,
        "the customer saw another order"
    );

    // cat takes one chat at a time, counted over the nodes: a chat on B waits
    // while cat has A's.
    let (_other, second, _) = start(&b, "one");
    let early = cat.drain(2.0);
    assert!(
        !early
            .iter()
            .any(|v| v["type"] == "offer" && v["chat"] == second.as_str()),
        "offered beyond max_chats: {early:?}"
    );
    // cat ends A's chat (the frame goes to A): B offers the waiting one.
    cat.send(json!({"type":"end","chat":chat}));
    cust.until("the end", 5.0, |v| v["type"] == "ended");
    cat.until("B's offer", 10.0, chat_is("offer", second.clone()));
    assert!(b.metric("edge_cluster_chat_routed_frames_total") >= 3.0);
    assert!(b.metric("edge_cluster_chat_relays_total") >= 1.0);
}

#[test]
fn a_relayed_chat_goes_on_when_its_node_is_killed() {
    let nats = NatsCluster::start(3);
    let mut a = node_one(&nats, "edge-a");
    let b = node_one(&nats, "edge-b");
    let c = node_one(&nats, "edge-c");
    all_joined(&[&a, &b, &c]);
    // cat on B takes a chat of A's; five acknowledged messages.
    let (mut cat, mut cust, chat, token) = cat_on_b_takes_a_chat_of_a(&a, &b);
    let mut acked = Vec::new();
    for i in 0..5 {
        let text = format!("before {i}");
        cust.send(json!({"type":"message","client_id":format!("k{i}"),"text":text}));
        let echo = cust.until("echo", 5.0, text_is(text.clone()));
        acked.push((echo["offset"].as_u64().unwrap(), text));
    }
    cat.until("the last message", 5.0, text_is("before 4".into()));

    let _ = a.child.kill();
    let _ = a.child.wait();
    // The customer comes back through C; B or C takes the chat over, and cat's
    // console on B gets it back either way (from B itself or over its link to C).
    let mut cust =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resume(&c, &token, 30))) {
            Ok(w) => w,
            Err(_) => panic!("not resumed; B:\n{}\nC:\n{}", b.log_text(), c.log_text()),
        };
    cat.until("the chat back", 20.0, chat_is("accepted", chat.clone()));
    let seen: Vec<(u64, String)> = messages(&cust.drain(1.0))
        .into_iter()
        .filter(|(_, t)| t.starts_with("before"))
        .collect();
    assert_eq!(seen, acked, "acknowledged messages lost or reordered");
    cust.send(json!({"type":"message","client_id":"k9","text":"after the kill"}));
    cat.until(
        "a message after the kill",
        10.0,
        text_is("after the kill".into()),
    );
    cat.send(json!({"type":"message","chat":chat,"client_id":"r1","text":"still here"}));
    cust.until("cat's reply", 10.0, text_is("still here".into()));
    let took = |e: &Edge| e.log_text().contains("chat taken over");
    // Logged before the chat went on; the log readers may lag.
    wait_until(5, || took(&b) || took(&c));
    let took = [&b, &c].into_iter().filter(|e| took(e)).count();
    assert_eq!(took, 1, "one node takes the chat over");
}

/// A certificate for 127.0.0.1 (self-signed: it is its own CA) written into `dir`
/// as `NAME.pem` / `NAME-key.pem`.
fn certificate(dir: &edge_tests::tempdir::Dir, name: &str) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join(format!("{name}.pem")), c.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join(format!("{name}-key.pem")),
        c.signing_key.serialize_pem(),
    )
    .unwrap();
}

/// `node_one` serving HTTPS with certificate `cert` of `dir`, trusting only it.
fn node_tls(nats: &NatsCluster, name: &str, dir: &edge_tests::tempdir::Dir, cert: &str) -> Edge {
    let d = dir.path().display();
    Edge::start_http(
        "tls_listen = \"127.0.0.1:0\"",
        &format!(
            "[tls]\ncert = \"{d}/{cert}.pem\"\nkey = \"{d}/{cert}-key.pem\"\nca = \"{d}/{cert}.pem\"\n{}",
            one_config(nats, name)
        ),
    )
}

/// Nodes serving HTTPS are relayed to over `wss:` only, their certificate
/// checked: A and B trust each other's certificate, C's is not trusted by them
/// (nor theirs by C), and B's link to C fails on the certificate — no plain
/// HTTP instead.
#[test]
fn relays_to_nodes_serving_https_go_over_tls_and_check_the_certificate() {
    let dir = edge_tests::tempdir::Dir::new("relay-tls");
    certificate(&dir, "ab");
    certificate(&dir, "c");
    let nats = NatsCluster::start(3);
    let a = node_tls(&nats, "edge-a", &dir, "ab");
    let b = node_tls(&nats, "edge-b", &dir, "ab");
    let c = node_tls(&nats, "edge-c", &dir, "c");
    all_joined(&[&a, &b, &c]);
    // cat's console on B takes A's chat over its link to A (wss).
    let (mut cat, mut cust, chat, token) = cat_on_b_takes_a_chat_of_a(&a, &b);
    cust.send(json!({"type":"message","text":"over tls?"}));
    cat.until("the customer's message", 5.0, text_is("over tls?".into()));
    cat.send(json!({"type":"message","chat":chat,"text":"yes"}));
    cust.until("cat's answer", 5.0, text_is("yes".into()));
    // The customer comes back through B: piped to A over wss.
    drop(cust);
    let mut again = resume(&b, &token, 10);
    again.drain(1.0);
    let texts: Vec<String> = messages(&again.seen).into_iter().map(|(_, t)| t).collect();
    assert!(
        texts.contains(&"over tls?".to_string()) && texts.contains(&"yes".to_string()),
        "the resumed customer got {texts:?}"
    );
    assert!(
        b.metric("edge_cluster_chat_relays_tls_total") >= 2.0,
        "B's link to A and the customer's relay went over TLS:\n{}",
        b.log_text()
    );
    // B's link to C: C's certificate is not trusted; refused, never plain.
    assert!(
        wait_until(10, || b.metric("edge_cluster_chat_link_failures_total")
            >= 1.0),
        "B's link to C did not fail:\n{}",
        b.log_text()
    );
    b.logged(5, "TLS handshake with node edge-c");
    let log = b.log_text();
    assert!(
        log.contains("TLS handshake with node edge-c") && log.contains("certificate"),
        "B says why the link to C failed:\n{log}"
    );
    assert!(!log.contains(CAT), "a token in B's log");
}

/// A node on one `tls://` NATS server (with credentials), trusting certificate
/// `ca` of `dir` (its own HTTPS certificate too), presenting certificate
/// `client` of `dir` to the server if given.
fn node_on_tls_nats(
    nats: &NatsCluster,
    name: &str,
    dir: &edge_tests::tempdir::Dir,
    ca: &str,
    client: Option<&str>,
) -> Edge {
    let d = dir.path().display();
    let identity = client
        .map(|c| format!("nats_cert = \"{d}/{c}.pem\"\nnats_key = \"{d}/{c}-key.pem\"\n"))
        .unwrap_or_default();
    Edge::start_held(&format!(
        "[tls]\ncert = \"{d}/{ca}.pem\"\nkey = \"{d}/{ca}-key.pem\"\nca = \"{d}/{ca}.pem\"\n\
         [cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         replicas = 1\nnats_grace = \"2s\"\n{identity}\
         [[queues]]\nname = \"web\"\nchannel = \"chat\"\nagents = [\"ann\"]\n",
        nats.toml_list()
    ))
}

/// Node `e` joins the cluster (signed in to NATS `how`) and its chat entries
/// are stored: the echo of a message waits for JetStream.
fn joins_and_stores_chat(e: &Edge, nats: &NatsCluster, how: &str) {
    assert!(
        wait_until(20, || joined(e)),
        "the node did not join {how}:\n{}\n{}",
        e.log_text(),
        nats.logs()
    );
    ann_takes_a_web_chat(e, &format!("stored {how}"));
    assert!(e.metric("edge_cluster_chat_entries_total") >= 1.0);
}

/// Node A signs in with file `files[0]` (`[cluster] key`), joins and stores
/// chat entries; node B, with `files[1]`, is refused. No seed in their logs.
fn signs_in_and_is_refused(
    nats: &NatsCluster,
    key: &str,
    dir: &edge_tests::tempdir::Dir,
    files: [&str; 2],
    seeds: &[String],
) {
    let a = node_signing_in(nats, "edge-a", key, dir, files[0]);
    let b = node_signing_in(nats, "edge-b", key, dir, files[1]);
    joins_and_stores_chat(&a, nats, &format!("with {key}"));
    refused_sign_in(&b, "edge-b", nats);
    for e in [&a, &b] {
        let log = e.log_text();
        for seed in seeds {
            assert!(!log.contains(seed.as_str()), "a seed in the log:\n{log}");
        }
    }
}

/// The server refused node `e` (named `name`) signing in: the node says so and
/// stays held.
fn refused_sign_in(e: &Edge, name: &str, nats: &NatsCluster) {
    assert!(
        e.logged(10, "NATS connection"),
        "{name} does not say NATS refused it:\n{}",
        e.log_text()
    );
    assert!(
        wait_until(5, || nats
            .logs()
            .contains(&format!("edge {name}\" - authentication error"))),
        "the server did not refuse {name}'s sign-in:\n{}",
        nats.logs()
    );
    assert_eq!(e.metric("edge_held"), 1.0, "{name} takes work without NATS");
    assert_eq!(e.metric("edge_cluster_nodes"), 0.0);
    // The NATS client logs each attempt itself; its lines are said once.
    let log = e.log_text();
    let library: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" async_nats"))
        .map(|l| l.split_once("Z ").map_or(l, |(_, rest)| rest))
        .collect();
    let distinct: std::collections::HashSet<&&str> = library.iter().collect();
    assert!(
        !library.is_empty() && distinct.len() == library.len(),
        "{name}: the NATS client's lines repeat (or are missing):\n{log}"
    );
}

/// NATS over TLS, clients verified: the server's certificate is checked
/// against `[tls] ca` and the node presents `[cluster] nats_cert`. A node
/// trusting the server and presenting the client certificate joins and its
/// chat entries are stored (the echo waits for JetStream); a node trusting
/// another certificate, and one presenting none, never join, stay held and say
/// why. The credentials in the URLs are the sign-in (the server asks for them)
/// and never reach the log.
#[test]
fn nats_over_tls_is_checked_both_ways() {
    use edge_tests::nats::NATS_PASSWORD;
    let dir = edge_tests::tempdir::Dir::new("nats-tls");
    certificate(&dir, "nats");
    certificate(&dir, "other");
    certificate(&dir, "client");
    let nats = NatsCluster::start_tls(
        1,
        dir.path().join("nats.pem"),
        dir.path().join("nats-key.pem"),
        Some(dir.path().join("client.pem")),
    );
    let a = node_on_tls_nats(&nats, "edge-a", &dir, "nats", Some("client"));
    let b = node_on_tls_nats(&nats, "edge-b", &dir, "other", Some("client"));
    let c = node_on_tls_nats(&nats, "edge-c", &dir, "nats", None);
    joins_and_stores_chat(&a, &nats, "over TLS");
    // B does not trust the server's certificate: held, and it says why.
    assert!(
        b.logged(10, "NATS server: certificate refused"),
        "B does not say why it cannot reach NATS:\n{}",
        b.log_text()
    );
    // C presents no certificate: the server refuses it.
    assert!(
        c.logged(10, "NATS connection"),
        "C does not say it cannot reach NATS:\n{}",
        c.log_text()
    );
    for e in [&b, &c] {
        assert_eq!(e.metric("edge_held"), 1.0, "takes work without NATS");
        assert_eq!(e.metric("edge_cluster_nodes"), 0.0);
    }
    for e in [&a, &b, &c] {
        let log = e.log_text();
        assert!(
            log.contains("\"tls://127.0.0.1:"),
            "the servers are named:\n{log}"
        );
        assert!(
            !log.contains(NATS_PASSWORD),
            "NATS password in the log:\n{log}"
        );
    }
}

/// A node on NATS servers that admit NKey users (`key` = "nats_nkey") or run
/// in operator mode (`key` = "nats_creds"), signing in with file `file` of `dir`.
fn node_signing_in(
    nats: &NatsCluster,
    name: &str,
    key: &str,
    dir: &edge_tests::tempdir::Dir,
    file: &str,
) -> Edge {
    Edge::start_held(&format!(
        "[cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         replicas = 1\nnats_grace = \"2s\"\n{key} = \"{}\"\n\
         [[queues]]\nname = \"web\"\nchannel = \"chat\"\nagents = [\"ann\"]\n",
        nats.toml_list(),
        dir.path().join(file).display()
    ))
}

/// `[cluster] nats_nkey`: a `nats-server` admitting one NKey user. The node
/// with that user's seed signs in (the server's nonce signed) and its chat
/// entries are stored; the node with another user's seed is refused, stays
/// held and says so. No seed reaches a log.
#[test]
fn a_node_signs_in_to_nats_with_an_nkey_seed() {
    let dir = edge_tests::tempdir::Dir::new("nats-nkey");
    let (user, stranger) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let seeds = [user.seed().unwrap(), stranger.seed().unwrap()];
    std::fs::write(dir.path().join("edge.nk"), format!("{}\n", seeds[0])).unwrap();
    std::fs::write(dir.path().join("stranger.nk"), &seeds[1]).unwrap();
    let nats = NatsCluster::start_nkey(1, &user.public_key());
    signs_in_and_is_refused(&nats, "nats_nkey", &dir, ["edge.nk", "stranger.nk"], &seeds);
}

/// `[cluster] nats_creds`: a `nats-server` in operator (JWT) mode trusting one
/// account with JetStream. The node with its user's credentials file signs in
/// (JWT presented, nonce signed) and stores chat entries; the node whose file
/// holds the same JWT with another seed is refused and held. No seed in a log.
#[test]
fn a_node_signs_in_to_nats_in_operator_mode_with_a_credentials_file() {
    let dir = edge_tests::tempdir::Dir::new("nats-creds");
    let (nats, creds) = NatsCluster::start_operator(1);
    std::fs::write(dir.path().join("edge.creds"), &creds).unwrap();
    let seed = creds
        .lines()
        .find(|l| l.starts_with("SU"))
        .expect("a seed in the credentials")
        .to_string();
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    std::fs::write(
        dir.path().join("forged.creds"),
        creds.replace(&seed, &other),
    )
    .unwrap();
    signs_in_and_is_refused(
        &nats,
        "nats_creds",
        &dir,
        ["edge.creds", "forged.creds"],
        &[seed, other],
    );
}
