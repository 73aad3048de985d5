//! The in-memory SIP test harness every sans-IO SIP test uses (the endpoint's, the
//! B2BUA's, loadtest's caller/answerer): a [`Wire`] that parses what a core sends
//! and queues it per destination, a virtual [`Clock`] that drives any core's timers
//! ([`Timed`]), and small builders ([`flow`], [`reply_to`], [`first_line`]). No
//! sockets, no real time: a test decides when every timer fires.
//!
//! Compiled for this crate's tests and, with the `testing` feature, for other
//! crates' tests (as a dev-dependency feature).

use crate::endpoint::{Endpoint, Transmit};
use crate::message::{self, Head};
use crate::{Flow, Transport};
use rsip::{Method, Request, Response, SipMessage};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A UDP flow from `local` to `remote` (`"127.0.0.1:5060"` style addresses).
pub fn flow(local: &str, remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local: local.parse().expect("a socket address"),
        remote: remote.parse().expect("a socket address"),
    }
}

/// The first line of a message (for assertions and panics).
pub fn first_line(m: &SipMessage) -> String {
    m.to_string().lines().next().unwrap_or("").to_string()
}

/// A response to `sent` (a request's bytes) as its peer would send it.
pub fn reply_to(sent: &[u8], code: u16, to_tag: &str) -> Vec<u8> {
    let (msg, _) = message::parse(sent).expect("a parseable request");
    let SipMessage::Request(req) = msg else {
        panic!("not a request: {}", first_line(&msg))
    };
    message::response(&req, code, Some(to_tag), "peer")
        .to_string()
        .into_bytes()
}

/// Everything a core queued to transmit, in order.
pub fn drain_transmits(poll: impl FnMut() -> Option<Transmit>) -> Vec<Transmit> {
    std::iter::from_fn(poll).collect()
}

/// The peers' side of the network: every message a core sends, parsed (a core that
/// sends unparseable SIP fails the test) and queued for the address it went to.
/// [`Wire::lossy`] drops every n-th message, for retransmission tests.
#[derive(Default)]
pub struct Wire {
    inbox: HashMap<SocketAddr, VecDeque<Arrived>>,
    drop_every: usize,
    delivered: usize,
}

/// One message as it reached its destination: parsed, and its bytes.
struct Arrived {
    msg: SipMessage,
    head: Head,
    data: Vec<u8>,
}

impl Wire {
    pub fn new() -> Wire {
        Wire::default()
    }

    /// A network that loses every `n`-th message it is given (`0`: none).
    pub fn lossy(n: usize) -> Wire {
        Wire {
            drop_every: n,
            ..Wire::default()
        }
    }

    /// Queue one transmit for its destination (unless the network loses it).
    pub fn deliver(&mut self, t: &Transmit) {
        let (msg, head) = message::parse(&t.data).expect("the core sends parseable SIP");
        self.delivered += 1;
        if self.drop_every != 0 && self.delivered.is_multiple_of(self.drop_every) {
            return;
        }
        self.inbox
            .entry(t.flow.remote)
            .or_default()
            .push_back(Arrived {
                msg,
                head,
                data: t.data.to_vec(),
            });
    }

    /// The next message that reached `at`; panics when there is none.
    pub fn recv(&mut self, at: &str) -> (SipMessage, Head) {
        self.try_recv(at)
            .unwrap_or_else(|| panic!("nothing for {at}"))
    }

    /// The bytes of the next message that reached `at`, to hand to a core that
    /// parses its own input.
    pub fn recv_bytes(&mut self, at: SocketAddr) -> Option<Vec<u8>> {
        self.inbox
            .get_mut(&at)
            .and_then(|q| q.pop_front())
            .map(|a| a.data)
    }

    /// The next final response `code` at `at`, skipping 100 Trying.
    pub fn expect_response(&mut self, at: &str, code: u16) -> (Response, Head) {
        loop {
            let (m, h) = self.recv(at);
            match m {
                SipMessage::Response(r) if r.status_code.code() == code => return (r, h),
                SipMessage::Response(r) if r.status_code.code() == 100 => continue,
                other => panic!("expected {code} at {at}, got {}", first_line(&other)),
            }
        }
    }

    /// The next message at `at`, which must be a `method` request.
    pub fn expect_request(&mut self, at: &str, method: Method) -> (Request, Head) {
        let (m, h) = self.recv(at);
        match m {
            SipMessage::Request(r) if r.method == method => (r, h),
            other => panic!("expected {method} at {at}, got {}", first_line(&other)),
        }
    }

    /// The next message at `at`, if any.
    pub fn try_recv(&mut self, at: &str) -> Option<(SipMessage, Head)> {
        self.inbox
            .get_mut(&at.parse().expect("a socket address"))
            .and_then(|q| q.pop_front())
            .map(|a| (a.msg, a.head))
    }

    /// Forget everything waiting at `at`.
    pub fn clear(&mut self, at: &str) {
        self.inbox.remove(&at.parse().expect("a socket address"));
    }

    /// Nothing is waiting at `at`.
    pub fn quiet(&self, at: &str) -> bool {
        self.inbox
            .get(&at.parse().expect("a socket address"))
            .is_none_or(|q| q.is_empty())
    }
}

/// A sans-IO core with timers.
pub trait Timed {
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

impl Timed for Endpoint {
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now)
    }
}

/// A virtual clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            now: Instant::now(),
        }
    }

    /// Move time forward by `d`, firing every timer of `core` that falls due on the
    /// way at its own instant; `after` runs after each firing (drain outputs there).
    pub fn advance<C: Timed>(&mut self, core: &mut C, d: Duration, mut after: impl FnMut(&mut C)) {
        let end = self.now + d;
        while let Some(t) = core.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            core.handle_timeout(self.now);
            after(core);
        }
        self.now = end;
        core.handle_timeout(self.now);
        after(core);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
#[path = "testing_tests.rs"]
mod tests;
