//! WebRTC media through the real edge, with real browsers: Debian's chromium
//! (headless, playwright-core) runs JsSIP (npm, bundled for the page) as an agent
//! over `/ws/sip`. A customer on plain RTP (the project's tone peer, 440 Hz) calls
//! the queue; the browser answers with its fake microphone playing 1100 Hz. Each
//! side must hear the other's tone: the page through WebAudio on the remote
//! stream, the customer in the RTP the edge relays after SRTP unwrapping.
//! `.ci/run` installs chromium and the npm packages.

use edge_tests::http::{self, request_body};
use edge_tests::tone_peer::TonePeer;
use edge_tests::ua::{Uac, Uas};
use edge_tests::ws::tungstenite as tg;
use edge_tests::{have_tool, tempdir, tone_wav, wait_until, Edge, ADMIN_TOKEN};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tg::client::IntoClientRequest;

const EXTRA: &str = edge_tests::WEB_AGENT;

/// A browser phone (tests/browser/webrtc-phone.mjs): its JSON lines as they come.
struct Phone {
    name: &'static str,
    child: Child,
    /// Commands to the page (hold, unhold, dtmf DIGITS, hangup).
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    /// The last `levels` line: dB per listened-for frequency.
    levels: Option<serde_json::Value>,
}

/// Louder than this (dB, WebAudio's FFT) is a tone heard; quieter than `QUIET`
/// is one not heard (G.711 noise and leakage stay well below).
const LOUD: f64 = -60.0;
const QUIET: f64 = -75.0;

impl Phone {
    /// Start a phone for `user` (`password` "-": signed in by the token in `ws`)
    /// whose microphone plays `tone_hz`, listening for `hear`; with `dial`, it
    /// calls that number once registered.
    #[allow(clippy::too_many_arguments)]
    fn start(
        name: &'static str,
        ws: &str,
        user: &str,
        password: &str,
        tmp: &Path,
        tone_hz: f64,
        hear: &[u32],
        dial: Option<&str>,
    ) -> Phone {
        let wav = tmp.join(format!("{name}-{tone_hz}.wav"));
        tone_wav(&wav, tone_hz, 60.0);
        let hz: Vec<String> = hear.iter().map(u32::to_string).collect();
        let mut cmd = Command::new("node");
        cmd.arg(browser_dir().join("webrtc-phone.mjs"))
            .args([ws, user, password])
            .arg(&wav)
            .arg(hz.join(","))
            .args(dial);
        Phone::spawn(name, cmd)
    }

    /// The edge's /console page at `base`, signed in with `token`, as a phone
    /// whose microphone plays `tone_hz`, listening for `hear`.
    fn console(
        name: &'static str,
        base: &str,
        token: &str,
        tmp: &Path,
        tone_hz: f64,
        hear: &[u32],
    ) -> Phone {
        let wav = tmp.join(format!("{name}-{tone_hz}.wav"));
        tone_wav(&wav, tone_hz, 60.0);
        let hz: Vec<String> = hear.iter().map(u32::to_string).collect();
        let mut cmd = Command::new("node");
        cmd.arg(browser_dir().join("console-phone.mjs"))
            .args([base, token])
            .arg(&wav)
            .arg(hz.join(","));
        Phone::spawn(name, cmd)
    }

    fn spawn(name: &'static str, mut cmd: Command) -> Phone {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "event": "text", "line": line }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Phone {
            name,
            child,
            stdin,
            lines,
            seen: Vec::new(),
            levels: None,
        }
    }

    /// Agent 5001 (digest sign-in), its microphone at 1100 Hz.
    fn agent(ws: &str, tmp: &Path, hear: &[u32]) -> Phone {
        Phone::start(
            "agent",
            ws,
            "5001",
            "wendy-sip-secret",
            tmp,
            1100.0,
            hear,
            None,
        )
    }

    /// Tell the page to act on its call; waits until it did (the `done` line).
    fn command(&mut self, line: &str, edge: &Edge) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.stdin, "{line}").expect("the page's script reads commands");
        let done = self.expect("done", 10, edge);
        assert_eq!(done["command"], line);
        done
    }

    /// The next line within `left`; panics on `fail`.
    fn next(&mut self, left: Duration, edge: &Edge) -> Option<serde_json::Value> {
        let v = self.lines.recv_timeout(left).ok()?;
        if v["event"] == "levels" {
            self.levels = Some(v["levels"].clone());
        } else {
            self.seen.push(v.clone());
        }
        assert_ne!(
            v["event"],
            "fail",
            "{}: {v}\nseen: {:?}\nedge log:\n{}",
            self.name,
            self.seen,
            edge.log_text()
        );
        Some(v)
    }

    /// Wait for `event`; panics on `fail` or after `secs`.
    fn expect(&mut self, event: &str, secs: u64, edge: &Edge) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(v) = self.next(deadline.saturating_duration_since(Instant::now()), edge) {
            if v["event"] == event {
                return v;
            }
        }
        panic!(
            "{}: no {event} in {secs} s; seen: {:?}\nedge log:\n{}",
            self.name,
            self.seen,
            edge.log_text()
        )
    }

    /// Whether the page hears `hz` (`true`: louder than LOUD) or not (quieter than
    /// QUIET) for three readings in a row, within `secs`.
    fn settles(&mut self, hz: u32, heard: bool, secs: u64, edge: &Edge) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut run = 0;
        while let Some(v) = self.next(deadline.saturating_duration_since(Instant::now()), edge) {
            if v["event"] != "levels" {
                continue;
            }
            let db = v["levels"][hz.to_string()].as_f64().unwrap_or(-200.0);
            let ok = if heard { db > LOUD } else { db < QUIET };
            run = if ok { run + 1 } else { 0 };
            if run >= 3 {
                return true;
            }
        }
        false
    }

    fn assert_hears(&mut self, hz: u32, heard: bool, edge: &Edge) {
        assert!(
            self.settles(hz, heard, 10, edge),
            "{} {} {hz} Hz; last levels {:?}\nedge log:\n{}",
            self.name,
            if heard {
                "does not hear"
            } else {
                "still hears"
            },
            self.levels,
            edge.log_text()
        );
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        use std::io::Write;
        // `quit`: the script closes its browser, which removes the profile it
        // made in /tmp (killed, it leaves one behind per phone); killed after 5 s.
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_dir() -> std::path::PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../tests/browser")
}

fn browser_ready() -> bool {
    let dir = browser_dir();
    if !have_tool("node") || !have_tool("chromium") {
        eprintln!("SKIP: node or chromium missing");
        return false;
    }
    let ok = ["playwright-core", "jssip", "esbuild"]
        .iter()
        .all(|m| dir.join("node_modules").join(m).exists());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "playwright-core, jssip and esbuild are required under CI (npm ci in tests/browser: see .ci/run)"
        );
        eprintln!("SKIP: run `npm ci` in tests/browser");
    }
    ok
}

/// The edge with the configuration `extra` makes (given a temporary directory for
/// files it names), the directory, and the `/ws/sip` URL; `None` (the test skips)
/// without node, chromium or the npm packages.
fn start(extra: impl FnOnce(&Path) -> String, tag: &str) -> Option<(Edge, tempdir::Dir, String)> {
    if !browser_ready() {
        return None;
    }
    let tmp = tempdir::Dir::new(tag);
    let edge = Edge::start_with(&extra(tmp.path()));
    let ws = format!("ws://{}/ws/sip", edge.http);
    Some((edge, tmp, ws))
}

/// The web queue with hold audio (700 Hz) and recording on.
fn recorded_queue_with_hold_audio(dir: &Path) -> String {
    let hold = dir.join("hold-700.wav");
    tone_wav(&hold, 700.0, 1.0);
    EXTRA.replace(
        "max_wait = \"20s\"",
        &format!(
            "max_wait = \"20s\"\nrecord = true\nhold_audio = \"{}\"",
            hold.display()
        ),
    )
}

/// The customer's tone peer: 440 Hz to the edge from the customer's RTP socket.
fn customer_tone(cust: &Uac) -> TonePeer {
    TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC0FFEE,
    )
}

/// A customer on plain RTP calls the queue; the browser agent answers. The
/// customer's phone and its 440 Hz tone peer.
fn customer_calls(edge: &Edge, agent: &mut Phone) -> (Uac, TonePeer) {
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("5000"), 200, "edge log:\n{}", edge.log_text());
    agent.expect("confirmed", 10, edge);
    let c = customer_tone(&cust);
    (cust, c)
}

#[test]
fn jssip_in_chromium_answers_a_queue_call_and_both_sides_hear_each_other() {
    let Some((edge, tmp, ws)) = start(recorded_queue_with_hold_audio, "webrtc") else {
        return;
    };
    let mut agent = Phone::agent(&ws, tmp.path(), &[440, 1100]);
    agent.expect("registered", 30, &edge);

    let (mut cust, c) = customer_calls(&edge, &mut agent);
    // The browser hears the customer (plain RTP → SRTP)...
    agent.assert_hears(440, true, &edge);
    // (and not itself: nothing loops back)
    agent.assert_hears(1100, false, &edge);
    // ...and the customer hears the browser (SRTP → plain RTP).
    assert!(
        wait_until(15, || c.hears(1100.0, 500)),
        "the customer does not hear the browser's tone ({} packets)\nedge log:\n{}",
        c.packets(),
        edge.log_text()
    );
    // Leg counters reach the metrics within a second.
    assert!(wait_until(3, || edge
        .metric("edge_webrtc_legs_connected_total")
        == 1.0));
    assert_eq!(edge.metric("edge_webrtc_legs_failed_total"), 0.0);
    assert_eq!(edge.metric("edge_webrtc_srtp_refused_total"), 0.0);

    // DTMF from the browser (RFC 4733 inside SRTP): the edge reads the digit and
    // the customer gets the event.
    agent.command("dtmf 5", &edge);
    let calls = http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    let call = calls["calls"][0]["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(5, || {
            let j = http::get(
                edge.http,
                &format!("/api/v1/calls/{call}"),
                Some(ADMIN_TOKEN),
            )
            .unwrap()
            .json();
            j["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["digit"] == "5" && e["from"] == "agent"))
        }),
        "the browser's digit is not seen\nedge log:\n{}",
        edge.log_text()
    );
    assert!(
        wait_until(5, || c.got_event(5)),
        "the customer gets no RFC 4733 event 5"
    );

    // The browser holds the customer (re-INVITE, sendonly): the customer hears the
    // hold audio and nobody hears the customer; then it resumes.
    agent.command("hold", &edge);
    assert_eq!(cust.answer_reinvite(10).as_deref(), Some("sendonly"));
    assert!(
        wait_until(10, || c.hears(700.0, 500)),
        "the held customer does not hear the hold audio\nedge log:\n{}",
        edge.log_text()
    );
    agent.assert_hears(440, false, &edge);
    agent.command("unhold", &edge);
    assert_eq!(cust.answer_reinvite(10).as_deref(), Some("sendrecv"));
    agent.assert_hears(440, true, &edge);
    // RTP continuity across relay → hold mix → relay: the customer got one SSRC
    // with no sequence jump, and the browser one SRTP stream (the customer's SSRC,
    // kept by the relay and the mix alike) with (almost) no loss.
    {
        let g = c.received.lock().unwrap();
        let ssrc = g.headers[0].0;
        assert!(
            g.headers.iter().all(|h| h.0 == ssrc),
            "the customer saw another SSRC"
        );
        let jumps = g
            .headers
            .windows(2)
            .filter(|w| w[1].1 != w[0].1.wrapping_add(1))
            .count();
        let at: Vec<_> = g
            .headers
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1].1 != w[0].1.wrapping_add(1))
            .map(|(i, w)| (i, g.headers.len(), w[0], w[1]))
            .collect();
        assert_eq!(jumps, 0, "the customer's sequence numbers jumped: {at:?}");
    }
    let stats = agent.command("stats", &edge);
    let inbound = stats["inbound"].as_array().unwrap();
    assert_eq!(inbound.len(), 1, "one stream into the browser: {stats}");
    let received = inbound[0]["packetsReceived"].as_f64().unwrap();
    let lost = inbound[0]["packetsLost"].as_f64().unwrap();
    // (Chromium restarts the counters of an unsignalled stream at a renegotiation:
    // these are the packets since the resume.)
    assert!(received > 20.0 && lost <= received * 0.01, "{stats}");
    assert!(
        wait_until(10, || c.hears(1100.0, 500)),
        "the customer does not hear the browser after the hold"
    );

    // The customer hangs up: the browser's session ends.
    assert_eq!(cust.bye(), 200);
    agent.expect("ended", 10, &edge);
    drop(c);
    edge.wait_idle(10);
}

const SAM: &str = "sam-super-token";

#[test]
fn a_supervisor_in_chromium_listens_whispers_and_barges_on_a_browser_agent() {
    let users = |dir: &Path| {
        format!(
            "{}\n[[users]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken = \"{SAM}\"\n",
            recorded_queue_with_hold_audio(dir)
        )
    };
    let Some((edge, tmp, ws)) = start(users, "webrtc-sup") else {
        return;
    };
    // A wrong token is refused before the WebSocket opens.
    let mut req = format!("{ws}?token=nope").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    match tg::connect(req) {
        Err(tg::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!(
            "a wrong token opened a SIP WebSocket: {:?}",
            other.map(|_| ())
        ),
    }
    let hear = [440, 1100, 1700];
    let mut agent = Phone::agent(&ws, tmp.path(), &hear);
    // The supervisor signs in with the console's token, not a SIP password.
    let mut sup = Phone::start(
        "supervisor",
        &format!("{ws}?token={SAM}"),
        "sam",
        "-",
        tmp.path(),
        1700.0,
        &hear,
        None,
    );
    agent.expect("registered", 30, &edge);
    sup.expect("registered", 30, &edge);

    let (mut cust, c) = customer_calls(&edge, &mut agent);
    let t0 = Instant::now();
    agent.assert_hears(440, true, &edge);

    let calls = http::get(edge.http, "/api/v1/calls", Some(SAM))
        .unwrap()
        .json();
    let call = calls["calls"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/calls/{call}/monitors");
    let r = request_body(edge.http, "POST", &path, Some(SAM), r#"{"mode":"listen"}"#).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mid = r.json()["id"].as_str().unwrap().to_string();
    sup.expect("confirmed", 10, &edge);
    let listen_from = t0.elapsed();

    // Listen: the supervisor hears both; nobody hears the supervisor.
    sup.assert_hears(440, true, &edge);
    sup.assert_hears(1100, true, &edge);
    agent.assert_hears(1700, false, &edge);
    c.clear();
    assert!(
        wait_until(3, || c.packets() > 50) && !c.hears(1700.0, 500),
        "listen leaks the supervisor to the customer"
    );

    // Whisper: the agent hears the supervisor, the customer does not.
    let mode = |m: &str| {
        let r = request_body(
            edge.http,
            "PATCH",
            &format!("{path}/{mid}"),
            Some(SAM),
            &format!(r#"{{"mode":"{m}"}}"#),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    };
    mode("whisper");
    let whisper_from = t0.elapsed();
    agent.assert_hears(1700, true, &edge);
    agent.assert_hears(440, true, &edge);
    c.clear();
    std::thread::sleep(Duration::from_millis(800));
    assert!(!c.hears(1700.0, 500), "whisper reaches the customer");
    assert!(
        c.hears(1100.0, 500),
        "the customer lost the agent during whisper"
    );

    // Barge: everyone hears everyone.
    let whisper_to = t0.elapsed();
    mode("barge");
    assert!(
        wait_until(10, || c.hears(1700.0, 500)),
        "barge does not reach the customer\nedge log:\n{}",
        edge.log_text()
    );
    agent.assert_hears(1700, true, &edge);
    sup.assert_hears(440, true, &edge);

    // Both browser legs came up (agent, supervisor); none failed.
    assert!(wait_until(3, || edge
        .metric("edge_webrtc_legs_connected_total")
        == 2.0));
    assert_eq!(edge.metric("edge_webrtc_legs_failed_total"), 0.0);

    assert_eq!(cust.bye(), 200);
    agent.expect("ended", 10, &edge);
    sup.expect("ended", 10, &edge);
    drop(c);
    edge.wait_idle(10);
    // The recording (archived by the fs upload): customer left, agent right; the
    // supervisor's voice is in neither channel while listening or whispering.
    let wav = edge
        .dir
        .path()
        .join("data")
        .join("archive")
        .join(format!("{call}.wav"));
    assert!(wait_until(20, || wav.exists()), "no recording archived");
    let (left, right) = edge_tests::wav_channels(&std::fs::read(&wav).unwrap());
    let window = |from: Duration, to: Duration| {
        let a = ((from.as_secs_f64() + 0.3) * 8000.0) as usize;
        let b = (((to.as_secs_f64() - 0.1) * 8000.0) as usize).min(left.len());
        assert!(b > a + 1600, "phase too short ({a}..{b} of {})", left.len());
        (a, b)
    };
    for (phase, (a, b)) in [
        ("listen", window(listen_from, whisper_from)),
        ("whisper", window(whisper_from, whisper_to)),
    ] {
        let (l, r) = (&left[a..b], &right[a..b]);
        assert!(
            media::tone::detect(l, 440.0, 8000),
            "{phase}: customer channel lacks the customer"
        );
        assert!(
            media::tone::detect(r, 1100.0, 8000),
            "{phase}: agent channel lacks the agent"
        );
        for (name, ch) in [("customer", l), ("agent", r)] {
            assert!(
                !media::tone::detect(ch, 1700.0, 8000),
                "{phase}: the supervisor is recorded in the {name} channel"
            );
        }
    }
}

#[test]
fn an_agent_in_chromium_dials_out_and_both_sides_hear_each_other() {
    let Some((edge, tmp, ws)) = start(|_| EXTRA.to_string(), "webrtc-out") else {
        return;
    };
    // The route `service` answers on plain RTP.
    let service = Uas::spawn(edge.route_port);
    let mut agent = Phone::start(
        "agent",
        &ws,
        "5001",
        "wendy-sip-secret",
        tmp.path(),
        1100.0,
        &[440, 1100],
        Some("service"),
    );
    agent.expect("registered", 30, &edge);
    // The browser's INVITE is challenged (407) and sent again with credentials.
    agent.expect("confirmed", 20, &edge);
    let mut addr = None;
    assert!(wait_until(10, || {
        addr = *service.edge_rtp.lock().unwrap();
        addr.is_some()
    }));
    let s = TonePeer::start(service.rtp.try_clone().unwrap(), addr.unwrap(), 440.0, 0x5E);
    agent.assert_hears(440, true, &edge);
    assert!(
        wait_until(15, || s.hears(1100.0, 500)),
        "the far end does not hear the browser ({} packets)\nedge log:\n{}",
        s.packets(),
        edge.log_text()
    );
    assert!(edge.log_text().contains("agent dials out"));
    assert!(wait_until(3, || edge
        .metric("edge_webrtc_legs_connected_total")
        == 1.0));
}

const WENDY: &str = "wendy-console-token";
const SAMC: &str = "sam-console-token";

#[test]
fn the_console_softphone_answers_a_queue_call_and_a_supervisor_console_monitors_it() {
    // Agent 5001 is Wendy's: her console registers for it with her token alone.
    let extra = |dir: &Path| {
        format!(
            "{}\n[[users]]\nname = \"wendy\"\nrole = \"agent\"\ntoken = \"{WENDY}\"\n\
             [[users]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken = \"{SAMC}\"\n\
             [[reserved_data]]\nfield = \"verified_customer\"\nheader = \"X-Verified-Customer\"\n",
            recorded_queue_with_hold_audio(dir).replace(
                "password = \"wendy-sip-secret\"",
                "password = \"wendy-sip-secret\"\nuser = \"wendy\""
            )
        )
    };
    let Some((edge, tmp, _ws)) = start(extra, "webrtc-console") else {
        return;
    };
    let base = format!("http://{}", edge.http);
    let hear = [440, 1100, 1700];
    let mut agent = Phone::console("agent-console", &base, WENDY, tmp.path(), 1100.0, &hear);
    let mut sup = Phone::console("supervisor-console", &base, SAMC, tmp.path(), 1700.0, &hear);
    agent.expect("registered", 30, &edge);
    sup.expect("registered", 30, &edge);
    let regs = edge.registrations();
    assert!(regs.iter().any(|r| r["agent"] == "5001"), "{regs:?}");
    // The state selector: not ready (lunch), then ready again, as the API sees it.
    let wendy = || {
        let j = http::get(edge.http, "/api/v1/agents", Some(ADMIN_TOKEN))
            .unwrap()
            .json();
        j["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == "5001")
            .cloned()
            .unwrap()
    };
    assert!(
        wait_until(10, || wendy()["state"] == "ready"),
        "{}",
        wendy()
    );
    agent.command("state not_ready lunch", &edge);
    assert!(
        wait_until(5, || wendy()["state"] == "not_ready"
            && wendy()["reason"] == "lunch"),
        "{}",
        wendy()
    );
    agent.command("state ready", &edge);
    assert!(wait_until(5, || wendy()["state"] == "ready"), "{}", wendy());

    let caller = Uac::call_in_background_with(edge.sip, "5000", "X-Verified-Customer: yes\r\n");
    let incoming = agent.expect("incoming", 15, &edge);
    assert!(
        incoming["who"].as_str().unwrap().contains("caller"),
        "{incoming}"
    );
    // The trunk's reserved data is shown with the incoming call, under its field
    // name as the console's socket gives it (the agent leg's X-Edge-* headers,
    // the fallback, only approximate the names).
    let mut data = agent.expect("data", 10, &edge);
    if data["data"] == "verified-customer: yes" {
        data = agent.expect("data", 10, &edge);
    }
    assert_eq!(data["data"], "verified_customer: yes", "{data}");
    agent.command("answer", &edge);
    agent.expect("confirmed", 15, &edge);
    let (mut cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);
    let c = customer_tone(&cust);
    agent.assert_hears(440, true, &edge);
    assert!(
        wait_until(15, || c.hears(1100.0, 500)),
        "the customer does not hear the console ({} packets)\nedge log:\n{}",
        c.packets(),
        edge.log_text()
    );
    // The keypad sends RFC 4733.
    agent.command("dtmf 7", &edge);
    assert!(
        wait_until(5, || c.got_event(7)),
        "the customer gets no event 7 from the keypad"
    );
    // Mute: the customer stops hearing the agent.
    agent.command("mute", &edge);
    c.clear();
    assert!(
        wait_until(10, || c.packets() > 40 && !c.hears(1100.0, 500)),
        "mute does not silence the console"
    );
    agent.command("mute", &edge);
    assert!(
        wait_until(10, || c.hears(1100.0, 500)),
        "unmute does not restore"
    );

    // The supervisor's console: listen, then whisper (the agent hears it, the
    // customer does not), then barge.
    sup.command("listen", &edge);
    sup.expect("confirmed", 15, &edge);
    sup.assert_hears(440, true, &edge);
    sup.assert_hears(1100, true, &edge);
    agent.assert_hears(1700, false, &edge);
    sup.command("whisper", &edge);
    agent.assert_hears(1700, true, &edge);
    c.clear();
    std::thread::sleep(Duration::from_millis(800));
    assert!(!c.hears(1700.0, 500), "whisper reaches the customer");
    sup.command("barge", &edge);
    assert!(
        wait_until(10, || c.hears(1700.0, 500)),
        "barge does not reach the customer"
    );

    // The agent hangs up from the console: the customer gets BYE.
    agent.command("hangup", &edge);
    assert!(
        cust.answer_bye(10),
        "no BYE to the customer\n{}",
        edge.log_text()
    );
    agent.expect("ended", 10, &edge);
    sup.expect("ended", 10, &edge);
    drop(c);
    edge.wait_idle(10);
}

#[test]
fn a_browser_agent_hears_the_queue_announcement_before_the_customer() {
    let extra = |dir: &Path| {
        let ann = dir.join("announce-2300.wav");
        tone_wav(&ann, 2300.0, 1.5);
        EXTRA.replace(
            "max_wait = \"20s\"",
            &format!("max_wait = \"20s\"\nannouncement = \"{}\"", ann.display()),
        )
    };
    let Some((edge, tmp, ws)) = start(extra, "webrtc-ann") else {
        return;
    };
    let mut agent = Phone::agent(&ws, tmp.path(), &[440, 2300]);
    agent.expect("registered", 30, &edge);
    // The customer is answered only after the announcement: call in a thread.
    let caller = Uac::call_in_background(edge.sip, "5000");
    agent.expect("confirmed", 15, &edge);
    agent.assert_hears(2300, true, &edge);
    let (cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);
    let c = customer_tone(&cust);
    agent.assert_hears(440, true, &edge);
    agent.assert_hears(2300, false, &edge);
    assert!(
        wait_until(10, || c.hears(1100.0, 500)),
        "the customer does not hear the agent"
    );
}

#[test]
fn the_console_dials_out_and_its_buttons_consult_and_transfer_a_queue_call() {
    // Wendy's console (agent 5001, 1100 Hz) dials the route `service`, whose phone
    // (700 Hz) answers on plain RTP; then it takes two queue calls from customers
    // (440 Hz): one it consults `service` about and hands over, one it transfers
    // blind — all from the page's buttons.
    let extra = |_: &Path| {
        format!(
            "{}\n[[users]]\nname = \"wendy\"\nrole = \"agent\"\ntoken = \"{WENDY}\"\n",
            EXTRA.replace(
                "password = \"wendy-sip-secret\"",
                "password = \"wendy-sip-secret\"\nuser = \"wendy\""
            )
        )
    };
    let Some((edge, tmp, _ws)) = start(extra, "webrtc-console-moves") else {
        return;
    };
    let service = Uas::spawn(edge.route_port);
    let base = format!("http://{}", edge.http);
    let mut agent = Phone::console(
        "agent-console",
        &base,
        WENDY,
        tmp.path(),
        1100.0,
        &[440, 700],
    );
    agent.expect("registered", 30, &edge);
    // The service's phone sends 700 Hz to where the edge wants its RTP, once it
    // got its `n`th new call and the edge's address is no longer `old` (a
    // re-INVITE moving it is no new call).
    let service_tone = |n: u64, old: Option<std::net::SocketAddr>| {
        assert!(
            wait_until(10, || service.invites.load(Ordering::Relaxed) >= n
                && *service.edge_rtp.lock().unwrap() != old
                && service.edge_rtp.lock().unwrap().is_some()),
            "the service's phone got no INVITE {n}\nedge log:\n{}",
            edge.log_text()
        );
        let at = service.edge_rtp.lock().unwrap().unwrap();
        (
            TonePeer::start(service.rtp.try_clone().unwrap(), at, 700.0, 0x5E + n as u32),
            at,
        )
    };

    // 1. Dialling out: the browser is the offerer; both ends hear each other.
    agent.command("dial service", &edge);
    let confirmed = agent.expect("confirmed", 20, &edge);
    assert!(
        confirmed["entry"].as_str().unwrap().contains("service"),
        "the call is an entry of the conversation list: {confirmed}"
    );
    let (s, dialled) = service_tone(1, None);
    agent.assert_hears(700, true, &edge);
    assert!(
        wait_until(15, || s.hears(1100.0, 500)),
        "the service does not hear the console ({} packets)\nedge log:\n{}",
        s.packets(),
        edge.log_text()
    );
    assert!(edge.log_text().contains("agent dials out"));
    agent.command("hangup", &edge);
    assert!(wait_until(10, || service.byes.load(Ordering::Relaxed) == 1));
    agent.expect("ended", 10, &edge);
    drop(s);
    edge.wait_idle(10);

    // 2. A queue call, a consultation with `service` (the customer hears neither),
    //    then the customer handed over to it.
    let answer_customer = |agent: &mut Phone| {
        let caller = Uac::call_in_background(edge.sip, "5000");
        agent.expect("incoming", 15, &edge);
        agent.command("answer", &edge);
        agent.expect("confirmed", 15, &edge);
        let (cust, code) = caller.join().unwrap();
        assert_eq!(code, 200);
        let c = customer_tone(&cust);
        agent.assert_hears(440, true, &edge);
        (cust, c)
    };
    // Wrap-up after the dialled call: the queue offers the next call once Wendy
    // is ready again.
    agent.command("state ready", &edge);
    let (mut cust, c) = answer_customer(&mut agent);
    agent.command("consult service", &edge);
    let (s, consult_port) = service_tone(2, Some(dialled));
    agent.assert_hears(700, true, &edge);
    assert!(
        wait_until(10, || s.hears(1100.0, 500) && !s.hears(440.0, 500)),
        "the consulted party hears the agent, not the customer"
    );
    c.clear();
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        c.packets() > 20 && !c.hears(700.0, 500) && !c.hears(1100.0, 500),
        "the customer hears the consultation"
    );
    agent.command("complete", &edge);
    agent.expect("ended", 10, &edge);
    drop(s);
    let (s, handed) = service_tone(2, Some(consult_port));
    assert!(
        wait_until(10, || c.hears(700.0, 500)),
        "the customer does not hear the service after the hand-over\nedge log:\n{}",
        edge.log_text()
    );
    assert!(wait_until(10, || s.hears(440.0, 500)));
    assert_eq!(cust.bye(), 200);
    drop((s, c));
    edge.wait_idle(10);

    // 3. A queue call transferred blind from the page.
    agent.command("state ready", &edge);
    let (mut cust, c) = answer_customer(&mut agent);
    agent.command("transfer service", &edge);
    agent.expect("ended", 10, &edge);
    let (s, transferred) = service_tone(3, Some(handed));
    assert!(
        wait_until(10, || c.hears(700.0, 500)),
        "the customer does not hear the transfer target\nedge log:\n{}",
        edge.log_text()
    );
    assert_eq!(cust.bye(), 200);
    drop((s, c));
    edge.wait_idle(10);

    // 4. A queue call becomes a conference: `service` is added from the page and
    //    all three hear each other.
    agent.command("state ready", &edge);
    let (mut cust, c) = answer_customer(&mut agent);
    assert!(
        wait_until(10, || c.hears(1100.0, 500)),
        "the customer does not hear the agent"
    );
    agent.command("conference service", &edge);
    let (s, _) = service_tone(4, Some(transferred));
    agent.assert_hears(700, true, &edge);
    agent.assert_hears(440, true, &edge);
    // The browser's tone is ~20 dB under the tone peers' by now (Chromium's gain
    // control): heard beside one.
    assert!(
        wait_until(10, || s.hears_beside(1100.0, 440.0, 500)),
        "the added party does not hear both the customer and the agent"
    );
    assert!(
        wait_until(10, || c.hears_beside(1100.0, 700.0, 500)),
        "the customer does not hear both the agent and the added party\nedge log:\n{}",
        edge.log_text()
    );
    // The customer leaves: the conference goes on (agent and service); the
    // agent hangs up from the page: nobody is left to talk to, the call ends.
    assert_eq!(cust.bye(), 200);
    agent.command("hangup", &edge);
    agent.expect("ended", 10, &edge);
    drop((s, c));
    edge.wait_idle(10);
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"consult\",outcome=\"completed\"}"),
        1.0
    );
    assert_eq!(
        edge.metric("edge_call_transfers_total{kind=\"blind\",outcome=\"completed\"}"),
        1.0
    );
}
