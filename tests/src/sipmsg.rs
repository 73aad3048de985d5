//! Hand-written SIP for tests that play a phone or trunk on a stream (TLS,
//! WebSocket): header lookup, status codes, responses built from a request, and
//! digest `Authorization` values.

use sip::digest::{self, Algorithm, Challenge};

/// The value of the first header `name` (case-insensitive), or "".
pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

/// The header name of line `l`, lower case ("" when it has none).
pub fn header_name(l: &str) -> String {
    l.split(':')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A response's status code (0 for a request).
pub fn status(msg: &str) -> u16 {
    msg.strip_prefix("SIP/2.0 ")
        .and_then(|r| r.split(' ').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A response to `req`: its Via, From, Call-ID, CSeq and Record-Route, To with
/// our tag, `contact`, and `body` as SDP when not empty.
pub fn answer(req: &str, code: u16, contact: &str, body: &str) -> String {
    let reason = match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        _ => "Other",
    };
    let mut r = format!("SIP/2.0 {code} {reason}\r\n");
    for l in req.lines() {
        let name = header_name(l);
        if matches!(
            name.as_str(),
            "via" | "from" | "call-id" | "cseq" | "record-route"
        ) {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    let to = header(req, "To");
    if to.contains("tag=") {
        r.push_str(&format!("To: {to}\r\n"));
    } else {
        r.push_str(&format!("To: {to};tag=ph-tag\r\n"));
    }
    r.push_str(&format!("Contact: {contact}\r\n"));
    if body.is_empty() {
        r.push_str("Content-Length: 0\r\n\r\n");
    } else {
        r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    r
}

/// The `Authorization` answering the MD5 challenge of 401 `challenge` for
/// `user`/`password`, a REGISTER to `uri`, nonce-count 1.
pub fn register_authorization(challenge: &str, user: &str, password: &str, uri: &str) -> String {
    let ch = Challenge::parse(header(challenge, "WWW-Authenticate")).expect("a digest challenge");
    let resp = digest::response(
        Algorithm::Md5,
        user,
        &ch.realm,
        password,
        "REGISTER",
        uri,
        &ch.nonce,
        Some(("00000001", "c0ffee")),
    );
    format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        ch.realm, ch.nonce
    )
}

/// A plain G.711 answer/offer on 127.0.0.1:`port`.
pub fn pcmu_sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
}
