//! RFC 4475 §3.1 (every valid and invalid parser test message) sent to the real edge
//! over UDP and over TCP: valid requests are answered with a response echoing their
//! Via, Call-ID and CSeq (the status depends on what the request asks of a B2BUA),
//! invalid ones get the 4xx/5xx the RFC names or are dropped, stray responses are
//! absorbed silently, and the edge answers OPTIONS after every one of them.

use edge_tests::Edge;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// What the edge must do with a message.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// A final response with this status.
    Status(u16),
    /// Nothing back (a stray response, or a request that names nobody to answer).
    Nothing,
}
use Want::*;

/// §3.1.1 (valid) and §3.1.2 (invalid), in the RFC's order, with the edge's answer.
/// Files are the RFC's messages as printed (LF line ends, sent as CRLF), except
/// `mpart01.txt` whose binary body is stored byte-exact with its CRLFs.
const SUITE: &[(&str, Want, &str)] = &[
    // 3.1.1 valid
    (
        "wsinv",
        Status(481),
        "3.1.1.1 in-dialog INVITE (To tag) for no dialog",
    ),
    (
        "intmeth",
        Status(501),
        "3.1.1.2 unknown method: 501 with Allow",
    ),
    (
        "esc01",
        Status(404),
        "3.1.1.3 escaped user part: no such number",
    ),
    (
        "escnull",
        Status(401),
        "3.1.1.4 REGISTER: challenged (digest)",
    ),
    (
        "esc02",
        Status(501),
        "3.1.1.5 RE%47IST%45R is an unknown method",
    ),
    ("lwsdisp", Status(200), "3.1.1.6 no LWS after display name"),
    ("longreq", Status(404), "3.1.1.7 long values, 34 Vias"),
    (
        "dblreq",
        Status(401),
        "3.1.1.8 REGISTER (challenged), then bytes a datagram ignores",
    ),
    ("semiuri", Status(200), "3.1.1.9 ; in the user part"),
    ("transports", Status(200), "3.1.1.10 unknown Via transports"),
    (
        "mpart01",
        Status(405),
        "3.1.1.11 multipart binary MESSAGE: 405 + Allow",
    ),
    (
        "unreason",
        Nothing,
        "3.1.1.12 response, unusual reason phrase",
    ),
    (
        "noreason",
        Nothing,
        "3.1.1.13 response, empty reason phrase",
    ),
    // 3.1.2 invalid
    (
        "badinv01",
        Status(400),
        "3.1.2.1 extraneous Via/Contact separators",
    ),
    (
        "clerr",
        Status(400),
        "3.1.2.2 Content-Length larger than message",
    ),
    ("ncl", Status(400), "3.1.2.3 negative Content-Length"),
    ("scalar02", Status(400), "3.1.2.4 overlarge request scalars"),
    (
        "scalarlg",
        Nothing,
        "3.1.2.5 response with overlarge scalars",
    ),
    ("quotbal", Status(400), "3.1.2.6 unterminated quoted string"),
    ("ltgtruri", Status(400), "3.1.2.7 <> around Request-URI"),
    ("lwsruri", Status(400), "3.1.2.8 LWS inside Request-URI"),
    (
        "lwsstart",
        Status(400),
        "3.1.2.9 several SP in Request-Line",
    ),
    ("trws", Status(400), "3.1.2.10 SP after SIP/2.0"),
    (
        "escruri",
        Status(400),
        "3.1.2.11 escaped headers in Request-URI",
    ),
    ("baddate", Status(400), "3.1.2.12 Date not in GMT"),
    (
        "regbadct",
        Status(400),
        "3.1.2.13 Contact URI with ? unbracketed",
    ),
    ("badaspec", Status(400), "3.1.2.14 LWS inside <addr-spec>"),
    (
        "baddn",
        Status(400),
        "3.1.2.15 unquoted display name with ,",
    ),
    ("badvers", Status(505), "3.1.2.16 SIP/7.0"),
    ("mismatch01", Status(400), "3.1.2.17 CSeq method differs"),
    (
        "mismatch02",
        Status(501),
        "3.1.2.18 unknown method, CSeq differs",
    ),
    ("bigcode", Nothing, "3.1.2.19 response status 4294967301"),
];

fn file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../sip/tests/torture")
        .join(format!("{name}.txt"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if raw.windows(2).any(|w| w == b"\r\n") {
        return raw; // stored byte-exact
    }
    let mut wire = Vec::with_capacity(raw.len() + 64);
    for &b in &raw {
        if b == b'\n' {
            wire.push(b'\r');
        }
        wire.push(b);
    }
    // `@LEN@` (files of this suite that were edited) is the body's length.
    let Some(head_end) = wire.windows(4).position(|w| w == b"\r\n\r\n") else {
        return wire;
    };
    let body_len = (wire.len() - head_end - 4).to_string();
    let head = String::from_utf8_lossy(&wire[..head_end]).replace("@LEN@", &body_len);
    let mut out = head.into_bytes();
    out.extend_from_slice(&wire[head_end..]);
    out
}

/// The message with `;rport` added to its top Via (RFC 3581), so a UDP answer
/// comes back to this socket whatever host the Via names; nothing else changes.
fn with_rport(msg: &[u8]) -> Vec<u8> {
    let head_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len());
    let head = String::from_utf8_lossy(&msg[..head_end]).to_string();
    let lines: Vec<&str> = head.split("\r\n").collect();
    let Some(top) = lines.iter().position(|l| {
        let name = edge_tests::sipmsg::header_name(l);
        !l.starts_with([' ', '\t']) && (name == "via" || name == "v")
    }) else {
        return msg.to_vec();
    };
    // The header's logical line: it and its continuation lines.
    let mut last = top;
    while lines
        .get(last + 1)
        .is_some_and(|l| l.starts_with([' ', '\t']))
    {
        last += 1;
    }
    let value: String = lines[top..=last].join(" ");
    if value.to_ascii_lowercase().contains("rport") {
        return msg.to_vec();
    }
    let first_value = value.split(',').next().unwrap_or(&value).trim_end();
    let mut out: Vec<String> = lines[..top].iter().map(|s| s.to_string()).collect();
    let rest = &value[first_value.len()..];
    out.push(format!("{first_value};rport{rest}"));
    out.extend(lines[last + 1..].iter().map(|s| s.to_string()));
    let mut wire = out.join("\r\n").into_bytes();
    wire.extend_from_slice(&msg[head_end..]);
    wire
}

/// The first value of a header (any of `names`, compact forms included), unfolded.
fn header(msg: &str, names: &[&str]) -> Option<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if !names.iter().any(|want| n.trim().eq_ignore_ascii_case(want)) {
            continue;
        }
        let mut value = v.trim().to_string();
        while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
        }
        return Some(value);
    }
    None
}

fn status(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Replies to `sent` until a final one (or `wait` of silence); returns the final,
/// if any. Replies for other Call-IDs (retransmitted finals of earlier INVITEs,
/// which this peer does not ACK) are skipped.
fn final_reply(
    sent: &[u8],
    mut recv: impl FnMut(Duration) -> Option<Vec<u8>>,
    wait: Duration,
) -> Option<String> {
    let sent = String::from_utf8_lossy(sent);
    let call_id = header(&sent, &["call-id", "i"]);
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let reply = String::from_utf8_lossy(&recv(left)?).to_string();
        let theirs = header(&reply, &["call-id", "i"]);
        if status(&reply) >= 200 && (call_id.is_none() || theirs == call_id) {
            return Some(reply);
        }
    }
    None
}

fn check(
    name: &str,
    transport: &str,
    want: Want,
    reply: Option<String>,
    sent: &[u8],
    log: impl Fn() -> String,
) {
    match (want, reply) {
        (Nothing, None) => {}
        (Nothing, Some(r)) => panic!("{name} over {transport}: expected no answer, got\n{r}"),
        (Status(code), None) => panic!(
            "{name} over {transport}: no answer (want {code}); log:\n{}",
            log()
        ),
        (Status(code), Some(r)) => {
            assert_eq!(status(&r), code, "{name} over {transport}:\n{r}");
            let sent = String::from_utf8_lossy(sent);
            // An answer echoes Call-ID and CSeq, and carries a To tag (§8.2.6.2).
            for names in [&["call-id", "i"][..], &["cseq"][..]] {
                if let (Some(a), Some(b)) = (header(&sent, names), header(&r, names)) {
                    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                    assert_eq!(
                        norm(&a),
                        norm(&b),
                        "{name} over {transport}: {names:?} not echoed:\n{r}"
                    );
                }
            }
            assert!(
                header(&r, &["via", "v"]).is_some(),
                "{name} over {transport}: no Via:\n{r}"
            );
            if code == 405 || code == 501 {
                assert!(
                    header(&r, &["allow"]).is_some(),
                    "{name} over {transport}: no Allow:\n{r}"
                );
            }
            let to: String = header(&r, &["to", "t"])
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            assert!(
                to.to_ascii_lowercase().contains(";tag="),
                "{name} over {transport}: no To tag: {to}\n{r}"
            );
        }
    }
}

fn options(edge: SocketAddr, via: &str, n: usize) -> String {
    format!(
        "OPTIONS sip:service@{edge} SIP/2.0\r\nVia: {via};branch=z9hG4bKafter{n}\r\n\
From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:service@{edge}>\r\nCall-ID: after-{n}\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn every_rfc_4475_parser_message_over_udp_gets_the_named_answer() {
    let edge = Edge::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 65536];
    for (n, &(name, want, what)) in SUITE.iter().enumerate() {
        let msg = with_rport(&file(name));
        sock.send_to(&msg, edge.sip).unwrap();
        let wait = if want == Nothing { 500 } else { 3000 };
        let reply = final_reply(
            &msg,
            |left| {
                sock.set_read_timeout(Some(left)).unwrap();
                sock.recv_from(&mut buf)
                    .ok()
                    .map(|(len, _)| buf[..len].to_vec())
            },
            Duration::from_millis(wait),
        );
        check(
            &format!("{name} ({what})"),
            "UDP",
            want,
            reply,
            &msg,
            || edge.log_text(),
        );
        if name == "dblreq" {
            // The INVITE after the REGISTER's body (Content-Length 0) is not a
            // message of this datagram (RFC 3261 §18.3): nothing answers it.
            let tail = b"Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\n\r\n";
            let extra = final_reply(
                tail,
                |left| {
                    sock.set_read_timeout(Some(left)).unwrap();
                    sock.recv_from(&mut buf)
                        .ok()
                        .map(|(len, _)| buf[..len].to_vec())
                },
                Duration::from_millis(500),
            );
            assert_eq!(
                extra, None,
                "dblreq: the datagram's trailing INVITE was run"
            );
        }
        // The edge still answers after each.
        let ping = options(edge.sip, &format!("SIP/2.0/UDP {me}"), n);
        sock.send_to(ping.as_bytes(), edge.sip).unwrap();
        let after = final_reply(
            ping.as_bytes(),
            |left| {
                sock.set_read_timeout(Some(left)).unwrap();
                sock.recv_from(&mut buf)
                    .ok()
                    .map(|(len, _)| buf[..len].to_vec())
            },
            Duration::from_secs(3),
        );
        assert_eq!(
            after.as_deref().map(status),
            Some(200),
            "OPTIONS after {name}"
        );
    }
}

#[test]
fn every_rfc_4475_parser_message_over_tcp_gets_the_named_answer() {
    // A message that never completes (clerr's Content-Length runs past what was
    // sent) is closed by the incomplete-message timeout; keep it short here.
    let edge = Edge::start_sip("tcp_message_timeout = \"1s\"\n", "");
    for (n, &(name, want, what)) in SUITE.iter().enumerate() {
        let msg = file(name);
        let mut t = TcpStream::connect(edge.sip).unwrap();
        t.write_all(&msg).unwrap();
        let mut pending: Vec<u8> = Vec::new();
        let reply = final_reply(
            &msg,
            |left| {
                t.set_read_timeout(Some(left)).unwrap();
                loop {
                    if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_string();
                        let len: usize = header(&head, &["content-length", "l"])
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if pending.len() >= end + 4 + len {
                            return Some(pending.drain(..end + 4 + len).collect());
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match t.read(&mut chunk) {
                        Ok(0) | Err(_) => return None,
                        Ok(k) => pending.extend_from_slice(&chunk[..k]),
                    }
                }
            },
            Duration::from_millis(if want == Nothing { 500 } else { 3000 }),
        );
        // On a stream, clerr's Content-Length asks for bytes that never come: the
        // message is incomplete, not bad, until the incomplete-message timeout
        // closes the connection.
        let want = if name == "clerr" { Nothing } else { want };
        check(
            &format!("{name} ({what})"),
            "TCP",
            want,
            reply,
            &msg,
            || edge.log_text(),
        );
        if name == "clerr" {
            t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = [0u8; 512];
            assert!(
                matches!(t.read(&mut rest), Ok(0) | Err(_)),
                "clerr: the incomplete message's connection was not closed"
            );
        }
        let mut t = TcpStream::connect(edge.sip).unwrap();
        let me = t.local_addr().unwrap();
        t.write_all(options(edge.sip, &format!("SIP/2.0/TCP {me}"), n).as_bytes())
            .unwrap();
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = vec![0u8; 4096];
        let k = t.read(&mut got).unwrap_or(0);
        assert_eq!(
            status(&String::from_utf8_lossy(&got[..k])),
            200,
            "OPTIONS after {name}"
        );
    }
}
