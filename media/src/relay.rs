//! The per-call RTP/RTCP relay core, without sockets.
//!
//! A call has two sides: `A` faces the caller (trunk), `B` faces the callee (agent or
//! route target). Each side has an RTP and an RTCP socket on the edge. A datagram that
//! arrives on side A's RTP socket is sent from side B's RTP socket to B's peer, and
//! vice versa; RTCP likewise. The payload is never decoded.
//!
//! Symmetric RTP (RFC 4961 practice): the peer address announced in SDP is only a
//! first guess. The first datagram that arrives on a socket *latches* that socket's
//! peer to the datagram's source address, and later datagrams from other sources are
//! dropped (counted) — except from the announced address itself, which takes the
//! latch over. A new SDP from that side (re-INVITE, a transfer) unlatches it.

use std::net::SocketAddr;

/// Which side of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One of the four sockets of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub side: Side,
    pub rtcp: bool,
}

impl Socket {
    pub const ALL: [Socket; 4] = [
        Socket {
            side: Side::A,
            rtcp: false,
        },
        Socket {
            side: Side::A,
            rtcp: true,
        },
        Socket {
            side: Side::B,
            rtcp: false,
        },
        Socket {
            side: Side::B,
            rtcp: true,
        },
    ];

    pub fn index(self) -> usize {
        (self.side as usize) * 2 + self.rtcp as usize
    }

    /// The socket on the other side that forwards what this one receives.
    pub fn peer(self) -> Socket {
        Socket {
            side: self.side.other(),
            rtcp: self.rtcp,
        }
    }
}

/// Counters of one relay. Plain integers: the driver owns one relay per task and
/// publishes the counters in batches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayStats {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Datagrams from a source other than the latched peer.
    pub foreign: u64,
    /// Datagrams that are not RTP/RTCP (version != 2, too short).
    pub malformed: u64,
    /// Datagrams with nowhere to go yet (the other side's address is unknown).
    pub no_destination: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Peer {
    /// Address from SDP (for RTCP: RTP port + 1).
    announced: Option<SocketAddr>,
    /// Address actually sending to us.
    latched: Option<SocketAddr>,
}

impl Peer {
    fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.announced)
    }
}

/// The relay decisions of one call.
#[derive(Debug, Default)]
pub struct Relay {
    peers: [Peer; 4],
    pub stats: RelayStats,
}

impl Relay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set (or change) the RTP address a side announced in SDP. RTCP is assumed on
    /// the next port up. Unlatches that side, so the next datagram latches again.
    /// `None` (e.g. SDP with `c=0.0.0.0` for hold) stops sending to that side.
    pub fn set_remote(&mut self, side: Side, rtp: Option<SocketAddr>) {
        let rtcp = rtp.map(|mut a| {
            a.set_port(a.port().wrapping_add(1));
            a
        });
        self.peers[Socket { side, rtcp: false }.index()] = Peer {
            announced: rtp,
            latched: None,
        };
        self.peers[Socket { side, rtcp: true }.index()] = Peer {
            announced: rtcp,
            latched: None,
        };
    }

    /// A datagram of `len` bytes arrived on `on` from `src`. Returns where to send
    /// it (from the peer socket `on.peer()`), or `None` to drop it.
    pub fn on_datagram(&mut self, on: Socket, src: SocketAddr, data: &[u8]) -> Option<SocketAddr> {
        if data.len() < 8 || data[0] >> 6 != 2 {
            self.stats.malformed += 1;
            return None;
        }
        let me = &mut self.peers[on.index()];
        match me.latched {
            None => me.latched = Some(src),
            // The address the SDP names takes the latch from whatever latched
            // first: a previous party still sending after a transfer (its stream
            // stops a moment later and would leave the socket latched on nothing).
            Some(l) if l != src && me.announced == Some(src) => me.latched = Some(src),
            Some(l) if l != src => {
                self.stats.foreign += 1;
                return None;
            }
            Some(_) => {}
        }
        match self.peers[on.peer().index()].destination() {
            Some(dst) => {
                self.stats.forwarded_packets += 1;
                self.stats.forwarded_bytes += data.len() as u64;
                Some(dst)
            }
            None => {
                self.stats.no_destination += 1;
                None
            }
        }
    }

    /// The address a socket currently sends to (for tests and diagnostics).
    pub fn destination(&self, to: Socket) -> Option<SocketAddr> {
        self.peers[to.index()].destination()
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
