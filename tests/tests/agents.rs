//! Agents sign in from SIP phones nobody here wrote: baresip registers with digest
//! authentication (MD5) and answers a queue call with audio both ways; SIPp
//! registers with `[authentication]` and a wrong password is refused; bindings
//! survive a restart of the edge. Without the tools the tests print SKIP; under
//! `CI` they fail instead.

use edge_tests::ua::{send_rtp, spawn_pcmu_counter, Uac};
use edge_tests::{
    free_port, free_ports, have_tool, http, rtp_block, scenario, tempdir, wait_until, Edge, Sipp,
    ADMIN_TOKEN,
};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A queue whose only agent signs in from a phone (no static contact).
const AGENT: &str = r#"
[[queues]]
name = "phones"
numbers = ["2000"]
agents = ["2001"]
max_wait = "20s"

[[agents]]
id = "2001"
name = "Carol"
password = "carol-sip-secret"
"#;

fn registrations(edge: &Edge) -> Vec<serde_json::Value> {
    http::get(edge.http, "/api/v1/registrations", Some(ADMIN_TOKEN))
        .map(|r| {
            r.json()["registrations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// baresip with its own config directory: registers `2001` at the edge with
/// `password`, auto-answers, sends a 440 Hz sine and dumps what it hears to WAV.
struct Baresip {
    child: Child,
    dir: tempdir::Dir,
}

impl Baresip {
    fn start(edge: &Edge, password: &str) -> Baresip {
        Baresip::start_answering(edge, password, "auto")
    }

    /// `answermode`: `auto` (answers at once) or `manual` (rings until cancelled).
    fn start_answering(edge: &Edge, password: &str, answermode: &str) -> Baresip {
        let dir = tempdir::Dir::new("baresip");
        // baresip listens on UDP and TCP at `port` and on TLS at `port + 1`.
        let port = free_ports(2);
        let (rtp_lo, rtp_hi) = rtp_block(20);
        std::fs::create_dir_all(dir.path().join("snd")).unwrap();
        let config = format!(
            "poll_method poll\nsip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\n\
module g711.so\nmodule ausine.so\nmodule aubridge.so\nmodule sndfile.so\n\
module_app account.so\nmodule_app menu.so\n\
audio_player aubridge,nowhere\naudio_source ausine,440\naudio_alert aubridge,nowhere\n\
ausrc_srate 48000\nauplay_srate 48000\nausrc_channels 2\nrtp_ports {rtp_lo}-{rtp_hi}\nsnd_path {}\n",
            dir.path().join("snd").display()
        );
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:2001@{}>;auth_pass={password};answermode={answermode};regint=60;audio_codecs=PCMU\n",
                edge.sip
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        Baresip { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// Bytes of audio baresip decoded from the call (its `*-dec.wav` dumps).
    fn heard_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path().join("snd"))
            .map(|it| {
                it.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len().saturating_sub(44))
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn baresip_signs_in_with_digest_and_answers_a_queue_call_with_audio_both_ways() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let phone = Baresip::start(&edge, "carol-sip-secret");
    assert!(
        wait_until(10, || !registrations(&edge).is_empty()),
        "baresip did not register; baresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    let reg = &registrations(&edge)[0];
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
    let to_edge = uac.remote_rtp.expect("the 200 has SDP");
    let stop = Arc::new(AtomicBool::new(false));
    let heard_by_caller = spawn_pcmu_counter(uac.rtp.try_clone().unwrap(), stop.clone());
    // 3 s of our G.711 towards the phone (the edge relays it), while the phone's
    // sine comes back.
    for _ in 0..3 {
        send_rtp(&uac.rtp, to_edge, 100, 7);
        std::thread::sleep(Duration::from_millis(800));
    }
    stop.store(true, Ordering::Relaxed);
    let from_phone = heard_by_caller.load(Ordering::Relaxed);
    assert!(
        from_phone >= 50,
        "the caller got {from_phone} RTP packets from baresip"
    );
    assert!(
        wait_until(5, || phone.heard_bytes() > 8000),
        "baresip decoded {} bytes of our audio; log:\n{}",
        phone.heard_bytes(),
        phone.log()
    );
    assert_eq!(uac.bye(), 200);
}

#[test]
fn two_phones_of_one_agent_ring_together_and_the_one_left_ringing_gets_cancel() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let desk = Baresip::start_answering(&edge, "carol-sip-secret", "manual");
    assert!(
        wait_until(10, || registrations(&edge).len() == 1),
        "{}",
        desk.log()
    );
    let soft = Baresip::start_answering(&edge, "carol-sip-secret", "auto");
    assert!(
        wait_until(10, || registrations(&edge).len() == 2),
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
    assert!(edge.log_text().contains("answered"), "{}", edge.log_text());
    assert_eq!(uac.bye(), 200);
}

#[test]
fn baresip_with_a_wrong_password_is_refused_and_counted() {
    if !have_tool("baresip") {
        return;
    }
    let edge = Edge::start_with(AGENT);
    let phone = Baresip::start(&edge, "not-the-password");
    assert!(
        wait_until(10, || edge.metric("edge_sip_auth_failures_total") >= 1.0),
        "no failed authentication counted; baresip log:\n{}",
        phone.log()
    );
    assert!(registrations(&edge).is_empty());
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
    let regs = registrations(&edge);
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
    assert_eq!(registrations(&edge).len(), 1);
    // A clean stop writes what the registrar holds; the binding comes back.
    edge.stop_and_restart();
    let regs = registrations(&edge);
    assert_eq!(regs.len(), 1, "log:\n{}", edge.log_text());
    assert_eq!(regs[0]["source"], format!("127.0.0.1:{p}"));
    assert!(regs[0]["expires_in"].as_u64().unwrap() > 3000);
}
