//! Whisper announcements, hold (re-INVITE and API) and the monitor beep, on the B2BUA
//! harness of `tests`.

use super::*;

/// A config whose `sales` queue has an announcement and hold audio (files must exist).
fn config(with_hold_audio: bool) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("edge-announce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sales.wav");
    std::fs::write(&file, b"RIFF").unwrap();
    let hold = if with_hold_audio {
        format!("hold_audio = \"{}\"\n", file.display())
    } else {
        String::new()
    };
    let c = CONFIG.replace(
        "max_wait = \"30s\"",
        &format!(
            "max_wait = \"30s\"\nrecord = true\nannouncement = \"{}\"\n{hold}",
            file.display()
        ),
    );
    (c, file)
}

fn announce_outputs(n: &Net) -> Vec<&Output> {
    n.outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Media(_, Command::Announce { .. })
                    | Output::Media(_, Command::AnnounceStop)
                    | Output::RecordStart { .. }
            )
        })
        .collect()
}

/// Caller → sales queue; Alice answers (PCMA first) and is ACKed.
fn alice_answers(n: &mut Net, call_id: &str) -> Request {
    n.send(CALLER, &invite("1000", call_id, &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    let pcma_first = sdp(7000).replace("RTP/AVP 0 8 101", "RTP/AVP 8 0 101");
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&pcma_first), ALICE));
    n.expect_request(ALICE, Method::Ack);
    inv
}

#[test]
fn agent_hears_the_announcement_before_the_caller_is_answered() {
    let (cfg, file) = config(false);
    let mut n = Net::new(&cfg);
    alice_answers(&mut n, "an1");
    assert!(
        n.quiet(CALLER),
        "no 200 to the caller during the announcement"
    );
    assert_eq!(n.b.calls(n.now)[0].state, "announcing");
    assert_eq!(
        announce_outputs(&n),
        [&Output::Media(
            CallId(1),
            Command::Announce {
                side: Side::B,
                file: file.clone(),
                pt: 8
            }
        )],
        "announcement in the agent's codec; recording waits for the customer"
    );
    // Alice's re-INVITE meanwhile is refused (not established).
    n.b.announcement_done(n.now, CallId(1));
    n.pump();
    let (ok, _) = n.expect_response(CALLER, 200);
    assert_eq!(sdp_port(&ok.body), sdp_port(&ok.body));
    assert_eq!(n.b.calls(n.now)[0].state, "answered");
    assert!(matches!(
        announce_outputs(&n).last(),
        Some(Output::RecordStart { .. })
    ));
    assert_eq!(n.b.stats.answered, 1);
    // A second report changes nothing.
    n.b.announcement_done(n.now, CallId(1));
    n.pump();
    assert!(n.quiet(CALLER));
}

#[test]
fn agent_leaving_during_the_announcement_requeues_the_call() {
    let (cfg, _) = config(false);
    let mut n = Net::new(&cfg);
    let inv = alice_answers(&mut n, "an2");
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &inv, true, "alice", 1, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    assert!(n
        .outputs
        .contains(&Output::Media(CallId(1), Command::AnnounceStop)));
    assert!(n.quiet(CALLER), "the caller keeps waiting");
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7002)), BOB));
    n.expect_request(BOB, Method::Ack);
    assert_eq!(n.b.calls(n.now)[0].agent.as_deref(), Some("1002"));
    assert_eq!(
        n.outputs
            .iter()
            .filter(|o| matches!(o, Output::Media(_, Command::Announce { .. })))
            .count(),
        2,
        "Bob hears it too"
    );
    // The media never reports: the safety timer connects the caller.
    n.advance(ANNOUNCEMENT_LIMIT);
    n.expect_response(CALLER, 200);
    assert_eq!(n.b.calls(n.now)[0].state, "answered");
}

#[test]
fn caller_cancelling_during_the_announcement_hangs_up_the_agent() {
    let (cfg, _) = config(false);
    let mut n = Net::new(&cfg);
    alice_answers(&mut n, "an3");
    let cancel = cancel_of(&invite("1000", "an3", ""));
    n.send(CALLER, &cancel);
    n.expect_response(CALLER, 200);
    n.expect_response(CALLER, 487);
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.ports_in_use(), 0);
    assert!(!n
        .outputs
        .iter()
        .any(|o| matches!(o, Output::RecordStart { .. })));
}

fn hold_outputs(n: &Net) -> Vec<&Output> {
    n.outputs
        .iter()
        .filter(|o| matches!(o, Output::Media(_, Command::Hold { .. })))
        .collect()
}

#[test]
fn reinvite_hold_and_resume_drive_the_media_hold() {
    let mut n = Net::new(CONFIG);
    let (inv, _) = connect(&mut n, "h2");
    let reinvite = |n: &mut Net, cseq: u32, dir: &str| {
        let offer = sdp(6000).replace("a=sendrecv", dir);
        n.send(
            SERVICE,
            &in_dialog(
                Method::Invite,
                &inv,
                true,
                "callee",
                cseq,
                &format!("re{cseq}"),
                SERVICE,
                &offer,
            ),
        );
        let (re, _) = n.expect_request(CALLER, Method::Invite);
        let body = String::from_utf8_lossy(&re.body).to_string();
        let reply = sdp(4000).replace("a=sendrecv", "a=recvonly");
        n.send(CALLER, &answer(&re, 200, "x", Some(&reply), CALLER));
        n.expect_request(CALLER, Method::Ack);
        n.expect_response(SERVICE, 200);
        body
    };
    // The callee (agent side) holds: the caller (A) is the held party.
    let fwd = reinvite(&mut n, 1, "a=inactive");
    assert!(fwd.contains("a=inactive"), "no hold audio: passed as is");
    assert_eq!(
        hold_outputs(&n),
        [&Output::Media(
            CallId(1),
            Command::Hold {
                side: Side::A,
                held: true,
                audio: None
            }
        )]
    );
    assert_eq!(n.b.calls(n.now)[0].held, [true, false]);
    reinvite(&mut n, 2, "a=sendrecv");
    assert_eq!(n.b.calls(n.now)[0].held, [false, false]);
    assert_eq!(hold_outputs(&n).len(), 2);
    // API hold of the agent, twice: one output; unknown call → 404-style error.
    let call = n.b.calls(n.now)[0].id.clone();
    n.b.hold(&call, Side::B, true).unwrap();
    n.b.hold(&call, Side::B, true).unwrap();
    n.pump();
    assert_eq!(hold_outputs(&n).len(), 3);
    assert!(n.quiet(CALLER) && n.quiet(SERVICE), "API hold sends no SIP");
    assert_eq!(n.b.hold("nope", Side::B, true), Err(CommandError::NoCall));
}

#[test]
fn inactive_hold_with_hold_audio_tells_the_held_party_sendonly() {
    let (cfg, file) = config(true);
    let mut n = Net::new(&cfg);
    let inv = alice_answers(&mut n, "h3");
    n.b.announcement_done(n.now, CallId(1));
    n.pump();
    n.expect_response(CALLER, 200);
    // Alice (B) holds with `inactive`: the caller is told sendonly, hears hold audio.
    let offer = sdp(7000).replace("a=sendrecv", "a=inactive");
    n.send(
        ALICE,
        &in_dialog(
            Method::Invite,
            &inv,
            true,
            "alice",
            2,
            "h3re",
            ALICE,
            &offer,
        ),
    );
    let (re, _) = n.expect_request(CALLER, Method::Invite);
    assert!(String::from_utf8_lossy(&re.body).contains("a=sendonly"));
    let reply = sdp(4000).replace("a=sendrecv", "a=recvonly");
    n.send(CALLER, &answer(&re, 200, "x", Some(&reply), CALLER));
    n.expect_request(CALLER, Method::Ack);
    let (ok, _) = n.expect_response(ALICE, 200);
    let body = String::from_utf8_lossy(&ok.body).to_string();
    assert!(
        body.contains("a=inactive") && !body.contains("a=recvonly"),
        "an inactive offer gets an inactive answer: {body}"
    );
    assert_eq!(
        hold_outputs(&n),
        [&Output::Media(
            CallId(1),
            Command::Hold {
                side: Side::A,
                held: true,
                audio: Some(file)
            }
        )]
    );
}
