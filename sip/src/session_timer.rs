//! Session timers (RFC 4028) for one dialog, sans-IO: the header values
//! (`Session-Expires`, `Min-SE`), what a UAS grants for a request, what a UAC
//! learns from a 2xx, and when a refresh is due or the session has expired.

use rsip::headers::UntypedHeader;
use rsip::{Header, Headers};
use std::time::Duration;

/// RFC 4028 §4: no session interval may be shorter than this.
pub const MIN_SE_FLOOR: u32 = 90;

/// Who refreshes the session, as the `refresher` parameter names it: relative to the
/// transaction that negotiated it (`uac` = who sent that request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A `Session-Expires` value: `delta-seconds *(;se-params)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let delta = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("refresher") {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => return None,
                };
            }
        }
        Some(SessionExpires { delta, refresher })
    }

    pub fn header(self) -> Header {
        let value = match self.refresher {
            Some(Refresher::Uac) => format!("{};refresher=uac", self.delta),
            Some(Refresher::Uas) => format!("{};refresher=uas", self.delta),
            None => self.delta.to_string(),
        };
        Header::Other("Session-Expires".into(), value)
    }
}

fn other<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| match h {
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
        _ => None,
    })
}

/// A `Session-Expires` that is present but cannot be read (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unreadable Session-Expires")]
pub struct BadSessionExpires;

/// The `Session-Expires` of a message.
pub fn session_expires(headers: &Headers) -> Result<Option<SessionExpires>, BadSessionExpires> {
    match other(headers, "Session-Expires").or_else(|| other(headers, "x")) {
        None => Ok(None),
        Some(v) => SessionExpires::parse(v).map(Some).ok_or(BadSessionExpires),
    }
}

/// The `Min-SE` of a message (only its delta-seconds).
pub fn min_se(headers: &Headers) -> Option<u32> {
    other(headers, "Min-SE").and_then(|v| v.split(';').next()?.trim().parse().ok())
}

pub fn min_se_header(secs: u32) -> Header {
    Header::Other("Min-SE".into(), secs.to_string())
}

/// Whether a comma-separated option header (`Supported`, `Require`, `Allow`) of
/// `headers` names `token`.
pub fn lists(headers: &Headers, pick: fn(&Header) -> Option<&str>, token: &str) -> bool {
    headers
        .iter()
        .filter_map(pick)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Supported: timer` (or the compact `k:`) in `headers`.
pub fn supports_timer(headers: &Headers) -> bool {
    lists(
        headers,
        |h| match h {
            Header::Supported(s) => Some(s.value()),
            _ => None,
        },
        "timer",
    )
}

/// The peer's `Allow` names `UPDATE`.
pub fn allows_update(headers: &Headers) -> bool {
    lists(
        headers,
        |h| match h {
            Header::Allow(a) => Some(a.value()),
            _ => None,
        },
        "UPDATE",
    )
}

/// The edge's settings: the interval it asks for and grants (0: off) and the
/// shortest it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub session_expires: u32,
    pub min_se: u32,
}

/// A negotiated session timer on one dialog, from the edge's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub interval: u32,
    /// The edge refreshes (else the peer does, and the edge only watches).
    pub edge_refreshes: bool,
}

impl Negotiated {
    /// When the edge sends its refresh (RFC 4028 §10: half the interval).
    pub fn refresh_after(self) -> Duration {
        Duration::from_secs(u64::from(self.interval) / 2)
    }

    /// When the session is over without a refresh: the interval minus
    /// min(32 s, interval/3) (§10, what the side that does not refresh waits).
    pub fn expire_after(self) -> Duration {
        let i = u64::from(self.interval);
        Duration::from_secs(i - (i / 3).min(32))
    }

    /// The `Session-Expires` the edge puts in its 2xx to a request from the peer.
    pub fn in_response(self) -> SessionExpires {
        SessionExpires {
            delta: self.interval,
            refresher: Some(if self.edge_refreshes {
                Refresher::Uas
            } else {
                Refresher::Uac
            }),
        }
    }

    /// The `Session-Expires` the edge puts in a request it sends (a refresh).
    pub fn in_request(self) -> SessionExpires {
        SessionExpires {
            delta: self.interval,
            refresher: Some(if self.edge_refreshes {
                Refresher::Uac
            } else {
                Refresher::Uas
            }),
        }
    }
}

/// What the edge, as UAS, does with a request's session timer headers (§9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Session timers are off at the edge: the 2xx carries none.
    Off,
    /// `Session-Expires` below the edge's `Min-SE`: 422 with this `Min-SE`.
    TooBrief(u32),
    On(Negotiated),
}

impl Settings {
    /// The grant for a request (INVITE, re-INVITE or UPDATE) carrying `headers`.
    pub fn grant(self, headers: &Headers) -> Result<Grant, BadSessionExpires> {
        if self.session_expires == 0 {
            return Ok(Grant::Off);
        }
        let asked = session_expires(headers)?;
        let their_min = min_se(headers).unwrap_or(0);
        let peer_supports = supports_timer(headers);
        let interval = match asked {
            Some(se) if se.delta < self.min_se => return Ok(Grant::TooBrief(self.min_se)),
            // The UAS may lower the interval, never below the request's Min-SE.
            Some(se) => se.delta.min(self.session_expires).max(their_min),
            None => self.session_expires.max(their_min),
        };
        // The peer refreshes when it asks to, or (no preference) when it can; one
        // that does not support timers cannot (§9).
        let peer_refreshes = peer_supports
            && match asked.and_then(|se| se.refresher) {
                Some(Refresher::Uac) => true,
                Some(Refresher::Uas) => false,
                None => true,
            };
        Ok(Grant::On(Negotiated {
            interval,
            edge_refreshes: !peer_refreshes,
        }))
    }

    /// The headers of a request the edge sends as UAC asking for `interval`.
    pub fn request_headers(self, interval: u32, edge_refreshes: Option<bool>) -> Vec<Header> {
        if self.session_expires == 0 {
            return Vec::new();
        }
        let refresher = edge_refreshes.map(|e| if e { Refresher::Uac } else { Refresher::Uas });
        vec![
            Header::Supported(rsip::headers::Supported::new("timer")),
            SessionExpires {
                delta: interval,
                refresher,
            }
            .header(),
            min_se_header(self.min_se),
        ]
    }
}

/// What the edge, as UAC, learns from the 2xx to its request (§7.2): no
/// `Session-Expires` means no session timer on this dialog.
pub fn from_answer(headers: &Headers) -> Option<Negotiated> {
    let se = session_expires(headers).ok().flatten()?;
    Some(Negotiated {
        interval: se.delta.max(MIN_SE_FLOOR),
        // `uac` is the edge; a 2xx without refresher leaves it to the edge (§7.2).
        edge_refreshes: se.refresher != Some(Refresher::Uas),
    })
}

#[cfg(test)]
#[path = "session_timer_tests.rs"]
mod tests;
