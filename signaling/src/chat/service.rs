//! Chats as a contact centre sees them: a customer starts a chat in a chat queue, the
//! service offers it to a connected agent of that queue with room (`max_chats`), the
//! agent accepts (or releases it back to the queue), and either side ends it. A
//! customer who does not come back within the queue's `abandon_after` ends the chat.
//! Messages go through the [`Hub`]; this module only decides who is in which room.
//!
//! Sans-IO: every operation takes `now` (tests drive a virtual clock) and the config
//! snapshot; the driver calls [`Chats::sweep`] periodically. Agents get control
//! frames (offers, ends) on the channel they registered; room frames come from hub
//! subscriptions. One mutex guards this state; it is held only for map updates and
//! hub calls (which never block), never across an await.

use super::hub::{Frame, Hub, HubError, Limits, Published, Subscription};
use super::journal::{token_hash, ChatRecord, Journal, NoJournal, StoredMessage};
use crate::endpoint::IdGen;
use control::{Channel, RestoreMode, Snapshot};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::info;

/// How long an offer waits for the agent's accept before the next agent gets it.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest message text accepted (characters).
pub const MAX_TEXT: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("that agent is not connected or has no room for another chat")]
    AgentUnavailable,
    #[error("not a consultation of yours")]
    NotConsulting,
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

impl From<HubError> for ChatError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NoRoom => ChatError::NoChat,
            HubError::Ended => ChatError::Ended,
        }
    }
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
    tx: mpsc::Sender<Frame>,
    chats: HashSet<String>,
    max: u32,
}

#[derive(Default)]
struct Inner {
    chats: HashMap<String, Chat>,
    /// Token digest → chat id.
    tokens: HashMap<String, String>,
    /// Queued chats per queue, oldest first.
    waiting: HashMap<String, VecDeque<String>>,
    agents: HashMap<String, AgentConn>,
    started: u64,
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
    pub hub: Hub,
    inner: Mutex<Inner>,
    ids: Mutex<IdGen>,
    journal: Arc<dyn Journal>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    pub fn new(limits: Limits, seed: u64) -> Chats {
        Chats::with_journal(limits, seed, Arc::new(NoJournal))
    }

    /// Every chat change and every room entry goes to `journal` as it is accepted.
    pub fn with_journal(limits: Limits, seed: u64, journal: Arc<dyn Journal>) -> Chats {
        Chats {
            hub: Hub::new(limits),
            inner: Mutex::new(Inner::default()),
            ids: Mutex::new(IdGen::new(seed)),
            journal,
        }
    }

    /// Store a room entry and fan it out; the journal gets it with its offset.
    fn publish(
        &self,
        id: &str,
        dedup: Option<(&str, &str)>,
        private: bool,
        build: impl FnOnce(u64) -> String,
    ) -> Result<Published, HubError> {
        self.hub.publish(id, dedup, private, |o| {
            let f = build(o);
            self.journal.message(id, o, private, unix_ms(), &f);
            f
        })
    }

    /// The chat's row to the journal (called with the state lock held).
    fn record(&self, g: &Inner, id: &str) {
        if let Some(c) = g.chats.get(id) {
            self.journal.chat(&record_of(id, c));
        }
    }

    /// Chats read back from the store at start (open ones only): rooms with their
    /// history and next offset, queued chats back in line (oldest first), active
    /// chats with their agent (whose console gets them on connect). Customers have
    /// `abandon_after` from `now` to come back.
    pub fn restore(&self, chats: Vec<(ChatRecord, Vec<StoredMessage>)>, now: Instant) -> usize {
        let mut g = self.lock();
        let mut chats = chats;
        chats.sort_by_key(|(r, _)| r.created_ms);
        let n = chats.len();
        for (r, msgs) in chats {
            self.hub.restore(&r.id, msgs);
            let active = r.state == "active" && r.agent.is_some();
            g.started += 1;
            let seq = g.started;
            g.tokens.insert(r.token_hash.clone(), r.id.clone());
            if !active {
                g.waiting
                    .entry(r.queue.clone())
                    .or_default()
                    .push_back(r.id.clone());
            }
            g.chats.insert(
                r.id.clone(),
                Chat {
                    queue: r.queue,
                    fields: r.fields,
                    state: if active { State::Active } else { State::Queued },
                    agent: if active { r.agent } else { None },
                    created: now,
                    queued_since: now,
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
            info!(chats = n, "chats restored from the transcript store");
        }
        n
    }

    fn token(&self) -> String {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).token()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A system message into a room (stored, with an offset).
    fn system(&self, chat: &str, text: &str) {
        let _ = self.publish(chat, None, false, |o| {
            json!({"type":"message","chat":chat,"offset":o,"from":"system","text":text,"ts":unix_ms()})
                .to_string()
        });
    }

    /// A customer starts a chat in `queue`. Returns (chat id, chat token).
    pub fn start(
        &self,
        snap: &Snapshot,
        queue: &str,
        fields: Map<String, Value>,
        now: Instant,
    ) -> Result<(String, String), ChatError> {
        let q = snap
            .queue(queue)
            .filter(|q| q.channel == Channel::Chat)
            .ok_or(ChatError::NoQueue)?;
        let id = format!("ch-{}", self.token());
        let token = secret_token();
        self.hub.create(&id);
        let mut g = self.lock();
        g.started += 1;
        let seq = g.started;
        g.chats.insert(
            id.clone(),
            Chat {
                queue: q.name.clone(),
                fields,
                state: State::Queued,
                agent: None,
                created: now,
                queued_since: now,
                token_hash: token_hash(&token),
                created_ms: unix_ms(),
                customer: None,
                customer_gone: Some(now),
                declined: HashSet::new(),
                consultants: HashSet::new(),
                seq,
            },
        );
        g.tokens.insert(token_hash(&token), id.clone());
        self.record(&g, &id);
        g.waiting
            .entry(q.name.clone())
            .or_default()
            .push_back(id.clone());
        info!(chat = %id, queue = %q.name, "chat started");
        self.dispatch(&mut g, snap, now);
        Ok((id, token))
    }

    /// A returning customer with its chat token and (possibly new) start parameters.
    pub fn resume(
        &self,
        snap: &Snapshot,
        token: &str,
        queue: Option<&str>,
        fields: Option<&Map<String, Value>>,
        choice_continue: Option<bool>,
    ) -> Result<Resume, ChatError> {
        let g = self.lock();
        let id = g
            .tokens
            .get(&token_hash(token))
            .ok_or(ChatError::BadToken)?
            .clone();
        let c = g.chats.get(&id).ok_or(ChatError::BadToken)?;
        if c.state == State::Ended {
            return Ok(Resume::StartNew);
        }
        let mode = snap.queue(&c.queue).map(|q| q.restore).unwrap_or_default();
        let differs = queue.is_some_and(|q| q != c.queue) || fields.is_some_and(|f| *f != c.fields);
        let decision = match (mode, choice_continue) {
            (RestoreMode::Restore, _) => Resume::Continue(id.clone()),
            (RestoreMode::New, _) => Resume::StartNew,
            (RestoreMode::Prompt, Some(true)) => Resume::Continue(id.clone()),
            (RestoreMode::Prompt, Some(false)) => Resume::StartNew,
            (RestoreMode::Prompt, None) if differs => Resume::Prompt(id.clone()),
            (RestoreMode::Prompt, None) => Resume::Continue(id.clone()),
        };
        drop(g);
        if decision == Resume::StartNew {
            self.end(snap, &id, "customer", "the customer started a new chat");
        }
        Ok(decision)
    }

    /// The customer's connection `conn` joins chat `id` from `offset`.
    pub fn customer_attach(
        &self,
        id: &str,
        conn: u64,
        offset: u64,
    ) -> Result<Subscription, ChatError> {
        let sub = self.hub.subscribe(id, conn, offset, false)?;
        let mut g = self.lock();
        let c = g.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        c.customer = Some(conn);
        c.customer_gone = None;
        Ok(sub)
    }

    /// The customer's connection went away (not an end: it may come back).
    pub fn customer_detach(&self, id: &str, conn: u64, now: Instant) {
        self.hub.unsubscribe(id, conn);
        let mut g = self.lock();
        if let Some(c) = g.chats.get_mut(id).filter(|c| c.customer == Some(conn)) {
            c.customer = None;
            c.customer_gone = Some(now);
        }
    }

    /// A message from the customer (`from` = "customer") or an agent. A `private`
    /// message (consultation between agents) is not shown to the customer.
    pub fn message(
        &self,
        id: &str,
        from: &str,
        name: &str,
        client_id: Option<&str>,
        text: &str,
        private: bool,
    ) -> Result<Published, ChatError> {
        let n = text.chars().count();
        if n == 0 || n > MAX_TEXT {
            return Err(ChatError::BadText);
        }
        // A customer who gave a name in the start form is shown with it.
        let field_name;
        let name = if from == "customer" && name.is_empty() {
            field_name = self.customer_name(id);
            field_name.as_str()
        } else {
            name
        };
        let key = format!("{from}:{name}");
        Ok(
            self.publish(id, client_id.map(|c| (key.as_str(), c)), private, |o| {
                let mut f = json!({"type":"message","chat":id,"offset":o,"from":from,"name":name,
                   "text":text,"client_id":client_id,"ts":unix_ms()});
                if private {
                    f["private"] = true.into();
                }
                f.to_string()
            })?,
        )
    }

    /// A file shared into the chat: a message whose `attachment` holds the link (made
    /// by the caller), file name as its text. Everyone in the room sees it.
    pub fn attachment(
        &self,
        id: &str,
        from: &str,
        name: &str,
        file_name: &str,
        attachment: Value,
    ) -> Result<Published, ChatError> {
        Ok(self.publish(id, None, false, |o| {
            json!({"type":"message","chat":id,"offset":o,"from":from,"name":name,
                "text":file_name,"attachment":attachment,"ts":unix_ms()})
            .to_string()
        })?)
    }

    /// The live chat a customer token belongs to.
    pub fn chat_of_token(&self, token: &str) -> Option<String> {
        let g = self.lock();
        let id = g.tokens.get(&token_hash(token))?;
        g.chats
            .get(id)
            .filter(|c| c.state != State::Ended)
            .map(|_| id.clone())
    }

    /// The name a customer is shown with (its start form's `name`).
    pub fn customer_name(&self, id: &str) -> String {
        self.lock()
            .chats
            .get(id)
            .and_then(|c| {
                c.fields
                    .get("name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default()
    }

    /// Typing indicator (not stored; carries the last offset).
    pub fn typing(&self, id: &str, conn: u64, from: &str, on: bool) -> Result<(), ChatError> {
        Ok(self.hub.signal(id, conn, false, |o| {
            json!({"type":"typing","chat":id,"offset":o,"from":from,"on":on}).to_string()
        })?)
    }

    /// End a chat for good: the queue's leave message, an `ended` frame, agent told.
    pub fn end(&self, snap: &Snapshot, id: &str, by: &str, reason: &str) {
        let mut g = self.lock();
        let Some(c) = g.chats.get_mut(id) else { return };
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
        if let Some(w) = g.waiting.get_mut(&queue) {
            w.retain(|x| x != id);
        }
        let offered = match was {
            State::Offered { agent, .. } => Some(agent),
            _ => None,
        };
        // The room hears it first (leave message, `ended`), then the agents' consoles.
        if !left.is_empty() && by != "admin" {
            self.system(id, &left);
        }
        self.record(&g, id);
        let _ = self.publish(id, None, false, |o| {
            json!({"type":"ended","chat":id,"offset":o,"by":by,"reason":reason}).to_string()
        });
        self.hub.end(id);
        for a in agent.iter().chain(offered.iter()).chain(consultants.iter()) {
            if let Some(ac) = g.agents.get_mut(a) {
                ac.chats.remove(id);
                let _ = ac.tx.try_send(
                    json!({"type":"chat_ended","chat":id,"by":by,"reason":reason})
                        .to_string()
                        .into(),
                );
            }
        }
        info!(chat = %id, by, reason, "chat ended");
    }

    /// An agent's console connects (`conn`, control frames on `tx`). Returns the chats
    /// it already has (after a reconnect), to subscribe again.
    pub fn agent_connect(
        &self,
        snap: &Snapshot,
        user: &str,
        conn: u64,
        tx: mpsc::Sender<Frame>,
        max: u32,
        now: Instant,
    ) -> Vec<String> {
        let mut g = self.lock();
        let mine: HashSet<String> = g
            .chats
            .iter()
            .filter(|(_, c)| c.agent.as_deref() == Some(user) && c.state == State::Active)
            .map(|(id, _)| id.clone())
            .collect();
        let list = mine.iter().cloned().collect();
        g.agents.insert(
            user.to_string(),
            AgentConn {
                conn,
                tx,
                chats: mine,
                max,
            },
        );
        self.dispatch(&mut g, snap, now);
        list
    }

    /// The console went away: offers go to others; its chats stay assigned (the agent
    /// may reconnect) until the agent ends or releases them.
    pub fn agent_disconnect(&self, snap: &Snapshot, user: &str, conn: u64, now: Instant) {
        let mut g = self.lock();
        if g.agents.get(user).is_none_or(|a| a.conn != conn) {
            return;
        }
        g.agents.remove(user);
        let offered: Vec<String> = g
            .chats
            .iter()
            .filter(|(_, c)| matches!(&c.state, State::Offered { agent, .. } if agent == user))
            .map(|(id, _)| id.clone())
            .collect();
        for id in offered {
            requeue(&mut g, &id, now, Some(user));
            self.record(&g, &id);
        }
        self.dispatch(&mut g, snap, now);
    }

    /// The agent takes the chat offered to it.
    pub fn accept(
        &self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        now: Instant,
    ) -> Result<(), ChatError> {
        let mut g = self.lock();
        let c = g.chats.get_mut(id).ok_or(ChatError::NoChat)?;
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
        if let Some(a) = g.agents.get_mut(user) {
            a.chats.insert(id.to_string());
        }
        self.record(&g, id);
        // The agent may take more (max_chats): the next waiting chat is offered.
        self.dispatch(&mut g, snap, now);
        drop(g);
        if !joined.is_empty() {
            self.system(id, &joined);
        }
        info!(chat = %id, agent = %user, "chat accepted");
        Ok(())
    }

    /// The agent gives the chat back to its queue (or declines an offer): another
    /// agent gets it; this one is not offered it again.
    pub fn release(
        &self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        now: Instant,
    ) -> Result<(), ChatError> {
        let mut g = self.lock();
        let c = g.chats.get(id).ok_or(ChatError::NoChat)?;
        let mine = c.agent.as_deref() == Some(user)
            || matches!(&c.state, State::Offered { agent, .. } if agent == user);
        if c.state == State::Ended {
            return Err(ChatError::Ended);
        }
        if !mine {
            return Err(ChatError::NotYours);
        }
        let was_active = c.state == State::Active;
        requeue(&mut g, id, now, Some(user));
        self.record(&g, id);
        if let Some(a) = g.agents.get_mut(user) {
            a.chats.remove(id);
        }
        self.dispatch(&mut g, snap, now);
        drop(g);
        if was_active {
            self.system(id, "You are being transferred to another agent");
        }
        Ok(())
    }

    /// What `user` is in an active chat: its agent, a consulted agent, or nothing.
    /// One lock per question (asked for every agent message).
    pub fn part(&self, user: &str, id: &str) -> Option<Part> {
        let g = self.lock();
        let c = g.chats.get(id).filter(|c| c.state == State::Active)?;
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
        &self,
        snap: &Snapshot,
        user: &str,
        id: &str,
        to: &Target,
        now: Instant,
    ) -> Result<(), ChatError> {
        let mut g = self.lock();
        own_active(g.chats.get(id), user)?;
        let note = match to {
            Target::Agent(a) => {
                let free = g
                    .agents
                    .get(a)
                    .is_some_and(|x| a != user && (x.chats.len() as u32) < x.max);
                if !free {
                    return Err(ChatError::AgentUnavailable);
                }
                format!("{user} transferred the chat to {a}")
            }
            Target::Queue(q) => {
                snap.queue(q)
                    .filter(|q| q.channel == Channel::Chat)
                    .ok_or(ChatError::NoQueue)?;
                format!("{user} transferred the chat to queue {q}")
            }
        };
        if let Some(a) = g.agents.get_mut(user) {
            a.chats.remove(id);
        }
        self.leave_room(&g, id, user);
        let consultants: Vec<String> = {
            let c = g.chats.get_mut(id).expect("checked above");
            c.agent = None;
            c.queued_since = now;
            c.declined.clear();
            c.declined.insert(user.to_string());
            c.consultants.drain().collect()
        };
        for other in &consultants {
            self.leave_room(&g, id, other);
            self.tell(
                &g,
                other,
                json!({"type":"consult_ended","chat":id,"by":user,"consultant":other}),
            );
        }
        match to {
            Target::Agent(a) => {
                let c = g.chats.get_mut(id).expect("checked above");
                c.state = State::Offered {
                    agent: a.clone(),
                    until: now + OFFER_TIMEOUT,
                };
                let frame = json!({"type":"offer","chat":id,"queue":c.queue,"fields":c.fields,
                    "transfer_from":user,"waited_secs":0.0});
                self.tell(&g, a, frame);
            }
            Target::Queue(q) => {
                let c = g.chats.get_mut(id).expect("checked above");
                c.state = State::Queued;
                c.queue = q.clone();
                g.waiting
                    .entry(q.clone())
                    .or_default()
                    .push_front(id.to_string());
                self.dispatch(&mut g, snap, now);
            }
        }
        self.record(&g, id);
        drop(g);
        info!(chat = %id, from = %user, to = ?to, "chat transferred");
        self.note(id, &note);
        self.system(id, "You are being transferred to another agent");
        Ok(())
    }

    /// The chat's agent invites another connected agent into a side conversation the
    /// customer does not see (private messages in the same room).
    pub fn consult(&self, user: &str, id: &str, other: &str) -> Result<(), ChatError> {
        let mut g = self.lock();
        let c = g.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        own_active(Some(c), user)?;
        if other == user {
            return Err(ChatError::AgentUnavailable);
        }
        c.consultants.insert(other.to_string());
        let fields = c.fields.clone();
        if !g.agents.contains_key(other) {
            if let Some(c) = g.chats.get_mut(id) {
                c.consultants.remove(other);
            }
            return Err(ChatError::AgentUnavailable);
        }
        self.tell(
            &g,
            other,
            json!({"type":"consult","chat":id,"from":user,"fields":fields}),
        );
        drop(g);
        self.note(id, &format!("{user} consults {other}"));
        Ok(())
    }

    /// The consultation ends (by the chat's agent for `other`, or by the consultant
    /// itself). Returns the consultant that left.
    pub fn consult_end(
        &self,
        user: &str,
        id: &str,
        other: Option<&str>,
    ) -> Result<String, ChatError> {
        let mut g = self.lock();
        let c = g.chats.get_mut(id).ok_or(ChatError::NoChat)?;
        let agent = c.agent.as_deref() == Some(user);
        let who = match other {
            Some(o) if agent => o.to_string(),
            _ => user.to_string(),
        };
        if !c.consultants.remove(&who) {
            return Err(ChatError::NotConsulting);
        }
        let agent_name = c.agent.clone();
        self.leave_room(&g, id, &who);
        for a in [Some(who.clone()), agent_name].into_iter().flatten() {
            self.tell(
                &g,
                &a,
                json!({"type":"consult_ended","chat":id,"by":user,"consultant":who}),
            );
        }
        drop(g);
        self.note(id, &format!("{who} left the consultation"));
        Ok(who)
    }

    /// The agent's console stops receiving the room (its forwarder sees `Removed`).
    fn leave_room(&self, g: &Inner, id: &str, agent: &str) {
        if let Some(a) = g.agents.get(agent) {
            self.hub.unsubscribe(id, a.conn);
        }
    }

    /// A control frame to a connected agent's console.
    fn tell(&self, g: &Inner, agent: &str, v: Value) {
        if let Some(a) = g.agents.get(agent) {
            let _ = a.tx.try_send(v.to_string().into());
        }
    }

    /// A private system note (agents and supervisors only).
    fn note(&self, chat: &str, text: &str) {
        let _ = self.publish(chat, None, true, |o| {
            json!({"type":"message","chat":chat,"offset":o,"from":"system","text":text,
                "private":true,"ts":unix_ms()})
            .to_string()
        });
    }

    pub fn exists(&self, id: &str) -> bool {
        self.lock().chats.contains_key(id)
    }

    /// Live and queued chats (not ended), oldest first.
    pub fn list(&self, now: Instant) -> Vec<ChatSummary> {
        let g = self.lock();
        let mut v: Vec<(u64, ChatSummary)> = g
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
    /// their chat, ended chats are forgotten after their room has drained.
    pub fn sweep(&self, snap: &Snapshot, now: Instant) {
        let mut g = self.lock();
        let expired: Vec<(String, String)> = g
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
            if let Some(a) = g.agents.get(&agent) {
                let _ = a.tx.try_send(
                    json!({"type":"offer_withdrawn","chat":id,"reason":"not accepted in time"})
                        .to_string()
                        .into(),
                );
            }
            requeue(&mut g, &id, now, Some(&agent));
            self.record(&g, &id);
        }
        let abandoned: Vec<String> = g
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
        for c in g.chats.values_mut() {
            if c.state == State::Queued && now.duration_since(c.queued_since) >= OFFER_TIMEOUT {
                c.declined.clear();
            }
        }
        self.dispatch(&mut g, snap, now);
        drop(g);
        for id in abandoned {
            self.end(snap, &id, "customer", "the customer did not come back");
        }
    }

    /// Offer queued chats to connected agents of their queue with room: the agent with
    /// the fewest chats first; one pending offer per agent at a time.
    fn dispatch(&self, g: &mut Inner, snap: &Snapshot, now: Instant) {
        let queues: Vec<String> = g
            .waiting
            .iter()
            .filter(|(_, w)| !w.is_empty())
            .map(|(q, _)| q.clone())
            .collect();
        for qname in queues {
            let Some(q) = snap.queue(&qname) else {
                continue;
            };
            while let Some(id) = g.waiting.get(&qname).and_then(|w| w.front()).cloned() {
                let declined = g
                    .chats
                    .get(&id)
                    .map(|c| c.declined.clone())
                    .unwrap_or_default();
                let offered_to: HashSet<String> = g
                    .chats
                    .values()
                    .filter_map(|c| match &c.state {
                        State::Offered { agent, .. } => Some(agent.clone()),
                        _ => None,
                    })
                    .collect();
                let pick = q
                    .agents
                    .iter()
                    .filter(|a| !declined.contains(*a) && !offered_to.contains(*a))
                    .filter_map(|a| g.agents.get(a).map(|c| (a, c)))
                    .filter(|(_, c)| (c.chats.len() as u32) < c.max)
                    .min_by_key(|(_, c)| c.chats.len())
                    .map(|(a, _)| a.clone());
                let Some(agent) = pick else { break };
                if let Some(w) = g.waiting.get_mut(&qname) {
                    w.pop_front();
                }
                let c = g.chats.get_mut(&id).expect("queued chat exists");
                c.state = State::Offered {
                    agent: agent.clone(),
                    until: now + OFFER_TIMEOUT,
                };
                let frame = json!({"type":"offer","chat":id,"queue":qname,"fields":c.fields,
                    "waited_secs": now.duration_since(c.queued_since).as_secs_f64()})
                .to_string();
                if let Some(a) = g.agents.get(&agent) {
                    let _ = a.tx.try_send(frame.into());
                }
                info!(chat = %id, agent = %agent, "chat offered");
            }
        }
    }
}

/// 128 bits from the OS CSPRNG as 32 hex digits. Chat ids come from the splitmix
/// [`IdGen`], whose outputs reveal its state: never use it for a secret.
pub fn secret_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    crate::hex(&b)
}

fn record_of(id: &str, c: &Chat) -> ChatRecord {
    ChatRecord {
        id: id.to_string(),
        queue: c.queue.clone(),
        fields: c.fields.clone(),
        token_hash: c.token_hash.clone(),
        state: state_str(&c.state).to_string(),
        agent: c.agent.clone(),
        created_ms: c.created_ms,
        ended_ms: (c.state == State::Ended).then(unix_ms),
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

/// Put a chat back at the head of its queue; `not_to` is not offered it again.
fn requeue(g: &mut Inner, id: &str, now: Instant, not_to: Option<&str>) {
    let Some(c) = g.chats.get_mut(id) else { return };
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
    g.waiting.entry(q).or_default().push_front(id.to_string());
}
