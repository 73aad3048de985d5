//! Parsers for the string-typed values of the configuration: listen addresses
//! (`udp:127.0.0.1:5060`), port ranges (`20000-29999`), durations (`60s`, `2m`) and
//! SIP targets (`sip:user@127.0.0.1:5090;transport=tcp`).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// SIP transport protocols the edge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS (RFC 3261 §26): a TCP stream with rustls on it.
    Tls,
    /// SIP over WebSocket (RFC 7118) on the HTTP listener's `/ws/sip`: one SIP
    /// message per WebSocket message. Only the peer opens these (a browser);
    /// the edge reaches it back over its socket.
    Ws,
    /// The same over a TLS WebSocket (`wss:`; Via `SIP/2.0/WSS`).
    Wss,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
    /// A WebSocket flow: only the peer can open it.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
    /// The port a SIP URI without one means (RFC 3261 §19.1.2): 5061 for TLS.
    pub fn default_port(self) -> u16 {
        if self == Transport::Tls {
            5061
        } else {
            5060
        }
    }
    /// The `;transport=` parameter of a SIP URI reached over it ("" for UDP).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
            Transport::Ws => ";transport=ws",
            Transport::Wss => ";transport=wss",
        }
    }
    /// The transport named `name` (`udp`, `TCP`, …; any case).
    pub fn from_name(name: &str) -> Option<Transport> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP listen address: transport plus socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, rest) = s.split_once(':').ok_or_else(|| {
            format!("`{s}`: expected `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT`")
        })?;
        let transport = match proto.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "`{s}`: unknown transport `{other}` (udp, tcp or tls)"
                ))
            }
        };
        let addr = rest
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{s}`: `{rest}` is not IP:PORT (IPv6 as [::1]:5060)"))?;
        Ok(ListenAddr { transport, addr })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport.as_str().to_ascii_lowercase(),
            self.addr
        )
    }
}

/// An inclusive UDP port range for RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}`: expected FIRST-LAST, e.g. 20000-29999"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not a port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not a port"))?;
        if first == 0 || last < first.saturating_add(3) {
            return Err(format!(
                "`{s}`: the range must hold at least 4 ports (two RTP/RTCP pairs), first > 0"
            ));
        }
        Ok(PortRange { first, last })
    }
}

/// A SIP URI the edge sends requests to. The host must be an IP address: the edge
/// does no DNS (RFC 3263) lookups yet. `sips:` URIs and `;transport=tls` are
/// reached over TLS (port 5061 unless given, RFC 3261 §19.1.2), the peer's
/// certificate checked against `[tls] ca` or the system's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// The URI as written (used as Request-URI).
    pub uri: String,
    pub user: Option<String>,
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl FromStr for SipTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri = rsip::Uri::try_from(s).map_err(|e| format!("`{s}` is not a SIP URI: {e}"))?;
        let sips = match &uri.scheme {
            Some(rsip::Scheme::Sip) => false,
            Some(rsip::Scheme::Sips) => true,
            _ => return Err(format!("`{s}`: only sip: and sips: URIs are supported")),
        };
        let ip: IpAddr = match &uri.host_with_port.host {
            rsip::Host::IpAddr(ip) => *ip,
            rsip::Host::Domain(d) => d.to_string().parse().map_err(|_| {
                format!("`{s}`: host `{d}` must be an IP address (no DNS lookups yet)")
            })?,
        };
        let transport = match (sips, uri.transport()) {
            (true, None | Some(rsip::Transport::Tls | rsip::Transport::Tcp)) => Transport::Tls,
            (false, None | Some(rsip::Transport::Udp)) => Transport::Udp,
            (false, Some(rsip::Transport::Tcp)) => Transport::Tcp,
            (false, Some(rsip::Transport::Tls)) => Transport::Tls,
            (_, Some(other)) => {
                return Err(format!(
                    "`{s}`: transport `{other}` is not supported{}",
                    if sips { " with sips:" } else { "" }
                ))
            }
        };
        let port = uri
            .port()
            .map(|p| *p.value())
            .unwrap_or(transport.default_port());
        Ok(SipTarget {
            uri: s.to_string(),
            user: uri.user().map(str::to_string),
            addr: SocketAddr::new(ip, port),
            transport,
        })
    }
}

/// A `[cluster] nats` URL split at its credentials: the URL without them, and
/// what came before its last `@` (`user:password` or a token, still
/// percent-encoded), if anything.
pub fn nats_url_parts(url: &str) -> (String, Option<&str>) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match rest.rsplit_once('@') {
        None => (url.to_string(), None),
        Some((creds, host)) if scheme.is_empty() => (host.to_string(), Some(creds)),
        Some((creds, host)) => (format!("{scheme}://{host}"), Some(creds)),
    }
}

/// Parse a duration such as `60s`, `500ms`, `2m`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 20s, 2m, 7d: {e}"))
}

/// Parse a size: `50MB` (10^6), `64KiB` (2^10), `1GB`, `512B`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 50MB, 64KiB, 1GB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "`{s}`: unknown size unit `{other}` (B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let v = n * mult as f64;
    if !(1.0..=1e15).contains(&v) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(v as u64)
}

/// serde adapter for sizes written as strings.
pub mod size_str {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_size(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(ListenAddr, PortRange, SipTarget);

/// serde adapter for durations written as strings.
pub mod duration_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;
