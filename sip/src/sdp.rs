//! SDP (RFC 4566) parsing and the B2BUA's offer/answer rewrite (RFC 3264): all media
//! the edge relays goes through its own address and ports.
//!
//! The edge relays the first audio stream. Its `m=` port and the `c=` address are
//! replaced with the edge's; codecs and their payload types (PCMU 0, PCMA 8,
//! telephone-event, anything else) pass through untouched, as do direction
//! attributes (`sendonly`/`recvonly`/`inactive` for hold). Other streams (video,
//! a second audio) are refused with port 0, since nothing would relay them. ICE
//! candidates and `a=rtcp:` are dropped: the peer reaches the edge, not the other
//! party, and RTCP is on the RTP port + 1.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    Encoding,
    #[error("SDP line {0} is malformed")]
    Line(usize),
    #[error("SDP has no v= line")]
    NoVersion,
    #[error("SDP m= line {0} is malformed")]
    Media(usize),
    #[error("SDP connection address {0:?} is not an IP address")]
    Address(String),
    #[error("SDP has no audio stream")]
    NoAudio,
}

/// Stream direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// Lines after the m= line (without the m= line itself).
    pub lines: Vec<String>,
}

impl Media {
    fn connection(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix("c="))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Session-level lines, in order (v=, o=, s=, c=, t=, a=...).
    pub session: Vec<String>,
    pub media: Vec<Media>,
}

fn conn_addr(c: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl]
    let addr = c
        .split_whitespace()
        .nth(2)
        .ok_or_else(|| SdpError::Address(c.to_string()))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| SdpError::Address(addr.to_string()))
}

impl Sdp {
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::Encoding)?;
        let mut session = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(SdpError::Line(n + 1));
            }
            if let Some(m) = line.strip_prefix("m=") {
                let mut it = m.split_whitespace();
                let kind = it.next().ok_or(SdpError::Media(n + 1))?.to_string();
                let port = it.next().ok_or(SdpError::Media(n + 1))?;
                let port: u16 = port
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| SdpError::Media(n + 1))?;
                let proto = it.next().ok_or(SdpError::Media(n + 1))?.to_string();
                let formats: Vec<String> = it.map(str::to_string).collect();
                media.push(Media {
                    kind,
                    port,
                    proto,
                    formats,
                    lines: Vec::new(),
                });
            } else if let Some(m) = media.last_mut() {
                m.lines.push(line.to_string());
            } else {
                session.push(line.to_string());
            }
        }
        if !session.first().is_some_and(|l| l.starts_with("v=")) {
            return Err(SdpError::NoVersion);
        }
        let sdp = Sdp { session, media };
        // Validate the addresses we will rely on.
        if let Some(c) = sdp.session.iter().find_map(|l| l.strip_prefix("c=")) {
            conn_addr(c)?;
        }
        for m in &sdp.media {
            if let Some(c) = m.connection() {
                conn_addr(c)?;
            }
        }
        Ok(sdp)
    }

    fn audio_index(&self) -> Option<usize> {
        self.media
            .iter()
            .position(|m| m.kind == "audio" && m.proto.starts_with("RTP/"))
    }

    /// Where the first audio stream wants RTP: `None` when the stream is refused
    /// (port 0) or on hold with `c=0.0.0.0`. Errors when there is no audio stream.
    pub fn audio_target(&self) -> Result<Option<SocketAddr>, SdpError> {
        let i = self.audio_index().ok_or(SdpError::NoAudio)?;
        let m = &self.media[i];
        let c = m
            .connection()
            .or_else(|| self.session.iter().find_map(|l| l.strip_prefix("c=")))
            .ok_or_else(|| SdpError::Address("(none)".into()))?;
        let ip = conn_addr(c)?;
        if m.port == 0 || ip.is_unspecified() {
            return Ok(None);
        }
        Ok(Some(SocketAddr::new(ip, m.port)))
    }

    /// The RTP payload type of RFC 4733 `telephone-event/8000` in the audio stream.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        let m = &self.media[self.audio_index()?];
        m.lines.iter().find_map(|l| {
            let (pt, enc) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            enc.to_ascii_lowercase()
                .starts_with("telephone-event/8000")
                .then(|| pt.trim().parse().ok())
                .flatten()
                .filter(|p: &u8| m.formats.iter().any(|f| f == &p.to_string()))
        })
    }

    /// The first G.711 payload type (0 PCMU, 8 PCMA) of the audio stream's formats:
    /// the codec an answer chose.
    pub fn first_g711_pt(&self) -> Option<u8> {
        let m = &self.media[self.audio_index()?];
        m.formats.iter().find_map(|f| match f.as_str() {
            "0" => Some(0),
            "8" => Some(8),
            _ => None,
        })
    }

    /// Whether the offer puts the other side on hold: the audio stream is `sendonly`
    /// or `inactive`, or its connection address is 0.0.0.0 (RFC 2543 style).
    pub fn is_hold(&self) -> bool {
        if matches!(
            self.audio_direction(),
            Direction::SendOnly | Direction::Inactive
        ) {
            return true;
        }
        let port = self.audio_index().map(|i| self.media[i].port).unwrap_or(0);
        port != 0 && matches!(self.audio_target(), Ok(None))
    }

    /// Direction of the first audio stream (media level, else session level).
    pub fn audio_direction(&self) -> Direction {
        let find = |lines: &[String]| {
            lines.iter().find_map(|l| match l.as_str() {
                "a=sendrecv" => Some(Direction::SendRecv),
                "a=sendonly" => Some(Direction::SendOnly),
                "a=recvonly" => Some(Direction::RecvOnly),
                "a=inactive" => Some(Direction::Inactive),
                _ => None,
            })
        };
        self.audio_index()
            .and_then(|i| find(&self.media[i].lines))
            .or_else(|| find(&self.session))
            .unwrap_or(Direction::SendRecv)
    }

    /// The edge's own answer to this offer (it terminates the media itself: an
    /// after-hours announcement, voicemail): `addr`:`port`, the offer's first G.711
    /// codec and its telephone-event, other streams refused (port 0). `None`: the
    /// offer has no audio stream with PCMU or PCMA.
    pub fn answer_g711(&self, addr: IpAddr, port: u16, session_id: u64) -> Option<String> {
        let audio = self.audio_index()?;
        let pt = self.first_g711_pt()?;
        let te = self.telephone_event_pt();
        let ip_kind = if addr.is_ipv4() { "IP4" } else { "IP6" };
        let mut out = format!(
            "v=0\r\no=edge {session_id} 1 IN {ip_kind} {addr}\r\ns=edge\r\nc=IN {ip_kind} {addr}\r\nt=0 0\r\n"
        );
        for (i, m) in self.media.iter().enumerate() {
            if i != audio {
                let first = m.formats.first().map(String::as_str).unwrap_or("0");
                out.push_str(&format!("m={} 0 {} {first}\r\n", m.kind, m.proto));
                continue;
            }
            let fmts = match te {
                Some(t) => format!("{pt} {t}"),
                None => pt.to_string(),
            };
            let name = if pt == 8 { "PCMA" } else { "PCMU" };
            out.push_str(&format!(
                "m=audio {port} RTP/AVP {fmts}\r\na=rtpmap:{pt} {name}/8000\r\n"
            ));
            if let Some(t) = te {
                out.push_str(&format!(
                    "a=rtpmap:{t} telephone-event/8000\r\na=fmtp:{t} 0-15\r\n"
                ));
            }
            out.push_str("a=ptime:20\r\na=sendrecv\r\n");
        }
        Some(out)
    }

    /// The SDP to send to the other party: the edge's `addr` and `port` for the first
    /// audio stream, other streams refused.
    pub fn rewrite(&self, addr: IpAddr, port: u16) -> String {
        let ip_kind = if addr.is_ipv4() { "IP4" } else { "IP6" };
        let audio = self.audio_index();
        let hold_addr = |c: &str| conn_addr(c).map(|a| a.is_unspecified()).unwrap_or(false);
        let mut out = String::with_capacity(512);
        for l in &self.session {
            if let Some(o) = l.strip_prefix("o=") {
                // o=<user> <sess-id> <sess-version> IN IP4 <addr>
                let f: Vec<&str> = o.split_whitespace().collect();
                if f.len() >= 6 {
                    out.push_str(&format!(
                        "o={} {} {} IN {ip_kind} {addr}\r\n",
                        f[0], f[1], f[2]
                    ));
                    continue;
                }
            }
            if let Some(c) = l.strip_prefix("c=") {
                let keep_hold = hold_addr(c);
                if keep_hold {
                    out.push_str(&format!(
                        "c=IN {ip_kind} {}\r\n",
                        if addr.is_ipv4() { "0.0.0.0" } else { "::" }
                    ));
                } else {
                    out.push_str(&format!("c=IN {ip_kind} {addr}\r\n"));
                }
                continue;
            }
            if is_transport_attr(l) {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        for (i, m) in self.media.iter().enumerate() {
            let relayed = Some(i) == audio && m.port != 0;
            let p = if relayed { port } else { 0 };
            out.push_str(&format!(
                "m={} {} {} {}\r\n",
                m.kind,
                p,
                m.proto,
                m.formats.join(" ")
            ));
            for l in &m.lines {
                if let Some(c) = l.strip_prefix("c=") {
                    if relayed && !hold_addr(c) {
                        out.push_str(&format!("c=IN {ip_kind} {addr}\r\n"));
                        continue;
                    }
                }
                if is_transport_attr(l) {
                    continue;
                }
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out
    }
}

/// Attributes that describe how to reach the original peer directly.
fn is_transport_attr(l: &str) -> bool {
    l.starts_with("a=rtcp:")
        || l.starts_with("a=candidate:")
        || l.starts_with("a=ice-")
        || l.starts_with("a=end-of-candidates")
        || l.starts_with("a=remote-candidates")
}

#[cfg(test)]
#[path = "sdp_tests.rs"]
mod tests;
