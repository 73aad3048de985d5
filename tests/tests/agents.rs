//! Agents sign in from SIP phones nobody here wrote: baresip registers with digest
//! authentication (MD5), answers a queue call with audio both ways and transfers
//! one blind with its own REFER; SIPp
//! registers with `[authentication]` and a wrong password is refused; bindings
//! survive a restart of the edge. Without the tools the tests print SKIP; under
//! `CI` they fail instead.

use edge_tests::baresip::Baresip;
use edge_tests::ua::Uac;
use edge_tests::{free_port, have_tool, scenario, wait_until, Edge, Sipp};

/// A queue whose only agent signs in from a phone (no static contact).
const AGENT: &str = edge_tests::PHONE_AGENT;

#[test]
fn baresip_signs_in_with_digest_and_answers_a_queue_call_with_audio_both_ways() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let phone = Baresip::start(edge.sip, "carol-sip-secret");
    assert!(
        wait_until(10, || !edge.registrations().is_empty()),
        "baresip did not register; baresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    let reg = &edge.registrations()[0];
    assert_eq!(reg["agent"], "2001");
    assert_eq!(reg["transport"], "UDP");
    assert!(
        reg["user_agent"]
            .as_str()
            .unwrap_or("")
            .starts_with("baresip"),
        "{reg}"
    );
    // A caller on the queue's number reaches the phone, which answers.
    let mut uac = Uac::new(edge.sip);
    assert_eq!(
        uac.call("2000"),
        200,
        "baresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    phone.assert_audio_both_ways(&uac);
    assert_eq!(uac.bye(), 200);
}

#[test]
fn two_phones_of_one_agent_ring_together_and_the_one_left_ringing_gets_cancel() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let desk = Baresip::start_answering(edge.sip, "carol-sip-secret", "manual");
    assert!(
        wait_until(10, || edge.registrations().len() == 1),
        "{}",
        desk.log()
    );
    let soft = Baresip::start_answering(edge.sip, "carol-sip-secret", "auto");
    assert!(
        wait_until(10, || edge.registrations().len() == 2),
        "desk:\n{}\nsoft:\n{}",
        desk.log(),
        soft.log()
    );
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("2000"), 200, "edge log:\n{}", edge.log_text());
    // The desk phone rang (baresip logs the incoming call) and was cancelled.
    assert!(
        wait_until(5, || desk.log().contains("Incoming call")
            && desk.log().contains("closed")),
        "desk phone:\n{}\nedge log:\n{}",
        desk.log(),
        edge.log_text()
    );
    assert!(edge.logged(5, "answered"), "{}", edge.log_text());
    assert_eq!(uac.bye(), 200);
}

#[test]
fn baresip_with_a_wrong_password_is_refused_and_counted() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let phone = Baresip::start(edge.sip, "not-the-password");
    assert!(
        wait_until(10, || edge.metric("edge_sip_auth_failures_total") >= 1.0),
        "no failed authentication counted; baresip log:\n{}",
        phone.log()
    );
    assert!(edge.registrations().is_empty());
    // The password never reaches the log (nor does the digest response).
    assert!(!edge.log_text().contains("carol-sip-secret"));
}

/// SIPp signs in as agent 2001 with `password` (`tests/sipp/uac_register_auth.xml`):
/// its exit code, errors, successful registrations and local port.
fn register_with_sipp(edge: &Edge, password: &str) -> (i32, String, Option<u64>, u16) {
    let sf = scenario("uac_register_auth.xml");
    let port = free_port();
    let p = port.to_string();
    let target = edge.sip.to_string();
    let s = Sipp::spawn(&[
        target.as_str(),
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &p,
        "-s",
        "2001",
        "-au",
        "2001",
        "-ap",
        password,
        "-m",
        "1",
        "-timeout",
        "20s",
    ]);
    let (code, errors, ok) = s.finish(30);
    (code, errors, ok, port)
}

#[test]
fn sipp_registers_with_authentication_and_a_wrong_password_gets_403() {
    if !have_tool("sipp") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let (code, errors, ok, _) = register_with_sipp(&edge, "carol-sip-secret");
    assert_eq!(
        code,
        0,
        "sipp failed: {errors}\nedge log:\n{}",
        edge.log_text()
    );
    assert_eq!(ok, Some(1));
    let regs = edge.registrations();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["agent"], "2001");
    // A wrong password: the scenario expects 200, gets 403, and fails.
    let (code, errors, _, _) = register_with_sipp(&edge, "wrong-password");
    assert_ne!(code, 0, "a wrong password was accepted");
    assert!(errors.contains("403"), "{errors}");
    assert_eq!(edge.metric("edge_sip_auth_failures_total"), 1.0);
}

#[test]
fn registrations_survive_a_restart() {
    if !have_tool("sipp") {
        return;
    }
    let mut edge = Edge::start_with(AGENT);
    let (code, errors, _, p) = register_with_sipp(&edge, "carol-sip-secret");
    assert_eq!(code, 0, "{errors}");
    assert_eq!(edge.registrations().len(), 1);
    // A clean stop writes what the registrar holds; the binding comes back.
    edge.stop_and_restart();
    let regs = edge.registrations();
    assert_eq!(regs.len(), 1, "log:\n{}", edge.log_text());
    assert_eq!(regs[0]["source"], format!("127.0.0.1:{p}"));
    assert!(regs[0]["expires_in"].as_u64().unwrap() > 3000);
}

#[test]
fn baresip_transfers_a_queue_call_blind_with_its_refer() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let target = edge_tests::ua::Uas::spawn(edge.route_port);
    let (phone, ctrl) = Baresip::with_control(edge.sip, "carol-sip-secret");
    assert!(
        wait_until(10, || !edge.registrations().is_empty()),
        "baresip did not register; log:\n{}",
        phone.log()
    );
    let mut uac = Uac::new(edge.sip);
    assert_eq!(uac.call("2000"), 200, "{}", phone.log());
    // The agent transfers from its phone: baresip sends REFER (Refer-To the
    // `service` route), the edge calls the route's phone, NOTIFYs and ends
    // baresip's leg.
    let reply =
        edge_tests::baresip::control(ctrl, "transfer", &format!("sip:service@{}", edge.sip))
            .unwrap_or_else(|e| panic!("ctrl_tcp: {e}\n{}", phone.log()));
    assert!(
        wait_until(10, || {
            edge.metric("edge_call_transfers_total{kind=\"blind\",outcome=\"completed\"}") == 1.0
        }),
        "ctrl_tcp said {reply}\nbaresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    assert_eq!(
        target.invites.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the route's phone was called"
    );
    assert_eq!(
        edge.metric("edge_call_transfers_started_total{by=\"refer\"}"),
        1.0
    );
    assert!(edge.logged(5, "transfer completed"), "{}", edge.log_text());
    // The customer is still on the call, now with the route's phone.
    let calls = edge_tests::http::get(edge.http, "/api/v1/calls", Some(edge_tests::ADMIN_TOKEN))
        .unwrap()
        .json();
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1, "{calls}");
    assert_eq!(calls["calls"][0]["agent"], serde_json::Value::Null);
    assert_eq!(uac.bye(), 200);
    assert!(wait_until(5, || {
        target.byes.load(std::sync::atomic::Ordering::Relaxed) == 1
    }));
    edge.wait_idle(10);
}
