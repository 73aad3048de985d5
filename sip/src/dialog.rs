//! SIP dialogs (RFC 3261 §12): identifiers, sequence numbers, route set and remote
//! target of one leg, and the in-dialog requests built from them.

use crate::message::{tag_of, uri_of, Head};
use crate::{Flow, Transport};
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our From/To URI part (`<sip:...>` with display name, no tag).
    pub local_uri: String,
    pub remote_uri: String,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// Route set, in the order Route headers are sent.
    pub route_set: Vec<String>,
    /// Remote Contact URI.
    pub remote_target: String,
    /// Where in-dialog requests go.
    pub flow: Flow,
    /// Our Contact header value.
    pub local_contact: String,
}

/// A From/To value without its `tag` parameter (everything else kept).
pub fn strip_tag(value: &str) -> String {
    let (addr, params) = match value.rfind('>') {
        Some(i) => (&value[..=i], &value[i + 1..]),
        None => match value.find(';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        },
    };
    let kept: Vec<&str> = params
        .split(';')
        .filter(|p| !p.is_empty() && !p.trim().to_ascii_lowercase().starts_with("tag="))
        .collect();
    let mut out = addr.trim().to_string();
    for p in kept {
        out.push(';');
        out.push_str(p.trim());
    }
    out
}

fn header_values<'a>(
    headers: &'a rsip::Headers,
    f: impl Fn(&'a Header) -> Option<&'a str>,
) -> Vec<&'a str> {
    headers.iter().filter_map(f).collect()
}

/// Split comma-separated header values that may contain commas inside `<...>` or quotes.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut cur = String::new();
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn record_routes(headers: &rsip::Headers) -> Vec<String> {
    header_values(headers, |h| match h {
        Header::RecordRoute(r) => Some(r.value()),
        _ => None,
    })
    .into_iter()
    .flat_map(split_list)
    .collect()
}

fn contact_uri(headers: &rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Contact(c) => Some(uri_of(c.value()).to_string()),
        _ => None,
    })
}

/// Resolve a SIP URI to a socket address when its host is an IP literal.
pub fn uri_addr(uri: &str) -> Option<(SocketAddr, Option<Transport>)> {
    let u = rsip::Uri::try_from(uri).ok()?;
    let ip: IpAddr = match &u.host_with_port.host {
        rsip::Host::IpAddr(ip) => *ip,
        rsip::Host::Domain(d) => d.to_string().trim_matches(['[', ']']).parse().ok()?,
    };
    let sips = matches!(u.scheme, Some(rsip::Scheme::Sips));
    let t = match u.transport() {
        Some(rsip::Transport::Tcp) if sips => Some(Transport::Tls),
        Some(rsip::Transport::Tcp) => Some(Transport::Tcp),
        Some(rsip::Transport::Tls) => Some(Transport::Tls),
        Some(rsip::Transport::Udp) => Some(Transport::Udp),
        _ if sips => Some(Transport::Tls),
        _ => None,
    };
    let default_port = t.unwrap_or(Transport::Udp).default_port();
    let port = u.port().map(|p| *p.value()).unwrap_or(default_port);
    Some((SocketAddr::new(ip, port), t))
}

impl Dialog {
    /// The UAS side of a dialog created by an incoming INVITE (§12.1.1).
    pub fn uas(
        req: &Request,
        head: &Head,
        local_tag: String,
        flow: Flow,
        local_contact: String,
    ) -> Dialog {
        let mut from = String::new();
        let mut to = String::new();
        for h in req.headers.iter() {
            match h {
                Header::From(f) => from = strip_tag(f.value()),
                Header::To(t) => to = strip_tag(t.value()),
                _ => {}
            }
        }
        let route_set = record_routes(&req.headers);
        let remote_target = contact_uri(&req.headers).unwrap_or_else(|| req.uri.to_string());
        let mut d = Dialog {
            call_id: head.call_id.clone(),
            local_tag,
            remote_tag: head.from_tag.clone(),
            local_uri: to,
            remote_uri: from,
            local_seq: 0,
            remote_seq: Some(head.cseq),
            route_set,
            remote_target,
            flow,
            local_contact,
        };
        d.retarget(flow);
        d
    }

    /// The UAC side of a dialog we start with an INVITE; confirmed by
    /// [`Dialog::on_response`].
    #[allow(clippy::too_many_arguments)]
    pub fn uac(
        call_id: String,
        local_tag: String,
        local_uri: String,
        remote_uri: String,
        target: String,
        flow: Flow,
        local_contact: String,
    ) -> Dialog {
        Dialog {
            call_id,
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            local_seq: 0,
            remote_seq: None,
            route_set: Vec::new(),
            remote_target: target,
            flow,
            local_contact,
        }
    }

    /// Learn the remote tag, route set (reversed Record-Route) and remote target from
    /// a response to our INVITE (§12.1.2). Target refresh on later 2xx too.
    pub fn on_response(&mut self, resp: &Response, head: &Head) {
        if self.remote_tag.is_none() {
            self.remote_tag = head.to_tag.clone();
            let mut rr = record_routes(&resp.headers);
            rr.reverse();
            self.route_set = rr;
        }
        if let Some(c) = contact_uri(&resp.headers) {
            self.remote_target = c;
        }
        let flow = self.flow;
        self.retarget(flow);
    }

    /// A target refresh (re-INVITE) from the peer may change the remote target.
    pub fn on_refresh(&mut self, req: &Request) {
        if let Some(c) = contact_uri(&req.headers) {
            self.remote_target = c;
            let flow = self.flow;
            self.retarget(flow);
        }
    }

    /// Recompute where in-dialog requests go: the first route (loose routing) or the
    /// remote target, when it is an IP address. Connection-oriented legs stay on
    /// their connection (RFC 5923-style reuse); otherwise `fallback`.
    fn retarget(&mut self, fallback: Flow) {
        if fallback.transport.is_reliable() {
            self.flow = fallback;
            return;
        }
        let next = self
            .route_set
            .first()
            .map(|r| uri_of(r).to_string())
            .unwrap_or_else(|| self.remote_target.clone());
        self.flow = match uri_addr(&next) {
            Some((addr, t)) => Flow {
                transport: t.unwrap_or(fallback.transport),
                local: fallback.local,
                remote: addr,
            },
            None => fallback,
        };
    }

    /// Check and record the CSeq of an in-dialog request from the peer (§12.2.2).
    /// Returns false for an out-of-order request (to be answered 500).
    pub fn accept_remote_seq(&mut self, cseq: u32, method: Method) -> bool {
        if method == Method::Ack || method == Method::Cancel {
            return true;
        }
        match self.remote_seq {
            Some(prev) if cseq <= prev => false,
            _ => {
                self.remote_seq = Some(cseq);
                true
            }
        }
    }

    fn tag_headers(&self) -> (Header, Header) {
        let from = format!("{};tag={}", self.local_uri, self.local_tag);
        let to = match &self.remote_tag {
            Some(t) => format!("{};tag={t}", self.remote_uri),
            None => self.remote_uri.clone(),
        };
        (
            rsip::headers::From::new(from).into(),
            rsip::headers::To::new(to).into(),
        )
    }

    /// A new in-dialog request (not ACK/CANCEL): CSeq incremented. The endpoint adds
    /// the Via.
    pub fn request(
        &mut self,
        method: Method,
        body: Option<(&[u8], &str)>,
        user_agent: &str,
    ) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq, body, user_agent)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `cseq` (§13.2.2.4), with its own Via.
    pub fn ack(
        &self,
        cseq: u32,
        via: Header,
        body: Option<(&[u8], &str)>,
        user_agent: &str,
    ) -> Request {
        let mut r = self.build(Method::Ack, cseq, body, user_agent);
        let mut headers: Vec<Header> = vec![via];
        headers.extend(r.headers);
        r.headers = headers.into();
        r
    }

    fn build(
        &self,
        method: Method,
        cseq: u32,
        body: Option<(&[u8], &str)>,
        user_agent: &str,
    ) -> Request {
        let (from, to) = self.tag_headers();
        let mut headers: Vec<Header> = Vec::with_capacity(10);
        for r in &self.route_set {
            headers.push(rsip::headers::Route::new(r.clone()).into());
        }
        headers.push(rsip::headers::MaxForwards::new("70").into());
        headers.push(from);
        headers.push(to);
        headers.push(rsip::headers::CallId::new(self.call_id.clone()).into());
        headers.push(rsip::headers::CSeq::new(format!("{cseq} {method}")).into());
        if matches!(method, Method::Invite | Method::Update) {
            headers.push(rsip::headers::Contact::new(self.local_contact.clone()).into());
        }
        headers.push(rsip::headers::UserAgent::new(user_agent).into());
        let mut headers: rsip::Headers = headers.into();
        let body = match body {
            Some((b, ct)) => crate::message::set_body(&mut headers, b, Some(ct)),
            None => crate::message::set_body(&mut headers, &[], None),
        };
        let uri = rsip::Uri::try_from(self.remote_target.as_str()).unwrap_or_default();
        Request {
            method,
            uri,
            version: rsip::Version::V2,
            headers,
            body,
        }
    }

    /// Whether an incoming request's tags belong to this dialog.
    pub fn matches(&self, head: &Head) -> bool {
        head.to_tag.as_deref() == Some(self.local_tag.as_str())
            && (self.remote_tag.is_none() || head.from_tag == self.remote_tag)
    }
}

/// The value of the first header matching `f`.
pub fn first_value<'a>(
    headers: &'a rsip::Headers,
    f: impl Fn(&'a Header) -> Option<&'a str>,
) -> Option<&'a str> {
    headers.iter().find_map(f)
}

/// Tag helper re-exported for the B2BUA.
pub fn from_tag(value: &str) -> Option<&str> {
    tag_of(value)
}

#[cfg(test)]
#[path = "dialog_tests.rs"]
mod tests;
