//! After-hours deflection through call flows (a queue that is never open).

use super::*;

fn closed(action: &str) -> Net {
    let cfg = CONFIG.replace(
        "agents = [\"1001\", \"1002\"]\nmax_wait = \"30s\"",
        &format!(
            "agents = [\"1001\", \"1002\"]\nmax_wait = \"30s\"\nhours = \"never\"\n\
             after_hours = \"{action}\"\nafter_hours_announcement = \"Cargo.toml\"\n\
             voicemail_max = \"20s\"\n\
             [[queues]]\nname = \"night\"\nnumbers = [\"2000\"]\nagents = [\"1002\"]\n\
             [[hours]]\nname = \"never\"\ntimezone = \"UTC\"\nopen = []"
        ),
    );
    Net::new(&cfg)
}

/// The caller's call to the closed queue, answered by the edge itself: the 200's
/// SDP, then the ACK. Returns the 200.
fn answered_by_the_edge(n: &mut Net, call_id: &str) -> Response {
    n.send(CALLER, &invite("1000", call_id, &sdp(4000)));
    n.expect_response(CALLER, 100);
    let (ok, _) = n.expect_response(CALLER, 200);
    let port = sdp_port(&ok.body);
    assert!((20000..20100).contains(&port), "the edge's own RTP port");
    let to = ok
        .to_string()
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    let ack = invite("1000", call_id, "")
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace("To: <sip:1000@127.0.0.1>", &to)
        .replace(&format!("z9hG4bK-{call_id}"), "z9hG4bK-ack");
    n.send(CALLER, &ack);
    assert!(
        n.quiet(ALICE) && n.quiet(BOB),
        "no agent is offered the call"
    );
    ok
}

fn announced(n: &Net) -> Vec<Side> {
    n.outputs
        .iter()
        .filter_map(|o| match o {
            Output::Media(_, Command::Announce { side, .. }) => Some(*side),
            _ => None,
        })
        .collect()
}

#[test]
fn announce_plays_to_the_caller_then_hangs_up() {
    let mut n = closed("announce");
    let ok = answered_by_the_edge(&mut n, "ah1");
    assert!(String::from_utf8_lossy(&ok.body).contains("RTP/AVP 0 101"));
    assert_eq!(announced(&n), [Side::A]);
    assert_eq!(n.b.calls(n.now)[0].after_hours, Some("announce"));
    n.b.announcement_done(n.now, CallId(1));
    n.pump();
    let (bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&bye, 200, "x", None, CALLER));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.stats.after_hours["announce"], 1);
    assert!(!n
        .outputs
        .iter()
        .any(|o| matches!(o, Output::RecordStart { .. })));
}

#[test]
fn voicemail_records_the_caller_until_hash_or_its_maximum() {
    let mut n = closed("voicemail");
    answered_by_the_edge(&mut n, "vm1");
    n.b.announcement_done(n.now, CallId(1));
    n.pump();
    let meta = n
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::RecordStart { meta, .. } => Some(meta.clone()),
            _ => None,
        })
        .expect("the message is recorded");
    assert!(meta.voicemail && meta.agent.is_none());
    assert_eq!(meta.queue.as_deref(), Some("sales"));
    // A digit other than # changes nothing; # ends the message.
    n.b.media_digit(n.now, CallId(1), DigitFrom::Party(Side::A), '5');
    n.pump();
    assert!(n.quiet(CALLER));
    n.b.media_digit(n.now, CallId(1), DigitFrom::Party(Side::A), '#');
    n.pump();
    let (bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&bye, 200, "x", None, CALLER));
    assert_eq!(n.b.stats.voicemails, 1);
    // A second caller says nothing: voicemail_max (20 s) ends it.
    answered_by_the_edge(&mut n, "vm2");
    let id = CallId(n.b.calls.by_public(&n.b.calls(n.now)[0].id).unwrap().0);
    n.b.announcement_done(n.now, id);
    n.pump();
    n.advance(Duration::from_secs(19));
    assert!(n.quiet(CALLER));
    n.advance(Duration::from_secs(1));
    n.expect_request(CALLER, Method::Bye);
}

#[test]
fn an_announcement_never_reported_moves_on_after_its_safety_limit() {
    let mut n = closed("announce");
    answered_by_the_edge(&mut n, "ah2");
    n.advance(ANNOUNCEMENT_LIMIT);
    n.expect_request(CALLER, Method::Bye);
}

#[test]
fn queue_and_forward_send_the_call_elsewhere() {
    let mut n = closed("queue:night");
    n.send(CALLER, &invite("1000", "aq1", &sdp(4000)));
    n.expect_request(BOB, Method::Invite);
    assert!(n.quiet(ALICE));
    assert_eq!(n.b.calls(n.now)[0].queue.as_deref(), Some("night"));
    assert_eq!(n.b.calls(n.now)[0].after_hours, Some("queue"));
    let mut n = closed("forward:sip:desk@127.0.0.1:5090");
    n.send(CALLER, &invite("1000", "af1", &sdp(4000)));
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:desk@127.0.0.1:5090");
    assert_eq!(n.b.stats.after_hours["forward"], 1);
    assert_eq!(n.b.calls(n.now)[0].after_hours, Some("forward"));
}

#[test]
fn a_caller_without_g711_gets_488_after_hours() {
    let mut n = closed("announce");
    let g722 = sdp(4000).replace("RTP/AVP 0 8 101", "RTP/AVP 9");
    n.send(CALLER, &invite("1000", "ah3", &g722));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 488);
}
