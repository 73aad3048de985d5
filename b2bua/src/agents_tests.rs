//! Agent states through call flows: not ready, wrap-up, max_no_answer, signed out.

use super::*;

/// One agent (Alice) in the queue, wrap-up `wrap`, `max_no_answer` `max`.
fn one_agent(wrap: &str, max: u32) -> Net {
    let cfg = CONFIG
        .replace(
            "agents = [\"1001\", \"1002\"]",
            &format!("agents = [\"1001\"]\nmax_no_answer = {max}"),
        )
        .replace(
            "contact = \"sip:1001@127.0.0.1:5092\"",
            &format!("contact = \"sip:1001@127.0.0.1:5092\"\nwrap_up = \"{wrap}\""),
        );
    Net::new(&cfg)
}

fn state_of(n: &Net, id: &str) -> (&'static str, Option<String>) {
    let a = n.b.agents(n.now).into_iter().find(|a| a.id == id).unwrap();
    (a.state, a.reason)
}

/// The states agent `id` was reported in, in order.
fn reported(n: &Net, id: &str) -> Vec<&'static str> {
    n.outputs
        .iter()
        .filter_map(|o| match o {
            Output::AgentState { agent, state, .. } if agent == id => Some(state.as_str()),
            _ => None,
        })
        .collect()
}

/// A queue call answered by Alice and hung up by her.
fn alice_takes_and_ends(n: &mut Net, call_id: &str, port: u16) {
    n.send(CALLER, &invite("1000", call_id, &sdp(port)));
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&sdp(7000)), ALICE));
    n.expect_request(ALICE, Method::Ack);
    n.wire.clear(CALLER);
    assert_eq!(state_of(n, "1001").0, "busy");
    let branch = format!("bye-{call_id}");
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &inv, true, "alice", 1, &branch, ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    let (bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&bye, 200, "x", None, CALLER));
    n.wire.clear(CALLER);
}

#[test]
fn a_not_ready_agent_gets_no_call_until_it_is_ready_again() {
    let mut n = one_agent("0s", 3);
    assert_eq!(state_of(&n, "1001"), ("ready", None));
    let choice = parse_choice("not_ready", Some("lunch")).unwrap();
    let info = n.b.set_agent_state(n.now, "1001", choice).unwrap();
    assert_eq!(
        (info.state, info.reason.as_deref()),
        ("not_ready", Some("lunch"))
    );
    n.pump();
    n.send(CALLER, &invite("1000", "nr1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.advance(Duration::from_secs(5));
    assert!(n.quiet(ALICE), "a not_ready agent is not offered the call");
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    n.pump();
    n.expect_request(ALICE, Method::Invite);
    assert_eq!(reported(&n, "1001"), ["not_ready", "ready", "busy"]);
    assert_eq!(
        n.b.set_agent_state(n.now, "9999", Choice::Ready)
            .unwrap_err(),
        AgentError::NoAgent
    );
}

#[test]
fn reasons_and_states_are_checked() {
    assert_eq!(parse_choice("away", None), Err(AgentError::BadState));
    assert_eq!(parse_choice("not_ready", None), Err(AgentError::BadReason));
    assert_eq!(
        parse_choice("not_ready", Some("  ")),
        Err(AgentError::BadReason)
    );
    assert_eq!(
        parse_choice("not_ready", Some("a\r\nb")),
        Err(AgentError::BadReason)
    );
    assert_eq!(
        parse_choice("not_ready", Some(&"x".repeat(65))),
        Err(AgentError::BadReason)
    );
    assert_eq!(parse_choice("logged_out", None), Ok(Choice::SignedOut));
}

#[test]
fn wrap_up_holds_the_next_offer_for_its_time_then_the_agent_is_ready() {
    let mut n = one_agent("10s", 3);
    alice_takes_and_ends(&mut n, "w1", 4000);
    assert_eq!(state_of(&n, "1001").0, "wrap_up");
    n.send(CALLER, &invite("1000", "w2", &sdp(4002)));
    n.advance(Duration::from_secs(9));
    assert!(n.quiet(ALICE), "no offer during wrap-up");
    n.advance(Duration::from_secs(1));
    n.expect_request(ALICE, Method::Invite);
    assert_eq!(
        reported(&n, "1001"),
        ["busy", "wrap_up", "ready", "busy"],
        "busy on the offer, wrap-up after the call, ready after 10 s"
    );
    let a =
        n.b.agents(n.now)
            .into_iter()
            .find(|a| a.id == "1001")
            .unwrap();
    assert_eq!(a.calls_today, 1);
}

#[test]
fn not_ready_chosen_during_a_call_applies_after_its_wrap_up_and_ready_ends_wrap_up_early() {
    let mut n = one_agent("30s", 3);
    n.send(CALLER, &invite("1000", "p1", &sdp(4000)));
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&sdp(7000)), ALICE));
    n.expect_request(ALICE, Method::Ack);
    n.b.set_agent_state(
        n.now,
        "1001",
        parse_choice("not_ready", Some("break")).unwrap(),
    )
    .unwrap();
    assert_eq!(state_of(&n, "1001").0, "busy", "the call goes on");
    alice_hangs_up(&mut n, &inv);
    assert_eq!(state_of(&n, "1001").0, "wrap_up");
    n.advance(Duration::from_secs(30));
    assert_eq!(state_of(&n, "1001"), ("not_ready", Some("break".into())));
    // Another call, wrap-up again; choosing ready ends the wrap-up at once.
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    alice_takes_and_ends(&mut n, "p2", 4002);
    assert_eq!(state_of(&n, "1001").0, "wrap_up");
    n.send(CALLER, &invite("1000", "p3", &sdp(4004)));
    assert!(n.quiet(ALICE));
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    n.pump();
    n.expect_request(ALICE, Method::Invite);
}

#[test]
fn max_no_answer_offers_in_a_row_put_the_agent_not_ready() {
    let mut n = one_agent("0s", 2);
    n.send(CALLER, &invite("1000", "m1", &sdp(4000)));
    ring_out(&mut n);
    assert_eq!(state_of(&n, "1001").0, "ready");
    // Every agent tried: the queue offers the call again a second later.
    n.advance(Duration::from_secs(1));
    ring_out(&mut n);
    assert_eq!(
        state_of(&n, "1001"),
        ("not_ready", Some("no_answer".into()))
    );
    assert_eq!(n.b.stats.no_answer_not_ready, 1);
    n.advance(Duration::from_secs(5));
    assert!(n.quiet(ALICE), "a not_ready agent gets no more offers");
    // Back to ready: offered again, and answering clears the count.
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    n.pump();
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&sdp(7000)), ALICE));
    n.expect_request(ALICE, Method::Ack);
    let a =
        n.b.agents(n.now)
            .into_iter()
            .find(|a| a.id == "1001")
            .unwrap();
    assert_eq!(a.missed_in_a_row, 0);
}

#[test]
fn a_rejected_offer_does_not_count_as_no_answer() {
    let mut n = one_agent("0s", 1);
    n.send(CALLER, &invite("1000", "r1", &sdp(4000)));
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 486, "alice", None, ALICE));
    n.expect_request(ALICE, Method::Ack);
    assert_eq!(state_of(&n, "1001").0, "ready");
}

#[test]
fn a_signed_out_agent_stays_out_until_it_chooses_ready() {
    let mut n = one_agent("0s", 3);
    n.b.set_agent_state(n.now, "1001", Choice::SignedOut)
        .unwrap();
    assert_eq!(
        state_of(&n, "1001"),
        ("logged_out", Some("signed_out".into()))
    );
    n.send(CALLER, &invite("1000", "s1", &sdp(4000)));
    n.advance(Duration::from_secs(3));
    assert!(n.quiet(ALICE));
    n.b.set_agent_state(n.now, "1001", Choice::Ready).unwrap();
    n.pump();
    n.expect_request(ALICE, Method::Invite);
}

const RESERVED: &str = r#"
[[reserved_data]]
field = "verified_customer"
header = "X-Verified-Customer"
[[reserved_data]]
field = "bad_actor"
header = "X-Bad-Actor"
[[reserved_data]]
field = "repeat_customer"
header = "X-Repeat-Customer"
max_length = 8
[[users]]
name = "alice"
role = "agent"
token = "alice-token-1"
"#;

#[test]
fn reserved_data_reaches_the_agent_leg_the_api_the_console_and_the_recording() {
    let cfg = format!(
        "{}{RESERVED}",
        CONFIG
            .replace(
                "agents = [\"1001\", \"1002\"]",
                "agents = [\"1001\"]\nrecord = true"
            )
            .replace(
                "contact = \"sip:1001@127.0.0.1:5092\"",
                "contact = \"sip:1001@127.0.0.1:5092\"\nuser = \"alice\""
            )
    );
    let mut n = Net::new(&cfg);
    // A folded header (continuation line) and a value over its max_length.
    let extra = "X-Verified-Customer:  yes \r\nx-bad-actor: no\r\n X-Injected: evil\r\n\
                 X-Repeat-Customer: 123456789\r\nX-Other: not mapped\r\n";
    n.send(
        CALLER,
        &with_headers(&invite("1000", "rd1", &sdp(4000)), extra),
    );
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    let text = inv.to_string();
    assert!(
        text.contains("\r\nX-Edge-Verified-Customer: yes\r\n"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("X-Injected") || l.starts_with(" X-Injected")),
        "no header injected: {text}"
    );
    assert!(
        !text.contains("X-Edge-Repeat-Customer"),
        "too long: dropped"
    );
    assert!(!text.contains("X-Other"), "unmapped headers are not passed");
    assert_eq!(n.b.stats.reserved_refused, 1);
    let calls = n.b.calls(n.now);
    let fields: Vec<&str> = calls[0].reserved.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["verified_customer", "bad_actor"]);
    // The folded line is one value (RFC 3261 §7.3.1: folding is whitespace).
    let bad = &calls[0].reserved[1].1;
    assert!(!bad.contains(['\r', '\n']), "{bad:?}");
    n.send(ALICE, &answer(&inv, 200, "alice", Some(&sdp(7000)), ALICE));
    n.expect_request(ALICE, Method::Ack);
    let meta = n
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::RecordStart { meta, .. } => Some(meta.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(meta.reserved, calls[0].reserved);
    let console: Vec<(&str, usize)> = n
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::AgentCall {
                user,
                state,
                reserved,
                ..
            } if user == "alice" => Some((*state, reserved.len())),
            _ => None,
        })
        .collect();
    assert_eq!(console, [("ringing", 2), ("connected", 2)]);
}
