//! The four RFC 3261 §17 transaction state machines, without I/O.
//!
//! A [`Transaction`] holds its state, the bytes it may have to retransmit and its
//! timer deadlines. The [`crate::Endpoint`] matches messages to transactions and calls
//! `on_*`; each call pushes what must be sent or reported into [`Outputs`]. Timer
//! names follow the RFC: A/B/D (client INVITE), E/F/K (client non-INVITE), G/H/I
//! (server INVITE), J (server non-INVITE), plus L/M of RFC 6026 for the "Accepted"
//! state of INVITE transactions after a 2xx. On reliable transports A, E, G are never
//! started and D, I, J, K are zero.

use crate::Flow;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// RTT estimate (RFC 3261 §17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// Maximum retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// Maximum duration a message remains in the network.
pub const T4: Duration = Duration::from_secs(5);
/// 64·T1: timers B, F, H, J, L, M.
pub const T1X64: Duration = Duration::from_secs(32);

/// Identifies a transaction inside one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client INVITE before any response.
    Calling,
    /// Client non-INVITE before any response; server non-INVITE before any response.
    Trying,
    Proceeding,
    Completed,
    /// Server INVITE after the ACK for a non-2xx final response.
    Confirmed,
    /// RFC 6026: INVITE transaction after a 2xx.
    Accepted,
    Terminated,
}

/// What a transaction asks its endpoint to do.
#[derive(Debug)]
pub enum Output {
    Send(Flow, Bytes),
    /// Report to the TU: the transaction timed out (B, F, or H).
    Timeout(TxId),
}

pub type Outputs = VecDeque<Output>;

#[derive(Debug)]
pub struct Transaction {
    pub id: TxId,
    pub kind: Kind,
    pub state: State,
    /// Where requests (client) or responses (server) go.
    pub flow: Flow,
    reliable: bool,
    /// Client: the request, for retransmission. Server: unused.
    request: Bytes,
    /// Server: the last response sent, re-sent when the request is retransmitted.
    /// Client INVITE: the ACK for a non-2xx final, re-sent on retransmitted finals.
    last: Option<Bytes>,
    /// Current retransmission interval (A, E, G).
    interval: Duration,
    /// Retransmission timer deadline (A, E, G).
    retransmit_at: Option<Instant>,
    /// Transaction timeout deadline (B, F, H).
    timeout_at: Option<Instant>,
    /// Wait-then-terminate deadline (D, I, J, K, L, M).
    end_at: Option<Instant>,
    /// Server: the To tag of the responses sent so far (every response but 100
    /// carries one, the same in all of them, RFC 3261 §8.2.6.2).
    pub to_tag: Option<String>,
}

impl Transaction {
    /// A client transaction; sends the request at once.
    pub fn client(
        id: TxId,
        kind: Kind,
        flow: Flow,
        request: Bytes,
        now: Instant,
        out: &mut Outputs,
    ) -> Self {
        let reliable = flow.transport.is_reliable();
        let mut t = Transaction {
            id,
            kind,
            state: if kind == Kind::ClientInvite {
                State::Calling
            } else {
                State::Trying
            },
            flow,
            reliable,
            request,
            last: None,
            interval: T1,
            retransmit_at: (!reliable).then_some(now + T1),
            timeout_at: Some(now + T1X64),
            end_at: None,
            to_tag: None,
        };
        out.push_back(Output::Send(t.flow, t.request.clone()));
        if reliable {
            t.retransmit_at = None;
        }
        t
    }

    /// A server transaction for a request that just arrived.
    pub fn server(id: TxId, kind: Kind, flow: Flow) -> Self {
        Transaction {
            id,
            kind,
            state: if kind == Kind::ServerInvite {
                State::Proceeding
            } else {
                State::Trying
            },
            flow,
            reliable: flow.transport.is_reliable(),
            request: Bytes::new(),
            last: None,
            interval: T1,
            retransmit_at: None,
            timeout_at: None,
            to_tag: None,
            end_at: None,
        }
    }

    /// The earliest timer deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn wait(&self, unreliable: Duration) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.end_at = None;
    }

    // ---- server side -------------------------------------------------------------

    /// The request of this server transaction was retransmitted: re-send the last
    /// response, if any (§17.2.1, §17.2.2). In Accepted (after a 2xx) the INVITE is
    /// absorbed: 2xx retransmission is the UAS core's job (RFC 6026).
    pub fn on_request_retransmission(&mut self, out: &mut Outputs) {
        match self.state {
            State::Proceeding | State::Completed => {
                if let Some(r) = &self.last {
                    out.push_back(Output::Send(self.flow, r.clone()));
                }
            }
            _ => {}
        }
    }

    /// The TU sends a response through this server transaction.
    /// Returns false when the state does not allow it (already final).
    pub fn send_response(
        &mut self,
        code: u16,
        bytes: Bytes,
        now: Instant,
        out: &mut Outputs,
    ) -> bool {
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                out.push_back(Output::Send(self.flow, bytes.clone()));
                self.last = Some(bytes);
                if (200..300).contains(&code) {
                    // RFC 6026 Accepted: absorb retransmitted INVITEs for timer L.
                    self.state = State::Accepted;
                    self.end_at = Some(now + T1X64);
                } else if code >= 300 {
                    self.state = State::Completed;
                    if !self.reliable {
                        self.interval = T1;
                        self.retransmit_at = Some(now + T1); // G
                    }
                    self.timeout_at = Some(now + T1X64); // H
                }
                true
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                out.push_back(Output::Send(self.flow, bytes.clone()));
                self.last = Some(bytes);
                if code < 200 {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    self.end_at = Some(now + self.wait(T1X64)); // J
                }
                true
            }
            _ => false,
        }
    }

    /// An ACK matched this server INVITE transaction (ACK for a non-2xx final).
    pub fn on_ack(&mut self, now: Instant) {
        if self.kind == Kind::ServerInvite && self.state == State::Completed {
            self.state = State::Confirmed;
            self.retransmit_at = None;
            self.timeout_at = None;
            self.end_at = Some(now + self.wait(T4)); // I
        }
    }

    /// Whether a final response has been sent (server) or received (client).
    pub fn has_final(&self) -> bool {
        !matches!(
            self.state,
            State::Calling | State::Trying | State::Proceeding
        )
    }

    // ---- client side -------------------------------------------------------------

    /// A response matched this client transaction. Returns whether it goes to the TU.
    /// `ack` builds the ACK for a non-2xx final of an INVITE (§17.1.1.3).
    pub fn on_response(
        &mut self,
        code: u16,
        now: Instant,
        ack: impl FnOnce() -> Bytes,
        out: &mut Outputs,
    ) -> bool {
        match self.kind {
            Kind::ClientInvite => match self.state {
                State::Calling | State::Proceeding => {
                    if code < 200 {
                        self.state = State::Proceeding;
                        self.retransmit_at = None; // A stops
                        self.timeout_at = None; // B stops once a provisional arrives
                    } else if code < 300 {
                        self.state = State::Accepted;
                        self.retransmit_at = None;
                        self.timeout_at = None;
                        self.end_at = Some(now + T1X64); // M
                    } else {
                        let a = ack();
                        out.push_back(Output::Send(self.flow, a.clone()));
                        self.last = Some(a);
                        self.state = State::Completed;
                        self.retransmit_at = None;
                        self.timeout_at = None;
                        self.end_at = Some(now + self.wait(Duration::from_secs(32)));
                        // D
                    }
                    true
                }
                // 2xx retransmissions (or forks) go to the TU, which re-sends its ACK.
                State::Accepted => (200..300).contains(&code),
                State::Completed => {
                    if code >= 300 {
                        if let Some(a) = &self.last {
                            out.push_back(Output::Send(self.flow, a.clone()));
                        }
                    }
                    false
                }
                _ => false,
            },
            _ => match self.state {
                State::Trying | State::Proceeding => {
                    if code < 200 {
                        self.state = State::Proceeding;
                    } else {
                        self.state = State::Completed;
                        self.retransmit_at = None;
                        self.timeout_at = None;
                        self.end_at = Some(now + self.wait(T4)); // K
                    }
                    true
                }
                _ => false,
            },
        }
    }

    // ---- timers ------------------------------------------------------------------

    /// Fire every timer due at `now`.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Outputs) {
        if self.timeout_at.is_some_and(|t| t <= now) {
            // B, F or H.
            out.push_back(Output::Timeout(self.id));
            self.terminate();
            return;
        }
        if self.end_at.is_some_and(|t| t <= now) {
            self.terminate();
            return;
        }
        if let Some(t) = self.retransmit_at.filter(|t| *t <= now) {
            let _ = t;
            match (self.kind, self.state) {
                (Kind::ClientInvite, State::Calling) => {
                    // A: doubles without cap.
                    out.push_back(Output::Send(self.flow, self.request.clone()));
                    self.interval *= 2;
                }
                (Kind::ClientNonInvite, State::Trying) => {
                    // E: doubles up to T2.
                    out.push_back(Output::Send(self.flow, self.request.clone()));
                    self.interval = (self.interval * 2).min(T2);
                }
                (Kind::ClientNonInvite, State::Proceeding) => {
                    out.push_back(Output::Send(self.flow, self.request.clone()));
                    self.interval = T2;
                }
                (Kind::ServerInvite, State::Completed) => {
                    // G: re-send the final response, doubling up to T2.
                    if let Some(r) = &self.last {
                        out.push_back(Output::Send(self.flow, r.clone()));
                    }
                    self.interval = (self.interval * 2).min(T2);
                }
                _ => {
                    self.retransmit_at = None;
                    return;
                }
            }
            self.retransmit_at = Some(now + self.interval);
        }
    }
}
