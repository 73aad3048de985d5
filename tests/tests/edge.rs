//! The real `edge` binary on loopback: calls with RTP both ways, queue routing, the
//! HTTP API and its auth, metrics, config check and reload, and bad input.

use edge_tests::ua::{send_rtp, spawn_rtp_counter, Uac, Uas};
use edge_tests::{http, wait_until, Edge, ADMIN_TOKEN, AGENT_TOKEN};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn call_through_the_edge_relays_rtp_both_ways() {
    let edge = Edge::start();
    let uas = Uas::spawn(edge.route_port);
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("service"), 200, "log:\n{}", edge.log_text());
    let to_caller = uac.remote_rtp.expect("200 has SDP");
    assert_eq!(to_caller.ip().to_string(), "127.0.0.1");
    let to_callee = uas.edge_rtp.lock().unwrap().expect("INVITE had SDP");
    assert_ne!(to_caller, to_callee, "two edge ports, one per leg");

    // The ACK and this query race through the core's queue: wait for it.
    assert!(wait_until(5, || http::get(
        edge.http,
        "/api/v1/calls",
        Some(AGENT_TOKEN)
    )
    .unwrap()
    .json()["calls"][0]["state"]
        == "connected"));
    let calls = http::get(edge.http, "/api/v1/calls", Some(AGENT_TOKEN))
        .unwrap()
        .json();
    let c = &calls["calls"][0];
    assert_eq!(c["route"], "service");
    assert_eq!(c["callee"], "service");

    let stop = Arc::new(AtomicBool::new(false));
    let at_callee = spawn_rtp_counter(uas.rtp.try_clone().unwrap(), 0xAA, stop.clone());
    let at_caller = spawn_rtp_counter(uac.rtp.try_clone().unwrap(), 0x55, stop.clone());
    let callee_rtp = uas.rtp.try_clone().unwrap();
    let t = std::thread::spawn(move || send_rtp(&callee_rtp, to_callee, 100, 0x55));
    send_rtp(&uac.rtp, to_caller, 100, 0xAA);
    t.join().unwrap();
    assert!(wait_until(5, || at_callee.load(Ordering::Relaxed) == 100
        && at_caller.load(Ordering::Relaxed) == 100));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(at_callee.load(Ordering::Relaxed), 100, "caller → callee");
    assert_eq!(at_caller.load(Ordering::Relaxed), 100, "callee → caller");
    // Relay counters are published at least once a second.
    std::thread::sleep(Duration::from_millis(1100));
    send_rtp(&uac.rtp, to_caller, 1, 0xAA);
    assert!(wait_until(3, || edge
        .metric("edge_rtp_relayed_packets_total")
        >= 200.0));

    assert_eq!(uac.bye(), 200);
    assert!(
        wait_until(5, || uas.byes.load(Ordering::Relaxed) == 1),
        "BYE reached the callee"
    );
    edge.wait_idle(5);
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    assert_eq!(edge.metric("edge_calls_answered_total"), 1.0);
    assert!(
        edge.logged(5, "call ended"),
        "structured log line with the call id"
    );
}

#[test]
fn queue_call_reaches_a_free_agent_and_unknown_numbers_get_404() {
    let edge = Edge::start();
    let alice = Uas::spawn(edge.agent_ports[0]);
    let bob = Uas::spawn(edge.agent_ports[1]);
    let mut first = Uac::new(edge.sip);
    assert_eq!(first.call("1000"), 200);
    let mut second = Uac::new(edge.sip);
    assert_eq!(second.call("1000"), 200);
    assert_eq!(
        alice.invites.load(Ordering::Relaxed) + bob.invites.load(Ordering::Relaxed),
        2
    );
    assert_eq!(
        alice.invites.load(Ordering::Relaxed),
        1,
        "one call per agent at a time"
    );
    let calls = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    let mut agents: Vec<String> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["agent"].as_str().unwrap().to_string())
        .collect();
    agents.sort();
    assert_eq!(agents, vec!["1001", "1002"]);
    assert_eq!(calls["calls"][0]["queue"], "sales");
    // Both agents busy: a third caller waits (ringback) until max_wait (10 s) → 480.
    let mut third = Uac::new(edge.sip);
    assert_eq!(third.call("1000"), 480);
    let mut lost = Uac::new(edge.sip);
    assert_eq!(lost.call("5555"), 404);
    assert_eq!(first.bye(), 200);
    assert_eq!(second.bye(), 200);
    edge.wait_idle(5);
}

#[test]
fn api_requires_tokens_and_roles_with_json_errors() {
    let edge = Edge::start();
    let r = http::get(edge.http, "/api/v1/calls", None).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing bearer token");
    let r = http::get(edge.http, "/api/v1/calls", Some("wrong-token")).unwrap();
    assert_eq!(r.status, 401);
    let r = http::get(edge.http, "/api/v1/calls", Some(AGENT_TOKEN)).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["calls"].as_array().unwrap().is_empty());
    let r = http::request(edge.http, "DELETE", "/api/v1/calls/abc", Some(AGENT_TOKEN)).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["status"], 403);
    let r = http::request(edge.http, "DELETE", "/api/v1/calls/abc", Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(r.status, 404);
    let r = http::get(edge.http, "/api/v1/openapi.json", None).unwrap();
    assert_eq!(r.json()["openapi"], "3.0.3");
    assert_eq!(http::get(edge.http, "/nope", None).unwrap().status, 404);
    assert!(
        !edge.log_text().contains(ADMIN_TOKEN) && !edge.log_text().contains("wrong-token"),
        "tokens never logged"
    );
}

#[test]
fn admin_ends_a_stuck_call_with_bye_to_both_legs() {
    let edge = Edge::start();
    let uas = Uas::spawn(edge.route_port);
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("service"), 200);
    let calls = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    let id = calls["calls"][0]["id"].as_str().unwrap().to_string();
    let r = http::request(
        edge.http,
        "DELETE",
        &format!("/api/v1/calls/{id}"),
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert!(
        wait_until(5, || uas.byes.load(Ordering::Relaxed) == 1),
        "callee got BYE"
    );
    // The caller gets a BYE too (our UA answers nothing, so the edge retransmits; it
    // still ends the call after the transaction times out).
    let mut buf = [0u8; 4096];
    uac.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, _) = uac.sock.recv_from(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("BYE "));
}

#[test]
fn metrics_expose_sip_calls_and_media() {
    let edge = Edge::start();
    let body = http::get(edge.http, "/metrics", None).unwrap().body;
    for name in [
        "edge_calls_active",
        "edge_calls_started_total",
        "edge_sip_requests_total",
        "edge_sip_responses_total",
        "edge_rtp_relayed_packets_total",
        "edge_rtp_relayed_bytes_total",
        "edge_rtp_ports_in_use",
        "edge_rtp_ports_capacity",
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{body}"
        );
    }
    assert_eq!(edge.metric("edge_rtp_ports_capacity"), 100.0);
}

#[test]
fn bad_input_is_answered_or_dropped_and_the_edge_keeps_serving() {
    let edge = Edge::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = sock.local_addr().unwrap();
    let good = |method: &str, branch: &str| {
        format!(
            "{method} sip:service@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\nFrom: <sip:x@{local}>;tag=1\r\n\
To: <sip:service@{edge}>\r\nCall-ID: bad-{branch}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            edge = edge.sip
        )
    };
    let junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        vec![0xff; 1400],
        b"INVITE sip:x SIP/2.0\r\n".to_vec(), // truncated
        good("OPTIONS", "a")
            .replace("Call-ID: bad-a\r\n", "")
            .into_bytes(), // no Call-ID
        good("OPTIONS", "b")
            .replace("Content-Length: 0", "Content-Length: 500")
            .into_bytes(), // wrong length
        good("OPTIONS", "c")
            .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
            .into_bytes(),
        vec![b'A'; 65_000], // oversized garbage
    ];
    for j in &junk {
        sock.send_to(j, edge.sip).unwrap();
    }
    // Answerable ones get 400.
    let mut codes = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        codes.push(t.split_whitespace().nth(1).unwrap_or("").to_string());
        if codes.len() == 2 {
            break;
        }
    }
    assert_eq!(
        codes,
        vec!["400", "400"],
        "wrong Content-Length and bad CSeq answered 400"
    );
    // TCP: garbage then a stream that never ends its headers.
    let mut t = TcpStream::connect(edge.sip).unwrap();
    t.write_all(&vec![b'x'; 70_000]).unwrap();
    drop(t);
    // Still serving: OPTIONS → 200 on UDP and TCP.
    sock.send_to(good("OPTIONS", "ok").as_bytes(), edge.sip)
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
    let mut t = TcpStream::connect(edge.sip).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    t.write_all(
        good("OPTIONS", "tcp")
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .as_bytes(),
    )
    .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = std::io::Read::read(&mut t, &mut chunk).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("SIP/2.0 200 OK"));
    assert!(edge.metric("edge_sip_malformed_total") >= 5.0);
    let uas = Uas::spawn(edge.route_port);
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("service"), 200, "calls still work");
    assert_eq!(uac.bye(), 200);
    drop(uas);
}

#[test]
fn sighup_reload_swaps_valid_config_and_keeps_old_on_error() {
    let edge = Edge::start();
    let uas = Uas::spawn(edge.route_port);
    // Invalid file: rejected, old config stays.
    std::fs::write(&edge.config_path, "[sip]\nlisten = 5\n").unwrap();
    edge.signal("HUP");
    assert!(edge.logged(5, "reload rejected"), "{}", edge.log_text());
    let mut a = Uac::new(edge.sip);
    assert_eq!(a.call("service"), 200, "old config still routes");
    // Valid file with a new number for the same target: swapped in, call not dropped.
    let text = Edge::config(
        edge.sip.port(),
        edge.http.port(),
        (1, 1),
        edge.dir.path(),
        edge.route_port,
        edge.agent_ports,
        "",
    )
    .replace("number = \"service\"", "number = \"svc2\"");
    // Keep the running RTP range (media settings apply after restart anyway).
    let current = std::fs::read_to_string(edge.dir.path().join("edge.toml")).unwrap_or_default();
    let _ = current;
    let text = text.replace("rtp_ports = \"1-1\"", "rtp_ports = \"40000-40099\"");
    std::fs::write(&edge.config_path, text).unwrap();
    edge.signal("HUP");
    assert!(
        edge.logged(5, "configuration reloaded"),
        "{}",
        edge.log_text()
    );
    let mut b = Uac::new(edge.sip);
    assert_eq!(b.call("svc2"), 200);
    let mut c = Uac::new(edge.sip);
    assert_eq!(c.call("service"), 404, "old number gone");
    assert_eq!(a.bye(), 200, "the call from before the reload is still up");
    assert_eq!(b.bye(), 200);
    drop(uas);
}

fn check_config(file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(edge_tests::edge_binary())
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn check_config_reports_file_line_and_field() {
    let dir = edge_tests::tempdir::Dir::new("check");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n\n[[queues]]\nname = \"q\"\nagents = [\"ghost\"]\n").unwrap();
    let out = check_config(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6") && err.contains("queues[0].agents[0]") && err.contains("ghost"),
        "{err}"
    );
    // An announcement that is not audio: named with the decoder's reason.
    let junk = dir.path().join("hello.mp3");
    std::fs::write(&junk, "not audio at all").unwrap();
    let cfg = dir.path().join("audio.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[routes]]\nnumber = \"x\"\ntarget = \"sip:x@127.0.0.1:5090\"\nannouncement = \"{}\"\n",
            control::DEFAULT_CONFIG,
            junk.display()
        ),
    )
    .unwrap();
    let out = check_config(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hello.mp3") && err.contains("not a supported audio file"),
        "{err}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(&good, control::DEFAULT_CONFIG).unwrap();
    let out = check_config(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A message of `sip/tests/torture/` as sent on the wire (LF → CRLF, `@LEN@` → the
/// body's length), with its Via rewritten to `via` so the answer comes back here.
fn torture(name: &str, via: &str) -> Vec<u8> {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../sip/tests/torture")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut wire = text.replace('\n', "\r\n");
    // The top Via: first line that is a Via (long or compact form).
    if let Some(i) = wire
        .find("\r\nVia:")
        .or_else(|| wire.find("\r\nVia  :"))
        .or_else(|| wire.find("\r\nv:"))
    {
        let end = wire[i + 2..].find("\r\n").unwrap() + i + 2;
        wire.replace_range(i + 2..end, &format!("Via: {via}"));
    }
    let body_len = wire.find("\r\n\r\n").map_or(0, |i| wire.len() - i - 4);
    wire.replace("@LEN@", &body_len.to_string()).into_bytes()
}

fn status_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn torture_messages_get_the_status_rfc_4475_names_and_a_to_tag() {
    let edge = Edge::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let via = |b: &str| {
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{b}",
            sock.local_addr().unwrap()
        )
    };
    let mut buf = [0u8; 65536];
    for (name, want) in [
        // §3.3 and duplicated headers; every §3.1 message is in rfc4475.rs.
        ("unksm.txt", "416"),
        ("badvers.txt", "505"),
        ("bext01.txt", "420"),
        ("mcl01.txt", "400"),
        ("dup_callid.txt", "400"),
    ] {
        let mut msg = torture(name, &via(name.trim_end_matches(".txt")));
        if name == "badvers.txt" {
            // Its Via says SIP/7.0 too; keep the version under test in the request line.
            msg = String::from_utf8(msg)
                .unwrap()
                .replace("Via: SIP/2.0", "Via: SIP/7.0")
                .into_bytes();
        }
        sock.send_to(&msg, edge.sip).unwrap();
        let (n, _) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{name}: no answer ({e}); log:\n{}", edge.log_text()));
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        assert_eq!(status_of(&buf[..n]), want, "{name}: {reply}");
        let to = reply.lines().find(|l| l.starts_with("To:")).unwrap_or("");
        assert!(
            to.contains(";tag="),
            "{name}: final response without To tag: {to}"
        );
    }
    // The edge still answers OPTIONS after all of the above.
    let opts = format!(
        "OPTIONS sip:service@{e} SIP/2.0\r\nVia: {v}\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\n\
To: <sip:service@{e}>\r\nCall-ID: after-torture\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        e = edge.sip,
        v = via("after")
    );
    sock.send_to(opts.as_bytes(), edge.sip).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(status_of(&buf[..n]), "200");
}

#[test]
fn several_content_lengths_on_tcp_get_400_and_the_connection_closes() {
    let edge = Edge::start();
    let mut t = TcpStream::connect(edge.sip).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = t.local_addr().unwrap();
    // The first Content-Length (0) would end the message at the blank line and run
    // the "body" as a second request; the edge must not frame it either way.
    let smuggled = format!(
        "OPTIONS sip:service@{e} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKsmug1\r\n\
From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:service@{e}>\r\nCall-ID: smuggle-1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\nContent-Length: 10\r\n\r\n\
OPTIONS sip:service@{e} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKsmug2\r\n\
From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:service@{e}>\r\nCall-ID: smuggle-2\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        e = edge.sip
    );
    t.write_all(smuggled.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut t, &mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!(
                "the edge must close the connection: {e}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("SIP/2.0 400 Bad Request\r\n"),
        "{text}; log:\n{}",
        edge.log_text()
    );
    assert!(text.contains("smuggle-1"), "{text}");
    assert!(
        !text.contains("smuggle-2"),
        "the smuggled request is never run: {text}"
    );
}

/// Whether the edge closed `t` within `secs` (a read returns end of stream).
fn closed_within(t: &mut TcpStream, secs: u64) -> bool {
    t.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match std::io::Read::read(t, &mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn sip_tcp_has_a_per_source_cap_an_idle_timeout_and_a_message_timeout() {
    let edge = Edge::start_sip(
        "tcp_max_per_source = 3\ntcp_idle_timeout = \"2s\"\ntcp_message_timeout = \"1s\"",
        "",
    );
    // Three connections from this address are held; a fourth is closed at once.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(edge.sip).unwrap())
        .collect();
    let mut fourth = TcpStream::connect(edge.sip).unwrap();
    assert!(closed_within(&mut fourth, 2), "over the per-source cap");
    // A message begun and not finished within 1 s: closed (slowloris).
    held[0]
        .write_all(b"OPTIONS sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1")
        .unwrap();
    assert!(closed_within(&mut held[0], 4), "stalled message");
    // Nothing at all for 2 s: closed.
    assert!(closed_within(&mut held[1], 5), "idle connection");
    assert!(closed_within(&mut held[2], 5), "idle connection");
    // The shares are released: a new connection is served.
    let mut t = TcpStream::connect(edge.sip).unwrap();
    let local = t.local_addr().unwrap();
    t.write_all(
        format!(
            "OPTIONS sip:service@{e} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKcap\r\n\
From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:service@{e}>\r\nCall-ID: cap-1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            e = edge.sip
        )
        .as_bytes(),
    )
    .unwrap();
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 2048];
    let n = std::io::Read::read(&mut t, &mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..n]).starts_with("SIP/2.0 200 OK"));
    let metrics = http::get(edge.http, "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("edge_sip_tcp_refused_total{limit=\"per_source\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_sip_tcp_timeouts_total{kind=\"message\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_sip_tcp_timeouts_total{kind=\"idle\"} 2"),
        "{metrics}"
    );
}

#[test]
fn an_answered_call_with_no_rtp_is_ended_with_bye_to_both_legs() {
    let edge = Edge::start_tables("", "rtp_timeout = \"2s\"", "", "");
    let uas = Uas::spawn(edge.route_port);
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("service"), 200);
    // Neither side sends RTP: within the timeout plus the once-a-second sweep,
    // the edge hangs up both legs.
    assert!(
        wait_until(6, || uas.byes.load(Ordering::Relaxed) == 1),
        "the callee gets a BYE; log:\n{}",
        edge.log_text()
    );
    assert!(uac.answer_bye(5), "the caller gets a BYE");
    edge.wait_idle(5);
    assert_eq!(edge.metric("edge_calls_media_timeouts_total"), 1.0);
}

#[test]
fn rtp_ports_another_program_holds_are_skipped() {
    let edge = Edge::start();
    // "Another program" holds the first two pairs of the edge's range.
    let first = edge.rtp.0 + edge.rtp.0 % 2;
    let _held: Vec<UdpSocket> = [first, first + 3]
        .iter()
        .map(|p| UdpSocket::bind(("127.0.0.1", *p)).unwrap())
        .collect();
    let uas = Uas::spawn(edge.route_port);
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("service"), 200, "{}", edge.log_text());
    assert!(edge.metric("edge_rtp_ports_skipped_total") >= 2.0);
    assert_eq!(edge.metric("edge_media_bind_failures_total"), 0.0);
    assert_eq!(uac.bye(), 200);
    drop(uas);
}
