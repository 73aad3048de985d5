//! Test driver for the sans-IO service: a virtual clock (every call names its
//! `Instant`; wall-clock milliseconds are derived from it), deterministic chat keys,
//! and consoles that collect the service's [`Effect`]s as JSON, the way the edge
//! delivers them to sockets.

use crate::hub::{Hub, Limits, Published, Subscription};
use crate::protocol::{Author, Choice, Offset};
use crate::room::Rooms;
use crate::service::*;
use crate::store::{ChatRecord, Store, StoredMessage};
use control::Snapshot;
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

type Mailboxes = Rc<RefCell<HashMap<u64, VecDeque<Value>>>>;

/// An agent console: the frames the service addressed to its connection.
pub struct Console {
    conn: u64,
    boxes: Mailboxes,
    /// Set when a newer console of the same agent replaced this one.
    pub replaced: Rc<Cell<bool>>,
}

/// Take every frame queued for a console.
pub fn frames(c: &mut Console) -> Vec<Value> {
    c.boxes
        .borrow_mut()
        .get_mut(&c.conn)
        .map(|q| q.drain(..).collect())
        .unwrap_or_default()
}

pub struct Svc {
    chats: RefCell<Chats>,
    rooms: Arc<Rooms>,
    base: Instant,
    last: Cell<Instant>,
    keys: Cell<u64>,
    seed: u64,
    boxes: Mailboxes,
    replaced: RefCell<HashMap<u64, Rc<Cell<bool>>>>,
}

impl Svc {
    /// `seed` makes the chat ids; two services with the same seed hand out the same ids.
    pub fn new(limits: Limits, seed: u64) -> Svc {
        Svc::with_store(limits, seed, Arc::new(crate::store::NoStore))
    }

    pub fn with_store(limits: Limits, seed: u64, store: Arc<dyn Store>) -> Svc {
        let rooms = Arc::new(Rooms::new(limits, store));
        let now = Instant::now();
        Svc {
            chats: RefCell::new(Chats::new(rooms.clone())),
            rooms,
            base: now,
            last: Cell::new(now),
            keys: Cell::new(0),
            seed,
            boxes: Rc::default(),
            replaced: RefCell::default(),
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.rooms.hub
    }

    fn at(&self, now: Instant) -> At {
        self.last.set(now.max(self.last.get()));
        At {
            now,
            unix_ms: 1_700_000_000_000
                + now.saturating_duration_since(self.base).as_millis() as u64,
        }
    }

    /// Run one input, then deliver its effects.
    fn run<R>(&self, f: impl FnOnce(&mut Chats) -> R) -> R {
        let mut c = self.chats.borrow_mut();
        let r = f(&mut c);
        while let Some(e) = c.poll_effect() {
            match e {
                Effect::Console { conn, frame } => {
                    let v = serde_json::from_str(&frame.to_json()).unwrap();
                    self.boxes
                        .borrow_mut()
                        .entry(conn)
                        .or_default()
                        .push_back(v);
                }
                Effect::Replaced { conn } => {
                    if let Some(r) = self.replaced.borrow().get(&conn) {
                        r.set(true);
                    }
                }
                Effect::Join { conn, chat } => {
                    self.boxes
                        .borrow_mut()
                        .entry(conn)
                        .or_default()
                        .push_back(serde_json::json!({"type": "join", "chat": chat}));
                }
            }
        }
        r
    }

    pub fn start(
        &self,
        s: &Snapshot,
        queue: &str,
        fields: Map<String, Value>,
        now: Instant,
    ) -> Result<(String, String), ChatError> {
        let n = self.keys.get() + 1;
        self.keys.set(n);
        let keys = Keys {
            id: (self.seed.rotate_left(32) ^ n).to_be_bytes(),
            token: ((self.seed as u128) << 64 | n as u128)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                .to_be_bytes(),
        };
        let at = self.at(now);
        self.run(|c| c.start(s, queue, fields, at, keys))
    }

    pub fn resume(
        &self,
        s: &Snapshot,
        token: &str,
        queue: Option<&str>,
        fields: Option<&Map<String, Value>>,
        choice_continue: Option<bool>,
    ) -> Result<Resume, ChatError> {
        let choice = choice_continue.map(|c| if c { Choice::Continue } else { Choice::New });
        let at = self.at(self.last.get());
        self.run(|c| c.resume(s, token, queue, fields, choice, at))
    }

    pub fn customer_attach(
        &self,
        id: &str,
        conn: u64,
        offset: u64,
    ) -> Result<Subscription, ChatError> {
        self.run(|c| c.customer_attach(id, conn, Offset(offset)))
    }

    pub fn customer_detach(&self, id: &str, conn: u64, now: Instant) {
        self.at(now);
        self.run(|c| c.customer_detach(id, conn, now))
    }

    /// A message as the edge sends it: a customer without a name is shown with its
    /// start form's name.
    pub fn message(
        &self,
        id: &str,
        from: &str,
        name: &str,
        client_id: Option<&str>,
        text: &str,
        private: bool,
    ) -> Result<Published, ChatError> {
        let author = match from {
            "customer" => Author::Customer,
            "agent" => Author::Agent,
            _ => Author::System,
        };
        let shown = if author == Author::Customer && name.is_empty() {
            self.chats.borrow().customer_name(id)
        } else {
            name.to_string()
        };
        let ts = self.at(self.last.get()).unix_ms;
        self.rooms
            .message(id, author, &shown, client_id, text, private, ts)
    }

    pub fn end(&self, s: &Snapshot, id: &str, by: &str, reason: &str) {
        let at = self.at(self.last.get());
        self.run(|c| c.end(s, id, by, reason, at))
    }

    pub fn agent_connect(
        &self,
        s: &Snapshot,
        user: &str,
        conn: u64,
        max: u32,
        now: Instant,
    ) -> Vec<String> {
        self.at(now);
        self.run(|c| c.agent_connect(s, user, conn, max, now))
    }

    pub fn agent_elsewhere(&self, s: &Snapshot, user: &str, conn: u64, n: u32, now: Instant) {
        self.at(now);
        self.run(|c| c.agent_elsewhere(s, user, conn, n, now))
    }

    pub fn agent_disconnect(&self, s: &Snapshot, user: &str, conn: u64, now: Instant) {
        let at = self.at(now);
        self.run(|c| c.agent_disconnect(s, user, conn, at))
    }

    /// Connect `name`'s console as `conn` (its configured `max_chats`).
    pub fn console(&self, s: &Snapshot, name: &str, conn: u64, now: Instant) -> Console {
        let replaced = Rc::new(Cell::new(false));
        self.replaced.borrow_mut().insert(conn, replaced.clone());
        let max = s.user(name).unwrap().max_chats;
        self.agent_connect(s, name, conn, max, now);
        Console {
            conn,
            boxes: self.boxes.clone(),
            replaced,
        }
    }

    pub fn accept(
        &self,
        s: &Snapshot,
        user: &str,
        id: &str,
        now: Instant,
    ) -> Result<(), ChatError> {
        let at = self.at(now);
        self.run(|c| c.accept(s, user, id, at))
    }

    pub fn release(
        &self,
        s: &Snapshot,
        user: &str,
        id: &str,
        now: Instant,
    ) -> Result<(), ChatError> {
        let at = self.at(now);
        self.run(|c| c.release(s, user, id, at))
    }

    pub fn transfer(
        &self,
        s: &Snapshot,
        user: &str,
        id: &str,
        to: &Target,
        now: Instant,
    ) -> Result<(), ChatError> {
        let at = self.at(now);
        self.run(|c| c.transfer(s, user, id, to, at))
    }

    pub fn consult(&self, user: &str, id: &str, other: &str) -> Result<(), ChatError> {
        let at = self.at(self.last.get());
        self.run(|c| c.consult(user, id, other, at))
    }

    pub fn consult_end(
        &self,
        user: &str,
        id: &str,
        other: Option<&str>,
    ) -> Result<String, ChatError> {
        let at = self.at(self.last.get());
        self.run(|c| c.consult_end(user, id, other, at))
    }

    pub fn chat_of_token(&self, token: &str) -> Option<String> {
        self.chats.borrow().chat_of_token(token)
    }

    pub fn is_agent_of(&self, user: &str, id: &str) -> bool {
        self.chats.borrow().is_agent_of(user, id)
    }

    pub fn is_consultant(&self, user: &str, id: &str) -> bool {
        self.chats.borrow().is_consultant(user, id)
    }

    pub fn list(&self, now: Instant) -> Vec<ChatSummary> {
        self.chats.borrow().list(now)
    }

    /// The SIP core reports agent `agent` (console user `user`) in `state`.
    pub fn agent_state(
        &self,
        s: &Snapshot,
        user: &str,
        state: &str,
        takes_chats: bool,
        now: Instant,
    ) {
        let at = self.at(now);
        self.run(|c| c.agent_state(s, user, "1001", state, None, takes_chats, at))
    }

    pub fn sweep(&self, s: &Snapshot, now: Instant) {
        let at = self.at(now);
        self.run(|c| c.sweep(s, at))
    }

    pub fn restore(&self, chats: Vec<(ChatRecord, Vec<StoredMessage>)>, now: Instant) -> usize {
        let at = self.at(now);
        self.run(|c| c.restore(chats, at))
    }
}
