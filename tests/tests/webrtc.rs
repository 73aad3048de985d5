//! WebRTC media through the real edge, with real browsers: Debian's chromium
//! (headless, playwright-core) runs JsSIP (npm, bundled for the page) as an agent
//! over `/ws/sip`. A customer on plain RTP (the project's tone peer, 440 Hz) calls
//! the queue; the browser answers with its fake microphone playing 1100 Hz. Each
//! side must hear the other's tone: the page through WebAudio on the remote
//! stream, the customer in the RTP the edge relays after SRTP unwrapping.
//! `.ci/run` installs chromium and the npm packages.

use edge_tests::tone_peer::TonePeer;
use edge_tests::ua::Uac;
use edge_tests::{have_tool, tempdir, tone_wav, wait_until, Edge};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const EXTRA: &str = edge_tests::WEB_AGENT;

/// The browser script's JSON lines, as they come.
struct Script {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Script {
    fn start(cmd: &mut Command) -> Script {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let out = child.stdout.take().unwrap();
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
        Script {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for `event`; panics on `fail` or after `secs`.
    fn expect(&mut self, event: &str, secs: u64, edge: &Edge) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == event {
                        return v;
                    }
                    assert_ne!(
                        v["event"],
                        "fail",
                        "browser: {v}\nseen: {:?}\nedge log:\n{}",
                        self.seen,
                        edge.log_text()
                    );
                }
                Err(_) => panic!(
                    "no {event} from the browser in {secs} s; seen: {:?}\nedge log:\n{}",
                    self.seen,
                    edge.log_text()
                ),
            }
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_ready(dir: &Path) -> bool {
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

#[test]
fn jssip_in_chromium_answers_a_queue_call_and_both_sides_hear_each_other() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !browser_ready(&dir) {
        return;
    }
    let edge = Edge::start_with(EXTRA);
    let tmp = tempdir::Dir::new("webrtc");
    let wav = tmp.path().join("agent-1100.wav");
    tone_wav(&wav, 1100.0, 30.0);
    let mut page = Script::start(
        Command::new("node")
            .arg(dir.join("webrtc-agent.mjs"))
            .arg(format!("ws://{}/ws/sip", edge.http))
            .args(["5001", "wendy-sip-secret"])
            .arg(&wav)
            .arg("440"),
    );
    page.expect("registered", 30, &edge);

    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("5000"), 200, "edge log:\n{}", edge.log_text());
    page.expect("confirmed", 10, &edge);
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xC0FFEE,
    );
    // The browser hears the customer (plain RTP → SRTP)...
    let heard = page.expect("heard", 20, &edge);
    assert_eq!(
        heard["hz"].as_i64().map(|h| (h - 440).abs() < 25),
        Some(true)
    );
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

    // The customer hangs up: the browser's session ends.
    assert_eq!(cust.bye(), 200);
    page.expect("ended", 10, &edge);
    eprintln!("browser events: {:?}", page.seen);
    drop(c);
    edge.wait_idle(10);
}
