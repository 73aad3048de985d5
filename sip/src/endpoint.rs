//! The sans-IO SIP endpoint: message intake, transaction matching (RFC 3261
//! §17.1.3/§17.2.3), the timer wheel of all transactions, stateless ACK sending and
//! the UAS core's 2xx retransmission until the ACK arrives (§13.3.1.4).
//!
//! Drive it like this, in this order:
//! 1. feed input with [`Endpoint::handle_datagram`] (bytes that arrived on a
//!    [`Flow`]) and [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] is due;
//! 2. drain [`Endpoint::poll_event`] and let the TU react (it calls
//!    [`Endpoint::send_request`], [`Endpoint::respond`], [`Endpoint::send_ack`],
//!    [`Endpoint::cancel`]);
//! 3. drain [`Endpoint::poll_transmit`] onto the sockets;
//! 4. sleep until [`Endpoint::poll_timeout`].

use crate::message::{self, Head, ParseError};
use crate::transaction::{Kind, Output, Outputs, Transaction, TxId, T1, T1X64, T2};
use crate::Flow;
use bytes::Bytes;
use rsip::headers::UntypedHeader;
use rsip::message::HasHeaders;
use rsip::{Header, Method, Request, Response, SipMessage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Something the TU must handle.
#[derive(Debug)]
pub enum Event {
    /// A new request (a new server transaction). For INVITE, 100 Trying was sent.
    Request {
        tx: TxId,
        request: Request,
        head: Head,
        flow: Flow,
    },
    /// A CANCEL matched the pending INVITE server transaction `invite` and was
    /// answered 200; the TU must answer the INVITE (487) and stop working on it.
    Cancelled { invite: TxId },
    /// An ACK for a 2xx (it belongs to no transaction).
    Ack {
        request: Request,
        head: Head,
        flow: Flow,
    },
    /// A response of client transaction `tx`.
    Response {
        tx: TxId,
        response: Response,
        head: Head,
    },
    /// A 2xx for an INVITE whose client transaction is gone (retransmission or fork).
    StrayResponse {
        response: Response,
        head: Head,
        flow: Flow,
    },
    /// A transaction timed out: client (B/F: no final response) or server INVITE
    /// (H: no ACK for a non-2xx final).
    Timeout { tx: TxId },
    /// A client transaction's flow failed (connection refused or lost, TLS
    /// handshake failed) before its final response: the TU treats it as a 503
    /// (§8.1.3.1).
    TransportError { tx: TxId },
    /// A 2xx we sent was never ACKed within 64·T1 (§13.3.1.4): the TU should BYE.
    AckTimeout { call_id: String, cseq: u32 },
    /// A message could not be parsed (already answered 400/501 when possible).
    Malformed { flow: Flow, error: ParseError },
}

/// Bytes to put on the wire.
#[derive(Debug)]
pub struct Transmit {
    pub flow: Flow,
    pub data: Bytes,
}

/// Message counters, by method and response class.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests in / out by method (index: [`method_index`]).
    pub requests_in: [u64; METHODS],
    pub requests_out: [u64; METHODS],
    /// Responses in / out by class 1xx..6xx (index 0..6).
    pub responses_in: [u64; 6],
    pub responses_out: [u64; 6],
    pub retransmissions: u64,
    pub malformed: u64,
    /// Requests refused before any TU saw them (416 scheme, 420 extension).
    pub refused: u64,
    /// New requests the TU's screen refused statelessly or dropped.
    pub screened: u64,
    pub transactions: usize,
}

/// The TU's verdict on a request before any transaction exists for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Accept,
    /// Answer once with this status, statelessly (retransmissions are answered
    /// again, one response per request).
    Refuse(u16),
    /// Send nothing.
    Drop,
    /// Overloaded: 503 with `Retry-After` (seconds), statelessly.
    Busy(u32),
}

pub const METHODS: usize = 14;
pub const METHOD_NAMES: [&str; METHODS] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

pub fn method_index(m: Method) -> usize {
    match m {
        Method::Ack => 0,
        Method::Bye => 1,
        Method::Cancel => 2,
        Method::Info => 3,
        Method::Invite => 4,
        Method::Message => 5,
        Method::Notify => 6,
        Method::Options => 7,
        Method::PRack => 8,
        Method::Publish => 9,
        Method::Refer => 10,
        Method::Register => 11,
        Method::Subscribe => 12,
        Method::Update => 13,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    /// [`method_index`]; ACK is stored as INVITE.
    method: usize,
}

/// A transaction with the key it is found by, to unindex it when it ends.
#[derive(Debug)]
struct Slot {
    tx: Transaction,
    key: Result<ServerKey, ClientKey>,
}

impl std::ops::Deref for Slot {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.tx
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut Transaction {
        &mut self.tx
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: usize,
}

#[derive(Debug)]
struct Pending2xx {
    flow: Flow,
    data: Bytes,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    Tx(TxId),
    Pending(u64),
}

/// Deterministic generator for tags, branches and Call-IDs (splitmix64). The driver
/// seeds it from OS entropy; tests seed it with a constant.
#[derive(Debug, Clone)]
pub struct IdGen(u64);

impl IdGen {
    pub fn new(seed: u64) -> Self {
        IdGen(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A 16-hex-digit token.
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }
}

pub struct Endpoint {
    server_name: String,
    ids: IdGen,
    /// Option tags a `Require` may name (lower case).
    supported: Vec<String>,
    next_tx: u64,
    /// Boxed: a UDP registration's two transactions linger 32 s (Timer J), so at
    /// a few thousand a second the table holds 100 000s of them, and a table of
    /// inline transactions keeps up to twice their size in empty buckets.
    transactions: HashMap<TxId, Box<Slot>>,
    server_keys: HashMap<ServerKey, TxId>,
    client_keys: HashMap<ClientKey, TxId>,
    /// Client INVITE requests, to build ACK (non-2xx) and CANCEL.
    invites: HashMap<TxId, Request>,
    pending: HashMap<u64, Pending2xx>,
    pending_by_dialog: HashMap<(String, u32), u64>,
    next_pending: u64,
    timers: BinaryHeap<Reverse<(Instant, Wake)>>,
    outputs: Outputs,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    pub stats: Stats,
}

impl Endpoint {
    pub fn new(server_name: impl Into<String>, seed: u64) -> Self {
        Endpoint {
            server_name: server_name.into(),
            ids: IdGen::new(seed),
            supported: vec!["timer".to_string()],
            next_tx: 1,
            transactions: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            invites: HashMap::new(),
            pending: HashMap::new(),
            pending_by_dialog: HashMap::new(),
            next_pending: 1,
            timers: BinaryHeap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Name used in Server / User-Agent headers.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The endpoint's identifier generator (for tags and Call-IDs of the TU).
    pub fn ids(&mut self) -> &mut IdGen {
        &mut self.ids
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The options a `Require` may name (anything else gets 420).
    pub fn set_supported(&mut self, options: &[&str]) {
        self.supported = options.iter().map(|o| o.to_ascii_lowercase()).collect();
    }

    /// A request the UAS core refuses before any TU sees it (RFC 3261 §8.2.2): a
    /// Request-URI scheme it does not serve (416), or extensions in `Require` it does
    /// not support (420 with `Unsupported`; never for CANCEL or ACK, §8.2.2.3).
    fn refusal(&self, req: &Request) -> Option<(u16, Vec<Header>)> {
        if !message::is_sip_uri(&req.uri) {
            return Some((416, Vec::new()));
        }
        if req.method == Method::Cancel || req.method == Method::Ack {
            return None;
        }
        let unsupported: Vec<&str> = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Require(r) => Some(r.value()),
                _ => None,
            })
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty() && !self.supported.contains(&o.to_ascii_lowercase()))
            .collect();
        if unsupported.is_empty() {
            return None;
        }
        let h = rsip::headers::Unsupported::new(unsupported.join(", ")).into();
        Some((420, vec![h]))
    }

    /// When [`Endpoint::handle_timeout`] must be called next (may be early).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn transaction_count(&self) -> usize {
        self.transactions.len()
    }

    /// What the transaction tables can hold without growing (the largest of
    /// them), for memory accounting.
    pub fn table_capacity(&self) -> usize {
        [
            self.transactions.capacity(),
            self.server_keys.capacity(),
            self.client_keys.capacity(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// Bytes that arrived on `flow` (a UDP datagram or one framed TCP message).
    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.handle_datagram_screened(now, flow, data, |_, _, _| Screen::Accept)
    }

    /// As [`Endpoint::handle_datagram`], with `screen` deciding about a request that
    /// would start a new server transaction before one exists: a refused or dropped
    /// request leaves no state behind (one stateless response, or nothing), however
    /// often it is sent. Requests of existing transactions and ACKs are not screened.
    pub fn handle_datagram_screened(
        &mut self,
        now: Instant,
        flow: Flow,
        data: &[u8],
        screen: impl FnOnce(&Request, &Head, Flow) -> Screen,
    ) {
        match message::parse(data) {
            Ok((SipMessage::Request(req), head)) => self.on_request(now, flow, req, head, screen),
            Ok((SipMessage::Response(resp), head)) => self.on_response(now, flow, resp, head),
            Err(error) => {
                self.stats.malformed += 1;
                if let Some(reply) = message::raw_reply(data, &error, &self.server_name) {
                    self.stats.responses_out[3] += 1;
                    self.transmits.push_back(Transmit { flow, data: reply });
                }
                self.events.push_back(Event::Malformed { flow, error });
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        flow: Flow,
        mut req: Request,
        head: Head,
        screen: impl FnOnce(&Request, &Head, Flow) -> Screen,
    ) {
        self.stats.requests_in[method_index(req.method)] += 1;
        stamp_via(&mut req, &head, flow);
        let method = req.method;
        let branch = head
            .via
            .branch
            .clone()
            .unwrap_or_else(|| legacy_branch(&head));
        let key = ServerKey {
            branch,
            sent_by: head.via.sent_by(),
            method: method_index(if method == Method::Ack {
                Method::Invite
            } else {
                method
            }),
        };
        let reply_flow = response_flow(flow, &head);
        if method == Method::Ack {
            if let Some(id) = self.server_keys.get(&key).copied() {
                if let Some(t) = self.transactions.get_mut(&id) {
                    if t.kind == Kind::ServerInvite
                        && t.state != crate::transaction::State::Accepted
                    {
                        t.on_ack(now);
                        self.rearm(id);
                        return;
                    }
                }
            }
            if let Some(p) = self
                .pending_by_dialog
                .remove(&(head.call_id.clone(), head.cseq))
            {
                self.pending.remove(&p);
            }
            self.events.push_back(Event::Ack {
                request: req,
                head,
                flow: reply_flow,
            });
            return;
        }
        if let Some(id) = self.server_keys.get(&key).copied() {
            if let Some(t) = self.transactions.get_mut(&id) {
                self.stats.retransmissions += 1;
                t.on_request_retransmission(&mut self.outputs);
                self.flush(now);
                return;
            }
        }
        match screen(&req, &head, reply_flow) {
            Screen::Accept => {}
            verdict @ (Screen::Refuse(_) | Screen::Busy(_)) => {
                self.stats.screened += 1;
                let code = match verdict {
                    Screen::Refuse(code) => code,
                    _ => 503,
                };
                let mut resp = message::response(&req, code, None, &self.server_name);
                if let Screen::Busy(secs) = verdict {
                    message::add_headers(
                        &mut resp,
                        vec![rsip::headers::RetryAfter::new(secs.to_string()).into()],
                    );
                }
                let tag = message::stateless_tag(&head);
                message::ensure_to_tag(&mut resp, &mut Some(tag), String::new);
                self.stats.responses_out[class_index(code)] += 1;
                self.transmits.push_back(Transmit {
                    flow: reply_flow,
                    data: message::display_bytes(&resp),
                });
                return;
            }
            Screen::Drop => {
                self.stats.screened += 1;
                return;
            }
        }
        let id = self.alloc_id();
        let kind = if method == Method::Invite {
            Kind::ServerInvite
        } else {
            Kind::ServerNonInvite
        };
        let tx = Transaction::server(id, kind, reply_flow);
        self.server_keys.insert(key.clone(), id);
        self.transactions.insert(
            id,
            Box::new(Slot {
                tx,
                key: Ok(key.clone()),
            }),
        );

        if method == Method::Cancel {
            let invite_key = ServerKey {
                method: method_index(Method::Invite),
                ..key
            };
            let target = self.server_keys.get(&invite_key).copied();
            let (code, cancelled) =
                match target.and_then(|i| self.transactions.get(&i).map(|t| (i, t))) {
                    Some((i, t)) if !t.has_final() => (200, Some(i)),
                    Some(_) => (200, None),
                    None => (481, None),
                };
            let to_tag = head.to_tag.clone();
            let resp = message::response(&req, code, to_tag.as_deref(), &self.server_name);
            self.respond(now, id, resp);
            if let Some(invite) = cancelled {
                self.events.push_back(Event::Cancelled { invite });
            }
            return;
        }
        if let Some((code, extra)) = self.refusal(&req) {
            self.stats.refused += 1;
            let mut resp = message::response(&req, code, None, &self.server_name);
            message::add_headers(&mut resp, extra);
            self.respond(now, id, resp);
            return;
        }
        if method == Method::Invite {
            let trying = message::response(&req, 100, None, &self.server_name);
            self.respond(now, id, trying);
        }
        self.events.push_back(Event::Request {
            tx: id,
            request: req,
            head,
            flow: reply_flow,
        });
    }

    fn on_response(&mut self, now: Instant, flow: Flow, resp: Response, head: Head) {
        let code = resp.status_code.code();
        self.stats.responses_in[class_index(code)] += 1;
        let Some(branch) = head.via.branch.clone() else {
            return;
        };
        let key = ClientKey {
            branch,
            method: method_index(head.cseq_method),
        };
        let Some(id) = self.client_keys.get(&key).copied() else {
            if head.cseq_method == Method::Invite && (200..300).contains(&code) {
                self.events.push_back(Event::StrayResponse {
                    response: resp,
                    head,
                    flow,
                });
            }
            return;
        };
        let Some(t) = self.transactions.get_mut(&id) else {
            return;
        };
        let invites = &self.invites;
        let server_name = &self.server_name;
        let to_tu = t.on_response(
            code,
            now,
            || {
                let inv = invites
                    .get(&id)
                    .expect("client INVITE kept while its transaction lives");
                message::display_bytes(&ack_for_failure(inv, &resp, server_name))
            },
            &mut self.outputs,
        );
        self.rearm(id);
        self.flush(now);
        if to_tu {
            self.events.push_back(Event::Response {
                tx: id,
                response: resp,
                head,
            });
        }
    }

    /// Put `data` on the wire as it is, outside any transaction (the B2BUA's
    /// stateless relay between cluster nodes).
    pub fn send_raw(&mut self, flow: Flow, data: Bytes) {
        self.transmits.push_back(Transmit { flow, data });
    }

    /// Start a client transaction. A top Via with a fresh branch is added from
    /// `flow.local`; the request must carry everything else.
    pub fn send_request(&mut self, now: Instant, mut req: Request, flow: Flow) -> TxId {
        let branch = format!("z9hG4bK{}", self.ids.token());
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            flow.transport.as_str(),
            flow.local
        );
        let mut headers: Vec<Header> = Vec::with_capacity(req.headers.iter().count() + 1);
        headers.push(rsip::headers::Via::new(via).into());
        headers.extend(std::mem::take(&mut req.headers));
        req.headers = headers.into();
        self.start_client(now, req, flow, branch)
    }

    fn start_client(&mut self, now: Instant, req: Request, flow: Flow, branch: String) -> TxId {
        self.stats.requests_out[method_index(req.method)] += 1;
        let id = self.alloc_id();
        let kind = if req.method == Method::Invite {
            Kind::ClientInvite
        } else {
            Kind::ClientNonInvite
        };
        let key = ClientKey {
            branch,
            method: method_index(req.method),
        };
        let bytes = message::display_bytes(&req);
        if kind == Kind::ClientInvite {
            self.invites.insert(id, req);
        }
        let tx = Transaction::client(id, kind, flow, bytes, now, &mut self.outputs);
        self.client_keys.insert(key.clone(), id);
        self.transactions
            .insert(id, Box::new(Slot { tx, key: Err(key) }));
        self.rearm(id);
        self.flush(now);
        id
    }

    /// CANCEL a client INVITE transaction (§9.1). Only call it after a provisional
    /// response arrived. Returns the CANCEL's transaction.
    pub fn cancel(&mut self, now: Instant, invite: TxId) -> Option<TxId> {
        let inv = self.invites.get(&invite)?;
        let flow = self.transactions.get(&invite)?.flow;
        let mut headers: Vec<Header> = Vec::with_capacity(8);
        let mut branch = None;
        for h in inv.headers.iter() {
            match h {
                Header::Via(v) if branch.is_none() => {
                    branch = message::Via::parse_value(v.value()).and_then(|v| v.branch);
                    headers.push(h.clone());
                }
                Header::From(_) | Header::To(_) | Header::CallId(_) | Header::Route(_) => {
                    headers.push(h.clone())
                }
                Header::MaxForwards(_) => headers.push(h.clone()),
                Header::CSeq(c) => {
                    let n = c.value().split_whitespace().next().unwrap_or("1");
                    headers.push(rsip::headers::CSeq::new(format!("{n} CANCEL")).into());
                }
                _ => {}
            }
        }
        headers.push(rsip::headers::ContentLength::new("0").into());
        let req = Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            version: rsip::Version::V2,
            headers: headers.into(),
            body: vec![],
        };
        Some(self.start_client(now, req, flow, branch?))
    }

    /// Send a response through server transaction `tx`. A 2xx to an INVITE is also
    /// retransmitted by the endpoint (T1 doubling to T2) until the ACK arrives or
    /// 64·T1 pass ([`Event::AckTimeout`]).
    pub fn respond(&mut self, now: Instant, tx: TxId, mut resp: Response) -> bool {
        let code = resp.status_code.code();
        let Some(t) = self.transactions.get_mut(&tx) else {
            return false;
        };
        // Every response but 100 carries a To tag, the same in all of a transaction's
        // responses: the TU's, or the first one sent, or a new one.
        if code != 100 {
            let ids = &mut self.ids;
            message::ensure_to_tag(&mut resp, &mut t.to_tag, || ids.token());
        }
        let bytes = message::display_bytes(&resp);
        let is_invite = t.kind == Kind::ServerInvite;
        let flow = t.flow;
        if !t.send_response(code, bytes.clone(), now, &mut self.outputs) {
            return false;
        }
        self.stats.responses_out[class_index(code)] += 1;
        if is_invite && (200..300).contains(&code) && !flow.transport.is_reliable() {
            if let Some((call_id, cseq)) = dialog_key(&resp) {
                let id = self.next_pending;
                self.next_pending += 1;
                self.pending.insert(
                    id,
                    Pending2xx {
                        flow,
                        data: bytes,
                        interval: T1,
                        next: now + T1,
                        give_up: now + T1X64,
                    },
                );
                self.pending_by_dialog.insert((call_id, cseq), id);
                self.timers.push(Reverse((now + T1, Wake::Pending(id))));
            }
        }
        self.rearm(tx);
        self.flush(now);
        true
    }

    /// Send an ACK for a 2xx (no transaction, §17.1.1.3). Re-send it for each
    /// retransmitted 2xx reported as [`Event::Response`] or [`Event::StrayResponse`].
    pub fn send_ack(&mut self, req: &Request, flow: Flow) {
        self.stats.requests_out[0] += 1;
        self.transmits.push_back(Transmit {
            flow,
            data: message::display_bytes(req),
        });
    }

    /// Build an ACK's top Via for `flow` (ACK for 2xx gets its own branch).
    pub fn new_via(&mut self, flow: Flow) -> Header {
        let branch = format!("z9hG4bK{}", self.ids.token());
        rsip::headers::Via::new(format!(
            "SIP/2.0/{} {};branch={branch};rport",
            flow.transport.as_str(),
            flow.local
        ))
        .into()
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, wake))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match wake {
                Wake::Tx(id) => {
                    let Some(tx) = self.transactions.get_mut(&id) else {
                        continue;
                    };
                    if tx.deadline().is_some_and(|d| d <= now) {
                        tx.on_timeout(now, &mut self.outputs);
                        self.rearm(id);
                    }
                }
                Wake::Pending(id) => self.pending_timer(now, id),
            }
        }
        self.flush(now);
    }

    fn pending_timer(&mut self, now: Instant, id: u64) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.give_up <= now {
            let p = self.pending.remove(&id).expect("present");
            let key = self
                .pending_by_dialog
                .iter()
                .find(|(_, v)| **v == id)
                .map(|(k, _)| k.clone());
            if let Some(k) = key {
                self.pending_by_dialog.remove(&k);
                self.events.push_back(Event::AckTimeout {
                    call_id: k.0,
                    cseq: k.1,
                });
            }
            drop(p);
            return;
        }
        if p.next <= now {
            self.stats.retransmissions += 1;
            self.transmits.push_back(Transmit {
                flow: p.flow,
                data: p.data.clone(),
            });
            p.interval = (p.interval * 2).min(T2);
            p.next = (now + p.interval).min(p.give_up);
            self.timers.push(Reverse((p.next, Wake::Pending(id))));
        }
    }

    fn alloc_id(&mut self) -> TxId {
        let id = TxId(self.next_tx);
        self.next_tx += 1;
        id
    }

    /// Give back what the transaction tables grew to at a peak: a burst (100 000
    /// phones registering) leaves tables sized for it that never shrink on their
    /// own, most of the memory a registered phone appeared to cost. A table is
    /// halved towards twice its length once it is four times emptier than its
    /// capacity (rehashing O(len), rare).
    pub fn compact(&mut self) {
        macro_rules! shrink {
            ($($c:expr),*) => {$(
                if let Some(n) = shrink_target($c.len(), $c.capacity()) {
                    $c.shrink_to(n);
                }
            )*};
        }
        shrink!(
            self.transactions,
            self.server_keys,
            self.client_keys,
            self.invites,
            self.pending,
            self.pending_by_dialog,
            self.timers,
            self.events,
            self.transmits
        );
    }

    /// Re-register a transaction's next deadline, or remove it when terminated.
    fn rearm(&mut self, id: TxId) {
        let Some(t) = self.transactions.get(&id) else {
            return;
        };
        if t.is_terminated() {
            self.invites.remove(&id);
            match self.transactions.remove(&id).map(|slot| slot.key) {
                Some(Ok(k)) => {
                    self.server_keys.remove(&k);
                }
                Some(Err(k)) => {
                    self.client_keys.remove(&k);
                }
                None => {}
            }
        } else if let Some(d) = t.deadline() {
            self.timers.push(Reverse((d, Wake::Tx(id))));
        }
    }

    fn flush(&mut self, _now: Instant) {
        while let Some(o) = self.outputs.pop_front() {
            match o {
                Output::Send(flow, data) => self.transmits.push_back(Transmit { flow, data }),
                Output::Timeout(tx) => self.events.push_back(Event::Timeout { tx }),
            }
        }
        self.stats.transactions = self.transactions.len();
    }

    /// The transport of client transactions on `flow` failed (TCP connect refused,
    /// connection lost, ICMP): they end with [`Event::TransportError`] (§17.1.4, §8.1.3.1).
    pub fn transport_failed(&mut self, now: Instant, flow: Flow) {
        let ids: Vec<TxId> = self
            .transactions
            .values()
            .filter(|t| {
                t.flow == flow
                    && matches!(t.kind, Kind::ClientInvite | Kind::ClientNonInvite)
                    && !t.has_final()
            })
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.events.push_back(Event::TransportError { tx: id });
            if let Some(t) = self.transactions.get_mut(&id) {
                t.state = crate::transaction::State::Terminated;
            }
            self.rearm(id);
        }
        self.flush(now);
    }
}

fn class_index(code: u16) -> usize {
    ((code / 100).clamp(1, 6) - 1) as usize
}

/// The capacity to shrink a collection of `len` items to, when a burst left it
/// four times emptier than its `capacity` (and over 1024): twice its length.
pub fn shrink_target(len: usize, capacity: usize) -> Option<usize> {
    (capacity > 1024 && len * 4 < capacity).then_some(len * 2)
}

/// Where responses to a request go (§18.2.2 with RFC 3581): reliable → the same
/// connection; `rport` → the source address; else source IP and the Via port.
fn response_flow(flow: Flow, head: &Head) -> Flow {
    if flow.transport.is_reliable() || head.via.rport {
        return flow;
    }
    let mut f = flow;
    f.remote.set_port(head.via.port.unwrap_or(5060));
    f
}

/// Add `received` (and the `rport` value) to the top Via of a request (§18.2.1, RFC 3581).
fn stamp_via(req: &mut Request, head: &Head, flow: Flow) {
    let ip = flow.remote.ip().to_string();
    let host_differs = head.via.host != ip && head.via.host.trim_matches(['[', ']']) != ip;
    if !head.via.rport && !host_differs {
        return;
    }
    for h in req.headers.iter_mut() {
        if let Header::Via(v) = h {
            let value = v.value();
            let (top, rest) = match value.find(',') {
                Some(i) => (&value[..i], &value[i..]),
                None => (value, ""),
            };
            let mut new = String::with_capacity(value.len() + 40);
            for (i, p) in top.split(';').enumerate() {
                let name = p.split('=').next().unwrap_or("").trim();
                if i > 0
                    && (name.eq_ignore_ascii_case("rport") || name.eq_ignore_ascii_case("received"))
                {
                    continue;
                }
                if i > 0 {
                    new.push(';');
                }
                new.push_str(p);
            }
            new.push_str(";received=");
            new.push_str(&ip);
            if head.via.rport {
                new.push_str(";rport=");
                new.push_str(&flow.remote.port().to_string());
            }
            new.push_str(rest);
            v.replace(new);
            return;
        }
    }
}

/// RFC 2543 peers send no branch; match on the dialog identifiers instead.
fn legacy_branch(head: &Head) -> String {
    format!(
        "2543:{}:{}:{}",
        head.call_id,
        head.cseq,
        head.from_tag.as_deref().unwrap_or("")
    )
}

fn dialog_key(resp: &Response) -> Option<(String, u32)> {
    let mut call_id = None;
    let mut cseq = None;
    for h in resp.headers().iter() {
        match h {
            Header::CallId(c) => call_id = Some(c.value().trim().to_string()),
            Header::CSeq(c) => {
                cseq = c
                    .value()
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
            }
            _ => {}
        }
    }
    Some((call_id?, cseq?))
}

/// The ACK for a non-2xx final response (§17.1.1.3): same Request-URI, top Via,
/// From, Call-ID, CSeq number and Route as the INVITE; To from the response.
fn ack_for_failure(inv: &Request, resp: &Response, server: &str) -> Request {
    let _ = server;
    let mut headers: Vec<Header> = Vec::with_capacity(8);
    let mut via_done = false;
    for h in inv.headers.iter() {
        match h {
            Header::Via(_) if !via_done => {
                via_done = true;
                headers.push(h.clone());
            }
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => {
                let n = c.value().split_whitespace().next().unwrap_or("1");
                headers.push(rsip::headers::CSeq::new(format!("{n} ACK")).into());
            }
            _ => {}
        }
    }
    if let Some(to) = resp.headers.iter().find(|h| matches!(h, Header::To(_))) {
        headers.push(to.clone());
    }
    headers.push(rsip::headers::ContentLength::new("0").into());
    Request {
        method: Method::Ack,
        uri: inv.uri.clone(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: vec![],
    }
}
