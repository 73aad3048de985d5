//! Interop with SIPp, a SIP implementation nobody here wrote: built-in and repo
//! scenarios through the real edge. Zero failed calls expected. Without `sipp` the
//! tests print SKIP; under `CI` they fail instead.

use edge_tests::{free_port, free_ports, have_tool, scenario, Edge, Sipp, ADMIN_TOKEN};

fn uas(port: u16, args: &[&str]) -> Sipp {
    let p = port.to_string();
    // SIPp binds -mp and the ports after it (audio, video, RTCP).
    let mp = free_ports(4).to_string();
    let mut a = vec![
        "-i",
        "127.0.0.1",
        "-p",
        p.as_str(),
        "-mp",
        mp.as_str(),
        "-timeout",
        "120s",
    ];
    a.extend_from_slice(args);
    Sipp::spawn(&a)
}

fn uac(edge: &Edge, args: &[&str]) -> Sipp {
    let target = edge.sip.to_string();
    let p = free_port().to_string();
    // SIPp binds -mp and the ports after it (audio, video, RTCP).
    let mp = free_ports(4).to_string();
    let mut a = vec![
        target.as_str(),
        "-i",
        "127.0.0.1",
        "-p",
        p.as_str(),
        "-mp",
        mp.as_str(),
        "-timeout",
        "120s",
    ];
    a.extend_from_slice(args);
    Sipp::spawn(&a)
}

fn assert_clean(name: &str, s: Sipp, calls: u64, edge: &Edge) {
    let (code, errors, successful) = s.finish(180);
    assert_eq!(
        code,
        0,
        "{name}: sipp failed (exit {code}); errors:\n{errors}\nedge log:\n{}",
        edge.log_text()
    );
    assert_eq!(successful, Some(calls), "{name}: successful calls");
}

#[test]
fn sipp_uac_pcap_with_rtp_and_rfc2833_dtmf_to_uas_rtp_echo() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let callee = uas(edge.route_port, &["-sn", "uas", "-rtp_echo", "-m", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(&edge, &["-sn", "uac_pcap", "-s", "service", "-m", "1"]);
    // SIPp plays dtmf_2833_1.pcap (RFC 2833 event 1, PT 101) after 8 s of audio: the
    // digit must show in the live call's events, as received from the customer.
    let http = edge.http;
    let watcher = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(r) = edge_tests::http::get(http, "/api/v1/calls", Some(ADMIN_TOKEN)) {
                let v = r.json();
                let events: Vec<serde_json::Value> = v["calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["events"].as_array().cloned().unwrap_or_default())
                    .collect();
                if !events.is_empty() {
                    return events;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Vec::new()
    });
    assert_clean("uac_pcap", caller, 1, &edge);
    let events = watcher.join().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "dtmf" && e["digit"] == "1" && e["from"] == "customer"),
        "SIPp's RFC 2833 digit in the call's events: {events:?}"
    );
    let _ = callee.wait(30);
    edge.wait_idle(10);
    // g711a.pcap is ~240 packets one way; with the callee echoing them back the edge
    // relays both directions, so well over one direction's worth.
    let relayed = edge.metric("edge_rtp_relayed_packets_total");
    assert!(relayed >= 400.0, "RTP relayed both ways: {relayed}");
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
}

#[test]
fn sipp_uac_at_a_sustained_rate() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let callee = uas(edge.route_port, &["-sn", "uas"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(
        &edge,
        &[
            "-sn", "uac", "-s", "service", "-r", "100", "-m", "1000", "-l", "500",
        ],
    );
    assert_clean("uac 100 cps", caller, 1000, &edge);
    edge.wait_idle(20);
    assert_eq!(
        edge.metric("edge_calls_ended_total{status=\"200\"}"),
        1000.0
    );
    drop(callee);
}

#[test]
fn sipp_callee_hangs_up() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let sf_uas = scenario("uas_send_bye.xml");
    let sf_uac = scenario("uac_wait_bye.xml");
    let callee = uas(edge.route_port, &["-sf", &sf_uas, "-m", "20"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(
        &edge,
        &["-sf", &sf_uac, "-s", "service", "-r", "10", "-m", "20"],
    );
    assert_clean("callee hangs up", caller, 20, &edge);
    assert_clean("callee hangs up (uas)", callee, 20, &edge);
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_calls_ended_total{status=\"200\"}"), 20.0);
}

#[test]
fn sipp_caller_cancels_while_ringing() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let sf_uas = scenario("uas_ring.xml");
    let sf_uac = scenario("uac_cancel.xml");
    let callee = uas(edge.route_port, &["-sf", &sf_uas, "-m", "20"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(
        &edge,
        &["-sf", &sf_uac, "-s", "service", "-r", "10", "-m", "20"],
    );
    assert_clean("cancel (uac)", caller, 20, &edge);
    assert_clean("cancel (uas)", callee, 20, &edge);
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_calls_ended_total{status=\"487\"}"), 20.0);
}

#[test]
fn sipp_uac_over_tcp_to_udp_callee() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let callee = uas(edge.route_port, &["-sn", "uas"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(
        &edge,
        &[
            "-sn", "uac", "-t", "t1", "-s", "service", "-r", "20", "-m", "100",
        ],
    );
    assert_clean("uac over TCP", caller, 100, &edge);
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_calls_ended_total{status=\"200\"}"), 100.0);
    drop(callee);
}

/// The supervisor's phone is SIPp (uas, echoing RTP): the monitor leg's INVITE, 200,
/// ACK and BYE against a SIP stack nobody here wrote; the call is not disturbed.
#[test]
fn sipp_as_the_supervisors_phone() {
    if !have_tool("sipp") {
        return;
    }
    let sam_port = free_port();
    let edge = Edge::start_with(&format!(
        "[[users]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken = \"sam-token-1\"\ncontact = \"sip:sam@127.0.0.1:{sam_port}\"\n"
    ));
    let agent = edge_tests::ua::Uas::spawn(edge.route_port);
    let phone = uas(sam_port, &["-sn", "uas", "-rtp_echo", "-m", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut cust = edge_tests::ua::Uac::new(edge.sip);
    assert_eq!(cust.call("service"), 200);
    let _c = edge_tests::tone_peer::TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        1,
    );
    let a = edge_tests::tone_peer::TonePeer::start(
        agent.rtp.try_clone().unwrap(),
        agent.edge_rtp.lock().unwrap().unwrap(),
        1100.0,
        2,
    );
    let calls = edge_tests::http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN)).unwrap();
    let call = calls.json()["calls"][0]["id"].as_str().unwrap().to_string();
    let r = edge_tests::http::request_body(
        edge.http,
        "POST",
        &format!("/api/v1/calls/{call}/monitors"),
        Some("sam-token-1"),
        r#"{"mode":"barge"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mid = r.json()["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let state = |edge: &Edge| {
        edge_tests::http::get(
            edge.http,
            &format!("/api/v1/calls/{call}"),
            Some(ADMIN_TOKEN),
        )
        .unwrap()
        .json()["monitors"][0]["state"]
            .clone()
    };
    while state(&edge) != "active" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(state(&edge), "active", "SIPp answered the monitor INVITE");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Barge: SIPp echoes the mix it gets (customer 440 + agent 1100) back into the
    // call, so the agent now also hears its own tone, returned through the supervisor.
    assert!(
        a.hears(1100.0, 500),
        "the supervisor's (echoed) audio reaches the agent"
    );
    let r = edge_tests::http::request_body(
        edge.http,
        "DELETE",
        &format!("/api/v1/calls/{call}/monitors/{mid}"),
        Some("sam-token-1"),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert_clean("supervisor phone (uas)", phone, 1, &edge);
    assert!(a.hears(440.0, 500), "the call goes on");
    assert_eq!(cust.bye(), 200);
    edge.wait_idle(10);
}

#[test]
fn sipp_caller_session_timer_is_granted_and_refreshed_by_the_edge() {
    // RFC 4028 with a UA nobody here wrote: SIPp asks the edge to refresh a 90 s
    // session; the edge's 200 grants it, and 45 s later its re-INVITE refreshes
    // the caller's leg (checked by the scenario's regexps) before SIPp hangs up.
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start();
    let callee = uas(edge.route_port, &["-sn", "uas", "-m", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sf = scenario("uac_session_timer.xml");
    let caller = uac(&edge, &["-sf", &sf, "-s", "service", "-m", "1"]);
    assert_clean("session timer", caller, 1, &edge);
    assert_clean("session timer (uas)", callee, 1, &edge);
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_calls_session_expired_total"), 0.0);
    assert_eq!(edge.metric("edge_calls_ended_total{status=\"200\"}"), 1.0);
}

/// Reserved data: a queue whose calls carry `[[reserved_data]]` headers, its agent's
/// phone a SIPp UAS that checks them.
const RESERVED: &str = r#"
[[queues]]
name = "vip"
numbers = ["4000"]
agents = ["4001"]
record = true
[[agents]]
id = "4001"
contact = "sip:4001@127.0.0.1:{route_port}"
[[reserved_data]]
field = "verified_customer"
header = "X-Verified-Customer"
[[reserved_data]]
field = "repeat_customer"
header = "X-Repeat-Customer"
[[reserved_data]]
field = "bad_actor"
header = "X-Bad-Actor"
[[reserved_data]]
field = "account"
header = "X-Account"
max_length = 16
"#;

#[test]
fn sipp_reserved_data_reaches_the_agent_leg_the_api_and_the_recording_without_injection() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start_with(RESERVED);
    let sf_uas = scenario("uas_reserved_data.xml");
    let sf_uac = scenario("uac_reserved_data.xml");
    let agent = uas(edge.route_port, &["-sf", &sf_uas, "-m", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let caller = uac(&edge, &["-sf", &sf_uac, "-s", "4000", "-m", "1"]);
    // While the call is up (the caller talks 3 s), the API shows the fields.
    let mut call = serde_json::Value::Null;
    assert!(
        edge_tests::wait_until(5, || {
            let r = edge_tests::http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN)).unwrap();
            call = r.json()["calls"][0].clone();
            call["state"] == "connected"
        }),
        "{call}\n{}\nagent's phone: {}",
        edge.log_text(),
        agent.errors()
    );
    let data = &call["reserved_data"];
    assert_eq!(data["verified_customer"], "yes", "{call}");
    assert_eq!(data["repeat_customer"], "3");
    assert!(
        data["bad_actor"].as_str().unwrap().starts_with("no"),
        "the folded line is one value: {data}"
    );
    assert!(data.get("account").is_none(), "over max_length: dropped");
    assert_clean("reserved data (caller)", caller, 1, &edge);
    assert_clean(
        "reserved data (agent's phone checks the headers)",
        agent,
        1,
        &edge,
    );
    assert_eq!(edge.metric("edge_calls_reserved_data_refused_total"), 1.0);
    // The recording's metadata carries them to the CRM.
    let id = call["id"].as_str().unwrap();
    let meta = edge.dir.path().join(format!("data/archive/{id}.json"));
    assert!(
        edge_tests::wait_until(10, || meta.exists()),
        "{}",
        meta.display()
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["reserved_data"]["verified_customer"], "yes", "{m}");
    assert_eq!(m["reserved_data"]["repeat_customer"], "3");
}

/// A queue whose calls go to agent 1001 only (SIPp plays its phone).
const REFER_QUEUE: &str = r#"
[[queues]]
name = "first-line"
numbers = ["7000"]
agents = ["1001"]
max_wait = "10s"
"#;

#[test]
fn sipp_agent_transfers_blind_by_refer_and_gets_the_notify_progress() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start_with(REFER_QUEUE);
    // The target: the `service` route's phone, answering with 180 + 200.
    let target = uas(edge.route_port, &["-sn", "uas", "-m", "1"]);
    let sf = scenario("uas_refer.xml");
    let agent = uas(edge.agent_ports[0], &["-sf", &sf, "-m", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The customer talks 4 s, then hangs up (on the target, after the transfer).
    let caller = uac(
        &edge,
        &["-sn", "uac", "-s", "7000", "-d", "4000", "-m", "1"],
    );
    assert_clean("refer (customer)", caller, 1, &edge);
    assert_clean("refer (agent's phone: 202, NOTIFYs, BYE)", agent, 1, &edge);
    assert_clean("refer (target)", target, 1, &edge);
    edge.wait_idle(10);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"blind\",outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("edge_call_transfers_started_total{by=\"refer\"}"),
        1.0
    );
}

#[test]
fn sipp_phone_takes_over_the_agents_leg_with_an_invite_with_replaces() {
    if !have_tool("sipp") {
        return;
    }
    use std::sync::atomic::Ordering;
    let edge = Edge::start_with(REFER_QUEUE);
    let alice = edge_tests::ua::Uas::spawn(edge.agent_ports[0]);
    let mut cust = edge_tests::ua::Uac::new(edge.sip);
    assert_eq!(cust.call("7000"), 200);
    let (call_id, edge_tag) = alice
        .dialog
        .lock()
        .unwrap()
        .clone()
        .expect("Alice was called");
    let dir = edge_tests::tempdir::Dir::new("replaces");
    let inf = dir.path().join("dialog.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n{call_id};{edge_tag};\n")).unwrap();
    let sf = scenario("uac_replaces.xml");
    let inf = inf.display().to_string();
    let phone = uac(&edge, &["-sf", &sf, "-inf", &inf, "-s", "7000", "-m", "1"]);
    assert!(
        edge_tests::wait_until(10, || alice.byes.load(Ordering::Relaxed) == 1),
        "Alice's leg is replaced (BYE)\n{}",
        edge.log_text()
    );
    // The call goes on with SIPp's phone; the customer hangs up.
    assert_eq!(cust.bye(), 200);
    assert_clean("INVITE with Replaces (the new phone)", phone, 1, &edge);
    edge.wait_idle(10);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"replaces\",outcome=\"completed\"}"),
        1.0
    );
}
