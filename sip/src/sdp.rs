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
    #[error("SDP secure audio stream: {0}")]
    WebRtc(&'static str),
}

/// What a WebRTC peer's SDP says about its transport (RFC 8839 ICE, RFC 8842 DTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcRemote {
    pub ufrag: String,
    pub pwd: String,
    /// The `sha-256` fingerprint (hex with colons).
    pub fingerprint: String,
    /// `active`, `passive` or `actpass`.
    pub setup: String,
}

/// What the edge writes into SDP for its side of a WebRTC leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcLocal<'a> {
    pub ufrag: &'a str,
    pub pwd: &'a str,
    /// The edge certificate's SHA-256 fingerprint.
    pub fingerprint: &'a str,
    /// `actpass` in an offer, `passive` in an answer.
    pub setup: &'a str,
}

/// Attributes that belong to a WebRTC transport (DTLS, ICE, BUNDLE, RTP extensions a
/// plain RTP peer would not understand); dropped when a stream crosses to plain RTP,
/// rewritten with the edge's own when it goes to a browser.
fn is_webrtc_attr(l: &str) -> bool {
    const PREFIXES: [&str; 15] = [
        "a=fingerprint:",
        "a=setup:",
        "a=mid:",
        "a=group:",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtcp-fb:",
        "a=extmap",
        "a=msid",
        "a=ssrc",
        "a=ice-lite",
        "a=tls-id:",
        "a=crypto:",
        "a=identity:",
        "a=sctp",
    ];
    PREFIXES.iter().any(|p| l.starts_with(p))
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
            .position(|m| m.kind == "audio" && m.proto.contains("RTP/"))
    }

    /// The WebRTC transport of the audio stream: `None` for plain RTP (`RTP/AVP`),
    /// an error for a secure profile without ICE credentials and a SHA-256
    /// fingerprint (SDES keys, `a=crypto`, are not supported).
    pub fn webrtc(&self) -> Result<Option<WebRtcRemote>, SdpError> {
        let i = self.audio_index().ok_or(SdpError::NoAudio)?;
        let m = &self.media[i];
        if !m.proto.contains("SAVP") {
            return Ok(None);
        }
        let attr = |name: &str| {
            m.lines
                .iter()
                .chain(&self.session)
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let ufrag = attr("a=ice-ufrag:").ok_or(SdpError::WebRtc("no a=ice-ufrag"))?;
        let pwd = attr("a=ice-pwd:").ok_or(SdpError::WebRtc("no a=ice-pwd"))?;
        let fingerprint = m
            .lines
            .iter()
            .chain(&self.session)
            .filter_map(|l| l.strip_prefix("a=fingerprint:"))
            .find_map(|v| {
                let (alg, fp) = v.trim().split_once(' ')?;
                alg.eq_ignore_ascii_case("sha-256")
                    .then(|| fp.trim().to_string())
            })
            .ok_or(SdpError::WebRtc("no a=fingerprint:sha-256"))?;
        let setup = attr("a=setup:").unwrap_or_else(|| "actpass".into());
        if !matches!(setup.as_str(), "active" | "passive" | "actpass") {
            return Err(SdpError::WebRtc(
                "a=setup is not active, passive or actpass",
            ));
        }
        Ok(Some(WebRtcRemote {
            ufrag,
            pwd,
            fingerprint,
            setup,
        }))
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
        self.rewrite_as(addr, port, None)
    }

    /// The SDP to send to a browser: as [`Sdp::rewrite`], with the audio stream made
    /// a WebRTC one (`UDP/TLS/RTP/SAVPF`, ICE-lite with the edge's one host
    /// candidate, the edge's DTLS fingerprint and `setup`, `rtcp-mux`, BUNDLE of the
    /// one stream) carrying only G.711 and telephone-event (the edge does not
    /// transcode).
    pub fn rewrite_webrtc(&self, addr: IpAddr, port: u16, local: &WebRtcLocal<'_>) -> String {
        self.rewrite_as(addr, port, Some(local))
    }

    /// Whether the audio stream offers PCMU or PCMA (a browser leg needs one).
    pub fn has_g711(&self) -> bool {
        self.first_g711_pt().is_some()
    }

    fn rewrite_as(&self, addr: IpAddr, port: u16, webrtc: Option<&WebRtcLocal<'_>>) -> String {
        let ip_kind = if addr.is_ipv4() { "IP4" } else { "IP6" };
        let audio = self.audio_index();
        // A stream that crosses between WebRTC and plain RTP keeps G.711 and
        // telephone-event only, and sheds the other side's transport attributes.
        let secure_in = audio.is_some_and(|i| self.media[i].proto.contains("SAVP"));
        let crossing = secure_in || webrtc.is_some();
        let hold_addr = |c: &str| conn_addr(c).map(|a| a.is_unspecified()).unwrap_or(false);
        let mut out = String::with_capacity(if webrtc.is_some() { 1024 } else { 512 });
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
            if is_transport_attr(l) || (crossing && is_webrtc_attr(l)) {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        if webrtc.is_some() {
            out.push_str("a=ice-lite\r\n");
            if audio.is_some_and(|i| self.media[i].port != 0) {
                out.push_str("a=group:BUNDLE 0\r\n");
            }
        }
        for (i, m) in self.media.iter().enumerate() {
            let relayed = Some(i) == audio && m.port != 0;
            let p = if relayed { port } else { 0 };
            let audio_here = Some(i) == audio;
            let formats: Vec<&str> = if audio_here && crossing {
                m.formats
                    .iter()
                    .map(String::as_str)
                    .filter(|f| self.g711_or_events(m, f))
                    .collect()
            } else {
                m.formats.iter().map(String::as_str).collect()
            };
            let proto = match (audio_here, webrtc.is_some(), secure_in) {
                (true, true, _) => "UDP/TLS/RTP/SAVPF",
                (true, false, true) => "RTP/AVP",
                _ => m.proto.as_str(),
            };
            let formats = if formats.is_empty() {
                // Nothing left to offer: keep the line well-formed (refused anyway).
                "0".to_string()
            } else {
                formats.join(" ")
            };
            out.push_str(&format!("m={} {p} {proto} {formats}\r\n", m.kind));
            for l in &m.lines {
                if let Some(c) = l.strip_prefix("c=") {
                    if relayed && !hold_addr(c) {
                        out.push_str(&format!("c=IN {ip_kind} {addr}\r\n"));
                        continue;
                    }
                }
                if is_transport_attr(l) || (crossing && is_webrtc_attr(l)) {
                    continue;
                }
                if audio_here && crossing && !self.keeps_format_line(m, l) {
                    continue;
                }
                out.push_str(l);
                out.push_str("\r\n");
            }
            if let (Some(w), true) = (webrtc, relayed) {
                for (pt, name) in [("0", "PCMU"), ("8", "PCMA")] {
                    let mapped = m
                        .lines
                        .iter()
                        .any(|l| l.starts_with(&format!("a=rtpmap:{pt} ")));
                    if m.formats.iter().any(|f| f == pt) && !mapped {
                        out.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
                    }
                }
                out.push_str(&format!(
                    "a=mid:0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:{}\r\na=rtcp-mux\r\na=msid:edge edge-audio\r\na=candidate:1 1 udp 2130706431 {addr} {port} typ host\r\na=end-of-candidates\r\n",
                    w.ufrag, w.pwd, w.fingerprint, w.setup
                ));
            }
        }
        out
    }

    /// A payload type the edge carries between WebRTC and plain RTP: PCMU, PCMA,
    /// or telephone-event at 8 kHz.
    fn g711_or_events(&self, m: &Media, pt: &str) -> bool {
        if pt == "0" || pt == "8" {
            return true;
        }
        m.lines.iter().any(|l| {
            l.strip_prefix("a=rtpmap:")
                .and_then(|v| v.split_once(' '))
                .is_some_and(|(p, enc)| {
                    p == pt && enc.to_ascii_lowercase().starts_with("telephone-event/8000")
                })
        })
    }

    /// Whether an `a=rtpmap`/`a=fmtp` line is about a payload type that stays.
    fn keeps_format_line(&self, m: &Media, l: &str) -> bool {
        let pt = l
            .strip_prefix("a=rtpmap:")
            .or_else(|| l.strip_prefix("a=fmtp:"))
            .and_then(|v| v.split_whitespace().next());
        match pt {
            Some(pt) => self.g711_or_events(m, pt),
            None => true,
        }
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
