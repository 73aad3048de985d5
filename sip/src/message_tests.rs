//! Unit tests of `message.rs`.

use super::*;

pub(crate) const INVITE: &str = "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=abc\r\n\
To: <sip:service@127.0.0.1:5060>\r\n\
Call-ID: 1-abc@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:5061>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

#[test]
fn parses_head() {
    let (msg, head) = parse(INVITE.as_bytes()).unwrap();
    assert!(msg.is_request());
    assert_eq!(head.call_id, "1-abc@127.0.0.1");
    assert_eq!((head.cseq, head.cseq_method), (1, Method::Invite));
    assert_eq!(head.from_tag.as_deref(), Some("abc"));
    assert_eq!(head.to_tag, None);
    assert_eq!(head.via.branch.as_deref(), Some("z9hG4bK-1"));
    assert_eq!(head.via.sent_by(), "127.0.0.1:5061");
    assert!(head.via.rport);
    assert_eq!(msg.body(), b"v=0\n");
}

#[test]
fn content_length_truncates_and_short_body_is_an_error() {
    let extra = format!("{INVITE}garbage");
    let (msg, _) = parse(extra.as_bytes()).unwrap();
    assert_eq!(msg.body(), b"v=0\n");
    let short = INVITE.replace("Content-Length: 4", "Content-Length: 40");
    assert_eq!(
        parse(short.as_bytes()).unwrap_err(),
        ParseError::Truncated { have: 4, want: 40 }
    );
    let bad = INVITE.replace("Content-Length: 4", "Content-Length: x");
    assert_eq!(
        parse(bad.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
}

#[test]
fn compact_and_folded_headers() {
    let compact = INVITE
        .replace("Via:", "v:")
        .replace("Call-ID:", "i:")
        .replace("From: sipp", "f: sipp")
        .replace("Content-Length:", "l:")
        .replace(
            "To: <sip:service@127.0.0.1:5060>",
            "t:\r\n <sip:service@127.0.0.1:5060>",
        );
    let (_, head) = parse(compact.as_bytes()).unwrap();
    assert_eq!(head.call_id, "1-abc@127.0.0.1");
    assert_eq!(head.from_tag.as_deref(), Some("abc"));
    assert_eq!(head.via.branch.as_deref(), Some("z9hG4bK-1"));
}

#[test]
fn missing_mandatory_headers() {
    for (name, line) in [
        ("Call-ID", "Call-ID: 1-abc@127.0.0.1\r\n"),
        ("CSeq", "CSeq: 1 INVITE\r\n"),
        (
            "Via",
            "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n",
        ),
    ] {
        let m = INVITE.replace(line, "");
        assert_eq!(
            parse(m.as_bytes()).unwrap_err(),
            ParseError::MissingHeader(name),
            "{name}"
        );
    }
}

#[test]
fn garbage_never_panics_and_gets_400_when_answerable() {
    for g in [
        &b""[..],
        b"\x00\xff\xfe",
        b"INVITE",
        b"\r\n\r\n",
        b"SIP/2.0 200\r\n\r\n",
    ] {
        assert!(parse(g).is_err());
    }
    let unknown = INVITE
        .replace("INVITE sip:", "FROB sip:")
        .replace("1 INVITE", "1 FROB");
    let e = parse(unknown.as_bytes()).unwrap_err();
    assert_eq!(e, ParseError::UnknownMethod);
    let reply = raw_reply(unknown.as_bytes(), &e, "edge").unwrap();
    let reply = std::str::from_utf8(&reply).unwrap();
    assert!(reply.starts_with("SIP/2.0 501 "), "{reply}");
    assert!(reply.contains("Call-ID: 1-abc@127.0.0.1"));
    assert!(reply.contains("CSeq: 1 FROB\r\n") && reply.ends_with("\r\n\r\n"));
    // A malformed INVITE (bad Max-Forwards) gets a 400 that parses.
    let bad = INVITE.replace("Max-Forwards: 70", "Max-Forwards: many");
    let e = parse(bad.as_bytes()).unwrap_err();
    let reply = raw_reply(bad.as_bytes(), &e, "edge").unwrap();
    let (msg, _) = parse(&reply).unwrap();
    assert!(matches!(msg, SipMessage::Response(r) if r.status_code.code() == 400));
}

#[test]
fn stream_framing() {
    let two = format!("\r\n\r\n{INVITE}{INVITE}");
    assert_eq!(
        frame_stream(two.as_bytes()).unwrap(),
        Frame::KeepAlive { len: 4, ping: true }
    );
    let rest = &two.as_bytes()[4..];
    assert_eq!(frame_stream(rest).unwrap(), Frame::Message(INVITE.len()));
    assert_eq!(frame_stream(&rest[..10]).unwrap(), Frame::Incomplete);
    assert_eq!(
        frame_stream(&rest[..INVITE.len() - 1]).unwrap(),
        Frame::Incomplete
    );
    let huge = vec![b'a'; MAX_MESSAGE_SIZE + 1];
    assert_eq!(frame_stream(&huge).unwrap_err(), ParseError::TooLarge);
}

#[test]
fn response_copies_dialog_headers_and_adds_tag() {
    let (msg, _) = parse(INVITE.as_bytes()).unwrap();
    let SipMessage::Request(req) = msg else {
        panic!()
    };
    let resp = response(&req, 486, Some("xyz"), "edge");
    let text = resp.to_string();
    assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
    let (_, head) = parse(text.as_bytes()).unwrap();
    assert_eq!(head.to_tag.as_deref(), Some("xyz"));
    assert_eq!(head.call_id, "1-abc@127.0.0.1");
}

#[test]
fn tags_and_uris() {
    assert_eq!(tag_of("\"A;b\" <sip:a@b;x=y>;tag=123;foo"), Some("123"));
    assert_eq!(tag_of("sip:a@b;tag=9"), Some("9"));
    assert_eq!(tag_of("<sip:a@b;tag=in-uri>"), None);
    assert_eq!(uri_of("\"A\" <sip:a@b:5060;lr>;x"), "sip:a@b:5060;lr");
}

/// A message of `sip/tests/torture/` (RFC 4475 §3.1 style, written with LF line ends
/// and `@LEN@` for the body's length) as it goes on the wire.
pub(crate) fn torture(text: &str) -> Vec<u8> {
    let wire = text.replace('\n', "\r\n");
    let body_len = wire.find("\r\n\r\n").map_or(0, |i| wire.len() - i - 4);
    wire.replace("@LEN@", &body_len.to_string()).into_bytes()
}

#[test]
fn whitespace_before_colons_and_inside_via_is_valid() {
    // RFC 4475 3.1.1.1 (wsinv): LWS before colons, folded values, compact and long
    // forms mixed, leading zeros, a Via whose protocol is spread over lines.
    let (msg, head) = parse(&torture(include_str!("../tests/torture/wsinv.txt"))).unwrap();
    assert!(msg.is_request());
    assert_eq!(head.call_id, "wsinv.ndaksdj@192.0.2.1");
    assert_eq!((head.cseq, head.cseq_method), (9, Method::Invite));
    assert_eq!(head.max_forwards, 68);
    assert_eq!(head.to_tag.as_deref(), Some("1918181833n"));
    assert_eq!(head.from_tag.as_deref(), Some("98asjd8"));
    assert_eq!(head.via.transport, "UDP");
    assert_eq!(head.via.sent_by(), "192.0.2.2");
    assert_eq!(head.via.branch.as_deref(), Some("390skdjuw"));
    assert!(msg.body().starts_with(b"v=0\r\n"));
}

#[test]
fn a_semicolon_in_the_request_uri_user_part_is_valid() {
    // RFC 4475 3.1.1.10 (semiuri).
    let (msg, head) = parse(&torture(include_str!("../tests/torture/semiuri.txt"))).unwrap();
    let SipMessage::Request(req) = msg else {
        panic!("a request")
    };
    assert_eq!(head.call_id, "semiuri.0ha0isndaksdj");
    assert_eq!(
        request_user(&req).as_deref(),
        Some("user;par=u%40example.net")
    );
    let dotted = INVITE.replace("sip:service@", "sip:j.doe@");
    let (SipMessage::Request(req), _) = parse(dotted.as_bytes()).unwrap() else {
        panic!("a request")
    };
    assert_eq!(request_user(&req).as_deref(), Some("j.doe"));
}

#[test]
fn conflicting_content_lengths_are_refused_on_datagrams_and_streams() {
    let mcl = torture(include_str!("../tests/torture/mcl01.txt"));
    assert_eq!(parse(&mcl).unwrap_err(), ParseError::BadContentLength);
    assert_eq!(
        frame_stream(&mcl).unwrap_err(),
        ParseError::BadContentLength
    );
    // Even when both say the same, two Content-Lengths are one too many.
    let twice = INVITE.replace("Content-Length: 4\r\n", "Content-Length: 4\r\nl: 4\r\n");
    assert_eq!(
        parse(twice.as_bytes()).unwrap_err(),
        ParseError::BadContentLength
    );
}

#[test]
fn single_instance_headers_may_not_repeat() {
    let dup = torture(include_str!("../tests/torture/dup_callid.txt"));
    assert_eq!(parse(&dup).unwrap_err(), ParseError::Repeated("Call-ID"));
    for (name, line) in [
        ("CSeq", "CSeq: 2 INVITE\r\n"),
        ("From", "From: <sip:x@192.0.2.9>;tag=2\r\n"),
        ("To", "To: <sip:y@127.0.0.1>\r\n"),
        ("Max-Forwards", "Max-Forwards: 9\r\n"),
    ] {
        let twice = INVITE.replace("Contact:", &format!("{line}Contact:"));
        assert_eq!(
            parse(twice.as_bytes()).unwrap_err(),
            ParseError::Repeated(name),
            "{name}"
        );
    }
}

#[test]
fn another_sip_version_is_505_and_the_400_says_only_bad_request() {
    let bad = torture(include_str!("../tests/torture/badvers.txt"));
    let err = parse(&bad).unwrap_err();
    assert_eq!(err, ParseError::Version);
    let reply = String::from_utf8(raw_reply(&bad, &err, "edge").unwrap().to_vec()).unwrap();
    assert!(
        reply.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
        "{reply}"
    );
    // A folded header is copied whole into the fallback 400, and the reason phrase
    // is "Bad Request", never the parser's words or the request's bytes.
    let folded = "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\n \
;branch=z9hG4bKfold\r\nFrom: <sip:c@192.0.2.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n\
Call-ID: fold1\r\nCSeq: 1\r\n INVITE\r\nMax-Forwards: 70\r\nContact: <<<>>>\r\n\
Content-Length: 0\r\n\r\n";
    let err = ParseError::Syntax("internal words <<<>>>".into());
    let reply =
        String::from_utf8(raw_reply(folded.as_bytes(), &err, "edge").unwrap().to_vec()).unwrap();
    assert!(reply.starts_with("SIP/2.0 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.contains("\r\nVia: SIP/2.0/UDP 192.0.2.1:5060 ;branch=z9hG4bKfold\r\n"),
        "{reply}"
    );
    assert!(reply.contains("\r\nCSeq: 1 INVITE\r\n"), "{reply}");
    assert!(
        !reply.contains("internal") && !reply.contains("<<<"),
        "{reply}"
    );
}

#[test]
fn no_fallback_reply_the_edge_could_not_read_itself() {
    // Found by fuzzing (fuzz/ sip_message): an unreadable Via was echoed.
    let bad = "OPTIONS sip:t@example.org SIP/7.0\r\nVia:     SIP/7.0/U:a@127.0.0.1>;tag=f1\r\n\
From: <sip:a@example.com>;tag=q\r\nTo: <sip:t@example.org>\r\nCall-ID: v1\r\nCSeq: 1 OPTIONS\r\n\
l: 0\r\n\r\n";
    let err = parse(bad.as_bytes()).unwrap_err();
    assert_eq!(raw_reply(bad.as_bytes(), &err, "edge"), None);
}

#[test]
fn invalid_torture_messages_are_refused_and_answered_when_answerable() {
    // RFC 4475 §3.1.2-style invalid messages: (file, answer the edge may send).
    for (name, want) in [
        ("ncl.txt", Some(400)),      // negative Content-Length
        ("clerr.txt", Some(400)),    // Content-Length larger than the datagram
        ("ltgtruri.txt", Some(400)), // Request-URI in <>
        ("lwsruri.txt", Some(400)),  // whitespace inside the Request-URI
        ("scalar02.txt", Some(400)), // CSeq and Max-Forwards out of range
        ("insuf.txt", None),         // no From, To or Call-ID: nothing to answer with
        ("mcl01.txt", Some(400)),
        ("dup_callid.txt", Some(400)),
    ] {
        let path =
            std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
                .join("tests/torture")
                .join(name);
        let data = torture(&std::fs::read_to_string(path).unwrap());
        let err = parse(&data).expect_err(name);
        let reply = raw_reply(&data, &err, "edge");
        let code = reply.as_ref().map(|r| {
            let text = std::str::from_utf8(r).unwrap();
            assert!(
                text.contains("\r\nVia: ") && text.ends_with("\r\n\r\n"),
                "{text}"
            );
            text.split(' ').nth(1).unwrap().parse::<u16>().unwrap()
        });
        assert_eq!(code, want, "{name}: {err}");
    }
}

#[test]
fn control_characters_are_never_echoed_into_a_fallback_reply() {
    // Found by fuzzing (fuzz/ sip_message): a bare LF inside a value was copied
    // into the reply, splitting its header block.
    let bad =
        "INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKx\r\n\
From: <sip:c@192.0.2.9>;tag=1\r\nTo: <sip:1001@127.0.0.1>\nInjected: yes\r\nCall-ID: c\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
    let err = parse(bad.as_bytes()).unwrap_err();
    assert_eq!(raw_reply(bad.as_bytes(), &err, "edge"), None);
}

/// A file of `tests/torture/` as wire bytes (`mpart01.txt` is stored byte-exact).
fn torture_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/torture")
        .join(format!("{name}.txt"));
    let raw = std::fs::read(&path).unwrap();
    if raw.windows(2).any(|w| w == b"\r\n") {
        return raw;
    }
    torture(std::str::from_utf8(&raw).unwrap())
}

#[test]
fn rfc_4475_valid_messages_parse() {
    // §3.1.1 (wsinv and semiuri have their own tests above; intmeth and esc02 are
    // unknown methods, answered 501 from the raw bytes).
    for name in [
        "esc01",
        "escnull",
        "lwsdisp",
        "longreq",
        "dblreq",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
    ] {
        let data = torture_file(name);
        let (msg, head) = parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!head.call_id.is_empty(), "{name}");
        if name == "longreq" {
            assert_eq!(head.via.host, "sip33.example.com");
        }
        if name == "mpart01" {
            assert_eq!(msg.body().len(), 553, "the binary body is kept whole");
        }
    }
    for name in ["intmeth", "esc02"] {
        let data = torture_file(name);
        let err = parse(&data).unwrap_err();
        let reply = raw_reply(&data, &err, "edge").unwrap_or_else(|| panic!("{name}: no reply"));
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("SIP/2.0 501 ") && text.contains("\r\nAllow: "),
            "{name}: {text}"
        );
    }
}

#[test]
fn rfc_4475_grammar_errors_the_typed_parser_let_through_are_400() {
    // §3.1.2: each of these used to parse (and an INVITE was routed as a call).
    for name in [
        "badinv01", "quotbal", "trws", "baddate", "regbadct", "badaspec", "baddn",
    ] {
        let data = torture_file(name);
        let err = parse(&data).expect_err(name);
        assert!(matches!(err, ParseError::Syntax(_)), "{name}: {err:?}");
        let reply = raw_reply(&data, &err, "edge").unwrap_or_else(|| panic!("{name}: no reply"));
        assert!(reply.starts_with(b"SIP/2.0 400 "), "{name}");
    }
}

#[test]
fn addresses_real_peers_send_stay_valid() {
    for (value, list) in [
        ("\"Alice Smith\" <sip:alice@example.com>;tag=1", false),
        ("Alice Smith <sip:alice@example.com>;tag=1", false),
        ("<sip:1001@127.0.0.1:5060;transport=tcp>", false),
        ("sip:a@b;tag=9", false),
        ("\"a<b,c\" <sip:x@y>", false),
        (
            "<sip:k3l2@abc.invalid;transport=ws>;+sip.ice;reg-id=1;\
+sip.instance=\"<urn:uuid:7e7c-11>\";expires=600",
            true,
        ),
        ("<sip:a@[2001:db8::1]:5070>;q=0.7, <sip:b@h>;q=0.3", true),
    ] {
        assert!(valid_addresses(value, list), "{value}");
    }
    for value in [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport",
        "SIP/2.0/WSS abc.invalid;branch=z9hG4bK2",
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK3;received=[2001:db8::2]",
        "SIP/2.0/TCP a;branch=z9hG4bK4, SIP/2.0/UDP b:5060;branch=z9hG4bK5",
    ] {
        assert!(valid_via_list(value), "{value}");
    }
    assert!(valid_rfc1123_date("Sat, 15 Oct 2005 04:44:56 GMT"));
    assert!(!valid_rfc1123_date("Fri, 01 Jan 2010 16:00:00 EST"));
}

#[test]
fn percent_escapes_decode_and_malformed_ones_are_refused() {
    assert_eq!(
        percent_decode("abc%40h%3Bto-tag%3D1").as_deref(),
        Some("abc@h;to-tag=1")
    );
    assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("caf\u{e9}"));
    for bad in ["100%", "%4", "%zz", "%FF"] {
        assert_eq!(percent_decode(bad), None, "{bad}");
    }
}
