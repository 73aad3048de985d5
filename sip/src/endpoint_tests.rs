//! Transaction-layer tests with a virtual clock and no sockets.

use crate::endpoint::{Endpoint, Event};
use crate::testing::{drain_transmits, reply_to};
use crate::transaction::{T1, T1X64, T2, T4};
use crate::{Flow, Transport};
use rsip::{Method, Request};
use std::time::{Duration, Instant};

fn flow(t: Transport) -> Flow {
    Flow {
        transport: t,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:5070".parse().unwrap(),
    }
}

fn invite_text(branch: &str) -> String {
    format!(
        "INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
From: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:a@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn request(method: Method) -> Request {
    let text = format!(
        "{method} sip:b@127.0.0.1:5070 SIP/2.0\r\nFrom: <sip:e@127.0.0.1>;tag=e1\r\nTo: <sip:b@127.0.0.1>\r\n\
Call-ID: out1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).unwrap()
}

fn drain(ep: &mut Endpoint) -> (Vec<Vec<u8>>, Vec<Event>) {
    let tx = drain_transmits(|| ep.poll_transmit())
        .into_iter()
        .map(|t| t.data.to_vec())
        .collect();
    let mut ev = Vec::new();
    while let Some(e) = ep.poll_event() {
        ev.push(e);
    }
    (tx, ev)
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Advance the virtual clock to `t`, firing timers; returns what was sent.
fn advance(ep: &mut Endpoint, t: Instant) -> (Vec<Vec<u8>>, Vec<Event>) {
    ep.handle_timeout(t);
    drain(ep)
}

#[test]
fn client_invite_retransmits_on_timer_a_and_times_out_on_b() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let id = ep.send_request(t0, request(Method::Invite), flow(Transport::Udp));
    assert_eq!(drain(&mut ep).0.len(), 1);
    // A fires at T1, 3T1, 7T1, 15T1, 31T1, 63T1 (doubling, no cap).
    let mut at = Duration::ZERO;
    let mut interval = T1;
    let mut sent = 0;
    while at + interval < T1X64 {
        at += interval;
        let (tx, ev) = advance(&mut ep, t0 + at);
        assert_eq!(tx.len(), 1, "retransmission at {at:?}");
        assert!(ev.is_empty());
        sent += 1;
        interval *= 2;
    }
    assert_eq!(sent, 6);
    let (_, ev) = advance(&mut ep, t0 + T1X64);
    assert!(matches!(ev.as_slice(), [Event::Timeout { tx }] if *tx == id));
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn client_invite_over_tcp_never_retransmits() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    ep.send_request(t0, request(Method::Invite), flow(Transport::Tcp));
    drain(&mut ep);
    let (tx, ev) = advance(&mut ep, t0 + T1X64 - Duration::from_millis(1));
    assert!(tx.is_empty() && ev.is_empty());
    let (_, ev) = advance(&mut ep, t0 + T1X64);
    assert!(matches!(ev.as_slice(), [Event::Timeout { .. }]));
}

#[test]
fn compact_gives_back_what_a_burst_grew_the_tables_to() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    for _ in 0..5000 {
        ep.send_request(t0, request(Method::Options), flow(Transport::Tcp));
    }
    drain(&mut ep);
    let peak = ep.table_capacity();
    assert!(peak >= 5000);
    ep.compact();
    assert_eq!(ep.table_capacity(), peak, "a full table is left alone");
    ep.transport_failed(t0, flow(Transport::Tcp));
    drain(&mut ep);
    assert_eq!(ep.transaction_count(), 0);
    ep.compact();
    assert!(ep.table_capacity() < 1024, "{}", ep.table_capacity());
    // Still works after shrinking.
    ep.send_request(t0, request(Method::Options), flow(Transport::Udp));
    assert_eq!(ep.transaction_count(), 1);
}

#[test]
fn a_failed_flow_ends_its_client_transactions_with_a_transport_error() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let id = ep.send_request(t0, request(Method::Invite), flow(Transport::Tcp));
    let other = ep.send_request(t0, request(Method::Options), flow(Transport::Udp));
    drain(&mut ep);
    ep.transport_failed(t0, flow(Transport::Tcp));
    let (_, ev) = advance(&mut ep, t0);
    assert!(
        matches!(ev.as_slice(), [Event::TransportError { tx }] if *tx == id),
        "only the failed flow's transaction ends"
    );
    assert!(ep.transaction_count() >= 1, "{other:?} still runs");
}

#[test]
fn client_invite_failure_is_acked_in_the_transaction_and_retransmissions_absorbed() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let id = ep.send_request(t0, request(Method::Invite), f);
    let (sent, _) = drain(&mut ep);
    // 180 stops timer A and B.
    ep.handle_datagram(t0, f, &reply_to(&sent[0], 180, "b1"));
    let (tx, ev) = drain(&mut ep);
    assert!(tx.is_empty());
    assert!(
        matches!(&ev[..], [Event::Response { tx, response, .. }] if *tx == id && response.status_code.code() == 180)
    );
    let (tx, ev) = advance(&mut ep, t0 + T1X64 * 2);
    assert!(
        tx.is_empty() && ev.is_empty(),
        "no retransmission, no timeout after 1xx"
    );
    // 486: ACK sent by the transaction, reported once.
    let t1 = t0 + T1X64 * 2;
    let busy = reply_to(&sent[0], 486, "b1");
    ep.handle_datagram(t1, f, &busy);
    let (tx, ev) = drain(&mut ep);
    assert_eq!(tx.len(), 1);
    assert!(
        first_line(&tx[0]).starts_with("ACK sip:b@127.0.0.1:5070"),
        "{}",
        first_line(&tx[0])
    );
    let ack = String::from_utf8_lossy(&tx[0]).to_string();
    assert!(
        ack.contains("CSeq: 1 ACK") && ack.contains("tag=b1"),
        "{ack}"
    );
    assert_eq!(ev.len(), 1);
    // Retransmitted 486: ACK again, not reported.
    ep.handle_datagram(t1 + T1, f, &busy);
    let (tx, ev) = drain(&mut ep);
    assert_eq!(tx.len(), 1);
    assert!(ev.is_empty());
    // Timer D (32 s on UDP) ends the transaction.
    advance(&mut ep, t1 + Duration::from_secs(32));
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn client_invite_2xx_retransmissions_reach_the_tu_then_become_stray() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.send_request(t0, request(Method::Invite), f);
    let (sent, _) = drain(&mut ep);
    let ok = reply_to(&sent[0], 200, "b1");
    ep.handle_datagram(t0, f, &ok);
    let (tx, ev) = drain(&mut ep);
    assert!(tx.is_empty(), "the TU, not the transaction, ACKs a 2xx");
    assert!(matches!(&ev[..], [Event::Response { .. }]));
    ep.handle_datagram(t0 + T1, f, &ok);
    assert!(matches!(&drain(&mut ep).1[..], [Event::Response { .. }]));
    advance(&mut ep, t0 + T1X64); // timer M
    ep.handle_datagram(t0 + T1X64, f, &ok);
    assert!(matches!(
        &drain(&mut ep).1[..],
        [Event::StrayResponse { .. }]
    ));
}

#[test]
fn client_non_invite_timer_e_caps_at_t2_and_f_times_out() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.send_request(t0, request(Method::Bye), f);
    drain(&mut ep);
    let mut at = Duration::ZERO;
    let mut interval = T1;
    let mut gaps = Vec::new();
    loop {
        at += interval;
        if at >= T1X64 {
            break;
        }
        let (tx, _) = advance(&mut ep, t0 + at);
        assert_eq!(tx.len(), 1, "E at {at:?}");
        gaps.push(interval);
        interval = (interval * 2).min(T2);
    }
    assert_eq!(&gaps[..5], &[T1, T1 * 2, T1 * 4, T2, T2]);
    let (_, ev) = advance(&mut ep, t0 + T1X64);
    assert!(matches!(&ev[..], [Event::Timeout { .. }]));
}

#[test]
fn client_non_invite_final_then_timer_k() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.send_request(t0, request(Method::Bye), f);
    let (sent, _) = drain(&mut ep);
    let ok = reply_to(&sent[0], 200, "x");
    ep.handle_datagram(t0, f, &ok);
    assert_eq!(drain(&mut ep).1.len(), 1);
    ep.handle_datagram(t0 + T1, f, &ok);
    assert!(
        drain(&mut ep).1.is_empty(),
        "retransmitted final absorbed in Completed"
    );
    let (tx, _) = advance(&mut ep, t0 + T4);
    assert!(tx.is_empty());
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn server_invite_sends_100_absorbs_retransmission_and_retransmits_failure_until_ack() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let inv = invite_text("z9hG4bK-s1");
    ep.handle_datagram(t0, f, inv.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert_eq!(first_line(&tx[0]), "SIP/2.0 100 Trying");
    let (id, req) = match ev.into_iter().next().unwrap() {
        Event::Request { tx, request, .. } => (tx, request),
        e => panic!("{e:?}"),
    };
    // Retransmitted INVITE: 100 again, no new request for the TU.
    ep.handle_datagram(t0 + T1, f, inv.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert_eq!(first_line(&tx[0]), "SIP/2.0 100 Trying");
    assert!(ev.is_empty());
    // 486, retransmitted by G at T1, 2T1, 4T1, T2...
    let busy = crate::message::response(&req, 486, Some("t1"), "edge");
    assert!(ep.respond(t0 + T1, id, busy));
    assert_eq!(drain(&mut ep).0.len(), 1);
    let (tx, _) = advance(&mut ep, t0 + T1 * 2);
    assert_eq!(tx.len(), 1);
    let (tx, _) = advance(&mut ep, t0 + T1 * 4);
    assert_eq!(tx.len(), 1);
    // ACK (same branch) stops G and H; I (T4) then ends the transaction.
    let ack = inv
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:1000@127.0.0.1>",
            "To: <sip:1000@127.0.0.1>;tag=t1",
        );
    ep.handle_datagram(t0 + T1 * 5, f, ack.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(
        tx.is_empty() && ev.is_empty(),
        "ACK for non-2xx is absorbed"
    );
    let (tx, _) = advance(&mut ep, t0 + T1 * 8);
    assert!(tx.is_empty(), "no retransmission after ACK");
    advance(&mut ep, t0 + T1 * 5 + T4);
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn server_invite_without_ack_times_out_on_h() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.handle_datagram(t0, f, invite_text("z9hG4bK-h").as_bytes());
    let (_, ev) = drain(&mut ep);
    let Event::Request {
        tx: id, request, ..
    } = ev.into_iter().next().unwrap()
    else {
        panic!()
    };
    ep.respond(
        t0,
        id,
        crate::message::response(&request, 480, Some("t"), "edge"),
    );
    let (_, ev) = advance(&mut ep, t0 + T1X64);
    assert!(matches!(&ev[..], [Event::Timeout { tx }] if *tx == id));
}

#[test]
fn server_2xx_is_retransmitted_until_ack_and_lost_ack_times_out() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.handle_datagram(t0, f, invite_text("z9hG4bK-ok").as_bytes());
    let (_, ev) = drain(&mut ep);
    let Event::Request {
        tx: id, request, ..
    } = ev.into_iter().next().unwrap()
    else {
        panic!()
    };
    ep.respond(
        t0,
        id,
        crate::message::response(&request, 200, Some("t"), "edge"),
    );
    assert_eq!(drain(&mut ep).0.len(), 1);
    // Lost ACK: 2xx again at T1, 3T1, 7T1, then every T2.
    for at in [T1, T1 * 3, T1 * 7, T1 * 7 + T2] {
        let (tx, _) = advance(&mut ep, t0 + at);
        assert_eq!(tx.len(), 1, "2xx retransmission at {at:?}");
        assert!(first_line(&tx[0]).starts_with("SIP/2.0 200"));
    }
    // The retransmitted INVITE is absorbed (RFC 6026 Accepted), not a new call.
    ep.handle_datagram(t0 + T1 * 8, f, invite_text("z9hG4bK-ok").as_bytes());
    assert!(drain(&mut ep).1.is_empty());
    let (_, ev) = advance(&mut ep, t0 + T1X64);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::AckTimeout { call_id, cseq: 1 } if call_id == "c1")),
        "{ev:?}"
    );
}

#[test]
fn server_2xx_stops_on_ack_with_new_branch() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    ep.handle_datagram(t0, f, invite_text("z9hG4bK-a").as_bytes());
    let (_, ev) = drain(&mut ep);
    let Event::Request {
        tx: id, request, ..
    } = ev.into_iter().next().unwrap()
    else {
        panic!()
    };
    ep.respond(
        t0,
        id,
        crate::message::response(&request, 200, Some("t"), "edge"),
    );
    drain(&mut ep);
    let ack = invite_text("z9hG4bK-ack2")
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    ep.handle_datagram(t0 + Duration::from_millis(10), f, ack.as_bytes());
    assert!(matches!(&drain(&mut ep).1[..], [Event::Ack { .. }]));
    let (tx, ev) = advance(&mut ep, t0 + T1X64);
    assert!(tx.is_empty() && ev.is_empty());
}

#[test]
fn cancel_matches_pending_invite_or_gets_481() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let inv = invite_text("z9hG4bK-c");
    ep.handle_datagram(t0, f, inv.as_bytes());
    let (_, ev) = drain(&mut ep);
    let Event::Request { tx: id, .. } = ev.into_iter().next().unwrap() else {
        panic!()
    };
    let cancel = inv
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    ep.handle_datagram(t0, f, cancel.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert_eq!(first_line(&tx[0]), "SIP/2.0 200 OK");
    assert!(matches!(&ev[..], [Event::Cancelled { invite }] if *invite == id));
    let other = cancel.replace("z9hG4bK-c", "z9hG4bK-nope");
    ep.handle_datagram(t0, f, other.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(first_line(&tx[0]).starts_with("SIP/2.0 481"));
    assert!(ev.is_empty());
}

#[test]
fn cancel_crossing_200_on_the_client_side() {
    // We CANCEL an INVITE while the callee's 200 is already on the wire: the 200
    // still reaches the TU (which must ACK and BYE), and the CANCEL completes.
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let inv_id = ep.send_request(t0, request(Method::Invite), f);
    let (sent, _) = drain(&mut ep);
    ep.handle_datagram(t0, f, &reply_to(&sent[0], 180, "b"));
    drain(&mut ep);
    let cancel_id = ep.cancel(t0, inv_id).unwrap();
    let (csent, _) = drain(&mut ep);
    let text = String::from_utf8_lossy(&csent[0]).to_string();
    assert!(
        text.starts_with("CANCEL sip:b@127.0.0.1:5070") && text.contains("CSeq: 1 CANCEL"),
        "{text}"
    );
    let inv_branch = crate::message::parse(&sent[0]).unwrap().1.via.branch;
    let cancel_branch = crate::message::parse(&csent[0]).unwrap().1.via.branch;
    assert_eq!(
        inv_branch, cancel_branch,
        "CANCEL reuses the INVITE's branch"
    );
    ep.handle_datagram(t0, f, &reply_to(&sent[0], 200, "b"));
    ep.handle_datagram(t0, f, &reply_to(&csent[0], 200, "b"));
    let (_, ev) = drain(&mut ep);
    assert!(
        matches!(&ev[0], Event::Response { tx, response, .. } if *tx == inv_id && response.status_code.code() == 200)
    );
    assert!(matches!(&ev[1], Event::Response { tx, .. } if *tx == cancel_id));
}

#[test]
fn server_non_invite_resends_final_on_retransmission_until_j() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let bye = invite_text("z9hG4bK-bye")
        .replace("INVITE sip", "BYE sip")
        .replace("1 INVITE", "2 BYE");
    ep.handle_datagram(t0, f, bye.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(tx.is_empty(), "no 100 for non-INVITE");
    let Event::Request {
        tx: id, request, ..
    } = ev.into_iter().next().unwrap()
    else {
        panic!()
    };
    ep.respond(
        t0,
        id,
        crate::message::response(&request, 200, None, "edge"),
    );
    drain(&mut ep);
    ep.handle_datagram(t0 + T1, f, bye.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert_eq!(tx.len(), 1);
    assert!(ev.is_empty());
    advance(&mut ep, t0 + T1X64);
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn responses_follow_via_received_and_rport() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    // The peer sits behind NAT: it wrote 10.0.0.9:5070 in Via and asked for rport.
    let f = Flow {
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
    };
    let inv = invite_text("z9hG4bK-nat").replace(
        "UDP 127.0.0.1:5070;branch=z9hG4bK-nat",
        "UDP 10.0.0.9:5070;branch=z9hG4bK-nat;rport",
    );
    ep.handle_datagram(t0, f, inv.as_bytes());
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.flow.remote, f.remote, "rport: reply to the source port");
    let text = String::from_utf8_lossy(&t.data).to_string();
    assert!(
        text.contains("received=127.0.0.1") && text.contains("rport=40000"),
        "{text}"
    );
    // Without rport: source IP, Via port.
    let mut ep = Endpoint::new("edge", 1);
    let inv = invite_text("z9hG4bK-nr").replace("UDP 127.0.0.1:5070", "UDP 10.0.0.9:5072");
    ep.handle_datagram(t0, f, inv.as_bytes());
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.flow.remote, "127.0.0.1:5072".parse().unwrap());
}

#[test]
fn malformed_input_is_answered_or_dropped() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Udp);
    let no_callid = invite_text("z9hG4bK-m").replace("Call-ID: c1\r\n", "");
    ep.handle_datagram(t0, f, no_callid.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(tx.is_empty(), "no Call-ID: cannot answer");
    assert!(matches!(&ev[..], [Event::Malformed { .. }]));
    let bad_mf = invite_text("z9hG4bK-m").replace("Max-Forwards: 70", "Max-Forwards: x");
    ep.handle_datagram(t0, f, bad_mf.as_bytes());
    let (tx, _) = drain(&mut ep);
    assert!(first_line(&tx[0]).starts_with("SIP/2.0 400"));
    for junk in [
        &b"\x16\x03\x01garbage"[..],
        &[0u8; 1500],
        b"OPTIONS sip:x SIP/2.0\r\n",
    ] {
        ep.handle_datagram(t0, f, junk);
    }
    assert_eq!(ep.stats.malformed, 5);
}

fn torture(text: &str) -> Vec<u8> {
    crate::message::tests::torture(text)
}

fn only_reply(ep: &mut Endpoint) -> String {
    let (tx, ev) = drain(ep);
    assert!(
        ev.iter().all(|e| !matches!(e, Event::Request { .. })),
        "the TU never sees a refused request"
    );
    assert_eq!(tx.len(), 1, "one response");
    String::from_utf8(tx[0].clone()).unwrap()
}

#[test]
fn unknown_uri_scheme_is_416_and_unknown_required_extension_420() {
    let mut ep = Endpoint::new("edge", 1);
    let now = Instant::now();
    let f = flow(Transport::Udp);
    ep.handle_datagram(now, f, &torture(include_str!("../tests/torture/unksm.txt")));
    let r = only_reply(&mut ep);
    assert!(
        r.starts_with("SIP/2.0 416 Unsupported URI Scheme\r\n"),
        "{r}"
    );
    ep.handle_datagram(
        now,
        f,
        &torture(include_str!("../tests/torture/bext01.txt")),
    );
    let r = only_reply(&mut ep);
    assert!(r.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{r}");
    assert!(
        r.contains("\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n"),
        "{r}"
    );
    // The scheme is refused while parsing (rsip cannot represent it), the
    // extension by the UAS core.
    assert_eq!((ep.stats.malformed, ep.stats.refused), (1, 1));
    // A supported option passes, on any method.
    let bye = invite_text("z9hG4bKreq")
        .replace("INVITE sip", "BYE sip")
        .replace("1 INVITE", "1 BYE")
        .replace("Max-Forwards", "Require: timer\r\nMax-Forwards");
    ep.handle_datagram(now, f, bye.as_bytes());
    let (_, ev) = drain(&mut ep);
    assert!(matches!(ev.as_slice(), [Event::Request { .. }]));
}

#[test]
fn every_final_response_carries_one_to_tag() {
    let mut ep = Endpoint::new("edge", 1);
    let now = Instant::now();
    let f = flow(Transport::Udp);
    ep.handle_datagram(now, f, invite_text("z9hG4bKtag").as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(first_line(&tx[0]).contains("100"));
    let trying = String::from_utf8_lossy(&tx[0]).to_string();
    let to_line = trying.lines().find(|l| l.starts_with("To:")).unwrap();
    assert!(
        !to_line.contains("tag="),
        "100 Trying needs no tag: {to_line}"
    );
    let Some(Event::Request {
        tx: id, request, ..
    }) = ev.into_iter().next()
    else {
        panic!("the INVITE reaches the TU")
    };
    // The TU answers 180 and 486 without naming a tag: both get the same one.
    let r180 = crate::message::response(&request, 180, None, "edge");
    let r486 = crate::message::response(&request, 486, None, "edge");
    ep.respond(now, id, r180);
    ep.respond(now, id, r486);
    let (tx, _) = drain(&mut ep);
    let tags: Vec<String> = tx
        .iter()
        .map(|b| {
            let (m, _) = crate::message::parse(b).unwrap();
            let rsip::SipMessage::Response(r) = m else {
                panic!("a response")
            };
            let to = r
                .headers
                .iter()
                .find_map(|h| match h {
                    rsip::Header::To(t) => Some(rsip::headers::UntypedHeader::value(t).to_string()),
                    _ => None,
                })
                .unwrap();
            crate::message::tag_of(&to).expect("a To tag").to_string()
        })
        .collect();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0], tags[1], "one tag per transaction");
}

#[test]
fn several_content_lengths_get_a_stateless_400() {
    let mut ep = Endpoint::new("edge", 1);
    let f = flow(Transport::Tcp);
    let msg = invite_text("z9hG4bKcl2").replace(
        "Content-Length: 0\r\n",
        "Content-Length: 0\r\nContent-Length: 10\r\n",
    );
    ep.handle_datagram(Instant::now(), f, msg.as_bytes());
    let (tx, ev) = drain(&mut ep);
    assert!(matches!(ev.as_slice(), [Event::Malformed { .. }]));
    assert_eq!(tx.len(), 1);
    assert!(
        first_line(&tx[0]).starts_with("SIP/2.0 400"),
        "{}",
        first_line(&tx[0])
    );
}
