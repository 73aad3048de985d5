//! Chats as a contact centre sees them: a customer starts a chat in a chat queue, the
//! service offers it to a connected agent of that queue with room (`max_chats`), the
//! agent accepts (or releases it back to the queue), and either side ends it. A
//! customer who does not come back within the queue's `abandon_after` ends the chat.
//! Room entries go through [`Rooms`]; this module only decides who is in which room.
//!
//! Sans-IO: every operation takes the time ([`At`]: the monotonic `now` that drives
//! offers and abandonment, and the wall-clock milliseconds that are shown and
//! persisted) and the config snapshot; a new chat's id and token come from the
//! caller's random bytes ([`Keys`]). Nothing here reads a clock, the OS random
//! source or a socket. Frames for agents' consoles are queued as [`Effect`]s: after
//! each call, drain [`Chats::poll_effect`] and deliver them in order. The driver
//! calls [`Chats::sweep`] periodically. The caller serialises access (`&mut self`);
//! the room hot path ([`Rooms::message`]) needs none of this state.

use crate::hub::{HubError, Subscription};
use crate::protocol::{Choice, Offset, ServerFrame};
use crate::room::Rooms;
use crate::store::{token_hash, ChatRecord, StoredMessage};
use control::{Channel, RestoreMode, Snapshot};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// How long an offer waits for the agent's accept before the next agent gets it.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
pub use crate::room::MAX_TEXT;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("no such chat queue")]
    NoQueue,
    #[error("no such chat")]
    NoChat,
    #[error("the chat has ended")]
    Ended,
    #[error("this chat is not yours")]
    NotYours,
    #[error("the chat is not offered to you")]
    NotOffered,
    #[error("message text must be 1 to {MAX_TEXT} characters")]
    BadText,
    #[error("unknown chat token")]
    BadToken,
    #[error("that agent is not connected, not ready, or has no room for another chat")]
    AgentUnavailable,
    #[error("not a consultation of yours")]
    NotConsulting,
    #[error("field `{0}`: {1}")]
    BadField(String, String),
    /// The queue keeps hours and is closed now; the text is the queue's
    /// `after_hours_message` for the customer.
    #[error("{0}")]
    Closed(String),
}

impl From<HubError> for ChatError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NoRoom => ChatError::NoChat,
            HubError::Ended => ChatError::Ended,
        }
    }
}

/// The time of an input: `now` orders offers and abandonment; `unix_ms` is the
/// wall-clock time shown in frames and persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub now: Instant,
    pub unix_ms: u64,
}

/// Random bytes for a new chat, from the caller's CSPRNG: the id (not secret) and the
/// customer's token (a secret: kept only as its SHA-256).
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub id: [u8; 8],
    pub token: [u8; 16],
}

/// What the driver must deliver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A frame for the agent console connected as `conn`.
    Console { conn: u64, frame: ServerFrame },
    /// The console `conn` was replaced by a newer one of the same agent: close it.
    Replaced { conn: u64 },
    /// The console `conn` has a chat it did not accept here (taken over from a
    /// cluster node that died): it joins the room and shows the chat.
    Join { conn: u64, chat: String },
}

/// A user's part in an active chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Agent,
    Consultant,
}

/// Where a transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Offered to this agent directly (it must be connected and have room).
    Agent(String),
    /// Back in line in this chat queue.
    Queue(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Queued,
    Offered { agent: String, until: Instant },
    Active,
    Ended,
}

#[derive(Debug)]
struct Chat {
    queue: String,
    fields: Map<String, Value>,
    state: State,
    agent: Option<String>,
    created: Instant,
    queued_since: Instant,
    /// SHA-256 of the customer's chat token (the token is never kept).
    token_hash: String,
    /// Wall-clock start (transcripts).
    created_ms: u64,
    /// The customer's connection while there is one; when it went away.
    customer: Option<u64>,
    customer_gone: Option<Instant>,
    declined: HashSet<String>,
    /// Agents consulted by the chat's agent: they see the room, including private
    /// entries, and may write private messages; the customer never sees them.
    consultants: HashSet<String>,
    /// Start order (for listing).
    seq: u64,
}

struct AgentConn {
    conn: u64,
    chats: HashSet<String>,
    max: u32,
    /// The agent's chats on other nodes (cluster mode: its console's node tells
    /// every node), counted against `max`.
    elsewhere: u32,
}

impl AgentConn {
    fn has_room(&self) -> bool {
        (self.chats.len() as u32).saturating_add(self.elsewhere) < self.max
    }
}

/// A chat as listed for supervisors.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatSummary {
    pub id: String,
    pub queue: String,
    pub state: &'static str,
    pub agent: Option<String>,
    pub fields: Map<String, Value>,
    pub age_secs: f64,
    /// Seconds waiting in the queue (0 once an agent has it).
    pub wait_secs: f64,
    pub customer_connected: bool,
}

/// What a returning customer gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Continue chat `.0`.
    Continue(String),
    /// The queue asks the customer first (restore mode `prompt`, start differs).
    Prompt(String),
    /// The old chat was ended (mode `new`, or it had ended): start a new one.
    StartNew,
}

pub struct Chats {
    rooms: Arc<Rooms>,
    chats: HashMap<String, Chat>,
    /// Token digest → chat id.
    tokens: HashMap<String, String>,
    /// Queued chats per queue, oldest first.
    waiting: HashMap<String, VecDeque<String>>,
    agents: HashMap<String, AgentConn>,
    /// Consoles of users who take no chats (a voice-only agent, a supervisor):
    /// they still hear of their calls and their agent's state. User → consoles.
    listeners: HashMap<String, Vec<u64>>,
    /// Console users that are agents (`[[agents]] user`) whose state stops chat
    /// offers (not ready, wrap-up, logged out), with that state.
    held: HashMap<String, String>,
    started: u64,
    effects: VecDeque<Effect>,
}

fn state_str(s: &State) -> &'static str {
    match s {
        State::Queued => "queued",
        State::Offered { .. } => "offered",
        State::Active => "active",
        State::Ended => "ended",
    }
}

impl Chats {
    pub fn new(rooms: Arc<Rooms>) -> Chats {
        Chats {
            rooms,
            chats: HashMap::new(),
            tokens: HashMap::new(),
            waiting: HashMap::new(),
            agents: HashMap::new(),
            listeners: HashMap::new(),
            held: HashMap::new(),
            started: 0,
            effects: VecDeque::new(),
        }
    }

    pub fn rooms(&self) -> &Arc<Rooms> {
        &self.rooms
    }

    /// The next frame for a console, in the order the service produced them.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The chat's row to the store.
    fn record(&self, id: &str, unix_ms: u64) {
        if let Some(c) = self.chats.get(id) {
            self.rooms.store().chat(&record_of(id, c, unix_ms));
        }
    }

    /// Chats read back from a store (open ones only: at start, or taken over from a
    /// cluster node that died): rooms with their history and next offset, queued
    /// chats back in line (oldest first) keeping their wait time (counted from the
    /// chat's start, `created_ms`), active chats with their agent (whose console
    /// gets them on connect). Customers have `abandon_after` from now to come back.
    /// A chat this service already has is left as it is. Returns how many were
    /// taken.
    pub fn restore(&mut self, chats: Vec<(ChatRecord, Vec<StoredMessage>)>, at: At) -> usize {
        let now = at.now;
        let mut chats = chats;
        chats.retain(|(r, _)| !self.chats.contains_key(&r.id));
        chats.sort_by_key(|(r, _)| r.created_ms);
        let n = chats.len();
        for (r, msgs) in chats {
            let age = Duration::from_millis(at.unix_ms.saturating_sub(r.created_ms));
            let since = now.checked_sub(age).unwrap_or(now);
            self.rooms.hub.restore(&r.id, msgs);
            let active = r.state == "active" && r.agent.is_some();
            self.started += 1;
            let seq = self.started;
            self.tokens.insert(r.token_hash.clone(), r.id.clone());
            if !active {
                self.waiting
                    .entry(r.queue.clone())
                    .or_default()
                    .push_back(r.id.clone());
            }
            if active {
                // Its agent's console is here already: it gets the chat now.
                if let Some(a) = r.agent.as_ref().and_then(|a| self.agents.get_mut(a)) {
                    a.chats.insert(r.id.clone());
                    self.effects.push_back(Effect::Join {
                        conn: a.conn,
                        chat: r.id.clone(),
                    });
                }
            }
            self.chats.insert(
                r.id.clone(),
                Chat {
                    queue: r.queue,
                    fields: r.fields,
                    state: if active { State::Active } else { State::Queued },
                    agent: if active { r.agent } else { None },
                    created: since,
                    queued_since: since,
                    token_hash: r.token_hash,
                    created_ms: r.created_ms,
                    customer: None,
                    customer_gone: Some(now),
                    declined: HashSet::new(),
                    consultants: HashSet::new(),
                    seq,
                },
            );
        }
        if n > 0 {
            info!(chats = n, "chats restored");
        }
        n
    }

    /// A customer starts a chat in `queue`. Returns (chat id, chat token).
    pub fn start(
        &mut self,
        snap: &Snapshot,
        queue: &str,
        fields: Map<String, Value>,
        at: At,
        keys: Keys,
    ) -> Result<(String, String), ChatError> {
        let q = open_queue(snap, queue, at.unix_ms)?;
        let fields = reserved_fields(snap, fields)?;
        let id = format!("ch-{}", hex::encode(keys.id));
        let token = hex::encode(keys.token);
        self.rooms.hub.create(&id);
        self.started += 1;
        let seq = self.started;
        self.chats.insert(
            id.clone(),
            Chat {
                queue: q.name.clone(),
                fields,
                state: State::Queued,
                agent: None,
                created: at.now,
                queued_since: at.now,
                token_hash: token_hash(&token),
                created_ms: at.unix_ms,
                customer: None,
                customer_gone: Some(at.now),
                declined: HashSet::new(),
                consultants: HashSet::new(),
                seq,
            },
        );
        self.tokens.insert(token_hash(&token), id.clone());
        self.record(&id, at.unix_ms);
        self.waiting
            .entry(q.name.clone())
            .or_default()
            .push_back(id.clone());
        info!(chat = %id, queue = %q.name, "chat started");
        self.dispatch(snap, at.now);
        Ok((id, token))
    }

    /// A returning customer with its chat token and (possibly new) start parameters.
    pub fn resume(
        &mut self,
        snap: &Snapshot,
        token: &str,
        queue: Option<&str>,
        fields: Option<&Map<String, Value>>,
        choice: Option<Choice>,
        at: At,
    ) -> Result<Resume, ChatError> {
        let id = self
            .tokens
            .get(&token_hash(token))
            .ok_or(ChatError::BadToken)?
            .clone();
        let c = self.chats.get(&id).ok_or(ChatError::BadToken)?;
        if c.state == State::Ended {
            return Ok(Resume::StartNew);
        }
        let mode = snap.queue(&c.queue).map(|q| q.restore).unwrap_or_default();
        let differs = queue.is_some_and(|q| q != c.queue) || fields.is_some_and(|f| *f != c.fields);
        let decision = match (mode, choice) {
            (RestoreMode::Restore, _) => Resume::Continue(id.clone()),
            (RestoreMode::New, _) => Resume::StartNew,
            (RestoreMode::Prompt, Some(Choice::Continue)) => Resume::Continue(id.clone()),
            (RestoreMode::Prompt, Some(Choice::New)) => Resume::StartNew,
            (RestoreMode::Prompt, None) if differs => Resume::Prompt(id.clone()),
            (RestoreMode::Prompt, None) => Resume::Continue(id.clone()),
        };
        if decision == Resume::StartNew {
            self.end(snap, &id, "customer", "the customer started a new chat", at);
        }
        Ok(decision)
    }

    /// The customer's connection `conn` joins chat `id` from `offset`.
    pub fn customer_attach(
        &mut self,
        id: &str,
        conn: u64,
        offset: Offset,
    ) -> Result<Subscription, ChatError> {
        let sub = self.rooms.hub.subscribe(id, conn, offset, false)?;
        let c = self.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        c.customer = Some(conn);
        c.customer_gone = None;
        Ok(sub)
    }

    /// The customer's connection went away (not an end: it may come back).
    pub fn customer_detach(&mut self, id: &str, conn: u64, now: Instant) {
        self.rooms.hub.unsubscribe(id, conn);
        if let Some(c) = self.chats.get_mut(id).filter(|c| c.customer == Some(conn)) {
            c.customer = None;
            c.customer_gone = Some(now);
        }
    }

    /// The live chat a customer token belongs to.
    pub fn chat_of_token(&self, token: &str) -> Option<String> {
        let id = self.tokens.get(&token_hash(token))?;
        self.chats
            .get(id)
            .filter(|c| c.state != State::Ended)
            .map(|_| id.clone())
    }

    /// The name a customer is shown with (its start form's `name`).
    pub fn customer_name(&self, id: &str) -> String {
        self.chats
            .get(id)
            .and_then(|c| {
                c.fields
                    .get("name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default()
    }

    /// End a chat for good: the queue's leave message, an `ended` frame, agents told.
    pub fn end(&mut self, snap: &Snapshot, id: &str, by: &str, reason: &str, at: At) {
        let Some(c) = self.chats.get_mut(id) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        let was = std::mem::replace(&mut c.state, State::Ended);
        let agent = c.agent.clone();
        let consultants: Vec<String> = c.consultants.drain().collect();
        let queue = c.queue.clone();
        let left = snap
            .queue(&queue)
            .map(|q| q.left_message.clone())
            .unwrap_or_default();
        if let Some(w) = self.waiting.get_mut(&queue) {
            w.retain(|x| x != id);
        }
        let offered = match was {
            State::Offered { agent, .. } => Some(agent),
            _ => None,
        };
        // The room hears it first (leave message, `ended`), then the agents' consoles.
        if !left.is_empty() && by != "admin" {
            self.rooms.system(id, &left, false, at.unix_ms);
        }
        self.record(id, at.unix_ms);
        self.rooms.ended(id, by, reason, at.unix_ms);
        for a in agent.iter().chain(offered.iter()).chain(consultants.iter()) {
            if let Some(ac) = self.agents.get_mut(a) {
                ac.chats.remove(id);
            }
            self.tell(
                a,
                ServerFrame::ChatEnded {
                    chat: id.to_string(),
                    by: by.to_string(),
                    reason: reason.to_string(),
                },
            );
        }
        info!(chat = %id, by, reason, "chat ended");
    }

    /// An agent's console connects as `conn`. Returns the chats it already has (after
    /// a reconnect), to subscribe again. A previous console of the same agent is
    /// replaced ([`Effect::Replaced`]).
    pub fn agent_connect(
        &mut self,
        snap: &Snapshot,
        user: &str,
        conn: u64,
        max: u32,
        now: Instant,
    ) -> Vec<String> {
        let mine: HashSet<String> = self
            .chats
            .iter()
            .filter(|(_, c)| c.agent.as_deref() == Some(user) && c.state == State::Active)
            .map(|(id, _)| id.clone())
            .collect();
        let list = mine.iter().cloned().collect();
        let old = self.agents.insert(
            user.to_string(),
            AgentConn {
                conn,
                chats: mine,
                max,
                elsewhere: 0,
            },
        );
        if let Some(old) = old.filter(|o| o.conn != conn) {
            self.effects.push_back(Effect::Replaced { conn: old.conn });
        }
        self.dispatch(snap, now);
        list
    }

    /// The state of the agent that console user `user` is changed (the SIP core
    /// reports it): its console hears of it, and unless `takes_chats` (ready, or
    /// busy on a call: chats go on up to `max_chats` during a call) no chat is
    /// offered to it and a pending offer goes back to its queue.
    #[allow(clippy::too_many_arguments)]
    pub fn agent_state(
        &mut self,
        snap: &Snapshot,
        user: &str,
        agent: &str,
        state: &str,
        reason: Option<&str>,
        takes_chats: bool,
        at: At,
    ) {
        self.tell(
            user,
            ServerFrame::AgentState {
                agent: agent.to_string(),
                state: state.to_string(),
                reason: reason.map(str::to_string),
                since: at.unix_ms,
            },
        );
        if takes_chats {
            if self.held.remove(user).is_some() {
                self.dispatch(snap, at.now);
            }
            return;
        }
        self.held.insert(user.to_string(), state.to_string());
        for id in self.offered_to(user) {
            self.tell(
                user,
                ServerFrame::OfferWithdrawn {
                    chat: id.clone(),
                    reason: format!("agent {state}"),
                },
            );
            self.requeue(&id, at.now, None);
            self.record(&id, at.unix_ms);
        }
        self.dispatch(snap, at.now);
    }

    /// Cluster mode: agent `user` (console `conn`) has `n` chats on other nodes;
    /// they count against its `max_chats` here. Fewer than before: waiting chats
    /// may be offered to it now.
    pub fn agent_elsewhere(
        &mut self,
        snap: &Snapshot,
        user: &str,
        conn: u64,
        n: u32,
        now: Instant,
    ) {
        let Some(a) = self.agents.get_mut(user).filter(|a| a.conn == conn) else {
            return;
        };
        let fewer = n < a.elsewhere;
        a.elsewhere = n;
        if fewer {
            self.dispatch(snap, now);
        }
    }

    /// A frame for `user`'s console, if connected (the SIP core's call frames).
    pub fn notify(&mut self, user: &str, frame: ServerFrame) {
        self.tell(user, frame);
    }

    /// Chats offered to `user` now (waiting for its accept).
    fn offered_to(&self, user: &str) -> Vec<String> {
        self.chats
            .iter()
            .filter(|(_, c)| matches!(&c.state, State::Offered { agent, .. } if agent == user))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Chats user `user` is the agent of now (active).
    pub fn active_chats_of(&self, user: &str) -> usize {
        self.chats
            .values()
            .filter(|c| c.agent.as_deref() == Some(user) && c.state == State::Active)
            .count()
    }

    /// The chats of `user`'s connected console here: what its `max_chats` is
    /// checked against (no scan of the chats: a console's loop asks it often).
    pub fn console_chats(&self, user: &str) -> usize {
        self.agents.get(user).map_or(0, |a| a.chats.len())
    }

    /// Active chats per agent (user) on this node.
    pub fn active_chats_by_agent(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for c in self.chats.values().filter(|c| c.state == State::Active) {
            if let Some(a) = &c.agent {
                *out.entry(a.clone()).or_default() += 1;
            }
        }
        out
    }

    /// The console went away: offers go to others; its chats stay assigned (the agent
    /// may reconnect) until the agent ends or releases them.
    pub fn agent_disconnect(&mut self, snap: &Snapshot, user: &str, conn: u64, at: At) {
        if self.agents.get(user).is_none_or(|a| a.conn != conn) {
            return;
        }
        self.agents.remove(user);
        for id in self.offered_to(user) {
            self.requeue(&id, at.now, Some(user));
            self.record(&id, at.unix_ms);
        }
        self.dispatch(snap, at.now);
    }

    /// The agent takes the chat offered to it.
    pub fn accept(
        &mut self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        at: At,
    ) -> Result<(), ChatError> {
        let c = self.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        match &c.state {
            State::Offered { agent, .. } if agent == user => {}
            State::Ended => return Err(ChatError::Ended),
            _ => return Err(ChatError::NotOffered),
        }
        c.state = State::Active;
        c.agent = Some(user.to_string());
        let joined = snap
            .queue(&c.queue)
            .map(|q| q.joined_message.replace("{agent}", user))
            .unwrap_or_default();
        if let Some(a) = self.agents.get_mut(user) {
            a.chats.insert(id.to_string());
        }
        self.record(id, at.unix_ms);
        // The agent may take more (max_chats): the next waiting chat is offered.
        self.dispatch(snap, at.now);
        if !joined.is_empty() {
            self.rooms.system(id, &joined, false, at.unix_ms);
        }
        info!(chat = %id, agent = %user, "chat accepted");
        Ok(())
    }

    /// The agent gives the chat back to its queue (or declines an offer): another
    /// agent gets it; this one is not offered it again.
    pub fn release(
        &mut self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        at: At,
    ) -> Result<(), ChatError> {
        let c = self.chats.get(id).ok_or(ChatError::NoChat)?;
        let mine = c.agent.as_deref() == Some(user)
            || matches!(&c.state, State::Offered { agent, .. } if agent == user);
        if c.state == State::Ended {
            return Err(ChatError::Ended);
        }
        if !mine {
            return Err(ChatError::NotYours);
        }
        let was_active = c.state == State::Active;
        self.requeue(id, at.now, Some(user));
        self.record(id, at.unix_ms);
        if let Some(a) = self.agents.get_mut(user) {
            a.chats.remove(id);
        }
        self.dispatch(snap, at.now);
        if was_active {
            self.rooms.system(
                id,
                "You are being transferred to another agent",
                false,
                at.unix_ms,
            );
        }
        Ok(())
    }

    /// What `user` is in an active chat: its agent, a consulted agent, or nothing.
    pub fn part(&self, user: &str, id: &str) -> Option<Part> {
        let c = self.chats.get(id).filter(|c| c.state == State::Active)?;
        if c.agent.as_deref() == Some(user) {
            Some(Part::Agent)
        } else if c.consultants.contains(user) {
            Some(Part::Consultant)
        } else {
            None
        }
    }

    /// Whether `user` is the agent of an active chat.
    pub fn is_agent_of(&self, user: &str, id: &str) -> bool {
        self.part(user, id) == Some(Part::Agent)
    }

    /// Whether `user` was consulted on the (active) chat.
    pub fn is_consultant(&self, user: &str, id: &str) -> bool {
        self.part(user, id) == Some(Part::Consultant)
    }

    /// The chat's agent hands it on: directly to another agent (offered to it, with
    /// the history, including consultation) or back into a chat queue. The customer
    /// is told it is being transferred; the old agent no longer has the chat.
    pub fn transfer(
        &mut self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        to: &Target,
        at: At,
    ) -> Result<(), ChatError> {
        own_active(self.chats.get(id), user)?;
        let note = match to {
            Target::Agent(a) => {
                let free = self
                    .agents
                    .get(a)
                    .is_some_and(|x| a != user && x.has_room())
                    && !self.held.contains_key(a.as_str());
                if !free {
                    return Err(ChatError::AgentUnavailable);
                }
                format!("{user} transferred the chat to {a}")
            }
            Target::Queue(q) => {
                let queue = snap
                    .queue(q)
                    .filter(|q| q.channel == Channel::Chat)
                    .ok_or(ChatError::NoQueue)?;
                if !queue.transfer_when_closed
                    && snap.closed_action(q, unix_time(at.unix_ms)).is_some()
                {
                    return Err(ChatError::Closed(format!("queue {q} is closed now")));
                }
                format!("{user} transferred the chat to queue {q}")
            }
        };
        if let Some(a) = self.agents.get_mut(user) {
            a.chats.remove(id);
        }
        self.leave_room(id, user);
        let consultants: Vec<String> = {
            let c = self.chats.get_mut(id).expect("checked above");
            c.agent = None;
            c.queued_since = at.now;
            c.declined.clear();
            c.declined.insert(user.to_string());
            c.consultants.drain().collect()
        };
        for other in &consultants {
            self.leave_room(id, other);
            self.tell(
                other,
                ServerFrame::ConsultEnded {
                    chat: id.to_string(),
                    by: user.to_string(),
                    consultant: other.clone(),
                },
            );
        }
        match to {
            Target::Agent(a) => {
                let c = self.chats.get_mut(id).expect("checked above");
                c.state = State::Offered {
                    agent: a.clone(),
                    until: at.now + OFFER_TIMEOUT,
                };
                let frame = ServerFrame::Offer {
                    chat: id.to_string(),
                    queue: c.queue.clone(),
                    fields: c.fields.clone(),
                    transfer_from: Some(user.to_string()),
                    waited_secs: 0.0,
                };
                self.tell(a, frame);
            }
            Target::Queue(q) => {
                let c = self.chats.get_mut(id).expect("checked above");
                c.state = State::Queued;
                c.queue = q.clone();
                self.waiting
                    .entry(q.clone())
                    .or_default()
                    .push_front(id.to_string());
                self.dispatch(snap, at.now);
            }
        }
        self.record(id, at.unix_ms);
        info!(chat = %id, from = %user, to = ?to, "chat transferred");
        self.rooms.system(id, &note, true, at.unix_ms);
        self.rooms.system(
            id,
            "You are being transferred to another agent",
            false,
            at.unix_ms,
        );
        Ok(())
    }

    /// The chat's agent invites another connected agent into a side conversation the
    /// customer does not see (private messages in the same room).
    pub fn consult(&mut self, user: &str, id: &str, other: &str, at: At) -> Result<(), ChatError> {
        let c = self.chats.get(id).ok_or(ChatError::NoChat)?;
        own_active(Some(c), user)?;
        if other == user || !self.agents.contains_key(other) {
            return Err(ChatError::AgentUnavailable);
        }
        let fields = c.fields.clone();
        if let Some(c) = self.chats.get_mut(id) {
            c.consultants.insert(other.to_string());
        }
        self.tell(
            other,
            ServerFrame::Consult {
                chat: id.to_string(),
                from: user.to_string(),
                fields,
            },
        );
        self.rooms
            .system(id, &format!("{user} consults {other}"), true, at.unix_ms);
        Ok(())
    }

    /// The consultation ends (by the chat's agent for `other`, or by the consultant
    /// itself). Returns the consultant that left.
    pub fn consult_end(
        &mut self,
        user: &str,
        id: &str,
        other: Option<&str>,
        at: At,
    ) -> Result<String, ChatError> {
        let c = self.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        let agent = c.agent.as_deref() == Some(user);
        let who = match other {
            Some(o) if agent => o.to_string(),
            _ => user.to_string(),
        };
        if !c.consultants.remove(&who) {
            return Err(ChatError::NotConsulting);
        }
        let agent_name = c.agent.clone();
        self.leave_room(id, &who);
        for a in [Some(who.clone()), agent_name].into_iter().flatten() {
            self.tell(
                &a,
                ServerFrame::ConsultEnded {
                    chat: id.to_string(),
                    by: user.to_string(),
                    consultant: who.clone(),
                },
            );
        }
        self.rooms.system(
            id,
            &format!("{who} left the consultation"),
            true,
            at.unix_ms,
        );
        Ok(who)
    }

    /// The agent's console stops receiving the room (its forwarder sees `Removed`).
    fn leave_room(&self, id: &str, agent: &str) {
        if let Some(a) = self.agents.get(agent) {
            self.rooms.hub.unsubscribe(id, a.conn);
        }
    }

    /// A control frame to a connected agent's console.
    fn tell(&mut self, agent: &str, frame: ServerFrame) {
        if let Some(a) = self.agents.get(agent) {
            self.effects.push_back(Effect::Console {
                conn: a.conn,
                frame,
            });
        } else if let Some(conns) = self.listeners.get(agent) {
            for &conn in conns {
                self.effects.push_back(Effect::Console {
                    conn,
                    frame: frame.clone(),
                });
            }
        }
    }

    /// Console `conn` of `user`, who takes no chats, hears of its calls and its
    /// agent's state (until [`Chats::unlisten`]).
    pub fn listen(&mut self, user: &str, conn: u64) {
        self.listeners
            .entry(user.to_string())
            .or_default()
            .push(conn);
    }

    pub fn unlisten(&mut self, user: &str, conn: u64) {
        if let Some(v) = self.listeners.get_mut(user) {
            v.retain(|c| *c != conn);
            if v.is_empty() {
                self.listeners.remove(user);
            }
        }
    }

    pub fn exists(&self, id: &str) -> bool {
        self.chats.contains_key(id)
    }

    /// Live and queued chats (not ended), oldest first.
    pub fn list(&self, now: Instant) -> Vec<ChatSummary> {
        let mut v: Vec<(u64, ChatSummary)> = self
            .chats
            .iter()
            .filter(|(_, c)| c.state != State::Ended)
            .map(|(id, c)| {
                let waiting = matches!(c.state, State::Queued | State::Offered { .. });
                (
                    c.seq,
                    ChatSummary {
                        id: id.clone(),
                        queue: c.queue.clone(),
                        state: state_str(&c.state),
                        agent: c.agent.clone(),
                        fields: c.fields.clone(),
                        age_secs: now.duration_since(c.created).as_secs_f64(),
                        wait_secs: if waiting {
                            now.duration_since(c.queued_since).as_secs_f64()
                        } else {
                            0.0
                        },
                        customer_connected: c.customer.is_some(),
                    },
                )
            })
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Periodic work: expired offers move on, customers gone past `abandon_after` end
    /// their chat.
    pub fn sweep(&mut self, snap: &Snapshot, at: At) {
        let now = at.now;
        let expired: Vec<(String, String)> = self
            .chats
            .iter()
            .filter_map(|(id, c)| match &c.state {
                State::Offered { agent, until } if *until <= now => {
                    Some((id.clone(), agent.clone()))
                }
                _ => None,
            })
            .collect();
        for (id, agent) in expired {
            self.tell(
                &agent,
                ServerFrame::OfferWithdrawn {
                    chat: id.clone(),
                    reason: "not accepted in time".into(),
                },
            );
            self.requeue(&id, now, Some(&agent));
            self.record(&id, at.unix_ms);
        }
        let abandoned: Vec<String> = self
            .chats
            .iter()
            .filter(|(_, c)| c.state != State::Ended)
            .filter(|(_, c)| {
                let after = snap
                    .queue(&c.queue)
                    .map(|q| q.abandon_after)
                    .unwrap_or(Duration::from_secs(120));
                c.customer_gone
                    .is_some_and(|t| now.duration_since(t) >= after)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // A chat every agent declined waits a while, then starts a new round.
        for c in self.chats.values_mut() {
            if c.state == State::Queued && now.duration_since(c.queued_since) >= OFFER_TIMEOUT {
                c.declined.clear();
            }
        }
        self.dispatch(snap, now);
        for id in abandoned {
            self.end(snap, &id, "customer", "the customer did not come back", at);
        }
    }

    /// Put a chat back at the head of its queue; `not_to` is not offered it again.
    fn requeue(&mut self, id: &str, now: Instant, not_to: Option<&str>) {
        let Some(c) = self.chats.get_mut(id) else {
            return;
        };
        if c.state == State::Ended {
            return;
        }
        c.state = State::Queued;
        c.agent = None;
        c.queued_since = now;
        if let Some(a) = not_to {
            c.declined.insert(a.to_string());
        }
        let q = c.queue.clone();
        self.waiting
            .entry(q)
            .or_default()
            .push_front(id.to_string());
    }

    /// Offer queued chats to connected agents of their queue with room: the agent with
    /// the fewest chats first; one pending offer per agent at a time.
    fn dispatch(&mut self, snap: &Snapshot, now: Instant) {
        let queues: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(q, _)| q.clone())
            .collect();
        for qname in queues {
            let Some(q) = snap.queue(&qname) else {
                continue;
            };
            while let Some(id) = self.waiting.get(&qname).and_then(|w| w.front()).cloned() {
                let declined = self
                    .chats
                    .get(&id)
                    .map(|c| c.declined.clone())
                    .unwrap_or_default();
                let offered_to: HashSet<&str> = self
                    .chats
                    .values()
                    .filter_map(|c| match &c.state {
                        State::Offered { agent, .. } => Some(agent.as_str()),
                        _ => None,
                    })
                    .collect();
                let pick = q
                    .agents
                    .iter()
                    .filter(|a| !declined.contains(*a) && !offered_to.contains(a.as_str()))
                    .filter(|a| !self.held.contains_key(a.as_str()))
                    .filter_map(|a| self.agents.get(a).map(|c| (a, c)))
                    .filter(|(_, c)| c.has_room())
                    .min_by_key(|(_, c)| c.chats.len() + c.elsewhere as usize)
                    .map(|(a, _)| a.clone());
                let Some(agent) = pick else { break };
                if let Some(w) = self.waiting.get_mut(&qname) {
                    w.pop_front();
                }
                let c = self.chats.get_mut(&id).expect("queued chat exists");
                c.state = State::Offered {
                    agent: agent.clone(),
                    until: now + OFFER_TIMEOUT,
                };
                let frame = ServerFrame::Offer {
                    chat: id.clone(),
                    queue: qname.clone(),
                    fields: c.fields.clone(),
                    transfer_from: None,
                    waited_secs: now.duration_since(c.queued_since).as_secs_f64(),
                };
                self.tell(&agent, frame);
                info!(chat = %id, agent = %agent, "chat offered");
            }
        }
    }
}

/// Pre-chat fields named like a `[[reserved_data]]` field mean the same as on a
/// call: they must be a string that field accepts (trimmed, no control characters,
/// not too long).
fn reserved_fields(
    snap: &Snapshot,
    mut fields: Map<String, Value>,
) -> Result<Map<String, Value>, ChatError> {
    for r in &snap.config.reserved_data {
        let Some(v) = fields.get_mut(&r.field) else {
            continue;
        };
        let bad = |why: String| ChatError::BadField(r.field.clone(), why);
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(bad("must be a string".into())),
        };
        let ok = r.check(&text).map_err(|e| bad(e.to_string()))?;
        *v = Value::String(ok.to_string());
    }
    Ok(fields)
}

fn record_of(id: &str, c: &Chat, unix_ms: u64) -> ChatRecord {
    ChatRecord {
        id: id.to_string(),
        queue: c.queue.clone(),
        fields: c.fields.clone(),
        token_hash: c.token_hash.clone(),
        state: state_str(&c.state).to_string(),
        agent: c.agent.clone(),
        created_ms: c.created_ms,
        ended_ms: (c.state == State::Ended).then_some(unix_ms),
    }
}

/// The chat exists, is live, and `user` is its agent.
fn own_active(c: Option<&Chat>, user: &str) -> Result<(), ChatError> {
    let c = c.ok_or(ChatError::NoChat)?;
    if c.state == State::Ended {
        return Err(ChatError::Ended);
    }
    if !(c.state == State::Active && c.agent.as_deref() == Some(user)) {
        return Err(ChatError::NotYours);
    }
    Ok(())
}

fn unix_time(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// The chat queue a new chat for `name` goes to at `unix_ms`: the queue itself when
/// open (or without hours), else where its `after_hours` sends it
/// ([`Snapshot::after_hours_route`]). A queue closed with no open queue to go to
/// ends the start with its `after_hours_message`.
fn open_queue<'a>(
    snap: &'a Snapshot,
    name: &str,
    unix_ms: u64,
) -> Result<&'a control::Queue, ChatError> {
    let chat_queue = |n: &str| {
        snap.queue(n)
            .filter(|q| q.channel == Channel::Chat)
            .ok_or(ChatError::NoQueue)
    };
    chat_queue(name)?;
    let r = snap.after_hours_route(name, unix_time(unix_ms));
    if r.hops > 0 {
        info!(queue = %name, to = %r.queue, hops = r.hops, "chat queue closed: deflected");
    }
    let q = chat_queue(&r.queue)?;
    if r.action.is_some() {
        info!(queue = %q.name, "chat queue closed: the customer gets the after-hours message");
        return Err(ChatError::Closed(q.after_hours_message.clone()));
    }
    Ok(q)
}
