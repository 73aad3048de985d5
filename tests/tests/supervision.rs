//! Supervision through the real edge on loopback, proved with tones: the customer
//! sends 440 Hz, the agent 1100 Hz, supervisors 1700 Hz (and 2300 Hz); a Goertzel
//! detector on what each phone receives and on the recording's two channels shows
//! listen, whisper and barge; RFC 4733 digits switch modes and reach the call's
//! events; each party's RTP stays continuous; permissions and errors.

use edge_tests::http::{self, request_body};
use edge_tests::tone_peer::TonePeer;
use edge_tests::ua::{Uac, Uas};
use edge_tests::{free_port, tone_wav, Edge, ADMIN_TOKEN, AGENT_TOKEN};
use media::tone::goertzel;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SAM: &str = "sam-token-1";
const KIM: &str = "kim-token-1";

fn users(sam_port: u16, kim_port: u16) -> String {
    format!(
        r#"
[[routes]]
number = "rec"
target = "sip:rec@127.0.0.1:{{route_port}}"
record = true

[[users]]
name = "sam"
role = "supervisor"
token = "{SAM}"
contact = "sip:sam@127.0.0.1:{sam_port}"

[[users]]
name = "kim"
role = "supervisor"
token = "{KIM}"
contact = "sip:kim@127.0.0.1:{kim_port}"
"#
    )
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn call_json(edge: &Edge, id: &str) -> serde_json::Value {
    http::get(edge.http, &format!("/api/v1/calls/{id}"), Some(ADMIN_TOKEN))
        .unwrap()
        .json()
}

fn only_call(edge: &Edge) -> String {
    let r = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN)).unwrap();
    r.json()["calls"][0]["id"].as_str().unwrap().to_string()
}

fn post(edge: &Edge, path: &str, token: &str, body: &str) -> http::Reply {
    request_body(edge.http, "POST", path, Some(token), body).unwrap()
}

/// Start monitoring and wait until the supervisor's phone has the edge's RTP address.
fn monitor(edge: &Edge, call: &str, token: &str, body: &str, phone: &Uas) -> (String, SocketAddr) {
    let r = post(edge, &format!("/api/v1/calls/{call}/monitors"), token, body);
    assert_eq!(r.status, 201, "{}", r.body);
    let mid = r.json()["id"].as_str().unwrap().to_string();
    let mut addr = None;
    wait_for("the supervisor's phone to be called", 10, || {
        addr = *phone.edge_rtp.lock().unwrap();
        addr.is_some()
    });
    wait_for("the monitor to be active", 10, || {
        call_json(edge, call)["monitors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == mid.as_str() && m["state"] == "active")
    });
    (mid, addr.unwrap())
}

/// Let a phase run, then look at what each phone heard in its last `ms`.
fn settle() {
    std::thread::sleep(Duration::from_millis(900));
}

const WIN: usize = 500;

fn tones(p: &TonePeer) -> [bool; 3] {
    [
        p.hears(440.0, WIN),
        p.hears(1100.0, WIN),
        p.hears(1700.0, WIN),
    ]
}

fn has(s: &[i16], hz: f64) -> bool {
    media::tone::detect(s, hz, 8000)
}

#[test]
fn listen_whisper_barge_dtmf_and_the_recording_by_tone() {
    let sam = Uas::spawn(0);
    let edge = Edge::start_with(&users(sam.port, free_port()));
    let agent = Uas::spawn(edge.route_port);
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("rec"), 200);
    let t0 = Instant::now();
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC0FFEE,
    );
    let a = TonePeer::start(
        agent.rtp.try_clone().unwrap(),
        agent.edge_rtp.lock().unwrap().unwrap(),
        1100.0,
        0xA6E47,
    );
    let call = only_call(&edge);
    assert_eq!(call_json(&edge, &call)["recording"], "recording");

    // Permissions and errors first.
    let path = format!("/api/v1/calls/{call}/monitors");
    assert_eq!(
        post(&edge, &path, AGENT_TOKEN, r#"{"user":"sam"}"#).status,
        403
    );
    assert_eq!(
        post(&edge, &path, KIM, r#"{"user":"sam"}"#).status,
        403,
        "only your own phone"
    );
    let nope = post(
        &edge,
        "/api/v1/calls/nope/monitors",
        SAM,
        r#"{"mode":"listen"}"#,
    );
    assert_eq!(nope.status, 404);
    assert!(nope.body.contains("no such call"));
    assert_eq!(post(&edge, &path, SAM, r#"{"mode":"shout"}"#).status, 422);
    assert_eq!(post(&edge, &path, SAM, "{not json").status, 400);
    assert_eq!(
        post(&edge, &path, ADMIN_TOKEN, r#"{"user":"ann"}"#).status,
        422,
        "agents cannot monitor"
    );

    let (mid, sam_rtp) = monitor(&edge, &call, SAM, r#"{"user":"sam","mode":"listen"}"#, &sam);
    let s = TonePeer::start(sam.rtp.try_clone().unwrap(), sam_rtp, 1700.0, 0x5A);
    let listen_from = t0.elapsed();
    settle();
    let listen_to = t0.elapsed();
    assert_eq!(
        tones(&s),
        [true, true, false],
        "listen: supervisor hears both parties"
    );
    assert_eq!(
        tones(&a),
        [true, false, false],
        "listen: the agent hears only the customer"
    );
    assert_eq!(
        tones(&c),
        [false, true, false],
        "listen: the customer hears only the agent"
    );

    let r = request_body(
        edge.http,
        "PATCH",
        &format!("{path}/{mid}"),
        Some(SAM),
        r#"{"mode":"whisper"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let whisper_from = t0.elapsed();
    settle();
    let whisper_to = t0.elapsed();
    assert_eq!(
        tones(&a),
        [true, false, true],
        "whisper: the agent hears customer + supervisor"
    );
    assert_eq!(
        tones(&c),
        [false, true, false],
        "whisper: the customer never hears it"
    );
    assert_eq!(tones(&s), [true, true, false]);

    // Barge by DTMF 6 from Sam's phone (RFC 4733).
    s.send_digit('6');
    wait_for("DTMF 6 to switch to barge", 5, || {
        call_json(&edge, &call)["monitors"][0]["mode"] == "barge"
    });
    let barge_from = t0.elapsed();
    settle();
    let barge_to = t0.elapsed();
    assert_eq!(
        tones(&a),
        [true, false, true],
        "barge: the agent hears everyone"
    );
    assert_eq!(
        tones(&c),
        [false, true, true],
        "barge: the customer hears the supervisor"
    );

    // The customer presses # : it reaches the agent and the call's events.
    c.send_digit('#');
    wait_for("the customer's digit in the call's events", 5, || {
        call_json(&edge, &call)["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["digit"] == "#" && e["from"] == "customer")
    });

    // Back to listen by DTMF 4, then pause the recording (an agent may).
    s.send_digit('4');
    wait_for("DTMF 4 to switch to listen", 5, || {
        call_json(&edge, &call)["monitors"][0]["mode"] == "listen"
    });
    settle();
    assert_eq!(
        tones(&a),
        [true, false, false],
        "listen again: the agent hears no supervisor"
    );
    assert_eq!(tones(&c), [false, true, false]);
    let rec = format!("/api/v1/calls/{call}/recording");
    assert_eq!(
        post(&edge, &rec, AGENT_TOKEN, r#"{"state":"paused"}"#).status,
        200
    );
    let pause_from = t0.elapsed();
    assert_eq!(call_json(&edge, &call)["recording"], "paused");
    settle();
    let pause_to = t0.elapsed();
    assert_eq!(
        post(&edge, &rec, AGENT_TOKEN, r#"{"state":"recording"}"#).status,
        200
    );
    assert_eq!(
        post(&edge, &rec, AGENT_TOKEN, r#"{"state":"off"}"#).status,
        422
    );

    // Sam leaves: the call goes on undisturbed.
    let del = request_body(edge.http, "DELETE", &format!("{path}/{mid}"), Some(SAM), "").unwrap();
    assert_eq!(del.status, 204);
    wait_for("Sam's phone to get BYE", 5, || {
        sam.byes.load(std::sync::atomic::Ordering::Relaxed) == 1
    });
    assert_eq!(
        request_body(edge.http, "DELETE", &format!("{path}/{mid}"), Some(SAM), "")
            .unwrap()
            .status,
        404
    );
    settle();
    assert_eq!(tones(&a), [true, false, false]);
    assert_eq!(tones(&c), [false, true, false]);

    // Each party's incoming stream stayed one stream: SSRC constant, no sequence jump.
    for (who, peer) in [("agent", &a), ("customer", &c)] {
        let g = peer.received.lock().unwrap();
        let audio: Vec<_> = g.headers.iter().collect();
        let ssrc = audio[0].0;
        assert!(audio.iter().all(|h| h.0 == ssrc), "{who}: one SSRC");
        let jumps = audio
            .windows(2)
            .filter(|w| w[1].1 != w[0].1.wrapping_add(1))
            .count();
        assert_eq!(
            jumps, 0,
            "{who}: sequence numbers continue across the switches"
        );
    }
    assert_eq!(
        a.received.lock().unwrap().headers[0].0,
        0xC0FFEE,
        "the agent gets the customer's own stream while nobody whispers"
    );
    assert!(
        a.received
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|(e, end)| *e == 11 && *end),
        "RFC 4733 # relayed end to end"
    );

    assert_eq!(cust.bye(), 200);
    edge.wait_idle(10);
    drop((c, a, s));

    // The recording: archived by the upload (fs target) with its metadata.
    let archive = edge.dir.path().join("data").join("archive");
    let wav = archive.join(format!("{call}.wav"));
    wait_for("the recording in the archive", 20, || wav.exists());
    let bytes = std::fs::read(&wav).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join(format!("{call}.json"))).unwrap())
            .unwrap();
    assert_eq!(meta["call_id"], call.as_str());
    assert_eq!(meta["route"], "rec");
    assert_eq!(meta["callee"], "rec");
    let paused = meta["paused"].as_array().unwrap();
    assert_eq!(paused.len(), 1, "{meta}");
    let sha = {
        use edge_tests::sha2::{Digest, Sha256};
        let h = Sha256::digest(&bytes);
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(meta["sha256"], sha.as_str());
    let (left, right) = edge_tests::wav_channels(&bytes);
    // Windows well inside each phase (recording time ≈ time since the answer).
    let span = |from: Duration, to: Duration| {
        let a = (from.as_secs_f64() + 0.3) * 8000.0;
        let b = (to.as_secs_f64() - 0.1) * 8000.0;
        assert!(b > a + 1600.0, "phase too short");
        (a as usize, (b as usize).min(left.len()))
    };
    let (l0, l1) = span(listen_from, listen_to);
    let g = |s: &[i16]| [440.0, 1100.0, 1700.0].map(|hz| goertzel(s, hz, 8000) as i64);
    eprintln!(
        "listen window {l0}..{l1} of {}: left {:?} right {:?}",
        left.len(),
        g(&left[l0..l1]),
        g(&right[l0..l1])
    );
    assert!(
        has(&left[l0..l1], 440.0) && !has(&left[l0..l1], 1100.0) && !has(&left[l0..l1], 1700.0)
    );
    assert!(
        has(&right[l0..l1], 1100.0) && !has(&right[l0..l1], 440.0) && !has(&right[l0..l1], 1700.0)
    );
    let (w0, w1) = span(whisper_from, whisper_to);
    assert!(
        !has(&left[w0..w1], 1700.0) && !has(&right[w0..w1], 1700.0),
        "whisper never recorded"
    );
    assert!(has(&left[w0..w1], 440.0) && has(&right[w0..w1], 1100.0));
    let (b0, b1) = span(barge_from, barge_to);
    assert!(
        has(&right[b0..b1], 1700.0),
        "barge: the supervisor the customer heard, on the agent channel"
    );
    assert!(!has(&left[b0..b1], 1700.0), "never on the customer channel");
    let (p0, p1) = span(pause_from, pause_to);
    assert!(
        left[p0..p1].iter().chain(&right[p0..p1]).all(|x| *x == 0),
        "paused = silence"
    );
    let from = paused[0]["from_secs"].as_f64().unwrap();
    assert!(
        (from - pause_from.as_secs_f64()).abs() < 0.5,
        "{from} vs {:?}",
        pause_from
    );
}

#[test]
fn two_supervisors_and_the_call_ending_while_monitored() {
    let (sam, kim) = (Uas::spawn(0), Uas::spawn(0));
    let edge = Edge::start_with(&users(sam.port, kim.port));
    let agent = Uas::spawn(edge.route_port);
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("service"), 200, "an unrecorded route: relay only");
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC,
    );
    let a = TonePeer::start(
        agent.rtp.try_clone().unwrap(),
        agent.edge_rtp.lock().unwrap().unwrap(),
        1100.0,
        0xA,
    );
    let call = only_call(&edge);
    assert_eq!(call_json(&edge, &call)["recording"], "off");
    settle();
    let (_, sam_rtp) = monitor(&edge, &call, SAM, r#"{"mode":"listen"}"#, &sam);
    let (_, kim_rtp) = monitor(
        &edge,
        &call,
        ADMIN_TOKEN,
        r#"{"user":"kim","mode":"whisper"}"#,
        &kim,
    );
    let s = TonePeer::start(sam.rtp.try_clone().unwrap(), sam_rtp, 1700.0, 0x5);
    let k = TonePeer::start(kim.rtp.try_clone().unwrap(), kim_rtp, 2300.0, 0x6);
    assert_eq!(edge.metric("edge_monitors_active"), 2.0);
    settle();
    assert!(
        s.hears(440.0, WIN) && s.hears(1100.0, WIN) && s.hears(2300.0, WIN),
        "Sam hears the call and Kim's whisper"
    );
    assert!(!s.hears(1700.0, WIN));
    assert!(
        k.hears(440.0, WIN) && k.hears(1100.0, WIN) && !k.hears(1700.0, WIN),
        "nobody hears a listener"
    );
    assert!(a.hears(440.0, WIN) && a.hears(2300.0, WIN) && !a.hears(1700.0, WIN));
    assert!(c.hears(1100.0, WIN) && !c.hears(2300.0, WIN) && !c.hears(1700.0, WIN));
    let calls = call_json(&edge, &call);
    assert_eq!(calls["monitors"].as_array().unwrap().len(), 2, "{calls}");

    // An agent sends digits to the customer (RFC 4733 in the customer's stream).
    let dtmf = format!("/api/v1/calls/{call}/dtmf");
    assert_eq!(
        post(&edge, &dtmf, AGENT_TOKEN, r#"{"digits":"12#"}"#).status,
        202
    );
    assert_eq!(
        post(&edge, &dtmf, AGENT_TOKEN, r#"{"digits":"1x"}"#).status,
        422
    );
    assert_eq!(
        post(&edge, &dtmf, AGENT_TOKEN, r#"{"digits":"1","to":"boss"}"#).status,
        422
    );
    wait_for("three digits at the customer", 5, || {
        let g = c.received.lock().unwrap();
        let mut ends: Vec<u8> = g.events.iter().filter(|e| e.1).map(|e| e.0).collect();
        ends.dedup();
        ends == [1, 2, 11]
    });

    // The customer hangs up: both supervisors' phones get BYE, nothing is left.
    assert_eq!(cust.bye(), 200);
    edge.wait_idle(10);
    wait_for("both supervisors to get BYE", 5, || {
        sam.byes.load(std::sync::atomic::Ordering::Relaxed) == 1
            && kim.byes.load(std::sync::atomic::Ordering::Relaxed) == 1
    });
    wait_for("monitor legs to close", 5, || {
        edge.metric("edge_monitors_active") == 0.0
    });
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    // The agent's stream stayed continuous through relay → whisper mix.
    let g = a.received.lock().unwrap();
    let other: Vec<_> = g
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.0 != 0xC)
        .take(5)
        .collect();
    assert!(
        other.is_empty(),
        "SSRC kept when mixing started: {other:?} of {}",
        g.headers.len()
    );
    let jumps = g
        .headers
        .windows(2)
        .filter(|w| w[1].1 != w[0].1.wrapping_add(1))
        .count();
    assert_eq!(jumps, 0);
}

#[test]
fn announcement_to_the_agent_only_api_hold_with_hold_audio_and_the_monitor_beep() {
    let dir = std::env::temp_dir().join(format!("edge-ann-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ann, hold) = (dir.join("sales.wav"), dir.join("hold.wav"));
    tone_wav(&ann, 2300.0, 1.5);
    tone_wav(&hold, 700.0, 0.5);
    let sam = Uas::spawn(0);
    let extra = users(sam.port, free_port())
        + &format!(
            r#"
[[routes]]
number = "ann"
target = "sip:ann@127.0.0.1:{{route_port}}"
record = true
announcement = "{}"
hold_audio = "{}"
beep_on_monitor = true
"#,
            ann.display(),
            hold.display()
        );
    let edge = Edge::start_with(&extra);
    let agent = Uas::spawn(edge.route_port);
    // The customer's INVITE is answered only after the announcement: call in a thread.
    let sip = edge.sip;
    let caller = std::thread::spawn(move || {
        let mut cust = Uac::new(sip);
        let code = cust.call("ann");
        (cust, code, Instant::now())
    });
    wait_for("the agent to be called", 10, || {
        agent.edge_rtp.lock().unwrap().is_some()
    });
    let answered_agent = Instant::now();
    let a = TonePeer::start(
        agent.rtp.try_clone().unwrap(),
        agent.edge_rtp.lock().unwrap().unwrap(),
        1100.0,
        0xA6E47,
    );
    std::thread::sleep(Duration::from_millis(700));
    let call = only_call(&edge);
    assert_eq!(call_json(&edge, &call)["state"], "announcing");
    assert!(a.hears(2300.0, WIN), "the agent hears the announcement");
    let (mut cust, code, answered_customer) = caller.join().unwrap();
    assert_eq!(code, 200);
    let waited = answered_customer - answered_agent;
    assert!(
        waited >= Duration::from_millis(1300),
        "the customer is connected after the 1.5 s announcement ({waited:?})"
    );
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC0FFEE,
    );
    let connected = Instant::now();
    settle();
    assert!(
        a.hears(440.0, WIN) && !a.hears(2300.0, WIN),
        "then the customer"
    );
    assert!(c.hears(1100.0, WIN));
    assert!(
        !c.received.lock().unwrap().samples.is_empty() && {
            let g = c.received.lock().unwrap();
            !media::tone::detect(&g.samples, 2300.0, 8000)
        },
        "the customer never hears the announcement"
    );

    // API hold of the customer: hold audio (700 Hz) to the customer, silence to the agent.
    let hold_path = format!("/api/v1/calls/{call}/hold");
    assert_eq!(
        post(
            &edge,
            &hold_path,
            AGENT_TOKEN,
            r#"{"party":"boss","held":true}"#
        )
        .status,
        422
    );
    assert_eq!(
        post(
            &edge,
            "/api/v1/calls/nope/hold",
            AGENT_TOKEN,
            r#"{"party":"customer","held":true}"#
        )
        .status,
        404
    );
    let r = post(
        &edge,
        &hold_path,
        AGENT_TOKEN,
        r#"{"party":"customer","held":true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let hold_from = connected.elapsed();
    settle();
    let hold_to = connected.elapsed();
    assert_eq!(
        call_json(&edge, &call)["held"],
        serde_json::json!(["customer"])
    );
    assert!(
        c.hears(700.0, WIN) && !c.hears(1100.0, WIN),
        "held: hold audio only"
    );
    assert!(
        !a.hears(440.0, WIN),
        "the agent does not hear the held customer"
    );
    let r = post(
        &edge,
        &hold_path,
        AGENT_TOKEN,
        r#"{"party":"customer","held":false}"#,
    );
    assert_eq!(r.status, 200);
    settle();
    assert!(c.hears(1100.0, WIN) && !c.hears(700.0, WIN), "resumed");
    assert!(a.hears(440.0, WIN));

    // A supervisor joins: both parties hear a short beep; the supervisor does not.
    a.clear();
    c.clear();
    let (_mid, sam_rtp) = monitor(&edge, &call, SAM, r#"{"mode":"listen"}"#, &sam);
    let s = TonePeer::start(sam.rtp.try_clone().unwrap(), sam_rtp, 1700.0, 0x5A);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        a.heard_anywhere(media::session::BEEP_HZ, 100),
        "agent hears the beep"
    );
    assert!(
        c.heard_anywhere(media::session::BEEP_HZ, 100),
        "customer hears the beep"
    );
    assert!(!s.heard_anywhere(media::session::BEEP_HZ, 100));
    assert!(
        a.hears(440.0, WIN) && !a.hears(media::session::BEEP_HZ, 200),
        "beep is short"
    );
    // Streams stayed continuous at both parties across announcement, hold and beep.
    for (who, p) in [("agent", &a), ("customer", &c)] {
        let g = p.received.lock().unwrap();
        for w in g.headers.windows(2) {
            assert_eq!(w[1].0, w[0].0, "{who}: SSRC constant");
            assert_eq!(w[1].1, w[0].1.wrapping_add(1), "{who}: no sequence jump");
        }
    }
    drop(s);
    assert_eq!(cust.bye(), 200);

    // The recording: starts when the customer is connected (no announcement in it);
    // during hold the customer channel is silent and hold audio is never recorded.
    let archive = edge.dir.path().join("data").join("archive");
    let wav = archive.join(format!("{call}.wav"));
    wait_for("the recording in the archive", 20, || wav.exists());
    std::thread::sleep(Duration::from_millis(200));
    let (l, r) = edge_tests::wav_channels(&std::fs::read(&wav).unwrap());
    assert!(
        !has(&l, 2300.0) && !has(&r, 2300.0),
        "no announcement recorded"
    );
    assert!(!has(&l, 700.0) && !has(&r, 700.0), "no hold audio recorded");
    let at = |d: Duration| (d.as_secs_f64() * 8000.0) as usize;
    // 300 ms margins: the API round trips and the jitter buffer blur the edges.
    let (h0, h1) = (at(hold_from) + 2400, at(hold_to).min(l.len()) - 2400);
    assert!(h1 > h0 + 1200, "hold span inside the recording");
    assert!(
        l[h0..h1].iter().all(|s| s.abs() < 64),
        "held customer not recorded"
    );
    assert!(
        has(&l[h1 + 8000..], 440.0),
        "customer recorded after resume"
    );
}

#[test]
fn a_recording_interrupted_by_a_crash_is_recovered_at_start() {
    let mut edge = Edge::start_with(&users(free_port(), free_port()));
    let agent = Uas::spawn(edge.route_port);
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("rec"), 200);
    let call = only_call(&edge);
    let _c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC0FFEE,
    );
    let _a = TonePeer::start(
        agent.rtp.try_clone().unwrap(),
        agent.edge_rtp.lock().unwrap().unwrap(),
        1100.0,
        0xA6E47,
    );
    std::thread::sleep(Duration::from_secs(3));
    edge.crash_and_restart();
    let archive = edge.dir.path().join("data").join("archive");
    let wav = archive.join(format!("{call}.wav"));
    let json = archive.join(format!("{call}.json"));
    wait_for("the recovered recording in the archive", 20, || {
        json.exists()
    });
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(meta["recovered"], true);
    assert_eq!(meta["route"], "rec");
    let (l, r) = edge_tests::wav_channels(&std::fs::read(&wav).unwrap());
    // At most the writer's 16 KiB buffer (0.5 s) is lost with the process.
    assert!(l.len() >= 2 * 8000, "{} samples recovered", l.len());
    assert!(has(&l[4000..], 440.0) && has(&r[4000..], 1100.0));
    assert!(edge.log_text().contains("recovered"));
}
