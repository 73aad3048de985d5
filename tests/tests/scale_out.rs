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
        let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Kamailio's own SIP workers answer (its OPTIONS to itself), and both nodes
    // answered a probe, before calls are offered.
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
    assert!(ready, "Kamailio does not answer; log:\n{}", kam.log());
    let probed =
        |e: &Edge| e.metric("edge_sip_requests_total{direction=\"in\",method=\"OPTIONS\"}") > 0.0;
    assert!(
        wait_until(10, || probed(&a) && probed(&b)),
        "Kamailio's probes did not reach both edges; kamailio log:\n{}",
        kam.log()
    );

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
    assert!(
        wait_until(5, || a.log_text().contains("drained: no call left")),
        "{}",
        a.log_text()
    );
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
