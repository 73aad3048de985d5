//! B2BUA call flows with in-memory peers and a virtual clock.

use super::*;
use rsip::prelude::HeadersExt;
use rsip::{Response, SipMessage};
use sip::sdp::Sdp;
use sip::testing::{self, Clock, Timed, Wire};

#[path = "monitor_tests.rs"]
mod monitor_tests;

#[path = "announce_tests.rs"]
mod announce_tests;

#[path = "session_tests.rs"]
mod session_tests;

#[path = "claims_tests.rs"]
mod claims_tests;
#[path = "hop_tests.rs"]
mod hop_tests;
#[path = "registrar_tests.rs"]
mod registrar_tests;
#[path = "transfer_tests.rs"]
mod transfer_tests;
#[path = "webrtc_tests.rs"]
mod webrtc_tests;

const CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
agent_ring_timeout = "10s"
max_calls = 3
[media]
address = "127.0.0.1"
rtp_ports = "20000-20099"
[[trunks]]
name = "t"
sources = ["127.0.0.1/32"]
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:5090"
[[routes]]
number = "44*"
target = "sip:127.0.0.1:5091"
[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001", "1002"]
max_wait = "30s"
[[agents]]
id = "1001"
contact = "sip:1001@127.0.0.1:5092"
[[agents]]
id = "1002"
contact = "sip:1002@127.0.0.1:5094"
"#;

const CALLER: &str = "127.0.0.1:5070";
const SERVICE: &str = "127.0.0.1:5090";
const ALICE: &str = "127.0.0.1:5092";
const BOB: &str = "127.0.0.1:5094";

fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
}

/// The B2BUA with its peers on `sip::testing`'s wire and virtual clock.
struct Net {
    b: B2bua,
    now: Instant,
    wire: Wire,
    outputs: Vec<Output>,
}

impl Timed for B2bua {
    fn poll_timeout(&self) -> Option<Instant> {
        B2bua::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        B2bua::handle_timeout(self, now)
    }
}

impl Net {
    fn new(config: &str) -> Net {
        let now = Instant::now();
        let snap = Arc::new(control::parse("t", config).unwrap());
        Net {
            b: B2bua::new(snap, 7, now),
            now,
            wire: Wire::new(),
            outputs: Vec::new(),
        }
    }

    fn send(&mut self, from: &str, text: &str) {
        self.b.handle_datagram(
            self.now,
            testing::flow("127.0.0.1:5060", from),
            text.as_bytes(),
        );
        self.pump();
    }

    fn pump(&mut self) {
        drain(&mut self.b, &mut self.wire, &mut self.outputs);
    }

    fn advance(&mut self, d: Duration) {
        let mut clock = Clock { now: self.now };
        let (wire, outputs) = (&mut self.wire, &mut self.outputs);
        clock.advance(&mut self.b, d, |b| drain(b, wire, outputs));
        self.now = clock.now;
    }

    fn expect_response(&mut self, at: &str, code: u16) -> (Response, Head) {
        self.wire.expect_response(at, code)
    }

    fn expect_request(&mut self, at: &str, method: Method) -> (Request, Head) {
        self.wire.expect_request(at, method)
    }

    fn quiet(&self, at: &str) -> bool {
        self.wire.quiet(at)
    }
}

/// The offer to Alice rings until the ring timeout (10 s) and is cancelled.
fn ring_out(n: &mut Net) {
    let (inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&inv, 180, "alice", None, ALICE));
    n.advance(Duration::from_secs(10));
    let (cancel, _) = n.expect_request(ALICE, Method::Cancel);
    n.send(ALICE, &answer(&cancel, 200, "alice", None, ALICE));
    n.send(ALICE, &answer(&inv, 487, "alice", None, ALICE));
    n.expect_request(ALICE, Method::Ack);
}

/// Alice (her leg made by `inv`, her tag `alice`) hangs up: the caller gets BYE
/// and answers it (what the caller had been sent before is dropped).
fn alice_hangs_up(n: &mut Net, inv: &Request) {
    n.wire.clear(CALLER);
    n.send(
        ALICE,
        &in_dialog(Method::Bye, inv, true, "alice", 1, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    let (bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&bye, 200, "x", None, CALLER));
}

/// Outputs first, then transmits onto the wire (the driver's order).
fn drain(b: &mut B2bua, wire: &mut Wire, outputs: &mut Vec<Output>) {
    while let Some(o) = b.poll_output() {
        outputs.push(o);
    }
    while let Some(t) = b.poll_transmit() {
        wire.deliver(&t);
    }
}

fn invite(number: &str, call_id: &str, body: &str) -> String {
    format!(
        "INVITE sip:{number}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id};rport\r\n\
From: <sip:caller@127.0.0.1:5070>;tag=ct-{call_id}\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:caller@{CALLER}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A response from a callee to a request it received.
fn answer(req: &Request, code: u16, tag: &str, body: Option<&str>, contact: &str) -> String {
    let mut r = message::response(req, code, Some(tag), "callee");
    r.headers
        .push(rsip::headers::Contact::new(format!("<sip:x@{contact}>")).into());
    if let Some(b) = body {
        r.body = message::set_body(&mut r.headers, b.as_bytes(), Some("application/sdp"));
    }
    r.to_string()
}

/// An in-dialog request from a peer, given the request that created its dialog (as
/// received by the peer) and whether the peer is the UAS of it.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    method: Method,
    created: &Request,
    peer_is_uas: bool,
    peer_tag: &str,
    cseq: u32,
    branch: &str,
    peer: &str,
    body: &str,
) -> String {
    let get =
        |f: fn(&Header) -> Option<&str>| created.headers.iter().find_map(f).unwrap().to_string();
    let from = get(|h| {
        if let Header::From(v) = h {
            Some(v.value())
        } else {
            None
        }
    });
    let to = get(|h| {
        if let Header::To(v) = h {
            Some(v.value())
        } else {
            None
        }
    });
    let call_id = get(|h| {
        if let Header::CallId(v) = h {
            Some(v.value())
        } else {
            None
        }
    });
    let contact = get(|h| {
        if let Header::Contact(v) = h {
            Some(v.value())
        } else {
            None
        }
    });
    let (f, t) = if peer_is_uas {
        (format!("{to};tag={peer_tag}"), from)
    } else {
        (from, to)
    };
    let uri = message::uri_of(&contact).to_string();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK-{branch}\r\nFrom: {f}\r\nTo: {t}\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn sdp_port(body: &[u8]) -> u16 {
    Sdp::parse(body)
        .unwrap()
        .audio_target()
        .unwrap()
        .unwrap()
        .port()
}

/// Caller → edge → service, up to the caller's ACK. Returns the INVITE the callee got
/// and the 200 the caller got.
fn connect(n: &mut Net, call_id: &str) -> (Request, Response) {
    connect_with(n, call_id, "", "")
}

/// `text` with header lines `extra` (each ending in CRLF) added before Content-Length.
fn with_headers(text: &str, extra: &str) -> String {
    text.replacen("Content-Length:", &format!("{extra}Content-Length:"), 1)
}

/// [`connect`] with header lines added to the caller's INVITE and the callee's 200.
fn connect_with(
    n: &mut Net,
    call_id: &str,
    caller_headers: &str,
    callee_headers: &str,
) -> (Request, Response) {
    n.send(
        CALLER,
        &with_headers(&invite("service", call_id, &sdp(4000)), caller_headers),
    );
    n.expect_response(CALLER, 100);
    let (inv, inv_head) = n.expect_request(SERVICE, Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:service@127.0.0.1:5090");
    assert_eq!(inv_head.cseq, 1, "a new dialog starts at CSeq 1");
    let b_port = sdp_port(&inv.body);
    assert!(
        (20000..20100).contains(&b_port),
        "callee sees the edge's port"
    );
    n.send(SERVICE, &answer(&inv, 180, "callee", None, SERVICE));
    n.expect_response(CALLER, 180);
    n.send(
        SERVICE,
        &with_headers(
            &answer(&inv, 200, "callee", Some(&sdp(6000)), SERVICE),
            callee_headers,
        ),
    );
    n.expect_request(SERVICE, Method::Ack);
    let (ok, _) = n.expect_response(CALLER, 200);
    let a_port = sdp_port(&ok.body);
    assert_ne!(a_port, b_port);
    n.send(
        CALLER,
        &invite("service", call_id, "")
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK")
            .replace(
                "To: <sip:service@127.0.0.1>",
                &format!(
                    "To: <sip:service@127.0.0.1>;tag={}",
                    message::tag_of(
                        &ok.to_string()
                            .lines()
                            .find(|l| l.starts_with("To:"))
                            .unwrap()[3..]
                    )
                    .unwrap()
                ),
            )
            .replace(&format!("z9hG4bK-{call_id}"), "z9hG4bK-ack"),
    );
    (inv, ok)
}

#[test]
fn static_route_call_connects_relays_media_and_caller_hangs_up() {
    let mut n = Net::new(CONFIG);
    let (inv, ok) = connect(&mut n, "c1");
    let calls = n.b.calls(n.now);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].state, "connected");
    assert_eq!(calls[0].route.as_deref(), Some("service"));
    // Media: open, A at 4000, B at 6000.
    let open = n
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Media(_, Command::Open { a_port, b_port, .. }) => Some((*a_port, *b_port)),
            _ => None,
        })
        .unwrap();
    assert_eq!(open, (sdp_port(&ok.body), sdp_port(&inv.body)));
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::Remote {
            side: Side::A,
            addr: Some("127.0.0.1:4000".parse().unwrap())
        }
    )));
    assert!(n.outputs.contains(&Output::Media(
        CallId(1),
        Command::Remote {
            side: Side::B,
            addr: Some("127.0.0.1:6000".parse().unwrap())
        }
    )));
    // The caller hangs up.
    let ok_req = ok.to_string();
    let tag = message::tag_of(&ok_req.lines().find(|l| l.starts_with("To:")).unwrap()[3..])
        .unwrap()
        .to_string();
    let bye = format!(
        "BYE sip:edge@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-bye\r\nFrom: <sip:caller@127.0.0.1:5070>;tag=ct-c1\r\n\
To: <sip:service@127.0.0.1>;tag={tag}\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    n.send(CALLER, &bye);
    n.expect_response(CALLER, 200);
    let (b_bye, bye_head) = n.expect_request(SERVICE, Method::Bye);
    assert_eq!(bye_head.cseq, 2, "BYE's CSeq follows the INVITE's");
    assert_eq!(
        b_bye.uri.to_string(),
        "sip:x@127.0.0.1:5090",
        "BYE goes to the callee's Contact"
    );
    assert_eq!(
        n.b.active_calls(),
        1,
        "call lives until the callee answers the BYE"
    );
    n.send(SERVICE, &answer(&b_bye, 200, "callee", None, SERVICE));
    assert_eq!(n.b.active_calls(), 0);
    assert!(n
        .outputs
        .contains(&Output::Media(CallId(1), Command::Close)));
    assert_eq!(n.b.ports_in_use(), 0, "ports returned");
    assert_eq!(n.b.index_sizes(), [0; 5], "no index entry left behind");
    assert_eq!(n.b.stats.ended_by_status.get(&200), Some(&1));
}

#[test]
fn callee_hangs_up() {
    let mut n = Net::new(CONFIG);
    let (inv, _) = connect(&mut n, "c2");
    let bye = in_dialog(Method::Bye, &inv, true, "callee", 1, "b-bye", SERVICE, "");
    n.send(SERVICE, &bye);
    n.expect_response(SERVICE, 200);
    let (a_bye, _) = n.expect_request(CALLER, Method::Bye);
    assert_eq!(a_bye.uri.to_string(), "sip:caller@127.0.0.1:5070");
    n.send(CALLER, &answer(&a_bye, 200, "ignored", None, CALLER));
    assert_eq!(n.b.active_calls(), 0);
}

#[test]
fn caller_cancels_before_answer() {
    let mut n = Net::new(CONFIG);
    let text = invite("service", "c3", &sdp(4000));
    n.send(CALLER, &text);
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    n.send(SERVICE, &answer(&inv, 180, "callee", None, SERVICE));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    n.send(CALLER, &cancel_of(&text));
    n.expect_response(CALLER, 200);
    n.expect_response(CALLER, 487);
    let (cancel, _) = n.expect_request(SERVICE, Method::Cancel);
    n.send(SERVICE, &answer(&cancel, 200, "callee", None, SERVICE));
    n.send(SERVICE, &answer(&inv, 487, "callee", None, SERVICE));
    n.expect_request(SERVICE, Method::Ack);
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.ports_in_use(), 0);
}

#[test]
fn cancel_crossing_the_callees_200() {
    let mut n = Net::new(CONFIG);
    let text = invite("service", "c4", &sdp(4000));
    n.send(CALLER, &text);
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    n.send(SERVICE, &answer(&inv, 180, "callee", None, SERVICE));
    n.send(CALLER, &cancel_of(&text));
    let (cancel, _) = n.expect_request(SERVICE, Method::Cancel);
    // The callee had already answered: its 200 crosses our CANCEL.
    n.send(
        SERVICE,
        &answer(&inv, 200, "callee", Some(&sdp(6000)), SERVICE),
    );
    n.send(SERVICE, &answer(&cancel, 200, "callee", None, SERVICE));
    n.expect_request(SERVICE, Method::Ack);
    let (bye, _) = n.expect_request(SERVICE, Method::Bye);
    n.send(SERVICE, &answer(&bye, 200, "callee", None, SERVICE));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.stats.ended_by_status.get(&487), Some(&1));
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

#[test]
fn failures_are_mapped_back() {
    for (callee, caller) in [
        (486, 486),
        (404, 404),
        (503, 503),
        (407, 503),
        (302, 480),
        (603, 603),
    ] {
        let mut n = Net::new(CONFIG);
        n.send(CALLER, &invite("service", "f", &sdp(4000)));
        let (inv, _) = n.expect_request(SERVICE, Method::Invite);
        n.send(SERVICE, &answer(&inv, callee, "callee", None, SERVICE));
        n.expect_request(SERVICE, Method::Ack);
        n.expect_response(CALLER, 100);
        n.expect_response(CALLER, caller);
        assert_eq!(n.b.active_calls(), 0, "{callee}");
        assert_eq!(n.b.ports_in_use(), 0);
        assert_eq!(n.b.index_sizes(), [0; 5], "{callee}");
    }
}

#[test]
fn callee_silence_gives_408() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("service", "t", &sdp(4000)));
    n.advance(Duration::from_secs(33));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 408);
    assert_eq!(n.b.active_calls(), 0);
}

#[test]
fn an_unreachable_callee_gives_503_at_once_not_408_after_timer_b() {
    let config = format!(
        "{CONFIG}[[routes]]\nnumber = \"77\"\ntarget = \"sip:127.0.0.1:5095;transport=tcp\"\n"
    );
    let mut n = Net::new(&config);
    n.send(CALLER, &invite("77", "unreach", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_request("127.0.0.1:5095", Method::Invite);
    // The TCP connect (or TLS handshake) to the callee failed: §8.1.3.1.
    let flow = sip::Flow {
        transport: control::Transport::Tcp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:5095".parse().unwrap(),
    };
    n.b.transport_failed(n.now, flow);
    n.pump();
    n.expect_response(CALLER, 503);
    assert_eq!(n.b.active_calls(), 0);
}

#[test]
fn rejections_before_routing() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("999", "r1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 404);
    // Not a trunk: refused statelessly, no 100 Trying first.
    n.send("127.0.0.2:5070", &invite("service", "r2", &sdp(4000)));
    let (m, _) = n.wire.recv("127.0.0.2:5070");
    assert!(testing::first_line(&m).starts_with("SIP/2.0 403"));
    n.send(
        CALLER,
        &invite("service", "r3", &sdp(4000)).replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 483);
    n.send(CALLER, &invite("service", "r4", "v=0\r\nm=audio x\r\n"));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 488);
    let sub = invite("service", "r5", "")
        .replace("INVITE sip", "SUBSCRIBE sip")
        .replace("1 INVITE", "1 SUBSCRIBE");
    n.send(CALLER, &sub);
    let (r, _) = n.expect_response(CALLER, 405);
    assert!(r
        .to_string()
        .contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"));
    let opt = invite("service", "r6", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("1 INVITE", "1 OPTIONS");
    n.send(CALLER, &opt);
    n.expect_response(CALLER, 200);
    assert_eq!(n.b.active_calls(), 0);
}

#[test]
fn overload_gets_503_with_retry_after() {
    let mut n = Net::new(CONFIG);
    for i in 0..3 {
        n.send(CALLER, &invite("service", &format!("o{i}"), &sdp(4000)));
    }
    n.send(CALLER, &invite("service", "o4", &sdp(4000)));
    for _ in 0..3 {
        n.expect_response(CALLER, 100);
    }
    n.expect_response(CALLER, 100);
    let (r, _) = n.expect_response(CALLER, 503);
    assert!(r.to_string().contains("Retry-After: 5"));
}

/// The To tag of response `r`.
/// The CANCEL of an INVITE sent as `invite` (same branch, Call-ID and CSeq number).
fn cancel_of(invite: &str) -> String {
    invite
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL")
}

fn to_tag(r: &Response) -> String {
    let text = r.to_string();
    let to = text.lines().find(|l| l.starts_with("To:")).unwrap();
    message::tag_of(&to[3..]).unwrap().to_string()
}

/// The caller's BYE (CSeq 2) of static-route call `call_id`, answered with `ok`.
fn caller_bye(ok: &Response, call_id: &str) -> String {
    let tag = to_tag(ok);
    format!(
        "BYE sip:edge@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{call_id}-bye\r\nFrom: <sip:caller@127.0.0.1:5070>;tag=ct-{call_id}\r\n\
To: <sip:service@127.0.0.1>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_new_invite_that_waited_too_long_in_the_queue_is_shed_but_calls_in_progress_go_on() {
    let mut n = Net::new(CONFIG);
    let (_, ok) = connect(&mut n, "up");
    let late = OVERLOAD_QUEUE_DELAY + Duration::from_millis(1);
    // A new INVITE that waited too long: one stateless 503 + Retry-After, with a
    // To tag, and no transaction, call or port behind it.
    let inv = invite("service", "late", &sdp(4100));
    for _ in 0..2 {
        n.b.handle_datagram_waited(
            n.now,
            testing::flow("127.0.0.1:5060", CALLER),
            inv.as_bytes(),
            late,
        );
        n.pump();
        let (r, _) = n.expect_response(CALLER, 503);
        let text = r.to_string();
        assert!(text.contains("Retry-After: 5"), "{text}");
        assert!(
            message::tag_of(&text.lines().find(|l| l.starts_with("To:")).unwrap()[3..]).is_some()
        );
    }
    assert_eq!(n.b.stats.shed, 2);
    assert_eq!(n.b.active_calls(), 1);
    // The call in progress still gets its BYE handled, however late.
    let bye = caller_bye(&ok, "up");
    n.b.handle_datagram_waited(
        n.now,
        testing::flow("127.0.0.1:5060", CALLER),
        bye.as_bytes(),
        late,
    );
    n.pump();
    n.expect_response(CALLER, 200);
    n.expect_request(SERVICE, Method::Bye);
    // In time, the same INVITE is a call.
    n.send(CALLER, &inv);
    n.expect_response(CALLER, 100);
    n.expect_request(SERVICE, Method::Invite);
}

#[test]
fn a_draining_edge_refuses_probes_new_calls_and_registrations_but_its_calls_go_on() {
    let mut n = Net::new(CONFIG);
    let (_, ok) = connect(&mut n, "kept");
    assert_eq!(n.b.drain(), 1, "one call up");
    assert!(n.b.draining());
    assert_eq!(n.b.drain(), 1, "draining twice changes nothing");
    let options = invite("service", "probe", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("1 INVITE", "1 OPTIONS");
    n.send(CALLER, &options);
    let (r, _) = n.expect_response(CALLER, 503);
    assert!(r.to_string().contains("Retry-After: 5"), "{r}");
    n.send(CALLER, &invite("service", "new", &sdp(4100)));
    n.expect_response(CALLER, 100);
    let (r, _) = n.expect_response(CALLER, 503);
    assert!(r.to_string().contains("Retry-After: 5"), "{r}");
    let register = invite("service", "reg", "")
        .replace("INVITE sip", "REGISTER sip")
        .replace("1 INVITE", "1 REGISTER");
    n.send(CALLER, &register);
    n.expect_response(CALLER, 503);
    assert_eq!(
        n.b.stats.rejected_draining, 2,
        "the INVITE and the REGISTER"
    );
    assert_eq!(n.b.active_calls(), 1, "no call behind the refused INVITE");
    // The call in progress ends normally, and then nothing is left.
    let bye = caller_bye(&ok, "kept");
    n.send(CALLER, &bye);
    n.expect_response(CALLER, 200);
    let (b_bye, _) = n.expect_request(SERVICE, Method::Bye);
    n.send(SERVICE, &answer(&b_bye, 200, "callee", None, SERVICE));
    assert_eq!(n.b.active_calls(), 0);
    assert_eq!(n.b.drain(), 0, "drained");
}

#[test]
fn a_held_node_refuses_new_work_until_released_and_its_calls_go_on() {
    let mut n = Net::new(CONFIG);
    let (_, ok) = connect(&mut n, "kept");
    n.b.hold_new_work(true);
    assert!(n.b.held() && !n.b.draining());
    let options = invite("service", "probe", "")
        .replace("INVITE sip", "OPTIONS sip")
        .replace("1 INVITE", "1 OPTIONS");
    n.send(CALLER, &options);
    n.expect_response(CALLER, 503);
    n.send(CALLER, &invite("service", "new", &sdp(4100)));
    n.expect_response(CALLER, 100);
    let (r, _) = n.expect_response(CALLER, 503);
    assert!(r.to_string().contains("Retry-After: 5"), "{r}");
    assert_eq!(n.b.stats.rejected_held, 1);
    assert_eq!(n.b.stats.rejected_draining, 0);
    // In-dialog signalling of the call in progress still works while held.
    let bye = caller_bye(&ok, "kept");
    n.b.hold_new_work(false);
    let probe2 = options.replace("probe", "probe2");
    n.send(CALLER, &probe2);
    n.expect_response(CALLER, 200);
    n.b.hold_new_work(true);
    n.send(CALLER, &bye);
    n.expect_response(CALLER, 200);
    let (b_bye, _) = n.expect_request(SERVICE, Method::Bye);
    n.send(SERVICE, &answer(&b_bye, 200, "callee", None, SERVICE));
    assert_eq!(n.b.active_calls(), 0);
    // Released: a new call is taken again.
    n.b.hold_new_work(false);
    n.send(CALLER, &invite("service", "again", &sdp(4102)));
    n.expect_response(CALLER, 100);
    n.expect_request(SERVICE, Method::Invite);
}

#[test]
fn prefix_route_puts_the_dialled_number_in_the_request_uri() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("4420123", "p", &sdp(4000)));
    let (inv, _) = n.expect_request("127.0.0.1:5091", Method::Invite);
    assert_eq!(inv.uri.to_string(), "sip:4420123@127.0.0.1:5091");
}

#[test]
fn queue_rings_longest_idle_agent_skips_no_answer_and_connects_next() {
    let mut n = Net::new(CONFIG);
    n.send(CALLER, &invite("1000", "q1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180); // ringback while waiting
    let (to_alice, _) = n.expect_request(ALICE, Method::Invite);
    n.send(ALICE, &answer(&to_alice, 180, "alice", None, ALICE));
    // Alice does not answer within agent_ring_timeout (10 s): CANCEL, Bob rings.
    n.advance(Duration::from_secs(10));
    let (cancel, _) = n.expect_request(ALICE, Method::Cancel);
    n.send(ALICE, &answer(&cancel, 200, "alice", None, ALICE));
    n.send(ALICE, &answer(&to_alice, 487, "alice", None, ALICE));
    n.expect_request(ALICE, Method::Ack);
    let (to_bob, _) = n.expect_request(BOB, Method::Invite);
    assert_eq!(
        sdp_port(&to_bob.body),
        sdp_port(&to_alice.body),
        "same edge port for every attempt"
    );
    n.send(BOB, &answer(&to_bob, 200, "bob", Some(&sdp(7000)), BOB));
    n.expect_request(BOB, Method::Ack);
    n.expect_response(CALLER, 200);
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].agent.as_deref(), Some("1002"));
    assert_eq!(calls[0].queue.as_deref(), Some("sales"));
    // Bob is busy: a second caller gets Alice.
    n.send(CALLER, &invite("1000", "q2", &sdp(4002)));
    let (to_alice2, _) = n.expect_request(ALICE, Method::Invite);
    assert!(n.quiet(BOB));
    n.send(ALICE, &answer(&to_alice2, 486, "alice", None, ALICE));
    n.expect_request(ALICE, Method::Ack);
    // Everyone tried or busy: the caller waits; after max_wait, 480.
    n.advance(Duration::from_secs(31));
    let mut got480 = false;
    while let Some((m, _)) = n.wire.try_recv(CALLER) {
        if let SipMessage::Response(r) = m {
            if r.status_code.code() == 480 && r.to_string().contains("Call-ID: q2") {
                got480 = true;
            }
        }
    }
    assert!(got480, "max_wait ends the wait with 480");
    assert_eq!(n.b.active_calls(), 1);
    // The failed attempts' dialogs are gone; only the connected call's two remain.
    assert_eq!(n.b.index_sizes()[0], 2);
}

#[test]
fn queued_call_goes_to_the_agent_who_frees_up() {
    let mut n = Net::new(&CONFIG.replace("agents = [\"1001\", \"1002\"]", "agents = [\"1001\"]"));
    n.send(CALLER, &invite("1000", "w1", &sdp(4000)));
    let (c1_inv, _) = n.expect_request(ALICE, Method::Invite);
    n.send(
        ALICE,
        &answer(&c1_inv, 200, "alice", Some(&sdp(7000)), ALICE),
    );
    n.expect_request(ALICE, Method::Ack);
    // Second caller waits: Alice is busy.
    n.send(CALLER, &invite("1000", "w2", &sdp(4002)));
    assert!(n.quiet(ALICE));
    n.wire.clear(CALLER); // 100/180/200 of both calls
                          // Alice hangs up the first call; the waiting call is offered to her.
    n.send(
        ALICE,
        &in_dialog(Method::Bye, &c1_inv, true, "alice", 1, "ab", ALICE, ""),
    );
    n.expect_response(ALICE, 200);
    let (bye, _) = n.expect_request(CALLER, Method::Bye);
    n.send(CALLER, &answer(&bye, 200, "x", None, CALLER));
    let (inv2, _) = n.expect_request(ALICE, Method::Invite);
    assert!(
        inv2.to_string()
            .contains("From: <sip:caller@127.0.0.1:5070>"),
        "caller identity kept"
    );
}

#[test]
fn reinvite_hold_passes_through_with_rewritten_sdp() {
    let mut n = Net::new(CONFIG);
    let (inv, _) = connect(&mut n, "h1");
    let b_port = sdp_port(&inv.body);
    // The callee puts the caller on hold.
    let hold = sdp(6000).replace("a=sendrecv", "a=sendonly");
    n.send(
        SERVICE,
        &in_dialog(
            Method::Invite,
            &inv,
            true,
            "callee",
            1,
            "re1",
            SERVICE,
            &hold,
        ),
    );
    n.expect_response(SERVICE, 100);
    let (re, _) = n.expect_request(CALLER, Method::Invite);
    let body = String::from_utf8_lossy(&re.body).to_string();
    assert!(
        body.contains("a=sendonly") && !body.contains(" 6000 "),
        "{body}"
    );
    let a_port = sdp_port(&re.body);
    assert_ne!(a_port, b_port);
    n.send(
        CALLER,
        &answer(
            &re,
            200,
            "ignored",
            Some(&sdp(4000).replace("a=sendrecv", "a=recvonly")),
            CALLER,
        ),
    );
    n.expect_request(CALLER, Method::Ack);
    let (ok, _) = n.expect_response(SERVICE, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("a=recvonly"));
    assert_eq!(sdp_port(&ok.body), b_port);
    // Glare protection: a second re-INVITE while one is pending gets 491.
    n.send(
        SERVICE,
        &in_dialog(
            Method::Invite,
            &inv,
            true,
            "callee",
            2,
            "re2",
            SERVICE,
            &sdp(6000),
        ),
    );
    n.expect_response(SERVICE, 100);
    n.expect_request(CALLER, Method::Invite);
    n.send(
        SERVICE,
        &in_dialog(
            Method::Invite,
            &inv,
            true,
            "callee",
            3,
            "re3",
            SERVICE,
            &sdp(6000),
        ),
    );
    n.expect_response(SERVICE, 100);
    n.expect_response(SERVICE, 491);
}

#[test]
fn info_is_relayed_and_unknown_dialogs_get_481() {
    let mut n = Net::new(CONFIG);
    let (inv, _) = connect(&mut n, "i1");
    let info = in_dialog(Method::Info, &inv, true, "callee", 1, "inf", SERVICE, "").replace(
        "Content-Length: 0",
        "Content-Type: application/dtmf-relay\r\nContent-Length: 24",
    ) + "Signal=5\r\nDuration=160\r\n";
    n.send(SERVICE, &info);
    let (fwd, _) = n.expect_request(CALLER, Method::Info);
    assert!(String::from_utf8_lossy(&fwd.body).contains("Signal=5"));
    n.send(CALLER, &answer(&fwd, 200, "x", None, CALLER));
    n.expect_response(SERVICE, 200);
    let stray = in_dialog(Method::Bye, &inv, true, "nobody", 9, "s", SERVICE, "")
        .replace("Call-ID: ", "Call-ID: nope-");
    n.send(SERVICE, &stray);
    n.expect_response(SERVICE, 481);
}

#[test]
fn admin_hangup_byes_both_legs() {
    let mut n = Net::new(CONFIG);
    let (_, _) = connect(&mut n, "k1");
    let id = n.b.calls(n.now)[0].id.clone();
    assert!(n.b.hangup(n.now, &id));
    n.pump();
    let (b1, _) = n.expect_request(SERVICE, Method::Bye);
    let (b2, _) = n.expect_request(CALLER, Method::Bye);
    n.send(SERVICE, &answer(&b1, 200, "x", None, SERVICE));
    n.send(CALLER, &answer(&b2, 200, "x", None, CALLER));
    assert_eq!(n.b.active_calls(), 0);
    assert!(!n.b.hangup(n.now, &id));
    assert_eq!(n.b.index_sizes(), [0; 5]);
}

const STRANGER: &str = "10.9.9.9:5070";

#[test]
fn a_strangers_invite_gets_one_stateless_403_with_a_tag_and_leaves_nothing_behind() {
    let mut n = Net::new(CONFIG);
    let inv = invite("service", "stranger-1", &sdp(4000));
    for _ in 0..3 {
        // The stranger retransmits: one 403 per request, no 100 Trying.
        n.send(STRANGER, &inv);
        let (r, _) = n.wire.recv(STRANGER);
        let SipMessage::Response(r) = r else {
            panic!("a response")
        };
        assert_eq!(r.status_code.code(), 403);
        let to = r.to_header().unwrap().to_string();
        assert!(to.contains(";tag="), "{to}");
        assert!(n.wire.quiet(STRANGER), "nothing else: no 100 Trying");
    }
    assert_eq!(
        n.b.endpoint().transaction_count(),
        0,
        "no transaction exists"
    );
    assert_eq!(n.b.active_calls(), 0);
    // No timer retransmits the 403 (a stateful 403 would, until the ACK).
    n.advance(Duration::from_secs(40));
    assert!(n.wire.quiet(STRANGER));
    assert_eq!(n.b.stats.strangers, 3);
    // A stranger's OPTIONS is still answered (keep-alives, probes).
    let opts = inv
        .replace("INVITE sip:", "OPTIONS sip:")
        .replace("1 INVITE", "1 OPTIONS");
    n.send(STRANGER, &opts);
    assert_eq!(
        n.wire.expect_response(STRANGER, 200).0.status_code.code(),
        200
    );
}

#[test]
fn strangers_can_be_dropped_silently_and_a_flooding_source_is_rate_limited() {
    let config = CONFIG.replace(
        "max_calls = 3",
        "max_calls = 3\nstrangers = \"drop\"\nrate_limit = 10\nrate_limit_block = \"5s\"",
    );
    let mut n = Net::new(&config);
    for i in 0..25 {
        n.send(
            STRANGER,
            &invite("service", &format!("flood-{i}"), &sdp(4000)),
        );
    }
    assert!(n.wire.quiet(STRANGER), "dropped: nothing goes back");
    assert_eq!(n.b.stats.strangers, 10, "the first 10 were screened");
    assert_eq!(n.b.stats.rate_limited, 15, "the rest dropped unread");
    assert_eq!(n.b.stats.rate_limit_blocks, 1);
    // A trunk is never rate limited.
    for i in 0..12 {
        let opts = invite("service", &format!("trunk-{i}"), "")
            .replace("INVITE sip:", "OPTIONS sip:")
            .replace("1 INVITE", "1 OPTIONS")
            .replace("Content-Type: application/sdp\r\n", "");
        n.send(CALLER, &opts);
        n.wire.expect_response(CALLER, 200);
    }
    // After the block the stranger is heard again (and still dropped as a stranger).
    n.advance(Duration::from_secs(6));
    n.send(STRANGER, &invite("service", "after-block", &sdp(4000)));
    assert_eq!(n.b.stats.strangers, 11);
}

#[test]
fn a_silent_answered_call_is_ended_but_a_ringing_one_is_left_alone() {
    let mut n = Net::new(CONFIG);
    // Ringing: no media yet is normal.
    n.send(CALLER, &invite("service", "ringing", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_request(SERVICE, Method::Invite);
    n.b.media_silent(n.now, CallId(1));
    n.pump();
    assert_eq!(n.b.active_calls(), 1);
    assert!(n.wire.quiet(CALLER));
    assert_eq!(n.b.stats.media_timeouts, 0);
    // Answered and silent: BYE to both parties.
    let mut n = Net::new(CONFIG);
    connect(&mut n, "silent");
    n.b.media_silent(n.now, CallId(1));
    n.pump();
    n.expect_request(CALLER, Method::Bye);
    n.expect_request(SERVICE, Method::Bye);
    assert_eq!(n.b.stats.media_timeouts, 1);
}

#[test]
fn max_call_duration_ends_an_answered_call() {
    // Session timers off: this caller answers no refresh re-INVITE.
    let config = CONFIG.replace(
        "max_calls = 3",
        "max_calls = 3\nmax_call_duration = \"1h\"\nsession_expires = \"0s\"",
    );
    let mut n = Net::new(&config);
    connect(&mut n, "long");
    n.advance(Duration::from_secs(3599));
    assert!(n.wire.quiet(CALLER) && n.wire.quiet(SERVICE), "not yet");
    n.advance(Duration::from_secs(2));
    n.expect_request(CALLER, Method::Bye);
    n.expect_request(SERVICE, Method::Bye);
    assert_eq!(n.b.stats.max_duration, 1);
}

#[path = "agents_tests.rs"]
mod agents_tests;

#[path = "after_hours_tests.rs"]
mod after_hours_tests;
