//! `loadtest` against `loadtest answer` on loopback (clean and through a lossy,
//! delaying path), against SIPp in both roles, exit status and clear errors.

use edge_tests::lossy::LossyProxy;
use edge_tests::{free_port, free_ports, have_tool, loadtest_binary, run_with_timeout, Sipp};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn answer(port: u16, extra: &[&str]) -> Child {
    Command::new(loadtest_binary())
        .args([
            "answer",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--quiet",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadtest answer")
}

fn call(target: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut cmd = Command::new(loadtest_binary());
    cmd.args(["call", "--target", target, "--quiet"])
        .args(extra);
    let (code, out, err) = run_with_timeout(&mut cmd, 120);
    let json = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, json, err)
}

fn finish(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "answer JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn clean_path_counts_are_consistent_with_zero_loss_and_dtmf_through() {
    let port = free_port();
    let a = answer(
        port,
        &["--rtp", "tone:1000", "--calls", "10", "--ring", "200ms"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (code, s, err) = call(
        &format!("127.0.0.1:{port}"),
        &[
            "--rate",
            "10",
            "--calls",
            "10",
            "--duration",
            "2s",
            "--rtp",
            "--dtmf",
            "12#",
        ],
    );
    assert_eq!(code, 0, "{err}\n{s}");
    let a = finish(a);
    assert_eq!(s["calls"]["attempted"], 10);
    assert_eq!(s["calls"]["answered"], 10);
    assert_eq!(s["calls"]["failed"], 0);
    assert_eq!(a["calls"]["answered"], 10);
    // Ring 200 ms: setup ≥ 200 ms, post-dial delay (180) well below it.
    assert!(f(&s["setup_ms"]["p50"]) >= 200.0, "{}", s["setup_ms"]);
    assert!(f(&s["pdd_ms"]["p50"]) < 100.0, "{}", s["pdd_ms"]);
    // Each side received every packet the other sent and measured no loss.
    assert_eq!(s["rtp"]["streams"], 10);
    assert_eq!(s["rtp"]["lost"], 0);
    assert_eq!(a["rtp"]["lost"], 0);
    assert!(
        f(&s["rtp"]["packets_received"]) >= 10.0 * 80.0,
        "{}",
        s["rtp"]
    );
    assert_eq!(s["rtp"]["packets_received"], s["rtp"]["packets_expected"]);
    assert_eq!(a["rtp"]["packets_received"], a["rtp"]["packets_expected"]);
    // When each stream's first packet came and how long it was quiet at its
    // end (audio missing there shows no sequence gap): every stream has both,
    // within its 2 s.
    for side in [&s, &a] {
        for k in ["first_packet_ms", "quiet_at_end_ms"] {
            let h = &side["rtp"][k];
            assert_eq!(h["count"], 10, "{k}: {h}");
            assert!(f(&h["max"]) <= 2000.0, "{k}: {h}");
        }
    }
    // DTMF: 3 digits in each of 10 calls, all recognised at the answerer.
    assert_eq!(s["dtmf"]["digits_sent"], 30);
    assert_eq!(a["dtmf"]["digits_received"], 30);
    assert!(f(&s["rtp"]["mos"]["mean"]) > 4.3, "{}", s["rtp"]["mos"]);
}

#[test]
fn measured_loss_matches_the_injected_share_and_mos_drops_with_loss_and_delay() {
    let port = free_port();
    let a = answer(port, &["--rtp", "tone:1000", "--calls", "4"]);
    std::thread::sleep(Duration::from_millis(300));
    // Every 20th packet dropped in each direction (5 %), 150 ms added each way.
    let proxy = LossyProxy::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        20,
        Duration::from_millis(150),
    );
    let (code, lossy, err) = call(
        &proxy.sip.to_string(),
        &["--rate", "4", "--calls", "4", "--duration", "4s", "--rtp"],
    );
    assert_eq!(code, 0, "{err}");
    let a = finish(a);
    let loss = f(&lossy["rtp"]["loss_pct"]);
    assert!(
        (4.0..=6.0).contains(&loss),
        "callee→caller loss {loss} % for 5 % injected"
    );
    let aloss = f(&a["rtp"]["loss_pct"]);
    assert!(
        (4.0..=6.0).contains(&aloss),
        "caller→callee loss {aloss} % for 5 % injected"
    );
    let delay = f(&lossy["rtp"]["delay_ms"]["p50"]);
    assert!(
        (150.0..200.0).contains(&delay),
        "one-way delay {delay} ms for 150 ms injected"
    );
    // The same calls on a clean path score higher.
    let port2 = free_port();
    let a2 = answer(port2, &["--rtp", "tone:1000", "--calls", "4"]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, clean, _) = call(
        &format!("127.0.0.1:{port2}"),
        &["--rate", "4", "--calls", "4", "--duration", "4s", "--rtp"],
    );
    assert_eq!(code, 0);
    finish(a2);
    let (m_clean, m_lossy) = (
        f(&clean["rtp"]["mos"]["mean"]),
        f(&lossy["rtp"]["mos"]["mean"]),
    );
    assert!(
        m_clean > m_lossy + 0.5,
        "MOS clean {m_clean} vs lossy+delayed {m_lossy}"
    );
    drop(proxy);
}

#[test]
fn exit_status_follows_max_failed() {
    let port = free_port();
    let a = answer(port, &["--reject", "486%50", "--calls", "10"]);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("127.0.0.1:{port}");
    let (code, s, _) = call(&target, &["--rate", "20", "--calls", "10"]);
    assert_eq!(code, 1, "failures over --max-failed 0 exit 1");
    assert_eq!(s["calls"]["by_status"]["486"], 5);
    assert_eq!(s["calls"]["answered"], 5);
    finish(a);
    let a = answer(port, &["--reject", "486%50", "--calls", "10"]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, _) = call(
        &target,
        &["--rate", "20", "--calls", "10", "--max-failed", "5"],
    );
    assert_eq!(code, 0);
    finish(a);
}

#[test]
fn clear_errors_for_silent_targets_ports_in_use_and_bad_arguments() {
    // Nothing listens there: ICMP port unreachable.
    let (code, _, err) = call(&format!("127.0.0.1:{}", free_port()), &["--calls", "1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused") || err.contains("did not answer"),
        "{err}"
    );
    // The local SIP port is taken.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = taken.local_addr().unwrap().to_string();
    let (code, _, err) = call("127.0.0.1:5060", &["--local", &local]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot bind the SIP socket"), "{err}");
    // Bad arguments.
    for bad in [
        vec!["--rate", "0"],
        vec!["--duration", "soon"],
        vec!["--dtmf", "12x"],
        vec!["--transport", "sctp"],
    ] {
        let (code, _, err) = call("127.0.0.1:5060", &bad);
        assert_eq!(code, 2, "{bad:?}");
        assert!(err.contains("error"), "{err}");
    }
    let (code, _, err) = {
        let mut cmd = Command::new(loadtest_binary());
        cmd.args(["answer", "--listen", "127.0.0.1:1", "--reject", "486"]);
        run_with_timeout(&mut cmd, 10)
    };
    assert_eq!(code, 2);
    assert!(err.contains("STATUS%PERCENT"), "{err}");
}

#[test]
fn html_report_has_the_plots() {
    let port = free_port();
    let a = answer(port, &["--rtp", "echo", "--calls", "3"]);
    std::thread::sleep(Duration::from_millis(300));
    let dir = edge_tests::tempdir::Dir::new("report");
    let path = dir.path().join("r.html");
    let (code, _, err) = call(
        &format!("127.0.0.1:{port}"),
        &[
            "--rate",
            "3",
            "--calls",
            "3",
            "--duration",
            "1s",
            "--rtp",
            "--report",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    finish(a);
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "four plots");
    for title in [
        "Calls per second and concurrency",
        "Setup time",
        "RTP loss and jitter over time",
        "Estimated MOS",
    ] {
        assert!(html.contains(title), "{title}");
    }
}

#[test]
fn interop_loadtest_call_against_sipp_uas_and_sipp_uac_against_loadtest_answer() {
    if !have_tool("sipp") {
        return;
    }
    let port = free_port();
    // SIPp binds -mp and the ports after it (audio, video, RTCP).
    let mp = free_ports(4).to_string();
    let uas = Sipp::spawn(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-mp",
        &mp,
        "-rtp_echo",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, s, err) = call(
        &format!("127.0.0.1:{port}"),
        &["--rate", "20", "--calls", "50", "--duration", "1s", "--rtp"],
    );
    assert_eq!(code, 0, "{err}\n{s}");
    assert_eq!(s["calls"]["answered"], 50);
    assert_eq!(s["rtp"]["lost"], 0, "SIPp echoes every packet");
    drop(uas);
    let port = free_port();
    let a = answer(port, &["--calls", "50"]);
    std::thread::sleep(Duration::from_millis(300));
    let uac = Sipp::spawn(&[
        &format!("127.0.0.1:{port}"),
        "-sn",
        "uac",
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-m",
        "50",
        "-r",
        "50",
        "-timeout",
        "60s",
    ]);
    let (code, errors, ok) = uac.finish(90);
    assert_eq!(code, 0, "{errors}");
    assert_eq!(ok, Some(50));
    let a = finish(a);
    assert_eq!(a["calls"]["answered"], 50);
}

#[test]
fn answer_webrtc_plays_browser_agents_against_the_edge_with_no_loss() {
    // Three agents sign in over /ws/sip; three trunk calls reach them through the
    // edge, each leg ICE + DTLS-SRTP, a tone both ways.
    let agents: String = (0..3)
        .map(|i| {
            format!(
                "[[agents]]\nid = \"{}\"\npassword = \"secret-{}\"\n",
                7000 + i,
                7000 + i
            )
        })
        .collect();
    let edge = edge_tests::Edge::start_with(&format!(
        "[[queues]]\nname = \"web\"\nnumbers = [\"7777\"]\nagents = [\"7000\", \"7001\", \"7002\"]\nmax_wait = \"20s\"\n{agents}"
    ));
    let agents = Command::new(loadtest_binary())
        .args([
            "answer-webrtc",
            "--ws",
            &format!("ws://{}/ws/sip", edge.http),
            "--count",
            "3",
            "--first",
            "7000",
            "--calls",
            "3",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadtest answer-webrtc");
    assert!(
        edge_tests::wait_until(20, || edge.registrations().len() == 3),
        "{:?}",
        edge.registrations()
    );
    let (code, c, err) = call(
        &edge.sip.to_string(),
        &[
            "--to",
            "7777",
            "--rate",
            "10",
            "--calls",
            "3",
            "--duration",
            "3s",
            "--rtp",
        ],
    );
    assert_eq!(code, 0, "{err}\n{}", edge.log_text());
    let a = finish(agents);
    assert_eq!(f(&c["calls"]["answered"]), 3.0, "{c}");
    assert_eq!(f(&a["config"]["registered"]), 3.0, "{a}");
    for (who, v) in [("trunk", &c), ("agents", &a)] {
        assert_eq!(f(&v["rtp"]["streams"]), 3.0, "{who}: {v}");
        assert!(f(&v["rtp"]["packets_received"]) > 300.0, "{who}: {v}");
        assert_eq!(f(&v["rtp"]["lost"]), 0.0, "{who}: {v}");
    }
    assert_eq!(edge.metric("edge_webrtc_legs_connected_total"), 3.0);
    assert_eq!(edge.metric("edge_webrtc_legs_failed_total"), 0.0);
}

#[test]
fn call_webrtc_plays_browsers_dialling_out_through_the_edge_with_no_loss() {
    // Two agents dial the route `service` from "browsers": 407, credentials, then
    // ICE + DTLS-SRTP towards the edge and plain RTP to a `loadtest answer`.
    let agents: String = (0..2)
        .map(|i| {
            format!(
                "[[agents]]\nid = \"{}\"\npassword = \"secret-{}\"\n",
                8000 + i,
                8000 + i
            )
        })
        .collect();
    let edge = edge_tests::Edge::start_with(&agents);
    let ans = answer(edge.route_port, &["--rtp", "tone:1100", "--calls", "3"]);
    let mut cmd = Command::new(loadtest_binary());
    cmd.args([
        "call-webrtc",
        "--ws",
        &format!("ws://{}/ws/sip", edge.http),
        "--count",
        "2",
        "--first",
        "8000",
        "--calls",
        "3",
        "--rate",
        "5",
        "--duration",
        "3s",
        "--quiet",
    ]);
    let (code, out, err) = run_with_timeout(&mut cmd, 90);
    assert_eq!(code, 0, "{err}\n{}", edge.log_text());
    let c: Value = serde_json::from_str(&out).unwrap();
    let a = finish(ans);
    assert_eq!(f(&c["calls"]["answered"]), 3.0, "{c}\n{}", edge.log_text());
    for (who, v) in [("browsers", &c), ("far end", &a)] {
        assert_eq!(f(&v["rtp"]["streams"]), 3.0, "{who}: {v}");
        assert!(f(&v["rtp"]["packets_received"]) > 300.0, "{who}: {v}");
        assert_eq!(f(&v["rtp"]["lost"]), 0.0, "{who}: {v}");
    }
    assert_eq!(edge.metric("edge_webrtc_legs_connected_total"), 3.0);
    assert!(edge.logged(5, "agent dials out"));
}
