//! Several edges behind a real Kamailio (Debian `kamailio`) running the repo's
//! `deploy/kamailio/edge-dispatcher.cfg`: the dispatcher spreads new calls over the
//! nodes, calls stay record-routed through the proxy, and a node that drains
//! (`POST /api/v1/drain`, as SIGTERM) answers its probes 503, gets no new call,
//! finishes its own and then stops by itself.

use edge_tests::ua::{Uac, Uas};
use edge_tests::{free_port, have_tool, http, wait_until, Edge, ADMIN_TOKEN};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kamailio in the foreground on 127.0.0.1:`port`, dispatching to `nodes`,
/// probing them every second. Killed on drop.
struct Kamailio {
    child: Child,
    _dir: edge_tests::tempdir::Dir,
    log: PathBuf,
}

impl Kamailio {
    fn start(port: u16, nodes: &[SocketAddr]) -> Kamailio {
        assert!(
            have_tool("kamailio"),
            "kamailio is required (apt-get install kamailio; .ci/run installs it)"
        );
        let dir = edge_tests::tempdir::Dir::new("kamailio");
        let list = dir.path().join("edge-nodes.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, lines).unwrap();
        let cfg = PathBuf::from(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../deploy/kamailio/edge-dispatcher.cfg");
        let log = dir.path().join("kamailio.log");
        // Its own process group: Kamailio forks workers, and killing the main
        // process alone left them running, holding ports later tests used.
        let child = Command::new("kamailio")
            .process_group(0)
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .args(["-Y", dir.path().to_str().unwrap()])
            .arg("-A")
            .arg(format!("KAM_LISTEN=udp:127.0.0.1:{port}"))
            .arg("-A")
            .arg(format!("DS_LIST=\"{}\"", list.display()))
            .args(["-A", "DS_PING_INTERVAL=1", "-A", "KAM_CHILDREN=2"])
            .args(["-m", "64", "-M", "8"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kamailio");
        Kamailio {
            child,
            _dir: dir,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until Kamailio's own SIP workers answer (its OPTIONS to itself) and
    /// every node answered a probe; its address.
    fn ready(&self, port: u16, nodes: &[&Edge]) -> SocketAddr {
        let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let ready = wait_until(10, || {
            let ping = format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{}\r\nFrom: <sip:t@{local}>;tag=r\r\n\
To: <sip:127.0.0.1:{port}>\r\nCall-ID: ready-{port}@t\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                Instant::now().elapsed().as_nanos()
            );
            let _ = sock.send_to(ping.as_bytes(), proxy);
            let mut buf = [0u8; 4096];
            sock.recv(&mut buf)
                .is_ok_and(|n| String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"))
        });
        assert!(ready, "Kamailio does not answer; log:\n{}", self.log());
        let probed = |e: &Edge| {
            e.metric("edge_sip_requests_total{direction=\"in\",method=\"OPTIONS\"}") > 0.0
        };
        assert!(
            wait_until(10, || nodes.iter().all(|e| probed(e))),
            "Kamailio's probes did not reach every edge; kamailio log:\n{}",
            self.log()
        );
        proxy
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // The whole group: the main process and every worker it forked.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next final response on `sock` (within 5 s).
fn recv_final(sock: &std::net::UdpSocket) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = sock.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if edge_tests::sipmsg::status(&text) >= 200 {
            return Some(text);
        }
    }
}

fn started(edge: &Edge) -> f64 {
    edge.metric("edge_calls_started_total")
}

#[test]
fn kamailio_spreads_calls_over_two_edges_and_a_draining_edge_finishes_its_calls_then_stops() {
    let mut a = Edge::start();
    let b = Edge::start();
    let _uas_a = Uas::spawn(a.route_port);
    let _uas_b = Uas::spawn(b.route_port);
    let port = free_port();
    let kam = Kamailio::start(port, &[a.sip, b.sip]);
    let proxy = kam.ready(port, &[&a, &b]);

    // Round robin over the two nodes; every call answered and hung up through
    // the proxy (ACK and BYE follow its Record-Route).
    for i in 0..6 {
        let mut c = Uac::new(proxy);
        assert_eq!(
            c.call("service"),
            200,
            "call {i}; kamailio log:\n{}",
            kam.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(c.bye(), 200, "BYE {i} through the proxy");
    }
    a.wait_idle(10);
    b.wait_idle(10);
    assert_eq!(
        (started(&a), started(&b)),
        (3.0, 3.0),
        "round robin over the two nodes"
    );

    // A call on node A, then A drains.
    let mut on_a = None;
    for _ in 0..4 {
        let before = started(&a);
        let mut c = Uac::new(proxy);
        assert_eq!(c.call("service"), 200);
        if started(&a) > before {
            on_a = Some(c);
            break;
        }
        assert_eq!(c.bye(), 200);
    }
    let mut on_a = on_a.expect("round robin gave node A a call");
    let r = http::request(a.http, "POST", "/api/v1/drain", Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["active_calls"], 1, "{}", r.body);
    let h = http::get(a.http, "/healthz", None).unwrap();
    assert_eq!(h.status, 503, "{}", h.body);
    assert_eq!(h.json()["status"], "draining");
    // No new chat either: the customer is told to try again (elsewhere).
    let mut cust = edge_tests::ws::Ws::connect(a.http, "/ws/chat", None);
    cust.send(serde_json::json!({"type":"start","queue":"web"}));
    assert_eq!(cust.closed(5.0), Some(1013), "{:?}", cust.seen);
    assert_eq!(a.metric("edge_chats_refused_busy_total"), 1.0);
    // An agent's token is not enough to drain.
    let r = http::request(
        b.http,
        "POST",
        "/api/v1/drain",
        Some(edge_tests::AGENT_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    // New calls all land on B: the ones Kamailio still sends to A are refused
    // 503 and go to B at once, and once A's probe fails it is not tried at all.
    let (a0, b0) = (started(&a), started(&b));
    for i in 0..6 {
        let mut c = Uac::new(proxy);
        assert_eq!(
            c.call("service"),
            200,
            "new call {i} while A drains; kamailio log:\n{}",
            kam.log()
        );
        assert_eq!(c.bye(), 200);
    }
    assert_eq!(started(&a), a0, "a draining node takes no new call");
    assert_eq!(started(&b), b0 + 6.0);
    assert!(
        a.metric("edge_calls_rejected_draining_total") <= 3.0,
        "Kamailio kept trying the draining node after its probes said 503"
    );
    assert_eq!(a.metric("edge_draining"), 1.0);

    // A's call goes on until its caller hangs up; then A stops by itself.
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "A stopped with a call up"
    );
    assert_eq!(on_a.bye(), 200, "the draining node's call ends normally");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node A did not stop after its last call; log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "A exited {status}; log:\n{}",
        a.log_text()
    );
    assert!(a.logged(5, "drained: no call left"), "{}", a.log_text());
    // B goes on serving.
    let mut c = Uac::new(proxy);
    assert_eq!(c.call("service"), 200);
    assert_eq!(c.bye(), 200);
}

#[test]
fn sigterm_drains_refuses_new_work_and_stops_when_the_last_call_ends() {
    let edge = Edge::start();
    let _uas = Uas::spawn(edge.route_port);
    let mut c = Uac::new(edge.sip);
    assert_eq!(c.call("service"), 200);
    edge.signal("TERM");
    assert!(
        wait_until(5, || edge.metric("edge_draining") == 1.0),
        "{}",
        edge.log_text()
    );
    // OPTIONS (a proxy's probe), new INVITEs and REGISTERs: 503 + Retry-After.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    for (method, uri) in [
        ("OPTIONS", "sip:edge"),
        ("INVITE", "sip:service"),
        ("REGISTER", "sip:edge"),
    ] {
        let req = format!(
            "{method} {uri}@{e} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-d-{method}\r\nFrom: <sip:1001@{e}>;tag=d1\r\n\
To: <sip:1001@{e}>\r\nCall-ID: drain-{method}@x\r\nCSeq: 1 {method}\r\nContact: <sip:1001@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            e = edge.sip
        );
        sock.send_to(req.as_bytes(), edge.sip).unwrap();
        let text = recv_final(&sock).unwrap_or_else(|| panic!("no final answer to {method}"));
        assert!(text.starts_with("SIP/2.0 503"), "{method}: {text}");
        assert!(text.contains("Retry-After:"), "{method}: {text}");
    }
    // The call in progress goes on; when it ends the edge stops.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.metric("edge_calls_active"), 1.0);
    assert_eq!(c.bye(), 200);
    let mut edge = edge;
    assert!(
        wait_until(10, || edge.child.try_wait().unwrap().is_some()),
        "the edge did not stop after its last call; log:\n{}",
        edge.log_text()
    );
}

/// An edge in cluster mode on `nats`, with agent 2001 on queue 2000.
fn cluster_node(nats: &edge_tests::nats::NatsCluster, name: &str) -> Edge {
    Edge::start_with(&format!(
        "[cluster]\nnode = \"{name}\"\nnats = {}\nadvertise_sip = \"127.0.0.1:{{sip_port}}\"\n\
         node_lease = \"3s\"\n{}",
        nats.toml_list(),
        edge_tests::PHONE_AGENT
    ))
}

/// The state `GET /api/v1/agents` of `e` gives agent `id`.
fn agent_state(e: &Edge, id: &str) -> String {
    let r = http::get(e.http, "/api/v1/agents", Some(ADMIN_TOKEN)).unwrap();
    r.json()["agents"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["id"] == id).cloned())
        .map(|a| a["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn a_phone_registered_through_kamailio_gets_queue_calls_from_every_node() {
    if !have_tool("baresip") {
        return;
    }
    let nats = edge_tests::nats::NatsCluster::start(3);
    let a = cluster_node(&nats, "edge-a");
    let b = cluster_node(&nats, "edge-b");
    let port = free_port();
    let kam = Kamailio::start(port, &[a.sip, b.sip]);
    // Nodes join the cluster (and answer probes 200) at their first JetStream write.
    let proxy = kam.ready(port, &[&a, &b]);
    let phone = edge_tests::baresip::Baresip::start(proxy, "carol-sip-secret");
    // Kamailio picks one node for the address of record and adds its Path.
    let regs = || a.registrations();
    assert!(
        wait_until(15, || regs().len() == 1),
        "baresip did not register through Kamailio: {:?}\nbaresip log:\n{}\nkamailio log:\n{}\nA log:\n{}",
        regs(),
        phone.log(),
        kam.log(),
        a.log_text()
    );
    let reg = regs().remove(0);
    let path = reg["path"].as_array().cloned().unwrap_or_default();
    assert_eq!(path.len(), 1, "{reg}");
    let hop = path[0].as_str().unwrap();
    assert!(
        hop.contains(&format!("127.0.0.1:{port}")) && hop.contains("received="),
        "the Path names the proxy and the phone's address: {reg}"
    );
    assert_eq!(reg["source"], proxy.to_string(), "{reg}");
    let holder = reg["node"].as_str().unwrap().to_string();
    // Both nodes list the one binding (the other node's through NATS) and both
    // can call it: the agent is ready on each.
    assert_eq!(b.registrations().len(), 1, "{:?}", b.registrations());
    assert!(
        wait_until(10, || agent_state(&a, "2001") == "ready"
            && agent_state(&b, "2001") == "ready"),
        "the shared binding did not make the agent reachable on both nodes: A {} B {}; A log:\n{}\nB log:\n{}",
        agent_state(&a, "2001"),
        agent_state(&b, "2001"),
        a.log_text(),
        b.log_text()
    );
    // A caller on each node (straight to it, as the dispatcher would send one)
    // reaches the phone through Kamailio, with audio both ways.
    for (e, name) in [(&a, "edge-a"), (&b, "edge-b")] {
        let mut uac = Uac::new(e.sip);
        assert_eq!(
            uac.call("2000"),
            200,
            "queue call on {name} (binding held by {holder}); kamailio log:\n{}\nbaresip log:\n{}\nlog:\n{}",
            kam.log(),
            phone.log(),
            e.log_text()
        );
        phone.assert_audio_both_ways(&uac);
        assert_eq!(uac.bye(), 200, "BYE on {name}");
        // Wrap-up (none configured) over, the agent is offered the next call.
        assert!(
            wait_until(10, || agent_state(&a, "2001") == "ready"
                && agent_state(&b, "2001") == "ready"),
            "agent not ready again after the call on {name}"
        );
    }
}

#[test]
fn a_phone_registered_straight_to_one_node_gets_calls_from_another_through_it() {
    if !have_tool("baresip") {
        return;
    }
    let nats = edge_tests::nats::NatsCluster::start(3);
    let a = cluster_node(&nats, "edge-a");
    let mut b = cluster_node(&nats, "edge-b");
    // No proxy: the phone registers with node B, its flow lives there.
    let phone = edge_tests::baresip::Baresip::start(b.sip, "carol-sip-secret");
    assert!(
        wait_until(15, || b.registrations().len() == 1),
        "baresip did not register with B; baresip log:\n{}\nB log:\n{}",
        phone.log(),
        b.log_text()
    );
    assert!(
        b.registrations()[0]["path"]
            .as_array()
            .is_some_and(|p| p.is_empty()),
        "a direct registration has no Path: {:?}",
        b.registrations()
    );
    assert!(
        wait_until(10, || agent_state(&a, "2001") == "ready"),
        "A did not learn B's binding: {}; A log:\n{}",
        agent_state(&a, "2001"),
        a.log_text()
    );
    // A caller on A: A sends the INVITE to B (Route = the hop Path B shared),
    // B relays it on the phone's flow; audio flows between the caller and the
    // phone through A's media, and the BYE takes the same way.
    let mut uac = Uac::new(a.sip);
    assert_eq!(
        uac.call("2000"),
        200,
        "baresip log:\n{}\nA log:\n{}\nB log:\n{}",
        phone.log(),
        a.log_text(),
        b.log_text()
    );
    phone.assert_audio_both_ways(&uac);
    assert_eq!(uac.bye(), 200);
    let hops = |e: &Edge| e.metric("edge_cluster_sip_hops_total{outcome=\"relayed\"}");
    assert!(
        wait_until(5, || hops(&b) >= 6.0),
        "INVITE, 100/180/200, ACK, BYE and its 200 went through B: {}",
        hops(&b)
    );
    assert_eq!(
        b.metric("edge_cluster_sip_hops_total{outcome=\"refused\"}"),
        0.0
    );
    assert_eq!(
        b.metric("edge_calls_started_total"),
        0.0,
        "B only relayed: the call is A's"
    );
    assert!(
        wait_until(10, || agent_state(&a, "2001") == "ready"),
        "agent not ready again on A"
    );
    // B dies: its flows die with it, A stops offering the phone.
    let _ = b.child.kill();
    assert!(
        wait_until(10, || agent_state(&a, "2001") == "logged_out"),
        "A still counts on a dead node's binding: {}",
        agent_state(&a, "2001")
    );
}
