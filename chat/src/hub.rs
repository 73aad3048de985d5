//! The chat hub: rooms in a lock-sharded map (`dashmap`), each with a monotonically
//! increasing offset, a bounded history and its subscribers. Publishing assigns the
//! offset, stores the entry and fans the frame out inside one short critical section
//! (the room's shard lock; nothing in it waits or blocks). Each subscriber has a
//! bounded queue; a subscriber whose queue is full is evicted on the spot (its
//! connection drains what it has, then closes with "slow consumer" and can resume by
//! offset), so one slow client never slows a room.
//!
//! Frames are serialized once per message (`Arc<str>`) and shared by every queue.
//! No socket here: connections hold the receiving end of their queue.
//!
//! **Durable first** ([`Limits::durable_first`], cluster mode): an entry is kept
//! with its offset at once but reaches no subscriber (the sender's own echo, which
//! is its acknowledgement, included) until the store confirms it was written
//! ([`Hub::confirm`]); confirmed entries go out in offset order. So no participant
//! sees, and no sender is acknowledged, an entry that a node crash can lose.

use crate::protocol::Offset;
use crate::store::StoredMessage;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A serialized server frame (JSON text).
pub type Frame = Arc<str>;

/// Why a subscriber's queue was closed by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Closed {
    Open = 0,
    /// The queue was full: the client reads too slowly. It may resume by offset.
    SlowConsumer = 1,
    /// The room ended.
    Ended = 2,
    /// Replaced (the same participant connected again) or removed from the room.
    Removed = 3,
}

impl Closed {
    fn from_u8(v: u8) -> Closed {
        match v {
            1 => Closed::SlowConsumer,
            2 => Closed::Ended,
            3 => Closed::Removed,
            _ => Closed::Open,
        }
    }
}

/// The connection's side of a subscription: frames in offset order, then `None` once
/// the hub dropped it; [`Inbox::reason`] says why.
pub struct Inbox {
    pub rx: mpsc::Receiver<Frame>,
    reason: Arc<AtomicU8>,
}

impl Inbox {
    pub fn reason(&self) -> Closed {
        Closed::from_u8(self.reason.load(Ordering::Acquire))
    }
}

struct Subscriber {
    conn: u64,
    tx: mpsc::Sender<Frame>,
    reason: Arc<AtomicU8>,
    /// Sees entries marked private (agents, supervisors; not the customer).
    private: bool,
}

impl Subscriber {
    fn close(&self, why: Closed) {
        self.reason.store(why as u8, Ordering::Release);
    }
}

#[derive(Debug)]
pub struct Entry {
    pub offset: Offset,
    pub frame: Frame,
    /// Hidden from the customer (consultation, internal notes).
    pub private: bool,
}

struct Room {
    next: Offset,
    history: VecDeque<Arc<Entry>>,
    /// (sender, client id) → offset, for dedup of resends; bounded like history.
    client_ids: HashMap<(String, String), Offset>,
    client_order: VecDeque<(String, String)>,
    subs: Vec<Subscriber>,
    ended: bool,
    /// The last offset the store confirmed (durable-first hubs); entries after it
    /// wait in `history` unsent.
    durable: Offset,
}

impl Room {
    fn empty(next: Offset) -> Room {
        Room {
            next,
            history: VecDeque::new(),
            client_ids: HashMap::new(),
            client_order: VecDeque::new(),
            subs: Vec::new(),
            ended: false,
            durable: Offset(next.0 - 1),
        }
    }

    /// Every entry is out: an ended room may close its subscribers.
    fn settled(&self) -> bool {
        self.durable.0 + 1 >= self.next.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("no such chat")]
    NoRoom,
    #[error("the chat has ended")]
    Ended,
}

/// What `publish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored at this offset and fanned out; `evicted` slow subscribers dropped.
    New { offset: Offset, evicted: usize },
    /// The same sender already sent this client id: not delivered again.
    Duplicate { offset: Offset },
}

/// A new subscription: the history from the asked offset, then live frames.
pub struct Subscription {
    pub inbox: Inbox,
    /// Stored frames from `from` (or from the oldest kept) up to the live point.
    pub replay: Vec<Frame>,
    /// The asked offset is older than the kept history: replay starts later.
    pub truncated: bool,
    /// The offset the next message will get.
    pub next: Offset,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Frames a subscriber may have queued before it is evicted.
    pub queue: usize,
    /// Entries kept per room for resume.
    pub history: usize,
    /// Deliver an entry only once the store confirmed it ([`Hub::confirm`]).
    pub durable_first: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue: 256,
            history: 10_000,
            durable_first: false,
        }
    }
}

pub struct Hub {
    rooms: DashMap<String, Room>,
    limits: Limits,
}

impl Hub {
    pub fn new(limits: Limits) -> Hub {
        Hub {
            rooms: DashMap::new(),
            limits,
        }
    }

    /// Create an empty room (offsets start at 1). False when it exists.
    pub fn create(&self, id: &str) -> bool {
        let mut created = false;
        self.rooms.entry(id.to_string()).or_insert_with(|| {
            created = true;
            Room::empty(Offset(1))
        });
        created
    }

    /// Rebuild a room from stored entries (after a restart): its history (the newest
    /// `limits.history`), the next offset, and the client ids seen, so a resend
    /// after the restart is still recognised. Message frames carry `from`, `name`
    /// and `client_id`; the dedup key is [`dedup_key`] of them, as the service's.
    pub fn restore(&self, id: &str, mut entries: Vec<StoredMessage>) {
        entries.sort_by_key(|e| e.offset);
        // Stored entries are durable.
        let mut room = Room::empty(entries.last().map(|e| e.offset.next()).unwrap_or(Offset(1)));
        let skip = entries.len().saturating_sub(self.limits.history);
        for e in entries.into_iter().skip(skip) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.frame) {
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                if let Some(c) = v.get("client_id").and_then(|x| x.as_str()) {
                    let key = (dedup_key(&s("from"), &s("name")), c.to_string());
                    room.client_ids.insert(key.clone(), e.offset);
                    room.client_order.push_back(key);
                }
            }
            room.history.push_back(Arc::new(Entry {
                offset: e.offset,
                frame: e.frame.into(),
                private: e.private,
            }));
        }
        self.rooms.insert(id.to_string(), room);
    }

    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Store a message and fan it out. `build(offset)` makes the frame (it runs inside
    /// the critical section: keep it to serialization). `dedup` is (sender, client id).
    pub fn publish(
        &self,
        room: &str,
        dedup: Option<(&str, &str)>,
        private: bool,
        build: impl FnOnce(Offset) -> String,
    ) -> Result<Published, HubError> {
        let mut r = self.rooms.get_mut(room).ok_or(HubError::NoRoom)?;
        if r.ended {
            return Err(HubError::Ended);
        }
        if let Some((s, c)) = dedup {
            if let Some(o) = r.client_ids.get(&(s.to_string(), c.to_string())) {
                return Ok(Published::Duplicate { offset: *o });
            }
        }
        let offset = r.next;
        r.next = offset.next();
        let frame: Frame = build(offset).into();
        let entry = Arc::new(Entry {
            offset,
            frame: frame.clone(),
            private,
        });
        r.history.push_back(entry);
        if r.history.len() > self.limits.history {
            r.history.pop_front();
        }
        if let Some((s, c)) = dedup {
            let key = (s.to_string(), c.to_string());
            r.client_ids.insert(key.clone(), offset);
            r.client_order.push_back(key);
            if r.client_order.len() > self.limits.history {
                if let Some(old) = r.client_order.pop_front() {
                    r.client_ids.remove(&old);
                }
            }
        }
        if self.limits.durable_first {
            return Ok(Published::New { offset, evicted: 0 });
        }
        r.durable = offset;
        let evicted = fan_out(&mut r.subs, &frame, private);
        Ok(Published::New { offset, evicted })
    }

    /// The store wrote every entry of `room` up to `upto` (durable-first hubs):
    /// those not yet sent go to the subscribers, in offset order. Returns how many
    /// slow subscribers were evicted. An ended room closes its subscribers once its
    /// last entry is out.
    pub fn confirm(&self, room: &str, upto: Offset) -> usize {
        let Some(mut r) = self.rooms.get_mut(room) else {
            return 0;
        };
        let r = &mut *r;
        let upto = upto.min(Offset(r.next.0 - 1));
        if upto <= r.durable {
            return 0;
        }
        let mut evicted = 0;
        for e in r
            .history
            .iter()
            .filter(|e| e.offset > r.durable && e.offset <= upto)
        {
            evicted += fan_out(&mut r.subs, &e.frame, e.private);
        }
        r.durable = upto;
        if r.ended && r.settled() {
            for s in r.subs.drain(..) {
                s.close(Closed::Ended);
            }
        }
        evicted
    }

    /// Entries of `room` kept but not yet confirmed by the store.
    pub fn unconfirmed(&self, room: &str) -> u64 {
        self.rooms
            .get(room)
            .map(|r| r.next.0 - 1 - r.durable.0)
            .unwrap_or(0)
    }

    /// A frame that is not stored and takes no offset (typing indicators); `build`
    /// gets the last assigned offset. Not sent to `except` (the typist).
    pub fn signal(
        &self,
        room: &str,
        except: u64,
        private: bool,
        build: impl FnOnce(Offset) -> String,
    ) -> Result<(), HubError> {
        let mut r = self.rooms.get_mut(room).ok_or(HubError::NoRoom)?;
        // The last entry the participants have (not one still waiting for the store).
        let frame: Frame = build(r.durable).into();
        let mut evicted = Vec::new();
        for (i, s) in r.subs.iter().enumerate() {
            if s.conn == except || (private && !s.private) {
                continue;
            }
            if s.tx.try_send(frame.clone()).is_err() {
                s.close(Closed::SlowConsumer);
                evicted.push(i);
            }
        }
        for i in evicted.into_iter().rev() {
            r.subs.swap_remove(i);
        }
        Ok(())
    }

    /// Subscribe connection `conn` from offset `from` (0 or 1: everything kept). A
    /// subscription of the same `conn` replaces the old one. `private`: also sees
    /// private entries.
    pub fn subscribe(
        &self,
        room: &str,
        conn: u64,
        from: Offset,
        private: bool,
    ) -> Result<Subscription, HubError> {
        let mut r = self.rooms.get_mut(room).ok_or(HubError::NoRoom)?;
        if r.ended {
            return Err(HubError::Ended);
        }
        let first = r.history.front().map(|e| e.offset).unwrap_or(r.next);
        let from = from.max(Offset(1));
        let truncated = from < first;
        let durable = r.durable;
        let replay = r
            .history
            .iter()
            .filter(|e| e.offset >= from && e.offset <= durable && (private || !e.private))
            .map(|e| e.frame.clone())
            .collect();
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let reason = Arc::new(AtomicU8::new(Closed::Open as u8));
        if let Some(i) = r.subs.iter().position(|s| s.conn == conn) {
            let old = r.subs.swap_remove(i);
            old.close(Closed::Removed);
        }
        r.subs.push(Subscriber {
            conn,
            tx,
            reason: reason.clone(),
            private,
        });
        Ok(Subscription {
            inbox: Inbox { rx, reason },
            replay,
            truncated,
            next: r.next,
        })
    }

    pub fn unsubscribe(&self, room: &str, conn: u64) {
        if let Some(mut r) = self.rooms.get_mut(room) {
            if let Some(i) = r.subs.iter().position(|s| s.conn == conn) {
                r.subs.swap_remove(i).close(Closed::Removed);
            }
        }
    }

    pub fn subscribers(&self, room: &str) -> usize {
        self.rooms.get(room).map(|r| r.subs.len()).unwrap_or(0)
    }

    /// End a room: no more messages; subscribers drain and close with `Ended`. The
    /// history stays readable until [`Hub::remove`].
    pub fn end(&self, room: &str) {
        if let Some(mut r) = self.rooms.get_mut(room) {
            r.ended = true;
            // Entries still waiting for the store go out first (`confirm`).
            if r.settled() {
                for s in r.subs.drain(..) {
                    s.close(Closed::Ended);
                }
            }
        }
    }

    pub fn remove(&self, room: &str) {
        if let Some((_, mut r)) = self.rooms.remove(room) {
            for s in r.subs.drain(..) {
                s.close(Closed::Ended);
            }
        }
    }

    /// The stored frames of a room (for transcripts and resume past a restart).
    pub fn history(&self, room: &str, private: bool) -> Option<Vec<Frame>> {
        self.rooms.get(room).map(|r| {
            r.history
                .iter()
                .filter(|e| private || !e.private)
                .map(|e| e.frame.clone())
                .collect()
        })
    }
}

/// Send `frame` to each subscriber allowed to see it; evict those whose queue is full
/// (or whose connection is gone). Returns how many were evicted.
fn fan_out(subs: &mut Vec<Subscriber>, frame: &Frame, private: bool) -> usize {
    let before = subs.len();
    subs.retain(|s| {
        if private && !s.private {
            return true;
        }
        match s.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.close(Closed::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
    before - subs.len()
}

/// The key under which a sender's client ids are remembered: the customer (one per
/// chat, whatever name it is shown with) or an agent by user name.
pub fn dedup_key(from: &str, name: &str) -> String {
    if from == "customer" {
        from.to_string()
    } else {
        format!("{from}:{name}")
    }
}
