//! Session timers (RFC 4028) on both legs, with a virtual clock.

use super::*;

fn header_value(headers: &rsip::Headers, name: &str) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.clone()),
        Header::Require(r) if name.eq_ignore_ascii_case("require") => Some(r.value().to_string()),
        Header::Supported(s) if name.eq_ignore_ascii_case("supported") => {
            Some(s.value().to_string())
        }
        _ => None,
    })
}

/// The To tag the edge gave the caller's dialog.
fn edge_tag(ok: &Response) -> String {
    let text = ok.to_string();
    message::tag_of(&text.lines().find(|l| l.starts_with("To:")).unwrap()[3..])
        .unwrap()
        .to_string()
}

/// An in-dialog request from the caller to the edge.
fn from_caller(method: &str, ok: &Response, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "{method} sip:edge@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{method}{cseq}\r\n\
From: <sip:caller@127.0.0.1:5070>;tag=ct-{call_id}\r\nTo: <sip:service@127.0.0.1>;tag={}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
        edge_tag(ok)
    )
}

#[test]
fn a_caller_that_refreshes_is_granted_its_timer_and_ended_when_it_stops() {
    let mut n = Net::new(CONFIG);
    // Below the edge's Min-SE (90 s): 422 naming it, and no call.
    n.send(
        CALLER,
        &with_headers(
            &invite("service", "brief", &sdp(4000)),
            "Supported: timer\r\nSession-Expires: 60\r\n",
        ),
    );
    let (r, _) = n.expect_response(CALLER, 422);
    assert_eq!(header_value(&r.headers, "Min-SE").as_deref(), Some("90"));
    assert_eq!(n.b.active_calls(), 0);
    // The caller ACKs the 422 (same branch, the 422's To tag).
    n.send(
        CALLER,
        &invite("service", "brief", "")
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:service@127.0.0.1>",
                &format!("To: <sip:service@127.0.0.1>;tag={}", edge_tag(&r)),
            ),
    );

    let (inv, ok) = connect_with(
        &mut n,
        "st1",
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        "",
    );
    // A: the caller asked to refresh and may; it must (Require: timer).
    assert_eq!(
        header_value(&ok.headers, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    assert_eq!(
        header_value(&ok.headers, "Require").as_deref(),
        Some("timer")
    );
    // B: the edge asks for its own interval; this callee ignores timers.
    assert_eq!(
        header_value(&inv.headers, "Supported").as_deref(),
        Some("timer")
    );
    assert_eq!(
        header_value(&inv.headers, "Session-Expires").as_deref(),
        Some("1800")
    );
    assert_eq!(header_value(&inv.headers, "Min-SE").as_deref(), Some("90"));

    // The caller refreshes by UPDATE at 60 s: granted again, the call goes on past
    // the first deadline (120 - 32 = 88 s).
    n.advance(Duration::from_secs(60));
    n.send(
        CALLER,
        &from_caller(
            "UPDATE",
            &ok,
            "st1",
            2,
            "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        ),
    );
    let (r, _) = n.expect_response(CALLER, 200);
    assert_eq!(
        header_value(&r.headers, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    n.advance(Duration::from_secs(40));
    assert!(n.quiet(CALLER) && n.quiet(SERVICE), "refreshed: still up");
    assert_eq!(n.b.active_calls(), 1);

    // Then it goes silent: at 60 + 88 s the call is ended on both legs.
    n.advance(Duration::from_secs(49));
    n.expect_request(CALLER, Method::Bye);
    n.expect_request(SERVICE, Method::Bye);
    assert_eq!(n.b.stats.session_expired, 1);
}

#[test]
fn the_edge_refreshes_legs_whose_peer_cannot_and_ends_the_call_when_one_stops_answering() {
    let config = CONFIG.replace("max_calls = 3", "max_calls = 3\nsession_expires = \"120s\"");
    let mut n = Net::new(&config);
    // The caller does not support timers; the callee grants 240 s and leaves the
    // refreshing to the edge, which may use UPDATE there.
    let (_, ok) = connect_with(
        &mut n,
        "st2",
        "",
        "Session-Expires: 240;refresher=uac\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
    );
    assert_eq!(
        header_value(&ok.headers, "Session-Expires").as_deref(),
        Some("120;refresher=uas")
    );
    assert_eq!(header_value(&ok.headers, "Require"), None);

    // 60 s: the edge refreshes A by re-INVITE (the caller did not allow UPDATE),
    // offering the SDP it answered with.
    n.advance(Duration::from_secs(60));
    let (re, re_head) = n.expect_request(CALLER, Method::Invite);
    assert_eq!(re.body, ok.body, "the refresh repeats the edge's session");
    assert_eq!(
        header_value(&re.headers, "Session-Expires").as_deref(),
        Some("120;refresher=uac")
    );
    assert!(n.quiet(SERVICE));
    let mut re_ok = message::response(&re, 200, None, "caller");
    re_ok.body = message::set_body(
        &mut re_ok.headers,
        sdp(4000).as_bytes(),
        Some("application/sdp"),
    );
    re_ok.headers.push(Header::Other(
        "Session-Expires".into(),
        "120;refresher=uac".into(),
    ));
    n.send(CALLER, &re_ok.to_string());
    let (ack, ack_head) = n.expect_request(CALLER, Method::Ack);
    assert_eq!(ack_head.cseq, re_head.cseq);
    assert!(ack.body.is_empty());

    // 120 s: B's refresh (half of 240) goes by UPDATE, and A's second by re-INVITE.
    n.advance(Duration::from_secs(60));
    let (upd, _) = n.expect_request(SERVICE, Method::Update);
    assert!(upd.body.is_empty());
    assert_eq!(
        header_value(&upd.headers, "Session-Expires").as_deref(),
        Some("240;refresher=uac")
    );
    let mut upd_ok = message::response(&upd, 200, None, "callee");
    upd_ok.headers.push(Header::Other(
        "Session-Expires".into(),
        "240;refresher=uac".into(),
    ));
    n.send(SERVICE, &upd_ok.to_string());
    n.expect_request(CALLER, Method::Invite);
    // The caller has vanished: the re-INVITE goes unanswered, and by A's deadline
    // (60 + 88 s after the last refresh) both legs get BYE.
    n.advance(Duration::from_secs(30));
    assert_eq!(n.b.active_calls(), 1);
    n.wire.clear(CALLER);
    n.advance(Duration::from_secs(60));
    let mut byes = 0;
    while let Some((m, _)) = n.wire.try_recv(CALLER) {
        byes += usize::from(matches!(&m, SipMessage::Request(r) if r.method == Method::Bye));
    }
    assert!(
        byes >= 1,
        "BYE (and its retransmissions) to the vanished caller"
    );
    n.expect_request(SERVICE, Method::Bye);
    assert_eq!(n.b.stats.session_expired, 1);
}

#[test]
fn a_callee_that_wants_a_longer_interval_is_called_again_with_its_min_se() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("service", "st3", &sdp(4000)));
    n.expect_response(CALLER, 100);
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    let mut too_brief = message::response(&inv, 422, Some("c1"), "callee");
    too_brief
        .headers
        .push(Header::Other("Min-SE".into(), "3600".into()));
    n.send(SERVICE, &too_brief.to_string());
    n.expect_request(SERVICE, Method::Ack);
    let (again, _) = n.expect_request(SERVICE, Method::Invite);
    assert_eq!(
        header_value(&again.headers, "Session-Expires").as_deref(),
        Some("3600")
    );
    assert!(n.quiet(CALLER), "the caller sees nothing of it");
    n.send(
        SERVICE,
        &with_headers(
            &answer(&again, 200, "callee", Some(&sdp(6000)), SERVICE),
            "Session-Expires: 3600;refresher=uas\r\n",
        ),
    );
    n.expect_request(SERVICE, Method::Ack);
    n.expect_response(CALLER, 200);
    // A second 422 is not followed again: the call fails instead of looping.
    n.send(CALLER, &invite("service", "st4", &sdp(4000)));
    n.expect_response(CALLER, 100);
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    let mut brief = message::response(&inv, 422, Some("c2"), "callee");
    brief
        .headers
        .push(Header::Other("Min-SE".into(), "90".into()));
    n.send(SERVICE, &brief.to_string());
    n.expect_response(CALLER, 422);
}

#[test]
fn an_update_with_an_offer_is_refused_and_timers_can_be_turned_off() {
    let mut n = Net::new(CONFIG);
    let (_, ok) = connect(&mut n, "st5");
    let upd = from_caller("UPDATE", &ok, "st5", 2, "Content-Type: application/sdp\r\n").replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{}", sdp(4100).len(), sdp(4100)),
    );
    n.send(CALLER, &upd);
    n.expect_response(CALLER, 488);

    let config = CONFIG.replace("max_calls = 3", "max_calls = 3\nsession_expires = \"0s\"");
    let mut n = Net::new(&config);
    // Off: no 422, no headers, and Require: timer is refused as unsupported.
    let (inv, ok) = connect_with(&mut n, "st6", "Session-Expires: 60\r\n", "");
    assert_eq!(header_value(&ok.headers, "Session-Expires"), None);
    assert_eq!(header_value(&inv.headers, "Session-Expires"), None);
    n.advance(Duration::from_secs(7200));
    assert!(n.quiet(CALLER) && n.quiet(SERVICE));
    n.send(
        CALLER,
        &with_headers(&invite("service", "st7", &sdp(4000)), "Require: timer\r\n"),
    );
    n.expect_response(CALLER, 420);
}
