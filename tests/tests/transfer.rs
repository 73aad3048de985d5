//! Blind transfer through the real edge on loopback, proved with tones: the
//! customer sends 440 Hz, Alice (agent 1001) 1100 Hz, Bob (agent 1002) 1700 Hz.
//! After `POST /api/v1/calls/{id}/transfer` the customer hears Bob and no longer
//! Alice, Bob hears the customer, Alice's leg is ended, and the customer's RTP
//! stream never changes SSRC or skips a sequence number.

use edge_tests::http::{self, request_body};
use edge_tests::tone_peer::TonePeer;
use edge_tests::ua::{Uac, Uas};
use edge_tests::{wait_until, Edge, ADMIN_TOKEN, AGENT_TOKEN};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A queue that offers its calls to Alice only (so the first offer is hers).
const ALICE_QUEUE: &str = r#"
[[queues]]
name = "first-line"
numbers = ["7000"]
agents = ["1001"]
max_wait = "10s"
"#;

const WIN: usize = 400;

fn call_json(edge: &Edge, id: &str) -> serde_json::Value {
    http::get(edge.http, &format!("/api/v1/calls/{id}"), Some(ADMIN_TOKEN))
        .unwrap()
        .json()
}

/// What answered phone `p` hears, while it sends `hz` to where the edge wants it.
fn phone_tone(p: &Uas, hz: f64, ssrc: u32) -> TonePeer {
    TonePeer::start(
        p.rtp.try_clone().unwrap(),
        p.edge_rtp.lock().unwrap().unwrap(),
        hz,
        ssrc,
    )
}

/// Supervisor sam (phone `sam`, tone `hz`) monitors call `id` in `mode`.
fn sam_monitors(edge: &Edge, id: &str, mode: &str, sam: &Uas, hz: f64) -> TonePeer {
    let r = request_body(
        edge.http,
        "POST",
        &format!("/api/v1/calls/{id}/monitors"),
        Some("sam-token-1"),
        &format!(r#"{{"mode":"{mode}"}}"#),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(wait_until(5, || sam.edge_rtp.lock().unwrap().is_some()));
    phone_tone(sam, hz, 0x5A)
}

/// A customer (440 Hz) on queue 7000, answered by Alice (agent 1001, 1100 Hz),
/// hearing each other; Bob's phone (agent 1002) waits. The call's public id.
fn call_alice(edge: &Edge) -> (Uac, Uas, Uas, TonePeer, TonePeer, String) {
    let alice = Uas::spawn(edge.agent_ports[0]);
    let bob = Uas::spawn(edge.agent_ports[1]);
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("7000"), 200);
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC,
    );
    let a = phone_tone(&alice, 1100.0, 0xA1);
    assert!(
        wait_until(5, || c.hears(1100.0, WIN) && a.hears(440.0, WIN)),
        "customer and Alice hear each other"
    );
    let calls = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    assert_eq!(calls["calls"][0]["agent"], "1001");
    let id = calls["calls"][0]["id"].as_str().unwrap().to_string();
    (cust, alice, bob, c, a, id)
}

/// Bob's phone (answered, its RTP target known) sends 1700 Hz: the customer
/// hears Bob and not Alice, Bob hears the customer, Alice's leg is ended, and the
/// call is Bob's. Bob's tone peer.
fn bob_talks_to_the_customer(
    edge: &Edge,
    id: &str,
    bob: &Uas,
    alice: &Uas,
    c: &TonePeer,
) -> TonePeer {
    let b = phone_tone(bob, 1700.0, 0xB0B);
    assert!(
        wait_until(5, || c.hears(1700.0, WIN)
            && !c.hears(1100.0, WIN)
            && b.hears(440.0, WIN)),
        "the customer hears Bob (not Alice) and Bob hears the customer\n{}",
        edge.log_text()
    );
    assert!(
        wait_until(5, || alice.byes.load(Ordering::Relaxed) == 1),
        "Alice's leg is ended"
    );
    let call = call_json(edge, id);
    assert_eq!(call["agent"], "1002", "{call}");
    b
}

/// The call's (first) transfer event.
fn transfer_event(edge: &Edge, id: &str) -> serde_json::Value {
    let call = call_json(edge, id);
    call["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "transfer")
        .cloned()
        .unwrap_or_else(|| panic!("no transfer event: {call}"))
}

/// What the customer received since its last `clear`: one SSRC, sequence
/// numbers without a gap, timestamps only moving forward.
fn assert_one_stream(c: &TonePeer) {
    let g = c.received.lock().unwrap();
    let h = &g.headers;
    assert!(h.len() > 30, "{} packets", h.len());
    let changes: Vec<(usize, u32, u16, u32)> = h
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].0 != w[0].0)
        .map(|(i, w)| (i + 1, w[1].0, w[1].1, w[1].2))
        .collect();
    assert!(
        changes.is_empty(),
        "one SSRC towards the customer: first {:?}, changes (index, ssrc, seq, ts) {:?} of {}",
        h[0],
        changes,
        h.len()
    );
    let gaps = h
        .windows(2)
        .filter(|w| w[1].1.wrapping_sub(w[0].1) != 1)
        .count();
    assert_eq!(gaps, 0, "no sequence jump");
    let backwards = h
        .windows(2)
        .filter(|w| w[1].2.wrapping_sub(w[0].2) > 160 * 50)
        .count();
    assert_eq!(backwards, 0, "timestamps only move forward");
}

#[test]
fn api_blind_transfer_moves_the_customer_to_the_new_agent_with_one_continuous_stream() {
    let edge = Edge::start_with(ALICE_QUEUE);
    let (mut cust, alice, bob, c, a, id) = call_alice(&edge);
    let path = format!("/api/v1/calls/{id}/transfer");

    // Who may, and what is refused.
    for (token, body, status, why) in [
        (AGENT_TOKEN, r#"{"to":"1002"}"#, 403, "another agent's call"),
        (ADMIN_TOKEN, r#"{"to":"4242"}"#, 404, "no such target"),
        (ADMIN_TOKEN, r#"{"to":"1001"}"#, 403, "a transfer to itself"),
        (
            ADMIN_TOKEN,
            r#"{"to":"sip:x@192.0.2.1:5060"}"#,
            403,
            "a URI no route allows",
        ),
        (ADMIN_TOKEN, r#"{"too":"1"}"#, 400, "bad JSON"),
    ] {
        let r = request_body(edge.http, "POST", &path, Some(token), body).unwrap();
        assert_eq!(r.status, status, "{why}: {}", r.body);
    }
    c.clear();
    let r = request_body(
        edge.http,
        "POST",
        &path,
        Some(ADMIN_TOKEN),
        r#"{"to":"1002"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        wait_until(5, || bob.edge_rtp.lock().unwrap().is_some()),
        "Bob's phone is called"
    );
    let b = bob_talks_to_the_customer(&edge, &id, &bob, &alice, &c);
    let transfer = transfer_event(&edge, &id);
    assert_eq!(transfer["outcome"], "completed", "{transfer}");
    assert_eq!(transfer["by"], "api");
    assert_eq!(transfer["to"], "1002");
    std::thread::sleep(Duration::from_millis(500));

    // The customer's stream: one SSRC, sequence numbers without a gap, timestamps
    // moving forward with time, across relay (Alice) → ringback → relay (Bob).
    assert_one_stream(&c);

    assert_eq!(cust.bye(), 200);
    assert!(wait_until(5, || bob.byes.load(Ordering::Relaxed) == 1));
    edge.wait_idle(10);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"blind\",outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("edge_call_transfers_started_total{by=\"api\"}"),
        1.0
    );
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    drop((a, b, c));
}

/// `loadtest answer --refer-to` as agents transferring every call blind through
/// the edge to a second `loadtest answer`: every REFER accepted, every transfer
/// completed, every call then ended by the caller at the target (the benchmark's
/// tool, checked here at a small rate).
#[test]
fn loadtest_agents_transfer_every_call_and_the_target_gets_each_bye() {
    use edge_tests::{free_port, loadtest_binary, run_with_timeout};
    use std::process::{Command, Stdio};
    let first = free_port();
    let edge = Edge::start_with(&format!(
        r#"
[[routes]]
number = "first"
target = "sip:first@127.0.0.1:{first}"
"#
    ));
    let answer = |port: u16, extra: &[&str]| {
        Command::new(loadtest_binary())
            .args([
                "answer",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--quiet",
            ])
            .args(["--calls", "20"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start loadtest answer")
    };
    let refer_to = format!("sip:service@{}", edge.sip);
    let agents = answer(first, &["--refer-to", &refer_to, "--refer-after", "300ms"]);
    let target = answer(edge.route_port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let mut cmd = Command::new(loadtest_binary());
    cmd.args(["call", "--target", &edge.sip.to_string(), "--quiet"])
        .args(["--to", "first", "--calls", "20", "--rate", "10"])
        .args(["--duration", "1500ms"]);
    let (code, out, err) = run_with_timeout(&mut cmd, 60);
    let caller: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(code, 0, "{err}\n{out}\n{}", edge.log_text());
    assert_eq!(caller["calls"]["answered"], 20, "{caller}");
    let json = |c: std::process::Child| -> serde_json::Value {
        let o = c.wait_with_output().unwrap();
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
    };
    let a = json(agents);
    let t = json(target);
    let tr = &a["transfers"];
    assert_eq!(tr["referred"], 20, "{a}");
    assert_eq!(tr["refer_status"]["202"], 20, "{a}");
    assert_eq!(tr["completed"], 20, "{a}");
    assert_eq!(tr["failed"], 0, "{a}");
    assert_eq!(t["calls"]["answered"], 20, "{t}");
    edge.wait_idle(10);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"blind\",outcome=\"completed\"}"),
        20.0
    );
    assert_eq!(edge.metric("edge_calls_ended_total{status=\"200\"}"), 20.0);
}

/// A recorded queue of Alice's, and a supervisor whose phone is at `sam_port`.
fn recorded(sam_port: u16) -> String {
    format!(
        r#"
[[queues]]
name = "first-line"
numbers = ["7000"]
agents = ["1001"]
max_wait = "10s"
record = true

[[users]]
name = "sam"
role = "supervisor"
token = "sam-token-1"
contact = "sip:sam@127.0.0.1:{sam_port}"
"#
    )
}

#[test]
fn a_supervisor_keeps_listening_and_the_recording_keeps_its_channels_across_a_transfer() {
    use media::tone::detect;
    let sam_port = edge_tests::free_port();
    let edge = Edge::start_with(&recorded(sam_port));
    let sam = Uas::spawn(sam_port);
    let t0 = std::time::Instant::now();
    let (mut cust, _alice, bob, c, a, id) = call_alice(&edge);
    let s = sam_monitors(&edge, &id, "listen", &sam, 2300.0);
    assert!(
        wait_until(5, || s.hears(440.0, WIN) && s.hears(1100.0, WIN)),
        "the supervisor hears customer and Alice"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let before = t0.elapsed();
    let path = format!("/api/v1/calls/{id}/transfer");
    let r = request_body(
        edge.http,
        "POST",
        &path,
        Some("sam-token-1"),
        r#"{"to":"1002"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 202, "a supervisor may transfer: {}", r.body);
    assert!(wait_until(5, || bob.edge_rtp.lock().unwrap().is_some()));
    let b = phone_tone(&bob, 1700.0, 0xB0B);
    assert!(
        wait_until(5, || s.hears(440.0, WIN)
            && s.hears(1700.0, WIN)
            && !s.hears(1100.0, WIN)),
        "the supervisor now hears customer and Bob, not Alice"
    );
    assert!(
        !c.hears(2300.0, WIN) && !b.hears(2300.0, WIN),
        "listen stays silent"
    );
    let after = t0.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    let end = t0.elapsed();
    let monitors = http::get(edge.http, &format!("/api/v1/calls/{id}"), Some(ADMIN_TOKEN))
        .unwrap()
        .json()["monitors"]
        .clone();
    assert_eq!(monitors[0]["state"], "active", "{monitors}");
    assert_eq!(cust.bye(), 200);
    edge.wait_idle(10);
    drop((a, b, c, s));

    // The recording: customer left throughout; Alice right before, Bob after.
    let wav = edge
        .dir
        .path()
        .join("data")
        .join("archive")
        .join(format!("{id}.wav"));
    assert!(wait_until(20, || wav.exists()), "the recording is archived");
    let (left, right) = edge_tests::wav_channels(&std::fs::read(&wav).unwrap());
    let at = |d: Duration| ((d.as_secs_f64() * 8000.0) as usize).min(left.len());
    let first = at(Duration::from_millis(500))..at(before - Duration::from_millis(100));
    let second = at(after + Duration::from_millis(200))..at(end - Duration::from_millis(200));
    assert!(
        first.len() > 4000 && second.len() > 4000,
        "{first:?} {second:?}"
    );
    assert!(
        detect(&left[first.clone()], 440.0, 8000),
        "customer left, before"
    );
    assert!(
        detect(&left[second.clone()], 440.0, 8000),
        "customer left, after"
    );
    assert!(
        detect(&right[first.clone()], 1100.0, 8000),
        "Alice right, before"
    );
    assert!(!detect(&right[first], 1700.0, 8000));
    assert!(
        detect(&right[second.clone()], 1700.0, 8000),
        "Bob right, after"
    );
    assert!(!detect(&right[second.clone()], 1100.0, 8000), "Alice gone");
    assert!(
        !detect(&left[second.clone()], 2300.0, 8000) && !detect(&right[second], 2300.0, 8000),
        "a listening supervisor is not recorded"
    );
}

#[test]
fn api_consult_lets_the_agents_talk_privately_then_hands_the_customer_over() {
    let edge = Edge::start_with(ALICE_QUEUE);
    let (mut cust, alice, bob, c, a, id) = call_alice(&edge);
    let post = |path: &str, body: &str| {
        request_body(
            edge.http,
            "POST",
            &format!("/api/v1/calls/{id}/{path}"),
            Some(ADMIN_TOKEN),
            body,
        )
        .unwrap()
    };
    let r = post("consult/complete", "");
    assert_eq!(r.status, 409, "nothing to complete: {}", r.body);
    let r = post("consult", r#"{"to":"1002"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(5, || bob.edge_rtp.lock().unwrap().is_some()));
    let consult_port = bob.edge_rtp.lock().unwrap().unwrap();
    let b = TonePeer::start(bob.rtp.try_clone().unwrap(), consult_port, 1700.0, 0xB0B);
    assert!(
        wait_until(5, || a.hears(1700.0, WIN)
            && !a.hears(440.0, WIN)
            && b.hears(1100.0, WIN)
            && !b.hears(440.0, WIN)),
        "Alice and Bob talk; neither hears the customer (on hold)"
    );
    assert!(
        !c.hears(1100.0, WIN) && !c.hears(1700.0, WIN),
        "the customer hears neither agent"
    );
    c.clear();
    let r = post("consult/complete", "");
    assert_eq!(r.status, 202, "{}", r.body);
    // Bob's phone is moved (re-INVITE) to the call's own port: follow it.
    assert!(
        wait_until(5, || *bob.edge_rtp.lock().unwrap() != Some(consult_port)),
        "Bob is re-INVITEd to another port"
    );
    drop(b);
    let b = bob_talks_to_the_customer(&edge, &id, &bob, &alice, &c);
    let ev = transfer_event(&edge, &id);
    assert_eq!(
        (ev["kind"].as_str(), ev["outcome"].as_str()),
        (Some("consult"), Some("completed"))
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_one_stream(&c);
    assert_eq!(cust.bye(), 200);
    assert!(wait_until(5, || bob.byes.load(Ordering::Relaxed) == 1));
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"consult\",outcome=\"completed\"}"),
        1.0
    );
    drop((a, b, c));
}

/// `PATCH` a participant's flags (as an admin).
fn patch_participant(edge: &Edge, id: &str, pid: &str, body: &str) {
    let r = request_body(
        edge.http,
        "PATCH",
        &format!("/api/v1/calls/{id}/participants/{pid}"),
        Some(ADMIN_TOKEN),
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_four_party_conference_proves_who_hears_whom_for_every_flag() {
    let sam_port = edge_tests::free_port();
    let edge = Edge::start_with(&format!(
        "{ALICE_QUEUE}\n[[users]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken = \"sam-token-1\"\ncontact = \"sip:sam@127.0.0.1:{sam_port}\"\n"
    ));
    let sam = Uas::spawn(sam_port);
    let carol = Uas::spawn(edge.route_port);
    let (mut cust, alice, bob, c, a, id) = call_alice(&edge);
    let add = |to: &str| {
        let r = request_body(
            edge.http,
            "POST",
            &format!("/api/v1/calls/{id}/participants"),
            Some(ADMIN_TOKEN),
            &format!(r#"{{"to":"{to}"}}"#),
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_str().unwrap().to_string()
    };
    let bob_id = add("1002");
    let carol_id = add("service");
    assert!(wait_until(5, || bob.edge_rtp.lock().unwrap().is_some()
        && carol.edge_rtp.lock().unwrap().is_some()));
    let b = phone_tone(&bob, 1700.0, 0xB0B);
    let k = phone_tone(&carol, 2300.0, 0xCA);
    let peers = [(&c, 440.0), (&a, 1100.0), (&b, 1700.0), (&k, 2300.0)];
    // Who hears whom: `ears[i][j]` = party i hears party j's tone.
    let check = |what: &str, ears: [[bool; 4]; 4]| {
        let ok = wait_until(6, || {
            peers.iter().enumerate().all(|(i, (p, _))| {
                peers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .all(|(j, (_, hz))| p.hears(*hz, WIN) == ears[i][j])
            })
        });
        let got: Vec<Vec<bool>> = peers
            .iter()
            .map(|(p, _)| peers.iter().map(|(_, hz)| p.hears(*hz, WIN)).collect())
            .collect();
        assert!(ok, "{what}: heard {got:?}, wanted {ears:?}");
    };
    let all = [[true; 4]; 4];
    check("everyone hears everyone", all);
    let call = call_json(&edge, &id);
    assert_eq!(call["participants"].as_array().unwrap().len(), 4, "{call}");
    assert_eq!(edge.metric("edge_conferences{parties=\"4\"}"), 1.0);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"conference\",outcome=\"added\"}"),
        2.0
    );

    patch_participant(&edge, &id, &bob_id, r#"{"muted":true}"#);
    let mut ears = all;
    ears.iter_mut().for_each(|e| e[2] = false);
    check("Bob muted: heard by nobody", ears);
    patch_participant(&edge, &id, &bob_id, r#"{"muted":false}"#);

    patch_participant(&edge, &id, &carol_id, r#"{"deaf":true}"#);
    let mut ears = all;
    ears[3] = [false; 4];
    check("Carol deaf: hears nobody, is heard", ears);
    patch_participant(&edge, &id, &carol_id, r#"{"deaf":false}"#);

    patch_participant(&edge, &id, "customer", r#"{"muted":true}"#);
    let mut ears = all;
    ears.iter_mut().for_each(|e| e[0] = false);
    check("the customer muted", ears);
    patch_participant(&edge, &id, "customer", r#"{"muted":false}"#);

    patch_participant(&edge, &id, &bob_id, r#"{"held":true}"#);
    let mut ears = all;
    ears.iter_mut().for_each(|e| e[2] = false);
    ears[2] = [false; 4];
    check("Bob held: hears only hold audio, heard by nobody", ears);
    patch_participant(&edge, &id, &bob_id, r#"{"held":false}"#);
    check("Bob back", all);

    // A supervisor whispers to the agent in the conference: only the agent hears
    // it; the supervisor hears all four.
    let s = sam_monitors(&edge, &id, "whisper", &sam, 2900.0);
    assert!(
        wait_until(6, || a.hears(2900.0, WIN)
            && [440.0, 1100.0, 1700.0, 2300.0]
                .iter()
                .all(|hz| s.hears(*hz, WIN))),
        "the agent hears the whisper; the supervisor hears everyone"
    );
    assert!(
        [&c, &b, &k].iter().all(|p| !p.hears(2900.0, WIN)),
        "customer and members never hear a whisper"
    );
    drop(s);

    // Digits to a member reach it in its own stream.
    let r = request_body(
        edge.http,
        "POST",
        &format!("/api/v1/calls/{id}/participants/{bob_id}/dtmf"),
        Some(ADMIN_TOKEN),
        r#"{"digits":"5"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(wait_until(5, || b.got_event(5)), "Bob gets digit 5");
    assert!(!c.got_event(5) && !k.got_event(5), "only Bob");
    let r = request_body(
        edge.http,
        "DELETE",
        &format!("/api/v1/calls/{id}/participants/{bob_id}"),
        Some(ADMIN_TOKEN),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(wait_until(5, || bob.byes.load(Ordering::Relaxed) == 1));
    // Bob's tone peer still sends, but to a closed port: nobody hears it, and
    // nothing reaches him.
    b.clear();
    assert!(
        wait_until(6, || [&c, &a, &k].iter().all(|p| !p.hears(1700.0, WIN))
            && c.hears(1100.0, WIN)
            && c.hears(2300.0, WIN)
            && k.hears(440.0, WIN)
            && a.hears(2300.0, WIN)),
        "Bob removed: the three others go on"
    );
    assert_eq!(b.packets(), 0, "nothing reaches a removed party");
    assert_eq!(edge.metric("edge_conferences{parties=\"3\"}"), 1.0);
    // The customer leaves: the agent and Carol go on.
    assert_eq!(cust.bye(), 200);
    a.clear();
    k.clear();
    assert!(
        wait_until(6, || a.hears(2300.0, WIN) && k.hears(1100.0, WIN)),
        "the agent and Carol still talk"
    );
    assert!(
        !a.hears(440.0, WIN) && !k.hears(440.0, WIN),
        "the customer is gone"
    );
    assert_eq!(carol.byes.load(Ordering::Relaxed), 0);
    // Carol leaves (removed): the agent is alone, the call ends.
    let r = request_body(
        edge.http,
        "DELETE",
        &format!("/api/v1/calls/{id}/participants/{carol_id}"),
        Some(ADMIN_TOKEN),
        "",
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(wait_until(5, || carol.byes.load(Ordering::Relaxed) == 1
        && alice.byes.load(Ordering::Relaxed) == 1));
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    drop((a, b, c, k));
}

#[test]
fn a_conference_goes_on_when_the_agent_hangs_up_a_member_takes_its_place() {
    if !edge_tests::have_tool("sipp") {
        return;
    }
    let edge = Edge::start_with(ALICE_QUEUE);
    let bob = Uas::spawn(edge.agent_ports[1]);
    // Alice's phone is SIPp: it answers and hangs up 3 s later.
    let sf = edge_tests::scenario("uas_hang_up_later.xml");
    let (port, mp) = (
        edge.agent_ports[0].to_string(),
        edge_tests::free_ports(4).to_string(),
    );
    let alice = edge_tests::Sipp::spawn(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-mp",
        &mp,
        "-d",
        "3000",
        "-m",
        "1",
        "-timeout",
        "60s",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("7000"), 200);
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC,
    );
    let calls = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    let id = calls["calls"][0]["id"].as_str().unwrap().to_string();
    let r = request_body(
        edge.http,
        "POST",
        &format!("/api/v1/calls/{id}/participants"),
        Some(ADMIN_TOKEN),
        r#"{"to":"1002"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(wait_until(5, || bob.edge_rtp.lock().unwrap().is_some()));
    let first = bob.edge_rtp.lock().unwrap().unwrap();
    let b = TonePeer::start(bob.rtp.try_clone().unwrap(), first, 1700.0, 0xB0B);
    assert!(
        wait_until(5, || c.hears(1700.0, WIN)),
        "the member is heard"
    );
    // Alice hangs up: Bob is moved (re-INVITE) onto the call's own port.
    assert!(
        wait_until(8, || *bob.edge_rtp.lock().unwrap() != Some(first)),
        "Bob takes Alice's place\n{}",
        edge.log_text()
    );
    drop(b);
    let b = phone_tone(&bob, 1700.0, 0xB0C);
    c.clear();
    assert!(
        wait_until(5, || c.hears(1700.0, WIN) && b.hears(440.0, WIN)),
        "the customer and Bob go on"
    );
    let call = call_json(&edge, &id);
    assert_eq!(call["agent"], "1002", "{call}");
    assert_eq!(call["participants"].as_array().unwrap().len(), 2, "{call}");
    let (code, errors, ok) = alice.finish(30);
    assert_eq!((code, ok), (0, Some(1)), "Alice's phone: {errors}");
    assert_eq!(cust.bye(), 200);
    assert!(wait_until(5, || bob.byes.load(Ordering::Relaxed) == 1));
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    drop((b, c));
}
