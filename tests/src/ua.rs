//! A tiny SIP user agent over UDP for end-to-end tests: a caller ([`Uac`]) and a
//! callee ([`Uas`], on its own thread), each with an RTP socket that sends marked
//! packets and counts what it receives.

use rsip::headers::UntypedHeader;
use rsip::{Header, SipMessage};
use sip::message::{parse, tag_of, uri_of};
use sip::sdp::Sdp;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
}

fn recv_msg(sock: &UdpSocket, timeout: Duration) -> Option<(SipMessage, String)> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .ok()?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Ok((m, _)) = parse(&buf[..n]) {
                    return Some((m, String::from_utf8_lossy(&buf[..n]).to_string()));
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return None
            }
            // A signal, or an ICMP error for an earlier datagram (a peer's port
            // that closed): not this message's fault; keep waiting for it.
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                eprintln!("ua: recv: {e} (ignored)");
            }
            Err(e) => panic!("recv: {e} ({:?})", e.kind()),
        }
    }
    None
}

fn header_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
        .unwrap_or("")
}

/// RTP packet with a one-byte marker payload identifying the sender.
fn rtp_packet(seq: u16, marker: u8) -> [u8; 172] {
    let mut p = [marker; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&[1, 2, 3, marker]);
    p
}

/// Counts RTP packets carrying `marker` arriving on `sock` until `stop`.
pub fn spawn_rtp_counter(sock: UdpSocket, marker: u8, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    spawn_counter(sock, stop, move |p| {
        p.len() == 172 && p[12] == marker && p[0] == 0x80
    })
}

/// Counts RTP packets of payload type 0 (PCMU), whatever their content, arriving
/// on `sock` until `stop` (what a phone nobody here wrote sends).
pub fn spawn_pcmu_counter(sock: UdpSocket, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    spawn_counter(sock, stop, |p| {
        p.len() > 12 && p[0] >> 6 == 2 && p[1] & 0x7f == 0
    })
}

fn spawn_counter(
    sock: UdpSocket,
    stop: Arc<AtomicBool>,
    counts: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if counts(&buf[..n]) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    count
}

pub fn send_rtp(sock: &UdpSocket, to: SocketAddr, n: u16, marker: u8) {
    for seq in 0..n {
        sock.send_to(&rtp_packet(seq, marker), to).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub struct Uac {
    pub sock: UdpSocket,
    pub rtp: UdpSocket,
    edge: SocketAddr,
    call_id: String,
    to: String,
    cseq: u32,
    pub remote_rtp: Option<SocketAddr>,
    pub last_status: u16,
    /// The 2xx's Contact and its Record-Route entries in reverse (RFC 3261 §12.1.2):
    /// in-dialog requests go to that target through those proxies.
    target: Option<String>,
    routes: Vec<String>,
    /// How long [`Uac::call`] waits for each response (15 s; longer for a
    /// caller expected to wait in a queue).
    pub answer_wait: Duration,
}

impl Uac {
    pub fn new(edge: SocketAddr) -> Uac {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let call_id = format!(
            "uac-{}-{}",
            std::process::id(),
            sock.local_addr().unwrap().port()
        );
        Uac {
            sock,
            rtp,
            edge,
            call_id,
            to: String::new(),
            cseq: 1,
            remote_rtp: None,
            last_status: 0,
            target: None,
            routes: Vec::new(),
            answer_wait: Duration::from_secs(15),
        }
    }

    /// `Route:` lines for an in-dialog request (none without Record-Route).
    fn route_lines(&self) -> String {
        self.routes
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect()
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// A caller dialling `number` from another thread (the answer waits on
    /// something the test does meanwhile): its phone and final status.
    pub fn call_in_background(
        edge: SocketAddr,
        number: &str,
    ) -> std::thread::JoinHandle<(Uac, u16)> {
        Uac::call_in_background_with(edge, number, "")
    }

    /// [`Uac::call_in_background`] with header lines `headers` (each ending in
    /// CRLF) in the INVITE.
    pub fn call_in_background_with(
        edge: SocketAddr,
        number: &str,
        headers: &str,
    ) -> std::thread::JoinHandle<(Uac, u16)> {
        let (number, headers) = (number.to_string(), headers.to_string());
        std::thread::spawn(move || {
            let mut c = Uac::new(edge);
            let code = c.call_with(&number, &headers);
            (c, code)
        })
    }

    /// INVITE `number`; wait for the final response (ACKing a 2xx). Returns its code.
    pub fn call(&mut self, number: &str) -> u16 {
        self.call_with(number, "")
    }

    /// [`Uac::call`] with header lines `headers` (each ending in CRLF).
    pub fn call_with(&mut self, number: &str, headers: &str) -> u16 {
        let body = sdp(self.rtp.local_addr().unwrap().port());
        let local = self.local();
        let inv = format!(
            "INVITE sip:{number}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-inv-{cid};rport\r\nFrom: <sip:caller@{local}>;tag=uac1\r\n\
To: <sip:{number}@{edge}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\n{headers}\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len(),
            edge = self.edge,
            cid = self.call_id
        );
        self.sock.send_to(inv.as_bytes(), self.edge).unwrap();
        // Timer A (RFC 3261 §17.1.1.2): the INVITE again, 500 ms then doubling,
        // until the edge answers anything — one datagram lost on a loaded
        // machine must not lose the call.
        let mut interval = Duration::from_millis(500);
        let mut resend = Some(Instant::now() + interval);
        let mut deadline = Instant::now() + self.answer_wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return 0;
            }
            let until = resend.map_or(deadline, |t| t.min(deadline));
            let wait = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let Some((m, text)) = recv_msg(&self.sock, wait) else {
                if resend.is_some_and(|t| Instant::now() >= t) {
                    self.sock.send_to(inv.as_bytes(), self.edge).unwrap();
                    interval = (interval * 2).min(Duration::from_secs(4));
                    resend = Some(Instant::now() + interval);
                }
                continue;
            };
            resend = None;
            deadline = Instant::now() + self.answer_wait;
            let SipMessage::Response(r) = m else { continue };
            let code = r.status_code.code();
            if code < 200 {
                continue;
            }
            self.last_status = code;
            self.to = header_line(&text, "To").to_string();
            if (200..300).contains(&code) {
                self.remote_rtp = Sdp::parse(&r.body)
                    .ok()
                    .and_then(|s| s.audio_target().ok().flatten());
                let contact = r
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        Header::Contact(c) => Some(uri_of(c.value()).to_string()),
                        _ => None,
                    })
                    .unwrap();
                let mut routes: Vec<String> = r
                    .headers
                    .iter()
                    .filter_map(|h| match h {
                        Header::RecordRoute(rr) => Some(rr.value().to_string()),
                        _ => None,
                    })
                    .flat_map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                routes.reverse();
                self.routes = routes;
                self.target = Some(contact.clone());
                let ack = format!(
                    "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ack-{cid}\r\nFrom: <sip:caller@{local}>;tag=uac1\r\nTo: {to}\r\n\
Call-ID: {cid}\r\nCSeq: 1 ACK\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                    cid = self.call_id,
                    to = self.to,
                    routes = self.route_lines()
                );
                self.sock.send_to(ack.as_bytes(), self.edge).unwrap();
            }
            return code;
        }
    }

    /// Wait up to `secs` for the edge's BYE and answer it 200; whether one came.
    pub fn answer_bye(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let Some((m, _)) = recv_msg(&self.sock, Duration::from_millis(200)) else {
                continue;
            };
            if let SipMessage::Request(req) = m {
                if req.method == rsip::Method::Bye {
                    let ok = sip::message::response(&req, 200, None, "uac");
                    self.sock
                        .send_to(ok.to_string().as_bytes(), self.edge)
                        .unwrap();
                    return true;
                }
            }
        }
        false
    }

    /// Wait up to `secs` for a re-INVITE from the edge and answer it 200 with this
    /// phone's SDP (`recvonly` to a `sendonly` offer: being held); the offer's
    /// direction, or `None` when none came.
    pub fn answer_reinvite(&mut self, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let Some((SipMessage::Request(req), _)) =
                recv_msg(&self.sock, Duration::from_millis(200))
            else {
                continue;
            };
            if req.method != rsip::Method::Invite {
                continue;
            }
            let offer = String::from_utf8_lossy(&req.body).into_owned();
            let dir = ["sendonly", "recvonly", "inactive", "sendrecv"]
                .into_iter()
                .find(|d| offer.contains(&format!("a={d}")))
                .unwrap_or("sendrecv");
            let answer_dir = match dir {
                "sendonly" => "recvonly",
                "recvonly" => "sendonly",
                d => d,
            };
            let body = sdp(self.rtp.local_addr().unwrap().port())
                .replace("a=sendrecv", &format!("a={answer_dir}"));
            let mut ok = sip::message::response(&req, 200, None, "uac");
            ok.headers
                .push(rsip::headers::Contact::new(format!("<sip:caller@{}>", self.local())).into());
            ok.body =
                sip::message::set_body(&mut ok.headers, body.as_bytes(), Some("application/sdp"));
            self.sock
                .send_to(ok.to_string().as_bytes(), self.edge)
                .unwrap();
            return Some(dir.to_string());
        }
        None
    }

    /// BYE the established call; returns the response code.
    pub fn bye(&mut self) -> u16 {
        self.cseq += 1;
        let local = self.local();
        let target = self
            .target
            .clone()
            .unwrap_or_else(|| format!("sip:edge@{}", self.edge));
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-bye-{cid}-{cseq}\r\nFrom: <sip:caller@{local}>;tag=uac1\r\nTo: {to}\r\n\
Call-ID: {cid}\r\nCSeq: {cseq} BYE\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            cid = self.call_id,
            to = self.to,
            cseq = self.cseq,
            routes = self.route_lines()
        );
        self.sock.send_to(bye.as_bytes(), self.edge).unwrap();
        loop {
            let Some((m, _)) = recv_msg(&self.sock, Duration::from_secs(10)) else {
                return 0;
            };
            if let SipMessage::Response(r) = m {
                if r.status_code.code() >= 200 {
                    return r.status_code.code();
                }
            }
        }
    }
}

/// A callee answering every INVITE with 180 + 200 (SDP of its RTP socket) and every
/// BYE with 200. Reports where the edge wants its RTP.
pub struct Uas {
    pub rtp: UdpSocket,
    pub edge_rtp: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    pub byes: Arc<AtomicU64>,
    /// New INVITEs (distinct Call-IDs; a retransmission is not counted again).
    pub invites: Arc<AtomicU64>,
    /// The most calls it had up at once (answered, not yet ended by BYE).
    pub most_at_once: Arc<AtomicU64>,
    /// The last new INVITE's Call-ID and From tag (its dialog is that and `uas1`).
    pub dialog: Arc<std::sync::Mutex<Option<(String, String)>>>,
    /// The port its SIP socket is bound to.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Uas {
    /// A callee on `port` (0: a port the kernel picks; see [`Uas::port`]).
    pub fn spawn(port: u16) -> Uas {
        let sock = crate::bind_udp(port);
        let port = sock.local_addr().unwrap().port();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp_port = rtp.local_addr().unwrap().port();
        let edge_rtp = Arc::new(std::sync::Mutex::new(None));
        let byes = Arc::new(AtomicU64::new(0));
        let invites = Arc::new(AtomicU64::new(0));
        let most_at_once = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let dialog = Arc::new(std::sync::Mutex::new(None));
        let (e, b, i, m, s, d) = (
            edge_rtp.clone(),
            byes.clone(),
            invites.clone(),
            most_at_once.clone(),
            stop.clone(),
            dialog.clone(),
        );
        std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let mut up = std::collections::HashSet::new();
            let mut buf = [0u8; 65536];
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok((SipMessage::Request(req), head)) = parse(&buf[..n]) else {
                    continue;
                };
                let reply = |code: u16, body: Option<String>| {
                    let mut r = sip::message::response(&req, code, Some("uas1"), "uas");
                    r.headers.push(
                        rsip::headers::Contact::new(format!("<sip:uas@127.0.0.1:{port}>")).into(),
                    );
                    if let Some(b) = body {
                        r.body = sip::message::set_body(
                            &mut r.headers,
                            b.as_bytes(),
                            Some("application/sdp"),
                        );
                    }
                    sock.send_to(r.to_string().as_bytes(), from).unwrap();
                };
                match req.method {
                    rsip::Method::Invite => {
                        if head.to_tag.is_none() && seen.insert(head.call_id.clone()) {
                            i.fetch_add(1, Ordering::Relaxed);
                            up.insert(head.call_id.clone());
                            m.fetch_max(up.len() as u64, Ordering::Relaxed);
                            if let Some(tag) = head.from_tag.clone() {
                                *d.lock().unwrap() = Some((head.call_id.clone(), tag));
                            }
                        }
                        *e.lock().unwrap() = Sdp::parse(&req.body)
                            .ok()
                            .and_then(|s| s.audio_target().ok().flatten());
                        reply(180, None);
                        reply(200, Some(sdp(rtp_port)));
                    }
                    rsip::Method::Bye => {
                        b.fetch_add(1, Ordering::Relaxed);
                        up.remove(&head.call_id);
                        reply(200, None);
                    }
                    rsip::Method::Ack => {}
                    _ => reply(200, None),
                }
                let _ = tag_of("");
            }
        });
        Uas {
            rtp,
            edge_rtp,
            byes,
            invites,
            most_at_once,
            dialog,
            port,
            stop,
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
