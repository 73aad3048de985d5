//! Cluster mode against real NATS servers (Debian `nats-server`, JetStream, three
//! servers routed into one cluster): edges find each other through their
//! heartbeats, any node answers the API for the whole cluster and forwards a
//! command to the node holding the call, a killed node falls out after its lease
//! and a stopped one at once; one NATS server of three dying (the one the node is
//! on) stops nothing, and a node that loses NATS holds new work (OPTIONS and INVITE
//! 503) until NATS is back.

use edge_tests::nats::NatsCluster;
use edge_tests::ua::{Uac, Uas};
use edge_tests::ws::Ws;
use edge_tests::{http, sipmsg, wait_until, Edge, ADMIN_TOKEN};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn node(nats: &NatsCluster, name: &str, extra: &str) -> Edge {
    Edge::start_with(&format!(
        "[cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         node_lease = \"3s\"\n{extra}",
        nats.toml_list()
    ))
}

fn get(e: &Edge, path: &str) -> (u16, Value) {
    let r = http::get(e.http, path, Some(ADMIN_TOKEN)).unwrap();
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn nodes_of(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["node"].as_str().unwrap_or("-").to_string())
        .collect();
    v.sort();
    v
}

/// The final status of an OPTIONS sent to `to` over UDP.
fn options(to: SocketAddr) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let branch = Instant::now().elapsed().as_nanos();
    let ping = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-o{branch}\r\n\
         From: <sip:probe@{local}>;tag=p\r\nTo: <sip:{to}>\r\nCall-ID: o{branch}@{local}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ping.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => sipmsg::status(&String::from_utf8_lossy(&buf[..n])),
        Err(_) => 0,
    }
}

/// The NATS server (its index) the node last said it is on.
fn on_server(e: &Edge) -> Option<usize> {
    let log = e.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("cluster: on NATS server"))?;
    let name = line.split("server=nats-").nth(1)?;
    name.split(' ').next()?.parse().ok()
}

#[test]
fn any_node_answers_for_the_cluster_and_a_dead_node_falls_out() {
    let nats = NatsCluster::start(3);
    let a = node(&nats, "edge-a", "");
    let b = node(&nats, "edge-b", "");
    let mut c = node(&nats, "edge-c", "");
    let _uas_b = Uas::spawn(b.route_port);
    let _uas_c = Uas::spawn(c.route_port);
    let all = [&a, &b, &c];
    assert!(
        wait_until(15, || all
            .iter()
            .all(|e| e.metric("edge_cluster_nodes") == 3.0)),
        "the nodes did not see each other; a's log:\n{}\n{}",
        a.log_text(),
        nats.logs()
    );
    assert_eq!(a.metric("edge_cluster_nats_connected"), 1.0);

    // A call on B and one on C; A lists both, each with its node.
    let mut on_b = Uac::new(b.sip);
    assert_eq!(on_b.call("service"), 200);
    let mut on_c = Uac::new(c.sip);
    assert_eq!(on_c.call("service"), 200);
    let (status, list) = get(&a, "/api/v1/calls");
    assert_eq!(status, 200, "{list}");
    assert_eq!(nodes_of(&list["calls"]), ["edge-b", "edge-c"], "{list}");
    assert_eq!(list["unreachable"], serde_json::json!([]), "{list}");
    let id_c = list["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == "edge-c")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, one) = get(&a, &format!("/api/v1/calls/{id_c}"));
    assert_eq!(
        (status, one["node"].as_str()),
        (200, Some("edge-c")),
        "{one}"
    );
    assert_eq!(one["id"], id_c.as_str());
    assert_eq!(get(&a, "/api/v1/calls/no-such-call").0, 404);
    // The other lists merge the same way.
    for (path, key) in [
        ("/api/v1/registrations", "registrations"),
        ("/api/v1/chats", "chats"),
    ] {
        let (status, v) = get(&a, path);
        assert_eq!(status, 200, "{path}: {v}");
        assert!(
            v[key].is_array() && v["unreachable"] == serde_json::json!([]),
            "{path}: {v}"
        );
    }

    // A command for C's call sent to A is carried out by C, with C's answer.
    let hold = |e: &Edge, call: &str, token: &str| {
        http::request_body(
            e.http,
            "POST",
            &format!("/api/v1/calls/{call}/hold"),
            Some(token),
            r#"{"party":"customer","held":true}"#,
        )
        .unwrap()
    };
    let r = hold(&a, &id_c, ADMIN_TOKEN);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["held"], true, "{}", r.body);
    assert!(
        wait_until(5, || c.log_text().contains("hold")
            && a.log_text()
                .contains("call command carried out by another node")),
        "A:\n{}\nC:\n{}",
        a.log_text(),
        c.log_text()
    );
    // C checks the role: an agent not on the call may not transfer it.
    let r = http::request_body(
        a.http,
        "POST",
        &format!("/api/v1/calls/{id_c}/transfer"),
        Some(edge_tests::AGENT_TOKEN),
        r#"{"to":"service"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    // Nobody has the call: the usual 404; no token: 401, nothing forwarded.
    assert_eq!(hold(&a, "no-such-call", ADMIN_TOKEN).status, 404);
    assert_eq!(hold(&a, &id_c, "bad-token").status, 401);

    // A hangs up C's call: C ends it, its caller gets the BYE.
    let r = http::request(
        a.http,
        "DELETE",
        &format!("/api/v1/calls/{id_c}"),
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(on_c.answer_bye(5), "C's caller got no BYE");
    c.wait_idle(5);
    assert!(
        c.log_text()
            .contains("call ended at another node's request"),
        "{}",
        c.log_text()
    );
    let r = http::request(
        a.http,
        "DELETE",
        "/api/v1/calls/no-such-call",
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    // An agent may not hang up through another node either.
    let r = http::request(
        a.http,
        "DELETE",
        "/api/v1/calls/whatever",
        Some(edge_tests::AGENT_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    // kill -9 of C: it falls out once its lease (3 s) is over, and lists no
    // longer wait for it.
    let _ = c.child.kill();
    let _ = c.child.wait();
    assert!(
        wait_until(10, || a.metric("edge_cluster_nodes") == 2.0),
        "the dead node is still a member; a's log:\n{}",
        a.log_text()
    );
    let (_, list) = get(&a, "/api/v1/calls");
    assert_eq!(nodes_of(&list["calls"]), ["edge-b"], "{list}");
    assert_eq!(list["unreachable"], serde_json::json!([]), "{list}");

    // B stops (its call ended, then SIGTERM): it leaves at once, before a lease.
    assert_eq!(on_b.bye(), 200);
    b.wait_idle(5);
    b.signal("TERM");
    assert!(
        a.logged(10, "cluster: node left node=edge-b"),
        "A did not see B leave; a's log:\n{}\nb's log:\n{}",
        a.log_text(),
        b.log_text()
    );
    assert_eq!(a.metric("edge_cluster_nodes"), 1.0);
}

#[test]
fn one_nats_server_down_stops_nothing_and_a_node_without_nats_holds_new_work() {
    let mut nats = NatsCluster::start(3);
    let a = node(
        &nats,
        "edge-a",
        "nats_grace = \"4s\"\n[[queues]]\nname = \"web\"\nchannel = \"chat\"\nagents = [\"ann\"]\n",
    );
    let _uas = Uas::spawn(a.route_port);
    assert!(
        wait_until(15, || a.metric("edge_cluster_nodes") == 1.0),
        "{}\n{}",
        a.log_text(),
        nats.logs()
    );
    assert_eq!(a.metric("edge_held"), 0.0);

    // The server the node is on is killed (one of three): the client moves to
    // another, the heartbeat goes on (a quorum of two is left) and the node never
    // stops taking work.
    let on = on_server(&a).expect("the node logs its NATS server");
    nats.kill(on);
    let beats = |e: &Edge| e.metric("edge_cluster_heartbeats_total{outcome=\"ok\"}");
    let before = beats(&a);
    // Writes fail while the other two elect a new stream leader (5-9 s).
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let h = http::get(a.http, "/healthz", None).unwrap();
        assert_eq!(
            h.status,
            200,
            "held with two NATS servers of three: {}\n{}\n{}",
            h.body,
            a.log_text(),
            nats.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        on_server(&a).is_some_and(|s| s != on),
        "the node did not move to another NATS server; log:\n{}",
        a.log_text()
    );
    assert!(
        wait_until(10, || beats(&a) > before + 2.0),
        "heartbeats did not resume on the two servers left; log:\n{}",
        a.log_text()
    );
    assert_eq!(options(a.sip), 200);
    let mut call = Uac::new(a.sip);
    assert_eq!(
        call.call("service"),
        200,
        "a new call with one NATS server down"
    );

    // No NATS at all: after the grace the node holds new work; its call goes on.
    for i in 0..3 {
        nats.kill(i);
    }
    assert!(
        wait_until(15, || a.metric("edge_held") == 1.0),
        "not held without NATS; log:\n{}",
        a.log_text()
    );
    let h = http::get(a.http, "/healthz", None).unwrap();
    assert_eq!(
        (h.status, h.json()["status"].as_str()),
        (503, Some("held")),
        "{}",
        h.body
    );
    assert_eq!(options(a.sip), 503, "the proxy's probe is refused");
    let mut refused = Uac::new(a.sip);
    assert_eq!(refused.call("service"), 503, "a new call is refused");
    assert_eq!(a.metric("edge_calls_rejected_held_total"), 1.0);
    // Nor a new chat (1013: try again later, elsewhere).
    let mut cust = Ws::connect(a.http, "/ws/chat", None);
    cust.send(serde_json::json!({"type":"start","queue":"web"}));
    assert_eq!(cust.closed(5.0), Some(1013), "{:?}", cust.seen);
    assert_eq!(a.metric("edge_chats_refused_busy_total"), 1.0);
    assert_eq!(a.metric("edge_cluster_nats_connected"), 0.0);
    assert_eq!(call.bye(), 200, "the call in progress goes on while held");

    // NATS back: the node takes work again.
    for i in 0..3 {
        nats.start_server(i);
    }
    assert!(
        wait_until(30, || a.metric("edge_held") == 0.0),
        "not released once NATS came back; log:\n{}\n{}",
        a.log_text(),
        nats.logs()
    );
    assert_eq!(options(a.sip), 200);
    let mut again = Uac::new(a.sip);
    assert_eq!(again.call("service"), 200);
    assert_eq!(again.bye(), 200);
    let mut cust = Ws::connect(a.http, "/ws/chat", None);
    cust.send(serde_json::json!({"type":"start","queue":"web"}));
    let started = cust.until("started", 5.0, |v| v["type"] == "started");
    assert!(started["chat"].is_string(), "{started}");
}

/// One queue (7000) with one agent (7001) whose phone every node can ring (a
/// static contact).
fn shared_queue(phone_port: u16) -> String {
    format!(
        "[[queues]]\nname = \"shared\"\nnumbers = [\"7000\"]\nagents = [\"7001\"]\nmax_wait = \"60s\"\n\
         [[agents]]\nid = \"7001\"\ncontact = \"sip:7001@127.0.0.1:{phone_port}\"\n"
    )
}

fn agent_7001(e: &Edge) -> Value {
    let (status, v) = get(e, "/api/v1/agents");
    assert_eq!(status, 200, "{v}");
    v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "7001")
        .cloned()
        .unwrap()
}

#[test]
fn an_agents_state_chosen_on_one_node_holds_on_every_node() {
    use std::sync::atomic::Ordering::Relaxed;
    let nats = NatsCluster::start(3);
    // The agent's phone, which both nodes can ring.
    let phone = Uas::spawn(0);
    let phone_port = phone.port;
    // Three seconds of wrap-up after each call.
    let shared =
        shared_queue(phone_port).replace("id = \"7001\"\n", "id = \"7001\"\nwrap_up = \"3s\"\n");
    let a = node(&nats, "edge-a", &shared);
    let b = node(&nats, "edge-b", &shared);
    assert!(wait_until(15, || a.metric("edge_cluster_nodes") == 2.0));
    let set = |e: &Edge, body: &str| {
        let r = http::request_body(
            e.http,
            "PUT",
            "/api/v1/agents/7001/state",
            Some(ADMIN_TOKEN),
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    };
    // Lunch, chosen through A: B sees it, and B's queue does not offer it a call.
    set(&a, r#"{"state":"not_ready","reason":"lunch"}"#);
    assert!(
        wait_until(10, || {
            let v = agent_7001(&b);
            v["state"] == "not_ready" && v["reason"] == "lunch"
        }),
        "B did not learn the agent's choice: {}\n{}",
        agent_7001(&b),
        b.log_text()
    );
    let caller = std::thread::spawn({
        let to = b.sip;
        move || {
            let mut c = Uac::new(to);
            c.answer_wait = Duration::from_secs(30);
            let code = c.call("7000");
            (code, c)
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(phone.invites.load(Relaxed), 0, "offered while at lunch");
    // Back, through B: the waiting call is offered at once; A shows it busy (B
    // holds the agent's claim).
    set(&b, r#"{"state":"ready"}"#);
    let (code, mut c) = caller.join().unwrap();
    assert_eq!(code, 200, "{}", b.log_text());
    assert_eq!(phone.invites.load(Relaxed), 1);
    assert!(
        wait_until(10, || agent_7001(&a)["state"] == "busy"),
        "A: {}",
        agent_7001(&a)
    );
    assert_eq!(c.bye(), 200);
    // The call ended on B: A shows the wrap-up B shares and the call B counted,
    // then ready once B's wrap-up is over.
    assert!(
        wait_until(10, || {
            let v = agent_7001(&a);
            v["state"] == "wrap_up" && v["calls_today"] == 1
        }),
        "A: {}",
        agent_7001(&a)
    );
    assert_eq!(agent_7001(&b)["calls_today"], 1);
    assert!(
        wait_until(10, || agent_7001(&a)["state"] == "ready"),
        "A: {}",
        agent_7001(&a)
    );
    assert_eq!(agent_7001(&a)["calls_today"], 1);
}

#[test]
fn two_nodes_never_offer_one_agent_at_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let nats = NatsCluster::start(3);
    // The agent's phone, which both nodes can ring.
    let phone = Uas::spawn(0);
    let phone_port = phone.port;
    let shared = shared_queue(phone_port);
    let mut a = node(&nats, "edge-a", &shared);
    let b = node(&nats, "edge-b", &shared);
    assert!(
        wait_until(15, || a.metric("edge_cluster_nodes") == 2.0),
        "{}",
        a.log_text()
    );
    // Six callers at once, three on each node, each holding the agent 300 ms.
    let callers: Vec<_> = (0..6)
        .map(|i| {
            let to = if i % 2 == 0 { a.sip } else { b.sip };
            std::thread::spawn(move || {
                let mut c = Uac::new(to);
                let code = c.call("7000");
                if code == 200 {
                    std::thread::sleep(Duration::from_millis(300));
                    assert_eq!(c.bye(), 200);
                }
                code
            })
        })
        .collect();
    let codes: Vec<u16> = callers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        codes,
        [200; 6],
        "every caller reached the agent in turn; a:\n{}\nb:\n{}",
        a.log_text(),
        b.log_text()
    );
    assert_eq!(phone.invites.load(Relaxed), 6);
    assert_eq!(
        phone.most_at_once.load(Relaxed),
        1,
        "the agent was offered two calls at once; a:\n{}\nb:\n{}",
        a.log_text(),
        b.log_text()
    );
    let granted = |e: &Edge| e.metric("edge_cluster_claims_total{outcome=\"granted\"}");
    assert_eq!(
        granted(&a) + granted(&b),
        6.0,
        "one granted claim per offer"
    );
    // Both nodes offered it calls (the claim moved between them).
    let offered = |e: &Edge| e.log_text().matches("offering call to agent").count();
    // (Logged before each offer went out; the log readers may lag.)
    wait_until(5, || offered(&a) + offered(&b) >= 6);
    assert!(
        offered(&a) >= 1 && offered(&b) >= 1 && offered(&a) + offered(&b) == 6,
        "offers a {} b {}",
        offered(&a),
        offered(&b)
    );

    // A holds the agent on a call and is killed (no BYE, no release). A caller
    // waiting on B gets the agent once A's claim lapses in the bucket — A no
    // longer refreshes it — and not before.
    let mut on_a = Uac::new(a.sip);
    assert_eq!(on_a.call("7000"), 200);
    let _ = a.child.kill();
    let _ = a.child.wait();
    let killed = Instant::now();
    let mut waiting = Uac::new(b.sip);
    waiting.answer_wait = Duration::from_secs(60);
    assert_eq!(
        waiting.call("7000"),
        200,
        "the dead node's claim never lapsed; b:\n{}",
        b.log_text()
    );
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_secs(5),
        "B offered the agent {after:?} after A died, while A's claim stood"
    );
    eprintln!("agent offered by B {after:?} after A was killed");
    assert_eq!(phone.invites.load(Relaxed), 8);
    assert_eq!(waiting.bye(), 200);
}

#[test]
fn a_browser_agent_signed_in_at_one_node_takes_calls_from_another() {
    // Three agents in "browsers" (`loadtest answer-webrtc`: a SIP WebSocket with
    // digest REGISTER, ICE, DTLS-SRTP and a tone) sign in at node B; three
    // trunk calls come to node A's queue. A offers each agent WebRTC media of its
    // own through B's WebSocket (the node hop carries the signalling only).
    use std::process::{Command, Stdio};
    let nats = NatsCluster::start(3);
    let agents: String = (0..3)
        .map(|i| {
            format!(
                "[[agents]]\nid = \"{}\"\npassword = \"secret-{}\"\n",
                7100 + i,
                7100 + i
            )
        })
        .collect();
    let shared = format!(
        "[[queues]]\nname = \"web\"\nnumbers = [\"7177\"]\nagents = [\"7100\", \"7101\", \"7102\"]\n\
         max_wait = \"20s\"\n{agents}"
    );
    let a = node(&nats, "edge-a", &shared);
    let b = node(&nats, "edge-b", &shared);
    assert!(wait_until(15, || a.metric("edge_cluster_nodes") == 2.0));
    let browsers = Command::new(edge_tests::loadtest_binary())
        .args(["answer-webrtc", "--ws", &format!("ws://{}/ws/sip", b.http)])
        .args(["--count", "3", "--first", "7100", "--calls", "3", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadtest answer-webrtc");
    // A learns the browsers' bindings: the agents, who have no static contact,
    // are ready there (logged out without a phone it can reach).
    let ready_on_a = || {
        let (_, v) = get(&a, "/api/v1/agents");
        v["agents"].as_array().is_some_and(|l| {
            l.iter()
                .filter(|x| x["id"].as_str().is_some_and(|i| i.starts_with("71")))
                .filter(|x| x["state"] == "ready")
                .count()
                == 3
        })
    };
    assert!(
        wait_until(20, ready_on_a),
        "A: {}\nB: {}",
        get(&a, "/api/v1/agents").1,
        b.log_text()
    );
    let mut cmd = Command::new(edge_tests::loadtest_binary());
    cmd.args(["call", "--target", &a.sip.to_string(), "--quiet"])
        .args(["--to", "7177", "--rate", "10", "--calls", "3"])
        .args(["--duration", "3s", "--rtp"]);
    let (code, out, err) = edge_tests::run_with_timeout(&mut cmd, 60);
    let c: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert_eq!(code, 0, "{err}\nA:\n{}\nB:\n{}", a.log_text(), b.log_text());
    let out = browsers.wait_with_output().unwrap();
    let ag: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(c["calls"]["answered"], 3, "{c}");
    for (who, v) in [("trunk", &c), ("browsers", &ag)] {
        assert_eq!(v["rtp"]["streams"], 3, "{who}: {v}");
        assert!(
            v["rtp"]["packets_received"].as_f64().unwrap_or(0.0) > 300.0,
            "{who}: {v}"
        );
        assert_eq!(v["rtp"]["lost"], 0, "{who}: {v}");
    }
    // The media was A's; B carried the signalling and had no call.
    assert_eq!(a.metric("edge_webrtc_legs_connected_total"), 3.0);
    assert_eq!(b.metric("edge_webrtc_legs_connected_total"), 0.0);
    assert_eq!(
        b.metric("edge_calls_started_total"),
        0.0,
        "{}",
        b.log_text()
    );
    assert!(b.metric("edge_cluster_sip_hops_total{outcome=\"relayed\"}") >= 9.0);
}

/// Which of `nodes` live nodes (by name) offers agent `id` first: FNV-1a of the
/// id, as the edge's claims do.
fn home_of(id: &str, nodes: u64) -> usize {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % nodes) as usize
}

#[test]
fn the_clusters_oldest_waiting_call_gets_the_next_free_agent() {
    let nats = NatsCluster::start(3);
    let phone = Uas::spawn(0);
    let shared = shared_queue(phone.port);
    let a = node(&nats, "edge-a", &shared);
    let b = node(&nats, "edge-b", &shared);
    assert!(
        wait_until(15, || a.metric("edge_cluster_nodes") == 2.0
            && b.metric("edge_cluster_nodes") == 2.0),
        "{}",
        a.log_text()
    );
    // The agent's own node, which offers it first, gets the younger call: only
    // the heads the nodes share let the older call, on the other node, go first.
    let nodes = [&a, &b];
    let home = home_of("7001", 2);
    let (own, other) = (nodes[home], nodes[1 - home]);
    // The agent is busy with a first call.
    let mut first = Uac::new(own.sip);
    assert_eq!(first.call("7000"), 200, "{}", own.log_text());
    let caller = |to: std::net::SocketAddr| {
        std::thread::spawn(move || {
            let mut c = Uac::new(to);
            c.answer_wait = Duration::from_secs(40);
            let code = c.call("7000");
            (code, Instant::now(), c)
        })
    };
    let older = caller(other.sip);
    std::thread::sleep(Duration::from_secs(3));
    let younger = caller(own.sip);
    // A few heartbeats (every 750 ms here) carry both nodes' oldest calls.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(first.bye(), 200);
    let (code, older_at, mut o) = older.join().unwrap();
    assert_eq!(code, 200, "the older call\n{}", other.log_text());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(o.bye(), 200);
    let (code, younger_at, mut y) = younger.join().unwrap();
    assert_eq!(code, 200, "the younger call\n{}", own.log_text());
    assert!(younger_at > older_at);
    assert_eq!(y.bye(), 200);
    assert!(
        own.metric("edge_cluster_fifo_holdbacks_total") >= 1.0,
        "the agent's own node did not hold it back"
    );
}
