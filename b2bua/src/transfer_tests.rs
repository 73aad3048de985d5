//! Blind transfer (REFER and API) with in-memory peers and the virtual clock.

use super::*;

/// A queue call answered by Alice (agent 1001) and ACKed by the caller: the
/// INVITE Alice got and the 200 the caller got.
fn call_at_alice(n: &mut Net, call_id: &str) -> (Request, Response) {
    n.send(CALLER, &invite("1000", call_id, &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    let (to_alice, _) = n.expect_request(ALICE, Method::Invite);
    n.send(
        ALICE,
        &answer(&to_alice, 200, "alice", Some(&sdp(7000)), ALICE),
    );
    n.expect_request(ALICE, Method::Ack);
    let (ok, _) = n.expect_response(CALLER, 200);
    let to = ok
        .to_string()
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    n.send(
        CALLER,
        &invite("1000", call_id, "")
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace("To: <sip:1000@127.0.0.1>", &to)
            .replace(&format!("z9hG4bK-{call_id}"), "z9hG4bK-ack"),
    );
    assert_eq!(n.b.calls(n.now)[0].state, "connected");
    n.outputs.clear();
    (to_alice, ok)
}

/// An in-dialog request from the caller of queue call `call_id` (`ok`: the 200 it got).
fn from_caller(ok: &Response, call_id: &str, method: &str, cseq: u32, headers: &str) -> String {
    let tag = to_tag(ok);
    format!(
        "{method} sip:edge@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{method}{cseq}\r\nFrom: <sip:caller@127.0.0.1:5070>;tag=ct-{call_id}\r\n\
To: <sip:1000@127.0.0.1>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{headers}Content-Length: 0\r\n\r\n"
    )
}

/// The agent at `at` (its leg created by `leg`, its tag `tag`) hangs up with CSeq
/// `cseq`: the customer gets BYE and the call is gone without a trace.
fn hang_up(n: &mut Net, at: &str, leg: &Request, tag: &str, cseq: u32) {
    n.send(
        at,
        &in_dialog(Method::Bye, leg, true, tag, cseq, "hang-up", at, ""),
    );
    n.expect_response(at, 200);
    let (a_bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&a_bye, 200, "x", None, CALLER));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

/// Alice transfers to Bob (agent 1002) by REFER: 202, NOTIFY 100, and Bob's
/// INVITE (answered 180 and NOTIFY 180 when `ringing`).
fn refer_to_bob(n: &mut Net, to_alice: &Request, ringing: bool) -> Request {
    n.send(
        ALICE,
        &refer(to_alice, 2, "Refer-To: <sip:1002@127.0.0.1>\r\n"),
    );
    n.expect_response(ALICE, 202);
    notify(n, ALICE);
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    if ringing {
        n.send(BOB, &answer(&to_bob, 180, "bob", None, BOB));
        assert_eq!(notify(n, ALICE).0, "SIP/2.0 180 Ringing");
    }
    to_bob
}

/// Alice's REFER (CSeq `cseq`) with header lines `headers`.
fn refer(to_alice: &Request, cseq: u32, headers: &str) -> String {
    with_headers(
        &in_dialog(
            Method::Refer,
            to_alice,
            true,
            "alice",
            cseq,
            &format!("refer{cseq}"),
            ALICE,
            "",
        ),
        headers,
    )
}

/// The next NOTIFY at `at`, answered 200: its sipfrag status line and
/// Subscription-State.
fn notify(n: &mut Net, at: &str) -> (String, String) {
    let (req, _) = n.expect_request(at, Method::Notify);
    let text = req.to_string();
    assert!(text.contains("Event: refer;id="), "{text}");
    assert!(
        text.contains("Content-Type: message/sipfrag;version=2.0"),
        "{text}"
    );
    let state = text
        .lines()
        .find_map(|l| l.strip_prefix("Subscription-State: "))
        .unwrap()
        .to_string();
    n.send(at, &answer(&req, 200, "alice", None, at));
    (
        String::from_utf8(req.body.clone())
            .unwrap()
            .trim()
            .to_string(),
        state,
    )
}

fn holds(n: &Net) -> Vec<(Side, bool)> {
    n.outputs
        .iter()
        .filter_map(|o| match o {
            Output::Media(_, Command::Hold { side, held, .. }) => Some((*side, *held)),
            _ => None,
        })
        .collect()
}

fn remotes_b(n: &Net) -> Vec<Option<std::net::SocketAddr>> {
    n.outputs
        .iter()
        .filter_map(|o| match o {
            Output::Media(
                _,
                Command::Remote {
                    side: Side::B,
                    addr,
                },
            ) => Some(*addr),
            _ => None,
        })
        .collect()
}

#[test]
fn refer_to_an_agent_rings_it_on_the_same_port_and_completes_without_touching_the_caller() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "t1");
    n.send(
        ALICE,
        &refer(&to_alice, 2, "Refer-To: <sip:1002@127.0.0.1>\r\n"),
    );
    n.expect_response(ALICE, 202);
    assert_eq!(
        notify(&mut n, ALICE),
        ("SIP/2.0 100 Trying".into(), "active;expires=60".into())
    );
    assert_eq!(
        holds(&n),
        vec![(Side::A, true)],
        "the customer hears hold audio"
    );
    assert!(
        n.outputs.iter().any(|o| matches!(o,
            Output::Media(_, Command::Hold { side: Side::A, held: true, audio: Some(p) })
                if p == std::path::Path::new(media::audio::RINGBACK))),
        "no hold audio configured: ringback, never silence"
    );
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    assert_eq!(
        sdp_port(&to_bob.body),
        sdp_port(&to_alice.body),
        "the target gets the edge's B port"
    );
    assert!(
        !String::from_utf8_lossy(&to_bob.body).contains("a=sendonly"),
        "the target is offered sendrecv"
    );
    assert!(
        remotes_b(&n).is_empty(),
        "the transferor stays latched while the target rings"
    );
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].state, "connected");
    assert_eq!(calls[0].transfers[0].outcome, "pending");
    n.send(BOB, &answer(&to_bob, 180, "bob", None, BOB));
    assert_eq!(notify(&mut n, ALICE).0, "SIP/2.0 180 Ringing");
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    assert_eq!(
        notify(&mut n, ALICE),
        (
            "SIP/2.0 200 OK".into(),
            "terminated;reason=noresource".into()
        )
    );
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert_eq!(holds(&n), vec![(Side::A, true), (Side::A, false)]);
    assert_eq!(remotes_b(&n), vec![Some("127.0.0.1:7100".parse().unwrap())]);
    assert!(n.quiet(CALLER), "the customer's leg is never re-INVITEd");
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1002"));
    assert_eq!(calls[0].transfers[0].outcome, "completed");
    assert_eq!(calls[0].transfers[0].by, TransferBy::Refer);
    assert_eq!(n.b.stats.transfers.get("completed"), Some(&1));
    // Bob talks, then hangs up: the call ends, nothing is left behind.
    hang_up(&mut n, BOB, &to_bob, "bob", 1);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn a_busy_target_gives_the_call_back_to_the_transferor() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "t2");
    n.send(
        ALICE,
        &refer(&to_alice, 2, "Refer-To: sip:1002@127.0.0.1\r\n"),
    );
    n.expect_response(ALICE, 202);
    notify(&mut n, ALICE);
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    n.send(BOB, &answer(&to_bob, 486, "bob", None, BOB));
    n.expect_request(BOB, Method::Ack);
    assert_eq!(
        notify(&mut n, ALICE),
        (
            "SIP/2.0 486 Busy Here".into(),
            "terminated;reason=noresource".into()
        )
    );
    assert!(n.quiet(ALICE), "the transferor is not hung up");
    assert_eq!(holds(&n), vec![(Side::A, true), (Side::A, false)]);
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1001"));
    assert_eq!(calls[0].transfers[0].outcome, "recalled");
    assert_eq!(calls[0].transfers[0].status, Some(486));
    // Alice's leg is the call's again: her BYE ends it.
    hang_up(&mut n, ALICE, &to_alice, "alice", 3);
}

#[test]
fn a_transferor_that_left_sends_an_unanswered_transfer_back_to_its_queue() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "t3");
    let to_bob = refer_to_bob(&mut n, &to_alice, true);
    // Alice hangs up after the 202, as many phones do.
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &to_alice, true, "alice", 3, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    assert!(n.quiet(CALLER), "the customer stays, on hold audio");
    // Bob lets it ring out (agent_ring_timeout 10 s): CANCEL, back to the queue.
    n.advance(Duration::from_secs(10));
    let (cancel, _) = n.expect_request(BOB, Method::Cancel);
    n.send(BOB, &answer(&cancel, 200, "bob", None, BOB));
    n.send(BOB, &answer(&to_bob, 487, "bob", None, BOB));
    n.expect_request(BOB, Method::Ack);
    let calls = n.b.calls(n.now);
    assert_eq!(calls.len(), 1, "the call goes on");
    assert_eq!(calls[0].queue.as_deref(), Some("sales"));
    assert_eq!(calls[0].transfers[0].outcome, "requeued");
    assert!(n.quiet(CALLER));
    // Nobody takes it within the queue's max_wait (30 s): the edge ends it.
    n.advance(Duration::from_secs(31));
    let (a_bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&a_bye, 200, "x", None, CALLER));
    // (Alice, out of wrap-up, was offered it meanwhile: refuse what rang.)
    while let Some((m, _)) = n.wire.try_recv(ALICE) {
        if let SipMessage::Request(r) = m {
            if r.method == Method::Invite {
                n.send(ALICE, &answer(&r, 486, "alice", None, ALICE));
            }
        }
    }
    n.advance(Duration::from_secs(40));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

#[test]
fn refers_the_edge_cannot_carry_out_are_refused_with_a_reason() {
    let mut n = Net::new(CONFIG);
    let (to_alice, ok) = call_at_alice(&mut n, "t4");
    let cases = [
        ("", 400),
        (
            "Refer-To: <sip:1002@127.0.0.1>\r\nRefer-To: <sip:1000@127.0.0.1>\r\n",
            400,
        ),
        ("Refer-To: <sip:nobody@127.0.0.1>\r\n", 403),
        ("Refer-To: <sip:x@198.51.100.7:5060>\r\n", 403),
        ("Refer-To: <sip:1001@127.0.0.1>\r\n", 403),
        (
            "Refer-To: <sip:1002@127.0.0.1?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n",
            403,
        ),
        ("Refer-To: <sip:1002@127.0.0.1?Subject=hi>\r\n", 501),
    ];
    for (i, (h, code)) in cases.iter().enumerate() {
        n.send(ALICE, &refer(&to_alice, 2 + i as u32, h));
        let (r, _) = n.expect_response(ALICE, *code);
        if *code != 400 || i > 0 {
            assert!(r.to_string().contains("Warning: 399 edge"), "{r}");
        }
    }
    // The caller's side may not transfer (the carrier's REFER is not followed).
    n.send(
        CALLER,
        &from_caller(&ok, "t4", "REFER", 2, "Refer-To: <sip:1002@127.0.0.1>\r\n"),
    );
    n.expect_response(CALLER, 403);
    assert!(n.quiet(BOB) && n.quiet(SERVICE), "nothing was rung");
    assert_eq!(n.b.calls(n.now)[0].transfers.len(), 0);
    assert_eq!(n.b.calls(n.now)[0].agent.as_deref(), Some("1001"));
}

#[test]
fn a_refer_to_a_route_number_or_an_allowed_uri_calls_that_target() {
    for (refer_to, at) in [
        ("<sip:service@127.0.0.1>", SERVICE),
        ("<sip:447700900123@127.0.0.1>", "127.0.0.1:5091"),
        ("<sip:desk@127.0.0.1:5091>", "127.0.0.1:5091"),
    ] {
        let mut n = Net::new(CONFIG);
        let (to_alice, _) = call_at_alice(&mut n, "t5");
        n.send(
            ALICE,
            &refer(&to_alice, 2, &format!("Refer-To: {refer_to}\r\n")),
        );
        n.expect_response(ALICE, 202);
        notify(&mut n, ALICE);
        let (inv, _) = n.expect_request(at, Method::Invite);
        n.send(at, &answer(&inv, 200, "svc", Some(&sdp(7200)), at));
        n.expect_request(at, Method::Ack);
        assert_eq!(notify(&mut n, ALICE).0, "SIP/2.0 200 OK");
        let (bye, _) = n.expect_request(ALICE, Method::Bye);
        n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
        let calls = n.b.calls(n.now);
        assert_eq!(calls[0].agent, None, "{refer_to}");
        assert_eq!(calls[0].transfers[0].outcome, "completed");
    }
}

#[test]
fn a_refer_crossing_a_reinvite_gets_491_and_a_reinvite_during_a_transfer_too() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "t6");
    // Alice holds the caller: the re-INVITE waits for the caller's answer.
    n.send(
        ALICE,
        &in_dialog(
            Method::Invite,
            &to_alice,
            true,
            "alice",
            2,
            "hold",
            ALICE,
            &sdp(7000).replace("a=sendrecv", "a=sendonly"),
        ),
    );
    n.expect_request(CALLER, Method::Invite);
    n.send(
        ALICE,
        &refer(&to_alice, 3, "Refer-To: <sip:1002@127.0.0.1>\r\n"),
    );
    let (r, _) = n.expect_response(ALICE, 491);
    assert!(r.to_string().contains("Retry-After: 1"));
    assert!(n.quiet(BOB));
}

#[test]
fn the_api_transfers_only_for_the_calls_agent_and_a_queue_target_releases_the_agent_at_once() {
    let mut n = Net::new(CONFIG);
    let (_to_alice, _) = call_at_alice(&mut n, "t7");
    let id = n.b.calls(n.now)[0].id.clone();
    let cmd = |to: &str, by: Option<&str>| CallCommand::Transfer {
        call: id.clone(),
        to: to.into(),
        by_agent: by.map(str::to_string),
    };
    assert_eq!(
        n.b.handle_command(n.now, cmd("queue:sales", Some("1002"))),
        Err(CommandError::NotYours)
    );
    assert!(matches!(
        n.b.handle_command(n.now, cmd("queue:nope", None)),
        Err(CommandError::NoTarget(_))
    ));
    assert!(matches!(
        n.b.handle_command(n.now, cmd("1001", None)),
        Err(CommandError::Forbidden(_))
    ));
    assert_eq!(
        n.b.handle_command(n.now, cmd("queue:sales", Some("1001"))),
        Ok(Reply::Done)
    );
    n.pump();
    // No REFER, no NOTIFY: Alice's leg just ends, and Bob is offered the call.
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    assert!(matches!(
        n.b.handle_command(n.now, cmd("1002", None)),
        Err(CommandError::Conflict(_))
    ));
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1002"));
    assert_eq!(calls[0].transfers[0].by, TransferBy::Api);
    assert_eq!(calls[0].transfers[0].outcome, "completed");
    assert!(n.quiet(CALLER));
    assert_eq!(n.b.stats.transfers.get("queued"), Some(&1));
    assert_eq!(n.b.stats.transfers.get("completed"), Some(&1));
}

#[test]
fn the_caller_hanging_up_during_a_transfer_ends_every_leg() {
    let mut n = Net::new(CONFIG);
    let (to_alice, ok) = call_at_alice(&mut n, "t8");
    let to_bob = refer_to_bob(&mut n, &to_alice, true);
    n.send(CALLER, &from_caller(&ok, "t8", "BYE", 2, ""));
    n.expect_response(CALLER, 200);
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    let (cancel, _) = n.expect_request(BOB, Method::Cancel);
    n.send(BOB, &answer(&cancel, 200, "bob", None, BOB));
    n.send(BOB, &answer(&to_bob, 487, "bob", None, BOB));
    n.expect_request(BOB, Method::Ack);
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
    assert_eq!(n.b.stats.transfers.get("abandoned"), Some(&1));
    assert_eq!(n.b.ports_in_use(), 0);
}

/// CONFIG with two queues that are never open: `night` (2000) answers by itself
/// after hours, `late` (3000) deflects to `sales`.
fn with_closed_queues() -> String {
    format!(
        "{CONFIG}\n[[queues]]\nname = \"night\"\nnumbers = [\"2000\"]\nagents = [\"1002\"]\n\
hours = \"never\"\nafter_hours = \"announce\"\nafter_hours_announcement = \"Cargo.toml\"\n\
[[queues]]\nname = \"late\"\nnumbers = [\"3000\"]\nagents = [\"1002\"]\nhours = \"never\"\n\
after_hours = \"queue:sales\"\n[[hours]]\nname = \"never\"\ntimezone = \"UTC\"\nopen = []\n"
    )
}

#[test]
fn a_closed_queue_refuses_a_transfer_or_deflects_it_as_its_hours_say() {
    let mut n = Net::new(&with_closed_queues());
    let (to_alice, _) = call_at_alice(&mut n, "t9");
    n.send(
        ALICE,
        &refer(&to_alice, 2, "Refer-To: <sip:2000@127.0.0.1>\r\n"),
    );
    let (r, _) = n.expect_response(ALICE, 480);
    assert!(r.to_string().contains("is closed"), "{r}");
    let id = n.b.calls(n.now)[0].id.clone();
    assert!(matches!(
        n.b.handle_command(
            n.now,
            CallCommand::Transfer {
                call: id,
                to: "queue:night".into(),
                by_agent: None
            }
        ),
        Err(CommandError::Closed(q)) if q == "night"
    ));
    // `late` is closed too but sends its calls to `sales`: Bob is offered it.
    n.send(
        ALICE,
        &refer(&to_alice, 3, "Refer-To: <sip:3000@127.0.0.1>\r\n"),
    );
    n.expect_response(ALICE, 202);
    notify(&mut n, ALICE);
    assert_eq!(notify(&mut n, ALICE).0, "SIP/2.0 200 OK");
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].queue.as_deref(), Some("sales"));
    assert_eq!(calls[0].agent.as_deref(), Some("1002"));
}

#[test]
fn a_call_that_is_ending_cannot_be_transferred() {
    let mut n = Net::new(CONFIG);
    let (_to_alice, ok) = call_at_alice(&mut n, "t10");
    n.send(CALLER, &from_caller(&ok, "t10", "BYE", 2, ""));
    n.expect_response(CALLER, 200);
    // Alice has not answered the edge's BYE yet: the call is ending.
    n.expect_request(ALICE, Method::Bye);
    let id = n.b.calls(n.now)[0].id.clone();
    assert!(matches!(
        n.b.handle_command(
            n.now,
            CallCommand::Transfer {
                call: id,
                to: "1002".into(),
                by_agent: None
            }
        ),
        Err(CommandError::Conflict(_))
    ));
    assert!(n.quiet(BOB));
}

fn consult_cmd(n: &mut Net, kind: &str, to: &str) -> Result<Reply, CommandError> {
    let call = n.b.calls(n.now)[0].id.clone();
    let by_agent = Some("1001".to_string());
    let cmd = match kind {
        "start" => CallCommand::Consult {
            call,
            to: to.into(),
            by_agent,
        },
        "complete" => CallCommand::ConsultComplete { call, by_agent },
        _ => CallCommand::ConsultCancel { call, by_agent },
    };
    let r = n.b.handle_command(n.now, cmd);
    n.pump();
    r
}

/// Alice consults Bob: Bob's phone is called on a port of its own and answers.
fn consult_bob(n: &mut Net, to_alice: &Request) -> Request {
    assert_eq!(consult_cmd(n, "start", "1002"), Ok(Reply::Done));
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    assert_ne!(
        sdp_port(&to_bob.body),
        sdp_port(&to_alice.body),
        "the consultation has a port of its own"
    );
    assert!(n.outputs.iter().any(|o| matches!(
        o,
        Output::Media(
            _,
            Command::MonitorOpen {
                mode: MonitorMode::Whisper,
                ..
            }
        )
    )));
    assert_eq!(holds(n), vec![(Side::A, true)], "the customer is on hold");
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    let calls = n.b.calls(n.now);
    assert!(calls[0].monitors.is_empty(), "a consultation is no monitor");
    let last = calls[0].transfers.last().unwrap();
    assert_eq!((last.kind, last.outcome), ("consult", "consulting"));
    to_bob
}

#[test]
fn a_consultation_completes_by_moving_the_target_onto_the_b_port() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "k1");
    assert_eq!(
        consult_cmd(&mut n, "complete", ""),
        Err(CommandError::Conflict("no consultation to complete".into()))
    );
    let to_bob = consult_bob(&mut n, &to_alice);
    assert!(matches!(
        consult_cmd(&mut n, "start", "1002"),
        Err(CommandError::Conflict(_))
    ));
    n.outputs.clear();
    assert_eq!(consult_cmd(&mut n, "complete", ""), Ok(Reply::Done));
    let (reinvite, head) = n.expect_request(BOB, Method::Invite);
    assert!(head.to_tag.is_some(), "a re-INVITE in Bob's dialog");
    assert_eq!(
        sdp_port(&reinvite.body),
        sdp_port(&to_alice.body),
        "Bob moves to the call's B port"
    );
    let body = String::from_utf8_lossy(&reinvite.body).into_owned();
    assert!(body.contains(" 2 IN IP4 "), "o= version one on: {body}");
    n.send(BOB, &answer(&reinvite, 200, "bob", Some(&sdp(7102)), BOB));
    n.expect_request(BOB, Method::Ack);
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert_eq!(remotes_b(&n), vec![Some("127.0.0.1:7102".parse().unwrap())]);
    assert!(n
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Media(_, Command::MonitorClose { .. }))));
    assert_eq!(holds(&n), vec![(Side::A, false)]);
    assert!(n.quiet(CALLER), "the customer's leg is untouched");
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1002"));
    assert_eq!(calls[0].transfers[0].outcome, "completed");
    // Bob is the call's B leg: his BYE ends the call.
    hang_up(&mut n, BOB, &to_bob, "bob", 1);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn a_consultation_cancelled_or_hung_up_goes_back_to_the_customer() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "k2");
    consult_bob(&mut n, &to_alice);
    n.outputs.clear();
    assert_eq!(consult_cmd(&mut n, "cancel", ""), Ok(Reply::Done));
    let (bye, _) = n.expect_request(BOB, Method::Bye);
    n.send(BOB, &answer(&bye, 200, "bob", None, BOB));
    assert_eq!(holds(&n), vec![(Side::A, false)]);
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1001"));
    assert_eq!(calls[0].transfers[0].outcome, "cancelled");
    // Again; this time Bob hangs up himself.
    n.outputs.clear();
    let to_bob = consult_bob(&mut n, &to_alice);
    n.outputs.clear();
    n.send(
        BOB,
        &in_dialog(Method::Bye, &to_bob, true, "bob", 1, "kb2", BOB, ""),
    );
    n.expect_response(BOB, 200);
    assert_eq!(holds(&n), vec![(Side::A, false)]);
    assert!(n.b.calls(n.now)[0]
        .transfers
        .iter()
        .all(|e| e.outcome == "cancelled"));
    // Alice's leg is still the call's.
    hang_up(&mut n, ALICE, &to_alice, "alice", 2);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn an_attended_transfer_moves_the_consultations_far_party_to_the_customer() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "j1");
    // Alice's phone calls the service line itself: the consultation.
    n.send(
        ALICE,
        &invite("service", "j2", &sdp(4100)).replace(CALLER, ALICE),
    );
    n.expect_response(ALICE, 100);
    let (to_svc, _) = n.expect_request(SERVICE, Method::Invite);
    n.send(
        SERVICE,
        &answer(&to_svc, 200, "svc", Some(&sdp(7300)), SERVICE),
    );
    n.expect_request(SERVICE, Method::Ack);
    let (ok2, _) = n.expect_response(ALICE, 200);
    let edge_tag = to_tag(&ok2);
    assert_eq!(n.b.active_calls(), 2);
    // Alice completes: REFER on the customer's call, Replaces naming her call.
    n.send(
        ALICE,
        &refer(
            &to_alice,
            2,
            &format!(
                "Refer-To: <sip:service@127.0.0.1?Replaces=j2%3Bto-tag%3D{edge_tag}%3Bfrom-tag%3Dct-j2>\r\n"
            ),
        ),
    );
    n.expect_response(ALICE, 202);
    assert_eq!(notify(&mut n, ALICE).0, "SIP/2.0 100 Trying");
    // Her consultation call ends at her phone; the service line is moved.
    let (bye2, _) = n.expect_request(ALICE, Method::Bye);
    assert!(bye2.to_string().contains("Call-ID: j2"));
    n.send(ALICE, &answer(&bye2, 200, "x", None, ALICE));
    let (reinvite, head) = n.expect_request(SERVICE, Method::Invite);
    assert!(head.to_tag.is_some(), "a re-INVITE in the service's dialog");
    assert_eq!(
        sdp_port(&reinvite.body),
        sdp_port(&to_alice.body),
        "the service line moves to the customer's call's B port"
    );
    n.send(
        SERVICE,
        &answer(&reinvite, 200, "svc", Some(&sdp(7302)), SERVICE),
    );
    n.expect_request(SERVICE, Method::Ack);
    assert_eq!(notify(&mut n, ALICE).0, "SIP/2.0 200 OK");
    let (bye1, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye1, 200, "alice", None, ALICE));
    assert!(n.quiet(CALLER), "the customer's leg is untouched");
    let calls = n.b.calls(n.now);
    assert_eq!(calls.len(), 1, "the consultation call is gone");
    assert_eq!(calls[0].transfers[0].outcome, "completed");
    assert_eq!(calls[0].agent, None);
    assert!(remotes_b(&n).contains(&Some("127.0.0.1:7302".parse().unwrap())));
    // The service line is the customer's call's B leg now.
    hang_up(&mut n, SERVICE, &to_svc, "svc", 1);
    assert_eq!(n.b.ports_in_use(), 0);
}

/// An INVITE from another phone (a trunk's address, so trusted) carrying
/// `Replaces: {replaces}`.
fn invite_replacing(call_id: &str, replaces: &str) -> String {
    with_headers(
        &invite("1000", call_id, &sdp(4200)).replace(CALLER, CAROL),
        &format!("Replaces: {replaces}\r\nRequire: replaces\r\n"),
    )
}

const CAROL: &str = "127.0.0.1:5096";

#[test]
fn an_invite_with_replaces_takes_the_agents_leg_and_mismatches_get_481() {
    let mut n = Net::new(CONFIG);
    let (to_alice, ok) = call_at_alice(&mut n, "r1");
    let text = to_alice.to_string();
    let edge_tag = message::tag_of(&text.lines().find(|l| l.starts_with("From:")).unwrap()[5..])
        .unwrap()
        .to_string();
    let alice_call_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap()
        .to_string();
    // No such dialog; the customer's own leg; the agent's leg with wrong tags.
    n.send(CAROL, &invite_replacing("r2", "nope;to-tag=a;from-tag=b"));
    n.expect_response(CAROL, 481);
    let a_tag = to_tag(&ok);
    n.send(
        CAROL,
        &invite_replacing("r3", &format!("r1;to-tag={a_tag};from-tag=ct-r1")),
    );
    n.expect_response(CAROL, 403);
    n.send(
        CAROL,
        &invite_replacing(
            "r4",
            &format!("{alice_call_id};to-tag=alice;from-tag={edge_tag}"),
        ),
    );
    n.expect_response(CAROL, 481);
    assert_eq!(n.b.active_calls(), 1, "nothing was started");
    // The right dialog: Carol's phone takes Alice's place on the B port.
    n.send(
        CAROL,
        &invite_replacing(
            "r5",
            &format!("{alice_call_id};to-tag={edge_tag};from-tag=alice"),
        ),
    );
    let (ok5, _) = n.expect_response(CAROL, 200);
    assert_eq!(sdp_port(&ok5.body), sdp_port(&to_alice.body));
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert!(remotes_b(&n).contains(&Some("127.0.0.1:4200".parse().unwrap())));
    assert!(n.quiet(CALLER), "the customer's leg is untouched");
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent, None);
    assert_eq!(calls[0].transfers[0].kind, "replaces");
    assert_eq!(n.b.stats.transfers.get("replaces_completed"), Some(&1));
    // The customer hangs up: Carol's phone gets the BYE.
    n.send(CALLER, &from_caller(&ok, "r1", "BYE", 2, ""));
    n.expect_response(CALLER, 200);
    let (bye, _) = n.expect_request(CAROL, Method::Bye);
    assert!(bye.to_string().contains("Call-ID: r5"));
    n.send(CAROL, &answer(&bye, 200, "carol", None, CAROL));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

/// Bob (agent 1002) is added to the only call's conference and answers: his id
/// and the INVITE he got.
fn bob_joins(n: &mut Net) -> (String, Request) {
    let add = CallCommand::AddParticipant {
        call: n.b.calls(n.now)[0].id.clone(),
        to: "1002".into(),
        by_agent: None,
    };
    let Ok(Reply::Participant(pid)) = conf(n, add) else {
        panic!("added")
    };
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    (pid, to_bob)
}

fn conf(n: &mut Net, cmd: CallCommand) -> Result<Reply, CommandError> {
    let r = n.b.handle_command(n.now, cmd);
    n.pump();
    r
}

#[test]
fn conference_parties_are_added_flagged_listed_and_removed() {
    let mut n = Net::new(&CONFIG.replace("max_calls = 3", "max_calls = 3\nmax_participants = 3"));
    let (to_alice, _) = call_at_alice(&mut n, "c1");
    let call = n.b.calls(n.now)[0].id.clone();
    let add = |to: &str, by: Option<&str>| CallCommand::AddParticipant {
        call: call.clone(),
        to: to.into(),
        by_agent: by.map(str::to_string),
    };
    assert_eq!(
        conf(&mut n, add("1002", Some("1002"))),
        Err(CommandError::NotYours)
    );
    let Ok(Reply::Participant(pid)) = conf(&mut n, add("1002", Some("1001"))) else {
        panic!("added")
    };
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    assert_ne!(
        sdp_port(&to_bob.body),
        sdp_port(&to_alice.body),
        "a port of its own"
    );
    assert!(n.outputs.iter().any(|o| matches!(
        o,
        Output::Media(
            _,
            Command::MonitorOpen {
                mode: MonitorMode::Member,
                ..
            }
        )
    )));
    assert!(matches!(
        conf(&mut n, add("service", None)),
        Err(CommandError::Conflict(m)) if m.contains("full")
    ));
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7100)), BOB));
    n.expect_request(BOB, Method::Ack);
    let c = &n.b.calls(n.now)[0];
    let roles: Vec<_> = c.participants.iter().map(|p| (p.role, p.state)).collect();
    assert_eq!(
        roles,
        vec![
            ("customer", "connected"),
            ("agent", "connected"),
            ("member", "connected")
        ]
    );
    assert!(c.monitors.is_empty(), "a member is no supervisor");
    n.outputs.clear();
    let set = |p: &str, muted: Option<bool>, deaf: Option<bool>, held: Option<bool>| {
        CallCommand::SetParticipant {
            call: call.clone(),
            participant: p.into(),
            flags: ParticipantFlags { muted, deaf, held },
            by_agent: None,
        }
    };
    assert_eq!(
        conf(&mut n, set(&pid, Some(true), None, None)),
        Ok(Reply::Done)
    );
    assert_eq!(
        conf(&mut n, set("customer", None, Some(true), None)),
        Ok(Reply::Done)
    );
    assert_eq!(
        conf(&mut n, set(&pid, None, None, Some(true))),
        Ok(Reply::Done)
    );
    assert_eq!(
        conf(&mut n, set("agent", None, None, Some(true))),
        Ok(Reply::Done)
    );
    assert_eq!(
        conf(&mut n, set("m999", Some(true), None, None)),
        Err(CommandError::NoParticipant)
    );
    let media: Vec<&Command> = n
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Media(_, c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(matches!(
        media[0],
        Command::MemberFlags {
            muted: true,
            deaf: false,
            held: false,
            ..
        }
    ));
    assert!(matches!(
        media[1],
        Command::PartyFlags {
            side: Side::A,
            muted: false,
            deaf: true
        }
    ));
    assert!(matches!(
        media[2],
        Command::MemberFlags {
            muted: true,
            held: true,
            ..
        }
    ));
    assert!(
        matches!(
            media[3],
            Command::Hold {
                held: false,
                audio: Some(_),
                ..
            }
        ),
        "a held member's audio is loaded: {media:?}"
    );
    assert!(matches!(
        media[4],
        Command::Hold {
            side: Side::B,
            held: true,
            ..
        }
    ));
    let c = &n.b.calls(n.now)[0];
    let flags: Vec<_> = c
        .participants
        .iter()
        .map(|p| (p.muted, p.deaf, p.held))
        .collect();
    assert_eq!(
        flags,
        vec![
            (false, true, false),
            (false, false, true),
            (true, false, true)
        ]
    );
    n.outputs.clear();
    let dtmf = CallCommand::ParticipantDtmf {
        call: call.clone(),
        participant: pid.clone(),
        digits: "12".into(),
        by_agent: None,
    };
    assert_eq!(conf(&mut n, dtmf), Ok(Reply::Done));
    assert!(n.outputs.iter().any(|o| matches!(
        o,
        Output::Media(_, Command::MemberDtmf { events, pt: 101, .. }) if events == &vec![1, 2]
    )));
    // Removed: BYE; the call goes on between customer and agent.
    let del = CallCommand::RemoveParticipant {
        call: call.clone(),
        participant: pid.clone(),
        by_agent: None,
    };
    assert_eq!(conf(&mut n, del), Ok(Reply::Done));
    let (bye, _) = n.expect_request(BOB, Method::Bye);
    n.send(BOB, &answer(&bye, 200, "bob", None, BOB));
    let c = &n.b.calls(n.now)[0];
    assert_eq!(c.participants.len(), 2);
    let actions: Vec<_> = c.participant_events.iter().map(|e| e.action).collect();
    assert_eq!(actions, vec!["added", "removed"]);
    hang_up(&mut n, ALICE, &to_alice, "alice", 2);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn a_conference_goes_on_when_the_agent_leaves_a_member_takes_its_place() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "c2");
    let (pid, to_bob) = bob_joins(&mut n);
    n.outputs.clear();
    // Alice hangs up: the call is not ended; Bob moves onto the B port.
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &to_alice, true, "alice", 2, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    assert!(n.quiet(CALLER), "the customer stays");
    let (reinvite, head) = n.expect_request(BOB, Method::Invite);
    assert!(head.to_tag.is_some());
    assert_eq!(sdp_port(&reinvite.body), sdp_port(&to_alice.body));
    n.send(BOB, &answer(&reinvite, 200, "bob", Some(&sdp(7102)), BOB));
    n.expect_request(BOB, Method::Ack);
    assert!(remotes_b(&n).contains(&Some("127.0.0.1:7102".parse().unwrap())));
    let c = &n.b.calls(n.now)[0];
    assert_eq!(c.agent.as_deref(), Some("1002"));
    let parts: Vec<_> = c
        .participants
        .iter()
        .map(|p| (p.role, p.who.clone()))
        .collect();
    assert_eq!(
        parts,
        vec![
            ("customer", "sip:caller@127.0.0.1:5070".to_string()),
            ("agent", "1002".to_string())
        ]
    );
    assert_eq!(c.participant_events.last().unwrap().participant, pid);
    assert_eq!(c.participant_events.last().unwrap().action, "promoted");
    // Bob is the call's agent side now: when he leaves, the call ends.
    hang_up(&mut n, BOB, &to_bob, "bob", 1);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn a_conference_can_be_set_to_end_with_its_agent() {
    let cfg = CONFIG.replace(
        "max_wait = \"30s\"",
        "max_wait = \"30s\"\nconference_ends_without_agent = true",
    );
    let mut n = Net::new(&cfg);
    let (to_alice, _) = call_at_alice(&mut n, "c3");
    bob_joins(&mut n);
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &to_alice, true, "alice", 2, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    let (a_bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&a_bye, 200, "x", None, CALLER));
    let (m_bye, _) = n.expect_request(BOB, Method::Bye);
    n.send(BOB, &answer(&m_bye, 200, "bob", None, BOB));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

#[test]
fn a_conference_goes_on_without_its_customer_until_one_party_is_left() {
    let mut n = Net::new(CONFIG);
    let (to_alice, ok) = call_at_alice(&mut n, "c4");
    let (_, to_bob) = bob_joins(&mut n);
    // The customer leaves: Alice and Bob go on talking.
    n.send(CALLER, &from_caller(&ok, "c4", "BYE", 2, ""));
    n.expect_response(CALLER, 200);
    assert!(n.quiet(ALICE) && n.quiet(BOB), "nobody is hung up");
    let c = &n.b.calls(n.now)[0];
    assert_eq!(c.state, "connected");
    let e = c.participant_events.last().unwrap();
    assert_eq!((e.participant.as_str(), e.action), ("customer", "left"));
    assert!(remotes_a_none(&n));
    // Bob leaves too: Alice is alone, the call ends.
    n.send(
        BOB,
        &in_dialog(Method::Bye, &to_bob, true, "bob", 1, "bb", BOB, ""),
    );
    n.expect_response(BOB, 200);
    let (bye, _) = n.expect_request(ALICE, Method::Bye);
    n.send(ALICE, &answer(&bye, 200, "alice", None, ALICE));
    assert!(n.quiet(CALLER), "the customer's leg is over already");
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.index_sizes(), [0; 5]);
    assert_eq!(n.b.ports_in_use(), 0);
    let _ = to_alice;
}

/// The last media command for side A's address withdrew it.
fn remotes_a_none(n: &Net) -> bool {
    n.outputs
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Media(
                _,
                Command::Remote {
                    side: Side::A,
                    addr,
                },
            ) => Some(addr.is_none()),
            _ => None,
        })
        .unwrap_or(false)
}

/// The claims and releases asked of the cluster since the last look, and the
/// call the last claim was asked with (the cluster's answer names it).
fn claims_asked(n: &mut Net) -> (Vec<String>, Option<CallId>) {
    let (mut out, mut call) = (Vec::new(), None);
    n.outputs.retain(|o| match o {
        Output::ClaimAgent { agent, call: c } => {
            out.push(format!("claim {agent}"));
            call = Some(*c);
            false
        }
        Output::ReleaseAgent { agent } => {
            out.push(format!("release {agent}"));
            false
        }
        _ => true,
    });
    (out, call)
}

/// Alice consults Bob: his phone rings (180), not answered yet.
fn consult_bob_ringing(n: &mut Net) -> Request {
    assert_eq!(consult_cmd(n, "start", "1002"), Ok(Reply::Done));
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    n.send(BOB, &answer(&to_bob, 180, "bob", None, BOB));
    to_bob
}

#[test]
fn in_a_cluster_an_agent_taken_by_a_consultation_or_transfer_is_claimed() {
    let mut n = Net::new(CONFIG);
    let (to_alice, _) = call_at_alice(&mut n, "cl1");
    // The cluster is switched on with the call up (its own claim is not played).
    n.b.enable_claims();
    let call = n.b.calls(n.now)[0].id.clone();
    n.outputs.clear();
    // Bob held by another node: on a call there; neither consulted nor taken.
    n.b.claim_elsewhere(n.now, "1002");
    assert!(matches!(
        consult_cmd(&mut n, "start", "1002"),
        Err(CommandError::Conflict(m)) if m.contains("not ready")
    ));
    n.b.handle_command(
        n.now,
        CallCommand::Transfer {
            call: call.clone(),
            to: "1002".into(),
            by_agent: None,
        },
    )
    .unwrap();
    n.pump();
    assert!(n.quiet(BOB), "no INVITE to an agent another node holds");
    n.advance(Duration::from_secs(1));
    assert!(n.quiet(BOB));
    assert_eq!(n.b.calls(n.now)[0].agent.as_deref(), Some("1001"));
    // Released there: the consultation calls him at once and claims him, so no
    // other node offers him a call meanwhile; granted, this node holds him until
    // the consultation ends.
    n.b.claim_released_elsewhere(n.now, "1002");
    n.outputs.clear();
    let to_bob = consult_bob_ringing(&mut n);
    let (asked, with) = claims_asked(&mut n);
    assert_eq!(asked, ["claim 1002"]);
    n.b.claim_result(n.now, with.unwrap(), "1002", ClaimResult::Granted);
    n.pump();
    assert_eq!(n.b.claims_held(), ["1002"]);
    assert_eq!(consult_cmd(&mut n, "cancel", ""), Ok(Reply::Done));
    let (cancel, _) = n.expect_request(BOB, Method::Cancel);
    n.send(BOB, &answer(&cancel, 200, "bob", None, BOB));
    n.send(BOB, &answer(&to_bob, 487, "bob", None, BOB));
    assert_eq!(claims_asked(&mut n).0, ["release 1002"]);
    assert!(n.b.claims_held().is_empty());
    // Granted only after the consultation ended and Bob went not ready: given
    // back at once (he is on no call here).
    n.wire.clear(BOB);
    let to_bob = consult_bob_ringing(&mut n);
    let (_, with) = claims_asked(&mut n);
    assert_eq!(consult_cmd(&mut n, "cancel", ""), Ok(Reply::Done));
    let (cancel, _) = n.expect_request(BOB, Method::Cancel);
    n.send(BOB, &answer(&cancel, 200, "bob", None, BOB));
    n.send(BOB, &answer(&to_bob, 487, "bob", None, BOB));
    n.b.set_agent_state(n.now, "1002", crate::acd::Choice::NotReady("notes".into()))
        .unwrap();
    n.pump();
    claims_asked(&mut n);
    n.b.claim_result(n.now, with.unwrap(), "1002", ClaimResult::Granted);
    n.pump();
    assert_eq!(claims_asked(&mut n).0, ["release 1002"]);
    assert!(n.b.claims_held().is_empty());
    n.b.set_agent_state(n.now, "1002", crate::acd::Choice::Ready)
        .unwrap();
    n.pump();
    // Claimed by another node in the same instant: the leg still ringing here
    // is cancelled.
    n.wire.clear(BOB);
    consult_bob_ringing(&mut n);
    let (asked, with) = claims_asked(&mut n);
    assert_eq!(asked, ["claim 1002"]);
    n.b.claim_result(n.now, with.unwrap(), "1002", ClaimResult::Taken);
    n.pump();
    n.expect_request(BOB, Method::Cancel);
    drop(to_alice);
}
