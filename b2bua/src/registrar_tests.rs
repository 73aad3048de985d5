//! The registrar and digest authentication, with a virtual clock.

use super::*;
use sip::digest::{response, Algorithm, Challenge};

pub(super) const REG_CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
digest = ["SHA-256", "MD5"]
auth_max_failures = 3
[media]
address = "127.0.0.1"
rtp_ports = "20000-20099"
[[trunks]]
name = "t"
sources = ["127.0.0.1/32"]
[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001"]
max_wait = "30s"
[[agents]]
id = "1001"
password = "alice-sip-secret"
[[agents]]
id = "1002"
password = "bob-sip-secret"
digest = ["MD5"]
"#;

pub(super) const PHONE: &str = "127.0.0.1:5092";
const PHONE2: &str = "127.0.0.1:5093";
const GUESSER: &str = "192.0.2.66:5060";

/// A REGISTER for `aor` from `from`, with extra header lines.
fn register(aor: &str, from: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-r{call_id}{cseq};rport\r\n\
From: <sip:{aor}@127.0.0.1>;tag=p{call_id}\r\nTo: <sip:{aor}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
Max-Forwards: 70\r\nUser-Agent: test-phone\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn challenges(r: &Response) -> Vec<Challenge> {
    r.headers
        .iter()
        .filter_map(|h| match h {
            Header::WwwAuthenticate(w) => Challenge::parse(w.value()),
            _ => None,
        })
        .collect()
}

/// The Authorization line answering `c` for `user` / `pass` with nonce-count `nc`.
fn authorization(c: &Challenge, user: &str, pass: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let uri = "sip:127.0.0.1:5060";
    let resp = response(
        c.algorithm,
        user,
        &c.realm,
        pass,
        "REGISTER",
        uri,
        &c.nonce,
        Some((&nc, "cn0")),
    );
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", \
algorithm={}, qop=auth, nc={nc}, cnonce=\"cn0\"\r\n",
        c.realm,
        c.nonce,
        c.algorithm.name()
    )
}

/// Register `aor` from `from` with `contact_extra` (Contact/Expires lines): the
/// challenge, then the credentials; returns the final response.
pub(super) fn sign_in(
    n: &mut Net,
    aor: &str,
    pass: &str,
    from: &str,
    call_id: &str,
    lines: &str,
) -> Response {
    n.send(from, &register(aor, from, call_id, 1, lines));
    let (r, _) = n.expect_response(from, 401);
    let c = challenges(&r).remove(0);
    n.send(
        from,
        &register(
            aor,
            from,
            call_id,
            2,
            &format!("{}{lines}", authorization(&c, aor, pass, 1)),
        ),
    );
    let (m, _) = n.wire.recv(from);
    match m {
        SipMessage::Response(r) => r,
        other => panic!("expected a response, got {}", testing::first_line(&other)),
    }
}

fn contact(from: &str) -> String {
    format!("Contact: <sip:1001@{from}>\r\n")
}

#[test]
fn challenges_follow_the_configured_order_and_an_agents_override() {
    let mut n = Net::new(REG_CONFIG);
    n.send(PHONE, &register("1001", PHONE, "c1", 1, &contact(PHONE)));
    let (r, _) = n.expect_response(PHONE, 401);
    let c = challenges(&r);
    assert_eq!(
        c.iter().map(|c| c.algorithm).collect::<Vec<_>>(),
        [Algorithm::Sha256, Algorithm::Md5]
    );
    assert!(c
        .iter()
        .all(|c| c.qop_auth && c.realm == "edge" && !c.stale));
    assert_ne!(c[0].nonce, c[1].nonce, "a nonce per challenge");
    n.send(PHONE, &register("1002", PHONE, "c2", 1, &contact(PHONE)));
    let (r, _) = n.expect_response(PHONE, 401);
    assert_eq!(
        challenges(&r)
            .iter()
            .map(|c| c.algorithm)
            .collect::<Vec<_>>(),
        [Algorithm::Md5]
    );
}

#[test]
fn an_agent_registers_refreshes_and_gets_queue_calls_at_its_binding() {
    let mut n = Net::new(REG_CONFIG);
    // Not registered (and no static contact): the queue call waits.
    n.send(CALLER, &invite("1000", "q1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    assert!(n.quiet(PHONE));
    let ok = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "r1",
        &format!("{}Expires: 600\r\n", contact(PHONE)),
    );
    assert_eq!(ok.status_code.code(), 200);
    let text = ok.to_string();
    assert!(
        text.contains(&format!("<sip:1001@{PHONE}>;expires=600")),
        "{text}"
    );
    assert!(n.outputs.iter().any(|o| matches!(o, Output::Bindings { agent, bindings } if agent == "1001" && bindings.len() == 1)));
    let regs = n.b.registrations(n.now);
    assert_eq!(regs.len(), 1);
    assert_eq!(
        (regs[0].agent.as_str(), regs[0].source.as_str()),
        ("1001", PHONE)
    );
    assert_eq!(regs[0].user_agent.as_deref(), Some("test-phone"));
    // The waiting call is offered at once, to the Contact, at the address the
    // REGISTER came from.
    let (inv, _) = n.expect_request(PHONE, Method::Invite);
    assert_eq!(inv.uri.to_string(), format!("sip:1001@{PHONE}"));
}

#[test]
fn replays_wrong_passwords_and_stale_nonces() {
    let mut n = Net::new(REG_CONFIG);
    n.send(PHONE, &register("1001", PHONE, "c3", 1, &contact(PHONE)));
    let (r, _) = n.expect_response(PHONE, 401);
    let c = challenges(&r).remove(1);
    let auth = authorization(&c, "1001", "alice-sip-secret", 1);
    n.send(
        PHONE,
        &register("1001", PHONE, "c3", 2, &format!("{auth}{}", contact(PHONE))),
    );
    n.expect_response(PHONE, 200);
    // The same credentials again (a captured REGISTER replayed): challenged afresh.
    n.send(
        PHONE,
        &register("1001", PHONE, "c3", 3, &format!("{auth}{}", contact(PHONE))),
    );
    let (r, _) = n.expect_response(PHONE, 401);
    assert!(!challenges(&r)[0].stale);
    // The next nonce-count on the same nonce is fine.
    let auth2 = authorization(&c, "1001", "alice-sip-secret", 2);
    n.send(
        PHONE,
        &register(
            "1001",
            PHONE,
            "c3",
            4,
            &format!("{auth2}{}", contact(PHONE)),
        ),
    );
    n.expect_response(PHONE, 200);
    // After the nonce's lifetime: stale=true (the phone retries without asking
    // its user again).
    n.advance(registrar::NONCE_LIFETIME + Duration::from_secs(1));
    n.wire.clear(PHONE);
    let auth3 = authorization(&c, "1001", "alice-sip-secret", 3);
    n.send(
        PHONE,
        &register(
            "1001",
            PHONE,
            "c3",
            5,
            &format!("{auth3}{}", contact(PHONE)),
        ),
    );
    let (r, _) = n.expect_response(PHONE, 401);
    assert!(challenges(&r).iter().all(|c| c.stale));
    assert_eq!(n.b.stats.auth_failures, 0);
}

#[test]
fn a_password_guesser_gets_403_and_then_is_blocked() {
    let mut n = Net::new(REG_CONFIG);
    for (i, pass) in ["guess1", "guess2", "guess3"].iter().enumerate() {
        let r = sign_in(
            &mut n,
            "1001",
            pass,
            GUESSER,
            &format!("g{i}"),
            &contact(GUESSER),
        );
        assert_eq!(r.status_code.code(), 403, "{pass}");
    }
    assert_eq!((n.b.stats.auth_failures, n.b.stats.auth_blocks), (3, 1));
    // Blocked: even the right password gets 403 unchecked, without a challenge.
    n.send(
        GUESSER,
        &register("1001", GUESSER, "g9", 1, &contact(GUESSER)),
    );
    n.expect_response(GUESSER, 403);
    assert_eq!(n.b.stats.auth_blocked, 1);
    // An agent that does not exist fails like a wrong password (after a challenge).
    let r = sign_in(&mut n, "9999", "whatever", PHONE, "u1", &contact(PHONE));
    assert_eq!(r.status_code.code(), 403);
    // Credentials of one agent for another's address of record fail too.
    n.send(PHONE, &register("1002", PHONE, "u2", 1, &contact(PHONE)));
    let (r, _) = n.expect_response(PHONE, 401);
    let c = challenges(&r).remove(0);
    n.send(
        PHONE,
        &register(
            "1002",
            PHONE,
            "u2",
            2,
            &format!(
                "{}{}",
                authorization(&c, "1001", "alice-sip-secret", 1),
                contact(PHONE)
            ),
        ),
    );
    n.expect_response(PHONE, 403);
    // Blocks end.
    n.advance(Duration::from_secs(61));
    n.wire.clear(GUESSER);
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        GUESSER,
        "g10",
        &contact(GUESSER),
    );
    assert_eq!(r.status_code.code(), 200);
}

#[test]
fn expiry_several_bindings_unregister_and_423() {
    let mut n = Net::new(REG_CONFIG);
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e1",
        &format!("{}Expires: 30\r\n", contact(PHONE)),
    );
    assert_eq!(r.status_code.code(), 423);
    assert!(r.to_string().contains("Min-Expires: 60"));
    // Longer than the maximum: granted the maximum.
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e2",
        &format!("{}Expires: 7200\r\n", contact(PHONE)),
    );
    assert!(r.to_string().contains(";expires=3600"), "{r}");
    // A second phone (expires in its Contact): two bindings, newest offered first.
    let second = format!("Contact: <sip:1001@{PHONE2}>;expires=120\r\n");
    let r = sign_in(&mut n, "1001", "alice-sip-secret", PHONE2, "e3", &second);
    assert_eq!(r.to_string().matches(";expires=").count(), 2, "{r}");
    assert_eq!(n.b.registrations(n.now).len(), 2);
    assert_eq!(
        n.b.agent_targets(n.now, "1001")[0].remote.to_string(),
        PHONE2
    );
    // The second phone's binding expires; the sweep tells the driver.
    n.outputs.clear();
    n.advance(Duration::from_secs(131));
    assert_eq!(n.b.registrations(n.now).len(), 1);
    assert!(n
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Bindings { bindings, .. } if bindings.len() == 1)));
    assert_eq!(
        n.b.agent_targets(n.now, "1001")[0].remote.to_string(),
        PHONE
    );
    // Expires: 0 on a contact removes it; `*` removes all (and needs Expires: 0).
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e4",
        "Contact: *\r\nExpires: 60\r\n",
    );
    assert_eq!(r.status_code.code(), 400);
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e5",
        &format!("{}Expires: 0\r\n", contact(PHONE)),
    );
    assert_eq!(r.status_code.code(), 200);
    assert!(n.b.registrations(n.now).is_empty());
    assert!(
        n.b.agent_targets(n.now, "1001").is_empty(),
        "no binding, no static contact"
    );
    let _ = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e6",
        &contact(PHONE),
    );
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "e7",
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert_eq!(r.status_code.code(), 200);
    assert!(n.b.registrations(n.now).is_empty());
}

#[test]
fn restored_bindings_are_used_and_expired_ones_skipped() {
    let mut n = Net::new(REG_CONFIG);
    let wall = n.b.wall(n.now);
    let binding = |contact: &str, secs: u64| Binding {
        agent: "1001".into(),
        contact: contact.into(),
        flow: testing::flow("127.0.0.1:5060", PHONE),
        expires: wall + Duration::from_secs(secs),
        call_id: "old".into(),
        cseq: 1,
        user_agent: None,
        path: Vec::new(),
    };
    n.b.restore_bindings(n.now, vec![binding("sip:1001@127.0.0.1:5092", 300)]);
    let mut gone = binding("sip:x@127.0.0.1:5099", 0);
    gone.expires = wall - Duration::from_secs(1);
    n.b.restore_bindings(n.now, vec![gone]);
    assert_eq!(n.b.registrations(n.now).len(), 1);
    n.send(CALLER, &invite("1000", "q2", &sdp(4000)));
    let (inv, _) = n.expect_request(PHONE, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:1001@127.0.0.1:5092");
}

#[test]
fn websocket_bindings_go_when_their_socket_closes_and_are_not_restored() {
    let mut n = Net::new(REG_CONFIG);
    let wall = n.b.wall(n.now);
    let ws = |remote: &str| sip::Flow {
        transport: control::Transport::Ws,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: remote.parse().unwrap(),
    };
    let binding = |contact: &str, flow: sip::Flow| Binding {
        agent: "1001".into(),
        contact: contact.into(),
        flow,
        expires: wall + Duration::from_secs(300),
        call_id: "ws".into(),
        cseq: 1,
        user_agent: None,
        path: Vec::new(),
    };
    // A restart: the WebSocket binding's socket died with the old process.
    n.b.restore_bindings(
        n.now,
        vec![
            binding("sip:a@a.invalid;transport=ws", ws("127.0.0.1:40001")),
            binding(
                "sip:1001@127.0.0.1:5092",
                testing::flow("127.0.0.1:5060", PHONE),
            ),
        ],
    );
    assert_eq!(n.b.registrations(n.now).len(), 1);
    // Two live tabs; one closes: only its binding goes.
    let (a, b) = (ws("127.0.0.1:40002"), ws("127.0.0.1:40003"));
    n.b.registrar.bindings.get_mut("1001").unwrap().extend([
        binding("sip:b@b.invalid;transport=ws", a),
        binding("sip:c@c.invalid;transport=ws", b),
    ]);
    n.b.flow_closed(n.now, a);
    let left: Vec<String> =
        n.b.registrations(n.now)
            .into_iter()
            .map(|r| r.contact)
            .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.iter().any(|c| c.contains("b.invalid")), "{left:?}");
    // A TCP connection closing keeps its bindings (as before).
    n.b.flow_closed(n.now, testing::flow("127.0.0.1:5060", PHONE));
    assert_eq!(n.b.registrations(n.now).len(), 2);
}

#[test]
fn an_agents_phones_ring_in_parallel_and_the_first_to_answer_wins() {
    let mut n = Net::new(REG_CONFIG);
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "p1",
        &contact(PHONE),
    );
    assert_eq!(r.status_code.code(), 200);
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE2,
        "p2",
        &format!("Contact: <sip:1001@{PHONE2}>\r\n"),
    );
    assert_eq!(r.status_code.code(), 200);
    n.send(CALLER, &invite("1000", "fork1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    // Both phones ring.
    let (inv2, _) = n.expect_request(PHONE2, Method::Invite);
    let (inv1, _) = n.expect_request(PHONE, Method::Invite);
    n.send(PHONE2, &answer(&inv2, 180, "desk", None, PHONE2));
    n.send(PHONE, &answer(&inv1, 180, "soft", None, PHONE));
    // The older phone answers first: it gets the call, the other is cancelled.
    n.send(PHONE, &answer(&inv1, 200, "soft", Some(&sdp(6000)), PHONE));
    n.expect_request(PHONE, Method::Ack);
    let (cancel, _) = n.expect_request(PHONE2, Method::Cancel);
    n.expect_response(CALLER, 200);
    n.send(PHONE2, &answer(&cancel, 200, "desk", None, PHONE2));
    // The cancelled phone's 200 crossed the CANCEL: it gets ACK + BYE.
    n.send(
        PHONE2,
        &answer(&inv2, 200, "desk", Some(&sdp(6100)), PHONE2),
    );
    n.expect_request(PHONE2, Method::Ack);
    n.expect_request(PHONE2, Method::Bye);
    assert_eq!(n.b.calls(n.now)[0].agent.as_deref(), Some("1001"));
    // The agent is busy: a second call is not offered to either phone.
    n.send(CALLER, &invite("1000", "fork2", &sdp(4000)));
    assert!(n.quiet(PHONE) && n.quiet(PHONE2), "the agent is busy");
}

#[test]
fn a_phone_that_refuses_leaves_the_others_ringing() {
    let mut n = Net::new(REG_CONFIG);
    let _ = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "p3",
        &contact(PHONE),
    );
    let _ = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE2,
        "p4",
        &format!("Contact: <sip:1001@{PHONE2}>\r\n"),
    );
    n.send(CALLER, &invite("1000", "fork3", &sdp(4000)));
    let (inv2, _) = n.expect_request(PHONE2, Method::Invite);
    let (inv1, _) = n.expect_request(PHONE, Method::Invite);
    // The newest phone (the call's first leg) is busy; the other answers.
    n.send(PHONE2, &answer(&inv2, 486, "desk", None, PHONE2));
    n.expect_request(PHONE2, Method::Ack);
    n.send(PHONE, &answer(&inv1, 200, "soft", Some(&sdp(6000)), PHONE));
    n.expect_request(PHONE, Method::Ack);
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    n.expect_response(CALLER, 200);
    assert_eq!(n.b.calls(n.now)[0].state, "answered");
    // Both refusing: the call goes back to waiting (no other agent), not failed.
    let mut n = Net::new(REG_CONFIG);
    let _ = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE,
        "p5",
        &contact(PHONE),
    );
    let _ = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PHONE2,
        "p6",
        &format!("Contact: <sip:1001@{PHONE2}>\r\n"),
    );
    n.send(CALLER, &invite("1000", "fork4", &sdp(4000)));
    let (inv2, _) = n.expect_request(PHONE2, Method::Invite);
    let (inv1, _) = n.expect_request(PHONE, Method::Invite);
    n.send(PHONE, &answer(&inv1, 486, "soft", None, PHONE));
    n.send(PHONE2, &answer(&inv2, 486, "desk", None, PHONE2));
    assert_eq!(n.b.active_calls(), 1);
    assert_eq!(n.b.calls(n.now)[0].state, "queued");
}

const PROXY: &str = "127.0.0.1:5075";
const BEHIND: &str = "<sip:127.0.0.1:5075;lr;received=sip:192.0.2.50:5062>";

/// The values of header `name` in `text`.
pub(super) fn values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn a_binding_registered_through_a_proxy_is_called_through_its_path() {
    let mut n = Net::new(REG_CONFIG);
    let lines =
        format!("Contact: <sip:1001@192.0.2.50:5062>\r\nPath: {BEHIND}\r\nSupported: path\r\n");
    let ok = sign_in(&mut n, "1001", "alice-sip-secret", PROXY, "p1", &lines);
    assert_eq!(ok.status_code.code(), 200);
    // A UA that supports path gets it back (RFC 3327 §5.3).
    assert_eq!(values(&ok.to_string(), "Path"), [BEHIND]);
    let regs = n.b.registrations(n.now);
    assert_eq!(regs[0].path, [BEHIND]);
    assert_eq!(regs[0].source, PROXY);
    // The queue call goes to the proxy with the Path as its Route; the
    // Request-URI is the phone's contact.
    n.send(CALLER, &invite("1000", "q1", &sdp(4000)));
    let (inv, _) = n.expect_request(PROXY, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:1001@192.0.2.50:5062");
    assert_eq!(values(&inv.to_string(), "Route"), [BEHIND]);
    // The proxy record-routes: the dialog's later requests follow the
    // Record-Route, not the Path.
    let ok = answer(&inv, 200, "ph1", Some(&sdp(6000)), "192.0.2.50:5062").replacen(
        "\r\n",
        "\r\nRecord-Route: <sip:127.0.0.1:5075;lr;did=x1>\r\n",
        1,
    );
    n.send(PROXY, &ok);
    let (ack, _) = n.expect_request(PROXY, Method::Ack);
    assert_eq!(
        values(&ack.to_string(), "Route"),
        ["<sip:127.0.0.1:5075;lr;did=x1>"]
    );

    // A UA that does not say it supports path still has its Path used, but not
    // echoed (as Kamailio's registrar in path_mode 1).
    let lines = format!("Contact: <sip:1001@192.0.2.50:5062>\r\nPath: {BEHIND}\r\n");
    let ok = sign_in(&mut n, "1001", "alice-sip-secret", PROXY, "p2", &lines);
    assert_eq!(ok.status_code.code(), 200);
    assert!(values(&ok.to_string(), "Path").is_empty(), "{ok}");
    assert_eq!(n.b.registrations(n.now)[0].path, [BEHIND]);

    // A Path that is no SIP URI is refused, and nothing is stored.
    let bad = "Contact: <sip:1001@192.0.2.51:5062>\r\nPath: <tel:+15550100>\r\n";
    n.send(PROXY, &register("1001", PROXY, "p3", 1, bad));
    n.expect_response(PROXY, 400);
    assert_eq!(n.b.registrations(n.now).len(), 1);
}

#[test]
fn behind_a_trusted_proxy_failed_attempts_count_per_phone() {
    let mut n = Net::new(REG_CONFIG);
    let via = |ip: &str| {
        format!(
            "Contact: <sip:1001@{ip}:5062>\r\nPath: <sip:127.0.0.1:5075;lr;received=sip:{ip}:5062>\r\n"
        )
    };
    for i in 0..3 {
        let r = sign_in(
            &mut n,
            "1001",
            "guess",
            PROXY,
            &format!("g{i}"),
            &via("192.0.2.77"),
        );
        assert_eq!(r.status_code.code(), 403);
    }
    assert_eq!(n.b.stats.auth_blocks, 1);
    // The guesser is refused unchecked...
    n.send(PROXY, &register("1001", PROXY, "g9", 1, &via("192.0.2.77")));
    n.expect_response(PROXY, 403);
    // ...while another phone behind the same proxy still signs in.
    let r = sign_in(
        &mut n,
        "1001",
        "alice-sip-secret",
        PROXY,
        "ok1",
        &via("192.0.2.50"),
    );
    assert_eq!(r.status_code.code(), 200);
    // From a source that is no trunk, a Path names nothing trusted: failures
    // count against the source itself, whatever its Path says.
    for i in 0..3 {
        let lines = via(&format!("192.0.2.{}", 100 + i));
        let r = sign_in(&mut n, "1001", "guess", GUESSER, &format!("h{i}"), &lines);
        assert_eq!(r.status_code.code(), 403);
    }
    n.send(
        GUESSER,
        &register("1001", GUESSER, "h9", 1, &via("192.0.2.200")),
    );
    n.expect_response(GUESSER, 403);
    assert_eq!(n.b.stats.auth_blocks, 2);
}

#[test]
fn another_nodes_binding_is_called_through_its_path_and_one_without_is_not() {
    let mut n = Net::new(REG_CONFIG);
    let wall = n.b.wall(n.now);
    let binding = |contact: &str, path: &[&str]| Binding {
        agent: "1001".into(),
        contact: contact.into(),
        // The flow on the other node: never used from here.
        flow: testing::flow("127.0.0.2:5060", PHONE2),
        expires: wall + Duration::from_secs(300),
        call_id: "elsewhere".into(),
        cseq: 1,
        user_agent: None,
        path: path.iter().map(|p| p.to_string()).collect(),
    };
    // Only a flow on node B: this node cannot reach it; the call waits.
    n.b.remote_bindings(
        n.now,
        "edge-b".into(),
        "1001".into(),
        vec![binding("sip:1001@192.0.2.9:5060", &[])],
    );
    n.pump();
    n.send(CALLER, &invite("1000", "q1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    assert!(n.quiet(PHONE2) && n.quiet(PROXY));
    // Registered through the proxy: offered at once, through the proxy.
    n.b.remote_bindings(
        n.now,
        "edge-b".into(),
        "1001".into(),
        vec![binding("sip:1001@192.0.2.50:5062", &[BEHIND])],
    );
    n.pump();
    let (inv, _) = n.expect_request(PROXY, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:1001@192.0.2.50:5062");
    assert_eq!(values(&inv.to_string(), "Route"), [BEHIND]);
    // The same phone listed again by a node that died (the proxy's Path still
    // reaches it) rings once.
    let mut older = binding("sip:1001@192.0.2.50:5062", &[BEHIND]);
    older.expires -= Duration::from_secs(100);
    n.b.remote_bindings(n.now, "edge-c".into(), "1001".into(), vec![older]);
    assert_eq!(n.b.agent_targets(n.now, "1001").len(), 1);
    // Not listed as this node's own (the cluster API lists it under node B).
    assert!(n.b.registrations(n.now).is_empty());
    assert!(n.b.local_bindings().is_empty());
    // Gone from node B: no longer reachable.
    n.b.remote_bindings(n.now, "edge-b".into(), "1001".into(), vec![]);
    n.b.remote_bindings(n.now, "edge-c".into(), "1001".into(), vec![]);
    assert!(!n.b.agent_reachable(n.now, "1001"));
}
