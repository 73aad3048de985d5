//! Supervisor legs and recording outputs, on the B2BUA harness of `tests`.

use super::*;
use sip::message::parse;
use sip::sdp::Sdp;

const SAM: &str = "127.0.0.1:5096";
const KIM: &str = "127.0.0.1:5098";

fn config() -> String {
    CONFIG.replace(
        "[[routes]]\nnumber = \"service\"\ntarget = \"sip:service@127.0.0.1:5090\"",
        "[[routes]]\nnumber = \"service\"\ntarget = \"sip:service@127.0.0.1:5090\"\nrecord = true",
    ) + r#"
[[users]]
name = "sam"
role = "supervisor"
token = "sam-token-1"
contact = "sip:sam@127.0.0.1:5096"
[[users]]
name = "kim"
role = "supervisor"
token = "kim-token-1"
contact = "sip:kim@127.0.0.1:5098"
[[users]]
name = "ann"
role = "agent"
token = "ann-token-1"
"#
}

fn monitor_outputs(n: &Net) -> Vec<&Output> {
    n.outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Media(_, Command::MonitorOpen { .. })
                    | Output::Media(_, Command::MonitorRemote { .. })
                    | Output::Media(_, Command::MonitorMode { .. })
                    | Output::Media(_, Command::MonitorClose { .. })
            )
        })
        .collect()
}

/// Sam's phone answers the monitor INVITE; returns the INVITE it got.
fn sam_answers(n: &mut Net, at: &str, tag: &str, rtp: u16) -> Request {
    let (inv, _) = n.expect_request(at, Method::Invite);
    let offer = Sdp::parse(&inv.body).unwrap();
    assert_eq!(offer.media[0].formats, ["0", "8", "101"]);
    n.send(at, &answer(&inv, 180, tag, None, at));
    n.send(at, &answer(&inv, 200, tag, Some(&sdp(rtp)), at));
    n.expect_request(at, Method::Ack);
    inv
}

#[test]
fn monitor_calls_the_supervisor_without_touching_the_call_and_ends_with_it() {
    let mut n = Net::new(&config());
    let (_inv, _ok) = connect(&mut n, "m1");
    let call = n.b.calls(n.now)[0].id.clone();
    // Recording starts at the answer: route `service` has record = true.
    let rec = n.outputs.iter().find_map(|o| match o {
        Output::RecordStart { meta, .. } => Some(meta.clone()),
        _ => None,
    });
    let rec = rec.expect("recording started");
    assert_eq!(rec.call_id, call);
    assert_eq!(rec.route.as_deref(), Some("service"));
    assert_eq!(n.b.calls(n.now)[0].recording_paused, Some(false));

    // Through the one command entry point the driver uses.
    let cmd = CallCommand::AddMonitor {
        call: call.clone(),
        user: "sam".into(),
        mode: MonitorMode::Listen,
    };
    let Ok(Reply::Monitor(mid)) = n.b.handle_command(n.now, cmd) else {
        panic!("monitor not created");
    };
    let unknown = CallCommand::Hangup {
        call: "no-such-call".into(),
    };
    assert_eq!(
        n.b.handle_command(n.now, unknown),
        Err(CommandError::NoCall)
    );
    n.pump();
    let inv = sam_answers(&mut n, SAM, "sam", 7000);
    assert_eq!(inv.uri.to_string(), "sip:sam@127.0.0.1:5096");
    // Nothing reached the call's parties.
    assert!(n.quiet(CALLER) && n.quiet(SERVICE));
    let port = sdp_port(&inv.body);
    assert_eq!(
        monitor_outputs(&n),
        [
            &Output::Media(
                CallId(1),
                Command::MonitorOpen {
                    monitor: MonitorId(2),
                    port,
                    mode: MonitorMode::Listen
                }
            ),
            &Output::Media(
                CallId(1),
                Command::MonitorRemote {
                    monitor: MonitorId(2),
                    addr: "127.0.0.1:7000".parse().unwrap()
                }
            )
        ]
    );
    // Sam's phone re-INVITEs (e.g. hold): answered with the same session (o= line).
    let re = in_dialog(
        Method::Invite,
        &inv,
        true,
        "sam",
        2,
        "s-re",
        SAM,
        &sdp(7002),
    );
    n.send(SAM, &re);
    let (ok, _) = n.expect_response(SAM, 200);
    let o_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .to_string()
    };
    assert_eq!(o_line(&ok.body), o_line(&inv.body));
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::MonitorRemote {
            monitor: MonitorId(2),
            addr: "127.0.0.1:7002".parse().unwrap()
        }
    )));
    let info = &n.b.calls(n.now)[0].monitors;
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].id.as_str(), info[0].mode, info[0].state),
        (mid.as_str(), "listen", "active")
    );

    // A second supervisor on the same call.
    let mid2 =
        n.b.add_monitor(n.now, &call, "kim", MonitorMode::Whisper)
            .unwrap();
    n.pump();
    sam_answers(&mut n, KIM, "kim", 7100);
    assert_eq!(n.b.calls(n.now)[0].monitors.len(), 2);

    // Mode by API and by DTMF from the phone (5 = whisper, 6 = barge).
    n.b.set_monitor_mode(&call, &mid, MonitorMode::Barge)
        .unwrap();
    n.b.media_digit(n.now, CallId(1), DigitFrom::Monitor(MonitorId(2)), '5');
    n.b.media_digit(n.now, CallId(1), DigitFrom::Monitor(MonitorId(2)), '9'); // not a mode digit
    n.pump();
    assert_eq!(n.b.calls(n.now)[0].monitors[0].mode, "whisper");
    // Party digits go to the call's events.
    n.b.media_digit(n.now, CallId(1), DigitFrom::Party(Side::A), '#');
    assert_eq!(n.b.calls(n.now)[0].digits[0].digit, '#');
    assert_eq!(n.b.calls(n.now)[0].digits[0].from, "customer");

    // Recording pause/resume.
    n.b.set_recording_paused(&call, true).unwrap();
    n.pump();
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::RecordPause { paused: true }
    )));
    assert_eq!(n.b.calls(n.now)[0].recording_paused, Some(true));

    // DTMF into the call: the caller's offer named telephone-event 101.
    n.b.send_dtmf(&call, "12#", Side::A).unwrap();
    n.pump();
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::SendDtmf {
            side: Side::A,
            events: vec![1, 2, 11],
            pt: 101
        }
    )));
    assert_eq!(
        n.b.send_dtmf(&call, "1x", Side::A),
        Err(CommandError::BadDigit('x'))
    );
    assert_eq!(
        n.b.send_dtmf(&call, "", Side::A),
        Err(CommandError::DigitCount)
    );

    // Errors.
    assert_eq!(
        n.b.add_monitor(n.now, "nope", "sam", MonitorMode::Listen),
        Err(CommandError::NoCall)
    );
    assert_eq!(
        n.b.add_monitor(n.now, &call, "nobody", MonitorMode::Listen),
        Err(CommandError::NoUser)
    );
    assert_eq!(
        n.b.add_monitor(n.now, &call, "ann", MonitorMode::Listen),
        Err(CommandError::NoContact("ann".into()))
    );
    assert_eq!(
        n.b.set_monitor_mode(&call, "m99", MonitorMode::Listen),
        Err(CommandError::NoMonitor)
    );

    // Kim hangs up: only that monitor ends.
    let bye = in_dialog(
        Method::Bye,
        &n_last_invite(&mut n, &mid2),
        true,
        "kim",
        1,
        "k-bye",
        KIM,
        "",
    );
    n.send(KIM, &bye);
    n.expect_response(KIM, 200);
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::MonitorClose {
            monitor: MonitorId(3)
        }
    )));
    assert_eq!(n.b.calls(n.now)[0].monitors.len(), 1);
    assert!(n.quiet(CALLER) && n.quiet(SERVICE));

    // The call ends while Sam monitors: Sam's phone gets a BYE.
    assert!(n.b.hangup(n.now, &call));
    n.pump();
    let (b1, _) = n.expect_request(SERVICE, Method::Bye);
    let (b2, _) = n.expect_request(CALLER, Method::Bye);
    let (b3, _) = n.expect_request(SAM, Method::Bye);
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::MonitorClose {
            monitor: MonitorId(2)
        }
    )));
    n.send(SERVICE, &answer(&b1, 200, "x", None, SERVICE));
    n.send(CALLER, &answer(&b2, 200, "x", None, CALLER));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.monitor_count(), 2, "Sam's BYE is still open");
    n.send(SAM, &answer(&b3, 200, "sam", None, SAM));
    assert_eq!(n.b.monitor_count(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
    assert_eq!(n.b.ports_in_use(), 0);
}

/// The INVITE Kim's phone got is needed to build its BYE; the harness keeps none, so
/// rebuild the essentials from the B2BUA's monitor dialog.
fn n_last_invite(n: &mut Net, mid: &str) -> Request {
    let m = n.b.monitors.values().find(|m| m.public_id == mid).unwrap();
    let d = &m.dialog;
    let text = format!(
        "INVITE {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-x\r\nFrom: {};tag={}\r\nTo: {}\r\n\
Call-ID: {}\r\nCSeq: 1 INVITE\r\nContact: {}\r\nContent-Length: 0\r\n\r\n",
        d.remote_target, d.local_uri, d.local_tag, d.remote_uri, d.call_id, d.local_contact
    );
    match parse(text.as_bytes()).unwrap().0 {
        SipMessage::Request(r) => r,
        _ => unreachable!(),
    }
}

#[test]
fn monitor_ringing_when_the_call_ends_is_cancelled_and_a_refusal_cleans_up() {
    let mut n = Net::new(&config());
    connect(&mut n, "m2");
    let call = n.b.calls(n.now)[0].id.clone();
    n.b.add_monitor(n.now, &call, "sam", MonitorMode::Listen)
        .unwrap();
    n.pump();
    let (inv, _) = n.expect_request(SAM, Method::Invite);
    n.send(SAM, &answer(&inv, 180, "sam", None, SAM));
    // Refusal path on a second monitor: 486 → closed, nothing left.
    n.b.add_monitor(n.now, &call, "kim", MonitorMode::Listen)
        .unwrap();
    n.pump();
    let (kinv, _) = n.expect_request(KIM, Method::Invite);
    n.send(KIM, &answer(&kinv, 486, "kim", None, KIM));
    n.expect_request(KIM, Method::Ack);
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::MonitorClose {
            monitor: MonitorId(3)
        }
    )));
    assert_eq!(n.b.calls(n.now)[0].monitors.len(), 1);

    // The caller hangs up while Sam's phone still rings: CANCEL, then 487.
    assert!(n.b.hangup(n.now, &call));
    n.pump();
    let (cancel, _) = n.expect_request(SAM, Method::Cancel);
    n.send(SAM, &answer(&cancel, 200, "sam", None, SAM));
    n.send(SAM, &answer(&inv, 487, "sam", None, SAM));
    n.expect_request(SAM, Method::Ack);
    let (b1, _) = n.expect_request(SERVICE, Method::Bye);
    let (b2, _) = n.expect_request(CALLER, Method::Bye);
    n.send(SERVICE, &answer(&b1, 200, "x", None, SERVICE));
    n.send(CALLER, &answer(&b2, 200, "x", None, CALLER));
    assert_eq!(n.b.monitor_count(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn monitor_needs_an_answered_call() {
    let mut n = Net::new(&config());
    n.send(CALLER, &invite("service", "m3", &sdp(4000)));
    let call = n.b.calls(n.now)[0].id.clone();
    assert_eq!(
        n.b.add_monitor(n.now, &call, "sam", MonitorMode::Listen),
        Err(CommandError::NotAnswered)
    );
    assert_eq!(
        n.b.set_recording_paused(&call, true),
        Err(CommandError::NotRecording)
    );
}

#[test]
fn beep_on_monitor_beeps_when_the_supervisor_answers_only_if_configured() {
    for beep in [false, true] {
        let cfg = config().replace(
            "record = true",
            if beep {
                "record = true\nbeep_on_monitor = true"
            } else {
                "record = true"
            },
        );
        let mut n = Net::new(&cfg);
        connect(&mut n, "bp");
        let call = n.b.calls(n.now)[0].id.clone();
        n.b.add_monitor(n.now, &call, "sam", MonitorMode::Listen)
            .unwrap();
        n.pump();
        assert!(
            !n.outputs.contains(&Output::Media(CallId(1), Command::Beep)),
            "not while ringing"
        );
        sam_answers(&mut n, SAM, "sam", 7000);
        assert_eq!(
            n.outputs.contains(&Output::Media(CallId(1), Command::Beep)),
            beep
        );
    }
}

#[test]
fn a_supervisor_signed_in_at_another_node_is_called_through_its_hop() {
    const NODE_A: &str = "127.0.0.9:5060";
    let cfg =
        config() + "[[users]]\nname = \"zoe\"\nrole = \"supervisor\"\ntoken = \"zoe-token-1\"\n";
    let mut n = Net::new(&cfg);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    connect(&mut n, "m-zoe");
    let call = n.b.calls(n.now)[0].id.clone();
    assert!(matches!(
        n.b.add_monitor(n.now, &call, "zoe", MonitorMode::Listen),
        Err(CommandError::NoContact(_))
    ));
    // Zoe's console is signed in at node A (a WebSocket there), as A shares it.
    let me: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
    n.b.set_cluster_nodes(
        n.now,
        me,
        vec![
            ("edge-b".into(), me),
            ("edge-a".into(), NODE_A.parse().unwrap()),
        ],
    );
    let ws = sip::Flow {
        transport: control::Transport::Ws,
        local: "127.0.0.9:8080".parse().unwrap(),
        remote: "127.0.0.1:40999".parse().unwrap(),
    };
    let b = crate::Binding {
        agent: "zoe".into(),
        contact: "sip:z0e@z0e.invalid;transport=ws".into(),
        flow: ws,
        expires: n.b.wall(n.now) + Duration::from_secs(300),
        call_id: "zoe-reg".into(),
        cseq: 1,
        user_agent: None,
        path: vec![crate::hop_path(NODE_A.parse().unwrap(), "zoe", ws)],
    };
    n.b.remote_bindings(n.now, "edge-a".into(), "zoe".into(), vec![b.clone()]);
    n.b.add_monitor(n.now, &call, "zoe", MonitorMode::Listen)
        .unwrap();
    n.pump();
    let (inv, _) = n.expect_request(NODE_A, Method::Invite);
    let text = inv.to_string();
    let routes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Route: "))
        .collect();
    assert_eq!(routes, [b.path[0].as_str()], "{text}");
    let offer = String::from_utf8_lossy(&inv.body).into_owned();
    assert!(
        offer.contains("UDP/TLS/RTP/SAVPF") && offer.contains("a=ice-lite"),
        "{offer}"
    );
}
