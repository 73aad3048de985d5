//! SIP message framing and the header facts every layer needs, on top of `rsip`.
//!
//! `rsip` parses a whole buffer and treats everything after the blank line as the
//! body, and does not know compact header names. This module frames first
//! (Content-Length, TCP stream splitting, CRLF keep-alives), normalises compact and
//! folded headers, then parses with `rsip` and extracts a [`Head`] once per message.
//! When a request is too broken for `rsip`, [`raw_reply`] still answers it with 400
//! (or 501 for an unknown method) from the raw text when its Via/From/To/Call-ID/CSeq
//! can be found, so the sender is not left retransmitting.

use bytes::Bytes;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response, SipMessage};
use std::fmt::Write as _;

/// Largest message accepted on any transport.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// Why an incoming message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    #[error("no blank line ends the headers")]
    NoHeaderEnd,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("body shorter than Content-Length ({have} < {want})")]
    Truncated { have: usize, want: usize },
    #[error("unparseable: {0}")]
    Syntax(String),
    #[error("missing or invalid mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("unknown method")]
    UnknownMethod,
    #[error("not SIP/2.0")]
    Version,
    #[error("header {0} appears more than once")]
    Repeated(&'static str),
    #[error("Request-URI scheme is not sip or sips")]
    Scheme,
}

/// The facts of a message that transactions and dialogs are matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub via: Via,
    /// Max-Forwards of a request (70 assumed when absent).
    pub max_forwards: u32,
}

/// The top Via header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    pub rport: bool,
}

impl Via {
    /// `host:port` as written (the sent-by), used in server transaction keys.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host, p),
            None => self.host.clone(),
        }
    }

    /// Parse the first value of a Via header.
    pub fn parse_value(value: &str) -> Option<Via> {
        // Only the first value of a comma-separated Via list is the top one.
        let value = value.split(',').next()?.trim();
        // LWS is allowed around the slashes of `SIP / 2.0 / UDP` (RFC 4475 wsinv).
        let squeezed;
        let value = if value.contains(|c: char| c.is_ascii_whitespace()) {
            squeezed = squeeze_slashes(value);
            squeezed.as_str()
        } else {
            value
        };
        let mut parts = value.splitn(2, |c: char| c.is_ascii_whitespace());
        let proto = parts.next()?;
        let rest = parts.next()?.trim_start();
        let transport = proto.rsplit('/').next()?.to_ascii_uppercase();
        let mut params = rest.split(';');
        let sent_by = params.next()?.trim();
        let (host, port) = split_host_port(sent_by)?;
        let mut branch = None;
        let mut rport = false;
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "branch" => branch = Some(v.trim().to_string()),
                "rport" => rport = true,
                _ => {}
            }
        }
        Some(Via {
            transport,
            host,
            port,
            branch,
            rport,
        })
    }
}

/// `value` without the whitespace on either side of each `/`.
fn squeeze_slashes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_ws = false;
    for c in value.chars() {
        if c.is_ascii_whitespace() {
            pending_ws = true;
            continue;
        }
        if pending_ws && c != '/' && !out.ends_with('/') && !out.is_empty() {
            out.push(' ');
        }
        pending_ws = false;
        out.push(c);
    }
    out
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None if !s.is_empty() => Some((s.to_string(), None)),
        None => None,
    }
}

/// Value of the `tag` parameter of a From/To header value.
pub fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map(|(_, p)| p).unwrap_or(""),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
    })
}

/// The `<uri>` (or bare URI) of a From/To/Contact/Route value.
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// `s` with its `%XX` escapes decoded (RFC 3986 §2.1): a URI's user part,
/// password or header value. `None`: a `%` not followed by two hex digits, or
/// the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The user part of the URI of a From/To/Contact value (`""` when it has none):
/// an address of record's user, an agent id.
pub fn user_of(value: &str) -> &str {
    uri_of(value)
        .split_once(':')
        .map(|(_, r)| r)
        .and_then(|r| r.split_once('@').map(|(u, _)| u))
        .unwrap_or("")
}

/// The user part of a request's `sip:`/`sips:` Request-URI as written (a `;` the
/// parser had to escape is given back as `;`). Read from the URI's text: `rsip`
/// takes a user part containing `.` for a host name.
pub fn request_user(req: &Request) -> Option<String> {
    let uri = req.uri.to_string();
    let (scheme, after) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let at = after.rfind('@')?;
    Some(after[..at].replace("%3B", ";"))
}

/// Where the headers end (index just past the blank line), if they do.
fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Content-Length from raw header bytes (also the compact `l:`). More than one
/// Content-Length is an error even when they agree: on a stream, a peer that reads
/// the other one would frame a different message (request smuggling).
fn raw_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| ParseError::Syntax("headers are not UTF-8".into()))?;
    let mut found = None;
    for line in text.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                if found.is_some() {
                    return Err(ParseError::BadContentLength);
                }
                let n = value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| ParseError::BadContentLength)?;
                found = Some(n);
            }
        }
    }
    Ok(found)
}

/// Outcome of looking for one message at the front of a TCP stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes.
    Incomplete,
    /// Leading CRLFs (keep-alive, RFC 5626 §3.5.1) of this length; a double CRLF
    /// ping should be answered with a single CRLF pong.
    KeepAlive { len: usize, ping: bool },
    /// A whole message of this length.
    Message(usize),
}

/// Split a stream: find the next message in `buf`. On TCP, Content-Length is mandatory
/// (RFC 3261 §18.3); its absence frames an empty body.
pub fn frame_stream(buf: &[u8]) -> Result<Frame, ParseError> {
    let crlfs = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if crlfs > 0 {
        return Ok(Frame::KeepAlive {
            len: crlfs,
            ping: crlfs >= 4,
        });
    }
    let Some(end) = header_end(buf) else {
        if buf.len() > MAX_MESSAGE_SIZE {
            return Err(ParseError::TooLarge);
        }
        return Ok(Frame::Incomplete);
    };
    let body = raw_content_length(&buf[..end])?.unwrap_or(0);
    let total = end + body;
    if total > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    if buf.len() < total {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message(total))
}

/// Compact header names (RFC 3261 §7.3.3 and common extensions).
fn expand_compact(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "m" => "Contact",
        "e" => "Content-Encoding",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "f" => "From",
        "s" => "Subject",
        "k" => "Supported",
        "t" => "To",
        "v" => "Via",
        "x" => "Session-Expires",
        _ => return None,
    })
}

/// Rewrite what `rsip` does not read into the equivalent it does, if there is any:
/// compact names, continuation lines (unfolded), whitespace between a header's name
/// and its colon (RFC 3261 §7.3.1 allows it), and `;` in a Request-URI's user part
/// (escaped: the same character, RFC 3261 §19.1.4).
fn normalise_headers(head: &str) -> Option<String> {
    let first = head.split("\r\n").next().unwrap_or("");
    let first_fixed = escape_user_semicolons(first);
    let needs = first_fixed.is_some()
        || head.split("\r\n").skip(1).any(|l| {
            l.starts_with([' ', '\t'])
                || l.split_once(':').is_some_and(|(n, _)| {
                    n.ends_with([' ', '\t']) || expand_compact(n.trim()).is_some()
                })
        });
    if !needs {
        return None;
    }
    let mut out = String::with_capacity(head.len() + 64);
    for (i, line) in head.split("\r\n").enumerate() {
        if i == 0 {
            out.push_str(first_fixed.as_deref().unwrap_or(line));
            continue;
        }
        if line.starts_with([' ', '\t']) {
            out.push(' ');
            out.push_str(line.trim_start());
            continue;
        }
        out.push_str("\r\n");
        match line.split_once(':') {
            Some((n, v)) => {
                let n = n.trim();
                out.push_str(expand_compact(n).unwrap_or(n));
                out.push(':');
                out.push_str(v);
            }
            None => out.push_str(line),
        }
    }
    Some(out)
}

/// A request line whose `sip:`/`sips:` URI has `;` in its user part, with those
/// escaped as `%3B`; `None` when there is nothing to change.
fn escape_user_semicolons(line: &str) -> Option<String> {
    let mut parts = line.splitn(3, ' ');
    let (method, uri, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (scheme, after) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let at = after.rfind('@')?;
    let user = &after[..at];
    if !user.contains(';') {
        return None;
    }
    Some(format!(
        "{method} {scheme}:{}{} {rest}",
        user.replace(';', "%3B"),
        &after[at..]
    ))
}

/// Parse one message (a UDP datagram or a framed TCP message).
pub fn parse(data: &[u8]) -> Result<(SipMessage, Head), ParseError> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    let end = header_end(data).ok_or(ParseError::NoHeaderEnd)?;
    let head_bytes = &data[..end];
    let body = &data[end..];
    let body = match raw_content_length(head_bytes)? {
        Some(n) if n > body.len() => {
            return Err(ParseError::Truncated {
                have: body.len(),
                want: n,
            })
        }
        Some(n) => &body[..n],
        None => body,
    };
    let head_text = std::str::from_utf8(head_bytes)
        .map_err(|_| ParseError::Syntax("headers are not UTF-8".into()))?;
    let first = head_text.split("\r\n").next().unwrap_or("");
    // `Method SP Request-URI SP SIP-Version CRLF`: whitespace after the version is
    // a malformed line (RFC 4475 trws), not another version.
    if !first.starts_with("SIP/") && first.ends_with([' ', '\t']) {
        return Err(ParseError::Syntax("request line".into()));
    }
    if !first.starts_with("SIP/2.0 ") && !first.ends_with(" SIP/2.0") {
        return Err(ParseError::Version);
    }
    let mut buf;
    let bytes: &[u8] = match normalise_headers(&head_text[..end - 4]) {
        Some(h) => {
            buf = Vec::with_capacity(h.len() + 4 + body.len());
            buf.extend_from_slice(h.as_bytes());
            buf.extend_from_slice(b"\r\n\r\n");
            buf.extend_from_slice(body);
            &buf
        }
        None if body.len() == data.len() - end => data,
        None => {
            buf = data[..end + body.len()].to_vec();
            &buf
        }
    };
    // rsip's SipMessage parser tries a response first, and its failure formats
    // the whole message into an error string (3 % of the SIP core's time on
    // REGISTERs): the first line already says which one it is.
    let parsed = if first.starts_with("SIP/") {
        rsip::Response::try_from(bytes).map(SipMessage::Response)
    } else {
        rsip::Request::try_from(bytes).map(SipMessage::Request)
    };
    let msg = parsed.map_err(|e| {
        if !first.starts_with("SIP/2.0") {
            let mut parts = first.split(' ');
            let method = parts.next().unwrap_or("");
            if method.parse::<Method>().is_err() {
                return ParseError::UnknownMethod;
            }
            let scheme = parts.next().and_then(|u| u.split_once(':')).map(|(s, _)| s);
            if scheme
                .is_some_and(|s| !s.eq_ignore_ascii_case("sip") && !s.eq_ignore_ascii_case("sips"))
            {
                return ParseError::Scheme;
            }
        }
        ParseError::Syntax(first_line(&e.to_string()))
    })?;
    if matches!(msg, SipMessage::Request(_)) {
        check_request_uri(first)?;
    }
    let head = extract_head(&msg)?;
    if let SipMessage::Request(req) = &msg {
        check_request_grammar(req)?;
    }
    Ok((msg, head))
}

/// Grammar the typed parser lets through but RFC 3261 §25 does not (RFC 4475
/// §3.1.2): empty Via/Contact parameters or list elements (badinv01), an
/// unterminated quoted string (quotbal), whitespace inside `<…>` (badaspec), an
/// unquoted display name that is not tokens (baddn), `?` in an address not enclosed
/// in `<>` (regbadct), and a Date that is not an RFC 1123 GMT date (baddate).
fn check_request_grammar(req: &Request) -> Result<(), ParseError> {
    use rsip::message::HasHeaders;
    let bad = |what: &str| Err(ParseError::Syntax(format!("malformed {what}")));
    for h in req.headers().iter() {
        match h {
            Header::Via(v) if !valid_via_list(v.value()) => return bad("Via"),
            Header::From(v) if !valid_addresses(v.value(), false) => return bad("From"),
            Header::To(v) if !valid_addresses(v.value(), false) => return bad("To"),
            Header::Contact(v) if v.value().trim() != "*" && !valid_addresses(v.value(), true) => {
                return bad("Contact")
            }
            Header::Date(v) if !valid_rfc1123_date(v.value()) => return bad("Date"),
            _ => {}
        }
    }
    Ok(())
}

/// RFC 3261 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// `s` split at `sep` where it is outside quoted strings and `<…>`; `None` when a
/// quoted string or an angle bracket is not closed.
pub fn split_outside(s: &str, sep: char) -> Option<Vec<&str>> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, c) in s.char_indices() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' if !angle => angle = true,
            '>' if angle => angle = false,
            _ if c == sep && !angle => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || angle {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// `;name[=value]` parameters after an address or a Via sent-by: none empty, names
/// are tokens, a `=` has a value.
fn valid_params(params: &[&str]) -> bool {
    params.iter().all(|p| {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        !name.is_empty() && name.chars().all(is_token_char) && value.is_none_or(|v| !v.is_empty())
    })
}

/// Every value of a Via header: `SIP/2.0/transport sent-by *(;param)`, no empty
/// element or parameter.
fn valid_via_list(value: &str) -> bool {
    let Some(values) = split_outside(value, ',') else {
        return false;
    };
    values.iter().all(|v| {
        let Some(parts) = split_outside(v, ';') else {
            return false;
        };
        !parts[0].trim().is_empty() && valid_params(&parts[1..])
    })
}

/// A From/To value (`list` false) or Contact values: each `name-addr` or
/// `addr-spec` with parameters (RFC 3261 §20.10, §25.1).
fn valid_addresses(value: &str, list: bool) -> bool {
    let Some(elements) = split_outside(value, ',') else {
        return false;
    };
    if !list && elements.len() != 1 {
        return false;
    }
    elements.iter().all(|e| valid_address(e.trim()))
}

fn valid_address(e: &str) -> bool {
    let Some(parts) = split_outside(e, ';') else {
        return false;
    };
    let addr = parts[0].trim();
    if !valid_params(&parts[1..]) || addr.is_empty() {
        return false;
    }
    match addr.find('<') {
        // name-addr: [display-name] "<" addr-spec ">"
        Some(open)
            if addr.ends_with('>') && !addr[..open].contains('"') || addr.starts_with('"') =>
        {
            let (display, rest) = if let Some(quoted) = addr.strip_prefix('"') {
                // The quoted string ends at the first unescaped quote.
                let mut escaped = false;
                let Some(end) = quoted.char_indices().find_map(|(i, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        None
                    }
                    '\\' => {
                        escaped = true;
                        None
                    }
                    '"' => Some(i),
                    _ => None,
                }) else {
                    return false;
                };
                ("", quoted[end + 1..].trim_start())
            } else {
                (addr[..open].trim(), &addr[open..])
            };
            let tokens = display
                .split_ascii_whitespace()
                .all(|t| t.chars().all(is_token_char));
            let Some(uri) = rest.strip_prefix('<').and_then(|r| r.strip_suffix('>')) else {
                return false;
            };
            tokens
                && !uri.is_empty()
                && !uri.contains(|c: char| c.is_ascii_whitespace() || c == '<')
        }
        Some(_) => false,
        // addr-spec: a URI with `,`, `?` or `;` must be in `<>` (§20); its `;…`
        // are the header's parameters.
        None => !addr.contains(|c: char| c.is_ascii_whitespace() || c == '?' || c == '>'),
    }
}

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT` (RFC 3261 §20.17: rfc1123-date, GMT only).
fn valid_rfc1123_date(value: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let f: Vec<&str> = value.trim().split(' ').collect();
    let [day, dd, month, yyyy, time, zone] = f.as_slice() else {
        return false;
    };
    let hms: Vec<&str> = time.split(':').collect();
    day.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(dd, 2)
        && MONTHS.contains(month)
        && digits(yyyy, 4)
        && hms.len() == 3
        && hms.iter().all(|p| digits(p, 2))
        && *zone == "GMT"
}

/// The Request-URI as written must be `scheme:…` with a token for a scheme (RFC
/// 3261 §25.1; RFC 4475 ltgtruri, lwsruri): `<sip:…>` or whitespace inside is a
/// bad request (400); a well-formed scheme other than sip/sips is 416.
fn check_request_uri(first_line: &str) -> Result<(), ParseError> {
    let parts: Vec<&str> = first_line.split(' ').collect();
    let [_, uri, _] = parts.as_slice() else {
        return Err(ParseError::Syntax("request line".into()));
    };
    let Some((scheme, _)) = uri.split_once(':') else {
        return Err(ParseError::Syntax("Request-URI".into()));
    };
    let token = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !token {
        return Err(ParseError::Syntax("Request-URI".into()));
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return Err(ParseError::Scheme);
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}

fn extract_head(msg: &SipMessage) -> Result<Head, ParseError> {
    use rsip::message::HasHeaders;
    let mut call_id = None;
    let mut cseq = None;
    let mut from_tag = None;
    let mut from_seen = false;
    let mut to_tag = None;
    let mut to_seen = false;
    let mut via = None;
    let mut max_forwards = 70;
    let mut max_forwards_seen = false;
    let once = |seen: bool, name: &'static str| {
        if seen {
            Err(ParseError::Repeated(name))
        } else {
            Ok(())
        }
    };
    for h in msg.headers().iter() {
        match h {
            Header::CallId(v) => {
                once(call_id.is_some(), "Call-ID")?;
                call_id = Some(v.value().trim().to_string());
            }
            Header::CSeq(v) => {
                once(cseq.is_some(), "CSeq")?;
                let mut it = v.value().split_ascii_whitespace();
                let n = it.next().and_then(|n| n.parse::<u32>().ok());
                let m = it.next().and_then(|m| m.parse::<Method>().ok());
                match (n, m) {
                    (Some(n), Some(m)) => cseq = Some((n, m)),
                    _ => return Err(ParseError::MissingHeader("CSeq")),
                }
            }
            Header::From(v) => {
                once(from_seen, "From")?;
                from_seen = true;
                from_tag = tag_of(v.value()).map(str::to_string);
            }
            Header::To(v) => {
                once(to_seen, "To")?;
                to_seen = true;
                to_tag = tag_of(v.value()).map(str::to_string);
            }
            Header::Via(v) if via.is_none() => {
                via = Some(Via::parse_value(v.value()).ok_or(ParseError::MissingHeader("Via"))?);
            }
            Header::MaxForwards(v) => {
                once(max_forwards_seen, "Max-Forwards")?;
                max_forwards_seen = true;
                max_forwards = v
                    .value()
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::MissingHeader("Max-Forwards"))?;
            }
            _ => {}
        }
    }
    let call_id = call_id
        .filter(|c| !c.is_empty())
        .ok_or(ParseError::MissingHeader("Call-ID"))?;
    let (cseq, cseq_method) = cseq.ok_or(ParseError::MissingHeader("CSeq"))?;
    if !from_seen {
        return Err(ParseError::MissingHeader("From"));
    }
    if !to_seen {
        return Err(ParseError::MissingHeader("To"));
    }
    let via = via.ok_or(ParseError::MissingHeader("Via"))?;
    if let SipMessage::Request(r) = msg {
        if r.method != cseq_method && r.method != Method::Ack && r.method != Method::Cancel {
            return Err(ParseError::Syntax(
                "CSeq method differs from request method".into(),
            ));
        }
    }
    Ok(Head {
        call_id,
        cseq,
        cseq_method,
        from_tag,
        to_tag,
        via,
        max_forwards,
    })
}

/// The reason phrase of a status code.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Request Failure",
            5 => "Server Failure",
            _ => "Global Failure",
        },
    }
}

/// A status code with its proper reason phrase.
pub fn status(code: u16) -> rsip::StatusCode {
    rsip::StatusCode::Other(code, reason(code).to_string())
}

/// The methods the edge implements, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, REFER";

/// Build a response to `req` (RFC 3261 §8.2.6): Via, From, Call-ID and CSeq copied,
/// To copied with `to_tag` added when it has none.
pub fn response(req: &Request, code: u16, to_tag: Option<&str>, server: &str) -> Response {
    use rsip::message::HasHeaders;
    let mut headers: Vec<Header> = Vec::with_capacity(8);
    for h in req.headers().iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(t) => match to_tag {
                Some(tag) if tag_of(t.value()).is_none() && code != 100 => headers.push(
                    rsip::headers::To::new(format!("{};tag={tag}", t.value().trim_end())).into(),
                ),
                _ => headers.push(h.clone()),
            },
            Header::RecordRoute(_) if (101..300).contains(&code) => headers.push(h.clone()),
            Header::Timestamp(_) if code == 100 => headers.push(h.clone()),
            _ => {}
        }
    }
    headers.push(rsip::headers::Server::new(server).into());
    headers.push(rsip::headers::ContentLength::new("0").into());
    Response {
        status_code: status(code),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: vec![],
    }
}

/// A To tag for a response sent without a transaction: derived from the request, so
/// each retransmission gets the same one (RFC 3261 §8.2.7).
pub fn stateless_tag(head: &Head) -> String {
    let cseq = head.cseq.to_string();
    let branch = head.via.branch.as_deref().unwrap_or("");
    let from = head.from_tag.as_deref().unwrap_or("");
    hash_tag(&[&head.call_id, &cseq, branch, from])
}

/// FNV-1a of `parts` as 16 hex digits.
fn hash_tag(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(b'\n')) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A `sip:` or `sips:` URI (the only schemes the edge serves).
pub fn is_sip_uri(uri: &rsip::Uri) -> bool {
    let text = uri.to_string();
    let scheme = text.split_once(':').map_or("", |(s, _)| s);
    matches!(uri.scheme, Some(rsip::Scheme::Sip | rsip::Scheme::Sips))
        && (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
}

/// Give `resp` a To tag if it has none: `tag` if set (the transaction's earlier
/// one), else a new one from `new` (remembered in `tag`). A tag the response already
/// has is remembered too.
pub fn ensure_to_tag(resp: &mut Response, tag: &mut Option<String>, new: impl FnOnce() -> String) {
    for h in resp.headers.iter_mut() {
        if let Header::To(t) = h {
            match tag_of(t.value()) {
                Some(have) => {
                    if tag.is_none() {
                        *tag = Some(have.to_string());
                    }
                }
                None => {
                    let tag = tag.get_or_insert_with(new);
                    *t = rsip::headers::To::new(format!("{};tag={tag}", t.value().trim_end()));
                }
            }
            return;
        }
    }
}

/// Add `extra` headers before the final Content-Length.
pub fn add_headers(resp: &mut Response, extra: Vec<Header>) {
    insert_headers(&mut resp.headers, extra);
}

/// Put `extra` before Content-Length (at the end when there is none).
pub fn insert_headers(headers: &mut rsip::Headers, extra: Vec<Header>) {
    if extra.is_empty() {
        return;
    }
    let mut h: Vec<Header> = std::mem::take(headers).into_iter().collect();
    let at = h
        .iter()
        .rposition(|h| matches!(h, Header::ContentLength(_)))
        .unwrap_or(h.len());
    h.splice(at..at, extra);
    *headers = h.into();
}

/// Replace the body and set Content-Length / Content-Type accordingly.
pub fn set_body(headers: &mut rsip::Headers, body: &[u8], content_type: Option<&str>) -> Vec<u8> {
    headers.retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_)));
    if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
        headers.push(rsip::headers::ContentType::new(ct).into());
    }
    headers.push(rsip::headers::ContentLength::new(body.len().to_string()).into());
    body.to_vec()
}

/// Serialise a message for the wire.
pub fn to_bytes(msg: &SipMessage) -> Bytes {
    display_bytes(msg)
}

/// Serialise anything displayable into a buffer of exactly its length. A UDP
/// server transaction keeps its last response for Timer J (32 s) to answer
/// retransmissions: grown by `to_string`'s doubling, a 450-byte 401 would hold
/// 512 or 1024 bytes for that time, and start from 8 bytes with seven copies on
/// the way. One buffer big enough for most messages, then trimmed to size.
pub fn display_bytes<M: std::fmt::Display + ?Sized>(m: &M) -> Bytes {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(1024);
    write!(s, "{m}").expect("a Display implementation returned an error");
    Bytes::from(s.into_bytes().into_boxed_slice())
}

/// Build a 400 (or 501 for an unknown method) from the raw text of a request that
/// could not be parsed, when its Via, From, To, Call-ID and CSeq lines can be found.
/// Responses and ACKs never get a reply.
pub fn raw_reply(data: &[u8], err: &ParseError, server: &str) -> Option<Bytes> {
    // Only the header block is read (a binary body need not be UTF-8).
    let head = header_end(data).map_or(data, |end| &data[..end]);
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let method = first.split(' ').next()?;
    if first.starts_with("SIP/") || method.eq_ignore_ascii_case("ACK") || method.is_empty() {
        return None;
    }
    let code = match err {
        ParseError::UnknownMethod => 501,
        ParseError::Version => 505,
        ParseError::Scheme => 416,
        _ => 400,
    };
    // Unfold: a continuation line belongs to the header above it.
    let mut unfolded: Vec<String> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        match unfolded.last_mut() {
            Some(prev) if line.starts_with([' ', '\t']) => {
                prev.push(' ');
                prev.push_str(line.trim_start());
            }
            _ => unfolded.push(line.to_string()),
        }
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in &unfolded {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let name = expand_compact(name).unwrap_or(name);
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "via" => vias.push(value),
            "from" => from = Some(value),
            "to" => to = Some(value),
            "call-id" => call_id = Some(value),
            "cseq" => cseq = Some(value),
            _ => {}
        }
    }
    if vias.is_empty() {
        return None;
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    // Control characters (a bare CR or LF inside a value, found by fuzzing) would be
    // echoed into the reply's header block: such a request gets no answer.
    // A control character escaped in a quoted string (`"BEL:\<07>"`, RFC 4475
    // intmeth) is valid and echoed; CR and LF never are.
    let clean = |v: &str| {
        let mut prev = ' ';
        v.chars().all(|c| {
            let ok = !c.is_control() || c == '\t' || (prev == '\\' && c != '\r' && c != '\n');
            prev = c;
            ok
        })
    };
    if !vias
        .iter()
        .chain([&from, &to, &call_id, &cseq])
        .all(|v| clean(v))
    {
        return None;
    }
    let mut out = String::with_capacity(512);
    // The reason phrase is the standard one: the parser's detail is logged by the
    // caller, never echoed (it may quote the request's bytes).
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", reason(code));
    for v in &vias {
        let _ = write!(out, "Via: {v}\r\n");
    }
    // A stateless reply still needs a To tag (RFC 3261 §8.2.6.2), the same one for
    // each retransmission of the request (§8.2.7): derived from the request.
    let to = if tag_of(to).is_some() {
        to.to_string()
    } else {
        format!("{to};tag={}", hash_tag(&[vias[0], from, call_id, cseq]))
    };
    let _ = write!(
        out,
        "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
    );
    if code == 501 {
        let _ = write!(out, "Allow: {ALLOW}\r\n");
    }
    let _ = write!(out, "Server: {server}\r\nContent-Length: 0\r\n\r\n");
    // A Via the edge cannot read itself is not echoed: responses travel by Via, so
    // such a request gets no answer. (Other fields are echoed as they came: a CSeq
    // out of range still gets its 400, RFC 4475 scalar02.)
    Via::parse_value(vias[0])?;
    Some(Bytes::from(out))
}

#[cfg(test)]
#[path = "message_tests.rs"]
pub(crate) mod tests;
