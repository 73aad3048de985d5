//! Chat on JetStream (cluster mode): the room log every node can read, and the
//! take-over of a dead node's chats.
//!
//! - **Owner per room.** A chat lives on the node where it started (or the node
//!   that took it over): that node's chat service assigns offsets, so a room has
//!   one order. Its record (the chat's row, plus the owning `node` and every agent
//!   that had it) is the key `c.<chat id>` of the key-value bucket
//!   [`CHATS_BUCKET`]; `t.<token digest>` maps a customer's token to the chat.
//!   The owner writes the record with a compare-and-set on the revision it wrote
//!   last, so after a take-over the old owner's writes are refused (fenced).
//! - **Append before acknowledgement.** Every room entry is published to the
//!   stream [`CHAT_STREAM`] on `edge.chat.<chat id>` (message id `<chat>:<offset>`,
//!   so a retried publish is stored once) and reaches no participant — the
//!   sender's echo, which is its acknowledgement, included — until JetStream
//!   acknowledged it (the hub is durable-first, [`chat::hub::Hub::confirm`]).
//!   Entries are published in offset order and confirmed in that order; a failed
//!   publish is retried until it is stored (the node is held meanwhile: see
//!   `gate`), so nothing acknowledged is ever missing from the stream.
//! - **Take-over.** Every node looks for chats whose owner is no longer live (and,
//!   at start, its own chats from before a restart) when it joins and whenever a
//!   node it saw live is gone (`sweep`), and takes them with the compare-and-set on the record: one node wins each chat. It
//!   reads the chat's entries back from the stream and restores the chat: queued
//!   chats keep their place and wait time (counted from the chat's start), active
//!   chats wait for their agent's console, a customer resumes by offset. A
//!   customer whose token is unknown to the node it reaches is looked up here
//!   first, so it does not wait for the sweep.
//! - **Transcripts** are read from the stream and the record by any node.
//!
//! What is not shared (see README): participants of one chat must be connected
//! to the node that owns it (the chat service's offers and consoles are per
//! node); a node reached by a customer of a chat owned by another live node says
//! which node that is.

use super::Cluster;
use crate::desk::Desk;
use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use chat::store::{ChatRecord, Store, StoredMessage};
use chat::Offset;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The key-value bucket of chat records and token digests.
pub const CHATS_BUCKET: &str = "edge_chats";
/// The stream of every room entry.
pub const CHAT_STREAM: &str = "edge_chat";
/// Entries published before their acknowledgements are awaited.
const BATCH: usize = 256;
/// How long a read of the stream or the bucket may take.
const READ: Duration = Duration::from_secs(5);
/// Pause before a failed write is tried again.
const RETRY: Duration = Duration::from_millis(500);

fn subject(chat: &str) -> String {
    format!("edge.chat.{chat}")
}

/// A chat id or token digest as a key: ids are `ch-<hex>`, digests hex; anything
/// else is refused rather than written under a key NATS would reject.
fn valid(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 128
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

struct Entry {
    chat: String,
    offset: Offset,
    private: bool,
    ts_ms: u64,
    frame: String,
}

/// Counters of the chat log (`edge_cluster_chat_*`).
#[derive(Default)]
pub struct ChatStats {
    written: AtomicU64,
    retried: AtomicU64,
    backlog: AtomicI64,
    records: AtomicU64,
    adopted: AtomicU64,
    fenced: AtomicU64,
    /// Entries refused because another node had written their offset.
    conflicts: AtomicU64,
}

/// The chat service's store in cluster mode: every record and entry goes to the
/// local transcript store (as on a single node) and to JetStream.
pub struct Journal {
    local: Arc<dyn Store>,
    entries: mpsc::UnboundedSender<Entry>,
    records: mpsc::UnboundedSender<ChatRecord>,
    stats: Arc<ChatStats>,
}

/// The receiving ends of a [`Journal`], for [`start`].
pub struct JournalRx {
    entries: mpsc::UnboundedReceiver<Entry>,
    records: mpsc::UnboundedReceiver<ChatRecord>,
    stats: Arc<ChatStats>,
}

pub fn journal(local: Arc<dyn Store>) -> (Arc<Journal>, JournalRx) {
    let (etx, erx) = mpsc::unbounded_channel();
    let (rtx, rrx) = mpsc::unbounded_channel();
    let stats = Arc::new(ChatStats::default());
    (
        Arc::new(Journal {
            local,
            entries: etx,
            records: rtx,
            stats: stats.clone(),
        }),
        JournalRx {
            entries: erx,
            records: rrx,
            stats,
        },
    )
}

impl Store for Journal {
    fn chat(&self, c: &ChatRecord) {
        self.local.chat(c);
        let _ = self.records.send(c.clone());
    }

    fn message(&self, chat: &str, offset: Offset, private: bool, ts_ms: u64, frame: &str) {
        self.local.message(chat, offset, private, ts_ms, frame);
        self.stats.backlog.fetch_add(1, Ordering::Relaxed);
        let _ = self.entries.send(Entry {
            chat: chat.to_string(),
            offset,
            private,
            ts_ms,
            frame: frame.to_string(),
        });
    }
}

/// What taking a chat over found.
#[derive(Debug, PartialEq, Eq)]
pub enum Adopted {
    /// Now on this node (taken, or it already was).
    Here,
    /// No such chat, or it has ended.
    Nothing,
    /// Owned by this other live node.
    Elsewhere(String),
}

/// This node's view of the chats on JetStream.
pub struct ChatLog {
    cluster: Arc<Cluster>,
    desk: Arc<Desk>,
    replicas: usize,
    retention: Duration,
    kv: tokio::sync::OnceCell<kv::Store>,
    stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
    /// Chats this node owns: the revision it wrote last and the agents so far.
    owned: Mutex<HashMap<String, (u64, Vec<String>)>>,
    /// Chats another node took from this one: their records are no longer written.
    fenced: Mutex<HashSet<String>>,
    /// Chats being taken over right now (the sweep and a customer's resume may
    /// race for one; the second waits and finds it here).
    adopting: Mutex<HashSet<String>>,
    /// Chats whose record is in the bucket (written once at least): their
    /// entries may be confirmed (a chat another node cannot find is lost to a
    /// take-over, whatever entries of it are stored).
    recorded: Mutex<HashSet<String>>,
    stats: Arc<ChatStats>,
}

/// The longest an entry waits for its chat's first record before it is
/// confirmed anyway (logged): JetStream not answering holds the node anyway.
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// How long making (or finding) the stream or the bucket may take before it is
/// asked again.
const SETUP: Duration = Duration::from_millis(1500);
/// Chat ids remembered as recorded before the set is pruned to open chats.
const RECORDED_MAX: usize = 100_000;

/// Start the chat log: the writers of entries and records, and the take-over sweep.
pub fn start(
    cluster: Arc<Cluster>,
    cfg: &control::ClusterConfig,
    retention: Duration,
    desk: Arc<Desk>,
    rx: JournalRx,
) -> Arc<ChatLog> {
    let log = Arc::new(ChatLog {
        cluster,
        desk,
        replicas: cfg.replicas,
        retention,
        kv: tokio::sync::OnceCell::new(),
        stream: tokio::sync::OnceCell::new(),
        owned: Mutex::new(HashMap::new()),
        fenced: Mutex::new(HashSet::new()),
        adopting: Mutex::new(HashSet::new()),
        recorded: Mutex::new(HashSet::new()),
        stats: rx.stats,
    });
    // The stream and the bucket are made (or found) at once, not at the first
    // chat: a fresh stream answers nothing until its replicas elected a leader,
    // and a chat's first record must not wait for that.
    tokio::spawn({
        let log = log.clone();
        async move {
            while log.bucket().await.is_err() || log.stream().await.is_err() {
                tokio::time::sleep(RETRY).await;
            }
            debug!("chat stream and records bucket ready");
        }
    });
    tokio::spawn(write_entries(log.clone(), rx.entries));
    tokio::spawn(write_records(log.clone(), rx.records));
    tokio::spawn(sweep(log.clone(), cfg.node_lease));
    log
}

impl ChatLog {
    fn js(&self) -> jetstream::Context {
        jetstream::new(self.cluster.client.clone())
    }

    async fn bucket(&self) -> Result<&kv::Store, String> {
        self.kv
            .get_or_try_init(|| async {
                let js = self.js();
                let make = super::key_value_on(
                    &js,
                    CHATS_BUCKET,
                    "edge cluster: chat records (owner node, state, agents) and token digests",
                    self.retention,
                    self.replicas,
                    jetstream::stream::StorageType::File,
                );
                // Asked again soon rather than waiting out the client's timeout:
                // a request NATS drops (seen right after a start) costs 1.5 s.
                tokio::time::timeout(SETUP, make)
                    .await
                    .map_err(|_| "NATS did not answer (records bucket)".to_string())?
            })
            .await
    }

    async fn stream(&self) -> Result<&jetstream::stream::Stream, String> {
        self.stream
            .get_or_try_init(|| async {
                let js = self.js();
                let make = js.get_or_create_stream(jetstream::stream::Config {
                    name: CHAT_STREAM.into(),
                    description: Some("edge cluster: every chat room entry".into()),
                    subjects: vec!["edge.chat.>".into()],
                    max_age: self.retention,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: self.replicas,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                });
                tokio::time::timeout(SETUP, make)
                    .await
                    .map_err(|_| "NATS did not answer (chat stream)".to_string())?
                    .map_err(|e| e.to_string())
            })
            .await
    }

    /// Publish one entry and wait for JetStream's acknowledgement.
    async fn publish(&self, e: &Entry) -> Result<bool, String> {
        self.settle(e, self.send(e).await?).await
    }

    /// Wait for the acknowledgement of `e`'s publish; whether `e` is stored (see
    /// [`ChatLog::stored`]).
    async fn settle(
        &self,
        e: &Entry,
        ack: jetstream::context::PublishAckFuture,
    ) -> Result<bool, String> {
        let ack = acked(ack).await?;
        self.stored(e, &ack).await
    }

    /// Whether the acknowledged `e` is in the stream. An acknowledgement marked
    /// duplicate means an entry with the same id (chat and offset) was stored
    /// before: this node's own earlier attempt — or another node's entry at that
    /// offset, when two nodes both think they own the chat (a take-over that
    /// raced; nats-server 2.9 can let two compare-and-sets through). Then `e` was
    /// not stored and must not be acknowledged to its sender: `Ok(false)`.
    async fn stored(
        &self,
        e: &Entry,
        ack: &jetstream::publish::PublishAck,
    ) -> Result<bool, String> {
        if !ack.duplicate {
            return Ok(true);
        }
        let stream = self.stream().await?;
        let m = timed(stream.get_raw_message(ack.sequence)).await?;
        Ok(m.payload == e.frame.as_bytes())
    }

    async fn send(&self, e: &Entry) -> Result<jetstream::context::PublishAckFuture, String> {
        self.stream().await?;
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{}:{}", e.chat, e.offset.0).as_str());
        h.insert("Edge-Offset", e.offset.0.to_string().as_str());
        h.insert("Edge-Ts", e.ts_ms.to_string().as_str());
        if e.private {
            h.insert("Edge-Private", "1");
        }
        self.js()
            .publish_with_headers(subject(&e.chat), h, e.frame.clone().into())
            .await
            .map_err(|e| e.to_string())
    }

    /// Wait (at most [`RECORD_WAIT`]) until chat `id`'s record is in the bucket.
    async fn await_record(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            if self.recorded.lock().contains(id) || self.fenced.lock().contains(id) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(chat = %id, "chat record not written yet; its entries are confirmed anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn confirmed(&self, e: &Entry) {
        self.stats.written.fetch_add(1, Ordering::Relaxed);
        self.stats.backlog.fetch_sub(1, Ordering::Relaxed);
        self.desk.rooms.hub.confirm(&e.chat, e.offset);
    }

    /// Write a chat's record: create it, or update it at the revision this node
    /// wrote last. `Ok(false)`: another node owns the chat now (fenced).
    async fn put_record(&self, r: &ChatRecord) -> Result<bool, String> {
        if !valid(&r.id) || !valid(&r.token_hash) {
            warn!(chat = %r.id, "chat id or token digest not usable as a key; not shared");
            self.recorded.lock().insert(r.id.clone());
            return Ok(true);
        }
        if self.fenced.lock().contains(&r.id) {
            return Ok(false);
        }
        let kv = self.bucket().await?;
        let key = format!("c.{}", r.id);
        let known = self.owned.lock().get(&r.id).cloned();
        let mut agents = known.as_ref().map(|k| k.1.clone()).unwrap_or_default();
        if let Some(a) = &r.agent {
            if !agents.contains(a) {
                agents.push(a.clone());
            }
        }
        let value = record_json(r, &self.cluster.node, &agents);
        let rev = match known {
            Some((rev, _)) => match kv.update(&key, value, rev).await {
                Ok(rev) => rev,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return Ok(self.fence(&r.id));
                }
                Err(e) => return Err(e.to_string()),
            },
            None => match kv.create(&key, value.clone()).await {
                Ok(rev) => {
                    kv.put(format!("t.{}", r.token_hash), r.id.clone().into())
                        .await
                        .map_err(|e| e.to_string())?;
                    rev
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    // Written before by this node (before a restart it did not
                    // take back yet) or taken by another.
                    let cur = kv.entry(&key).await.map_err(|e| e.to_string())?;
                    let mine = cur
                        .as_ref()
                        .and_then(|c| record_of(&c.value))
                        .map(|(_, n, _)| n)
                        == Some(self.cluster.node.clone());
                    match cur {
                        Some(c) if mine => kv
                            .update(&key, value, c.revision)
                            .await
                            .map_err(|e| e.to_string())?,
                        _ => return Ok(self.fence(&r.id)),
                    }
                }
                Err(e) => return Err(e.to_string()),
            },
        };
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        {
            let mut recorded = self.recorded.lock();
            if recorded.len() >= RECORDED_MAX {
                let open = self.owned.lock();
                recorded.retain(|c| open.contains_key(c));
            }
            recorded.insert(r.id.clone());
        }
        let mut owned = self.owned.lock();
        if r.state == "ended" {
            owned.remove(&r.id);
        } else {
            owned.insert(r.id.clone(), (rev, agents));
        }
        Ok(true)
    }

    fn fence(&self, id: &str) -> bool {
        warn!(chat = %id, "another node took this chat over; this node no longer writes its record");
        self.stats.fenced.fetch_add(1, Ordering::Relaxed);
        self.owned.lock().remove(id);
        self.fenced.lock().insert(id.to_string());
        false
    }

    /// A customer's token this node does not know: the chat, taken over if its
    /// owner is gone.
    pub async fn adopt_token(&self, token_hash: &str) -> Result<Adopted, String> {
        if !valid(token_hash) {
            return Ok(Adopted::Nothing);
        }
        let kv = self.bucket().await?;
        let id = read_entry(kv, &format!("t.{token_hash}")).await?;
        let id = id.filter(|e| e.operation == kv::Operation::Put);
        match id.and_then(|e| String::from_utf8(e.value.to_vec()).ok()) {
            Some(id) => self.adopt(&id).await,
            None => Ok(Adopted::Nothing),
        }
    }

    /// Take chat `id` over when its owner is not live (or is this node after a
    /// restart): compare-and-set of the record, then the entries from the stream.
    pub async fn adopt(&self, id: &str) -> Result<Adopted, String> {
        if !valid(id) {
            return Ok(Adopted::Nothing);
        }
        let deadline = tokio::time::Instant::now() + READ;
        while !self.adopting.lock().insert(id.to_string()) {
            if tokio::time::Instant::now() > deadline {
                return Err("another take-over of this chat did not finish".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = self.adopt_once(id).await;
        self.adopting.lock().remove(id);
        r
    }

    async fn adopt_once(&self, id: &str) -> Result<Adopted, String> {
        if self.desk.read(|c| c.exists(id)) && !self.fenced.lock().contains(id) {
            return Ok(Adopted::Here);
        }
        let kv = self.bucket().await?;
        let key = format!("c.{id}");
        let Some(cur) = read_entry(kv, &key).await? else {
            return Ok(Adopted::Nothing);
        };
        if cur.operation != kv::Operation::Put {
            return Ok(Adopted::Nothing);
        }
        let Some((rec, node, agents)) = record_of(&cur.value) else {
            return Ok(Adopted::Nothing);
        };
        if rec.state == "ended" {
            return Ok(Adopted::Nothing);
        }
        let live = self.cluster.live();
        if node != self.cluster.node && live.iter().any(|n| n.node == node) {
            return Ok(Adopted::Elsewhere(node));
        }
        let value = record_json(&rec, &self.cluster.node, &agents);
        let rev = match kv.update(&key, value, cur.revision).await {
            Ok(rev) => rev,
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Another node was faster.
                return Ok(Adopted::Nothing);
            }
            Err(e) => return Err(e.to_string()),
        };
        // nats-server 2.9 can let two nodes' compare-and-sets of one key through
        // when they are in flight at once (all live nodes race to take a dead
        // node's chats): the record's last value decides. Read it once both
        // writes are surely applied.
        tokio::time::sleep(SETTLE).await;
        match read_entry(kv, &key).await? {
            Some(now) if now.revision != rev => {
                let owner = record_of(&now.value).map(|(_, n, _)| n);
                if owner.as_deref() != Some(self.cluster.node.as_str()) {
                    info!(chat = %id, owner = ?owner, "take-over raced with another node's: theirs stands");
                    return Ok(Adopted::Nothing);
                }
            }
            _ => {}
        }
        let msgs = self.entries(id).await?;
        let n = msgs.len();
        self.fenced.lock().remove(id);
        self.owned.lock().insert(id.to_string(), (rev, agents));
        self.recorded.lock().insert(id.to_string());
        let state = rec.state.clone();
        self.desk.run(|c, at| c.restore(vec![(rec, msgs)], at));
        self.stats.adopted.fetch_add(1, Ordering::Relaxed);
        info!(chat = %id, from = %node, state = %state, entries = n, "chat taken over");
        Ok(Adopted::Here)
    }

    /// Every entry of chat `id` from the stream, in offset order.
    pub async fn entries(&self, id: &str) -> Result<Vec<StoredMessage>, String> {
        let stream = self.stream().await?;
        let last =
            match tokio::time::timeout(READ, stream.get_last_raw_message_by_subject(&subject(id)))
                .await
            {
                Err(_) => return Err("NATS did not answer".into()),
                Ok(Ok(m)) => m.sequence,
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    return Ok(Vec::new())
                }
                Ok(Err(e)) => return Err(e.to_string()),
            };
        let consumer = timed(
            stream.create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject(id),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            }),
        )
        .await?;
        let mut msgs = timed(consumer.messages()).await?;
        let mut out: Vec<StoredMessage> = Vec::new();
        loop {
            let m = match tokio::time::timeout(READ, msgs.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) | Err(_) => return Err("the chat stream stopped before its end".into()),
            };
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(last);
            let h = m.headers.as_ref();
            let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_string());
            if let Some(offset) = get("Edge-Offset").and_then(|o| o.parse().ok()) {
                out.push(StoredMessage {
                    offset: Offset(offset),
                    private: get("Edge-Private").is_some(),
                    frame: String::from_utf8_lossy(&m.payload).into_owned(),
                });
            }
            if seq >= last {
                break;
            }
        }
        out.sort_by_key(|m| m.offset);
        out.dedup_by_key(|m| m.offset);
        Ok(out)
    }

    /// A chat's record and agents from the bucket (for transcripts on any node).
    pub async fn record(&self, id: &str) -> Result<Option<(ChatRecord, Vec<String>)>, String> {
        if !valid(id) {
            return Ok(None);
        }
        let kv = self.bucket().await?;
        Ok(read_entry(kv, &format!("c.{id}"))
            .await?
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| record_of(&e.value))
            .map(|(r, _, a)| (r, a)))
    }

    /// Take over every open chat whose owner is not live (or is this node and not
    /// here: a restart); [`ChatLog::adopt`] reads and checks each record.
    async fn adopt_orphans(&self) -> Result<usize, String> {
        let kv = self.bucket().await?;
        let mut keys = timed(kv.keys()).await?;
        let mut ids = Vec::new();
        while let Some(k) = tokio::time::timeout(READ, keys.next())
            .await
            .map_err(|_| "listing the chat keys timed out".to_string())?
        {
            let k = k.map_err(|e| e.to_string())?;
            if let Some(id) = k.strip_prefix("c.") {
                ids.push(id.to_string());
            }
        }
        // Many at once: each take-over waits [`SETTLE`] before it reads its
        // record back.
        ids.retain(|id| !self.desk.read(|c| c.exists(id)));
        let results: Vec<Result<Adopted, String>> = futures_util::stream::iter(ids)
            .map(|id| async move { self.adopt(&id).await })
            .buffer_unordered(ADOPT_AT_ONCE)
            .collect()
            .await;
        let mut taken = 0;
        let mut failed = None;
        for r in results {
            match r {
                Ok(Adopted::Here) => taken += 1,
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = &self.stats;
        let _ = write!(
            out,
            "# HELP edge_cluster_chat_entries_total Chat room entries written to JetStream (each before it was delivered).\n\
             # TYPE edge_cluster_chat_entries_total counter\nedge_cluster_chat_entries_total {}\n\
             # HELP edge_cluster_chat_retries_total Chat entry writes to JetStream that failed and were tried again.\n\
             # TYPE edge_cluster_chat_retries_total counter\nedge_cluster_chat_retries_total {}\n\
             # HELP edge_cluster_chat_unconfirmed Chat entries waiting for JetStream's acknowledgement.\n\
             # TYPE edge_cluster_chat_unconfirmed gauge\nedge_cluster_chat_unconfirmed {}\n\
             # HELP edge_cluster_chat_records_total Chat records written to JetStream.\n\
             # TYPE edge_cluster_chat_records_total counter\nedge_cluster_chat_records_total {}\n\
             # HELP edge_cluster_chats_taken_over_total Chats this node took over from a node that was gone.\n\
             # TYPE edge_cluster_chats_taken_over_total counter\nedge_cluster_chats_taken_over_total {}\n\
             # HELP edge_cluster_chats_fenced_total Chats another node took from this one (their records are no longer written here).\n\
             # TYPE edge_cluster_chats_fenced_total counter\nedge_cluster_chats_fenced_total {}\n\
             # HELP edge_cluster_chat_conflicts_total Chat entries not acknowledged because another node had written their offset.\n\
             # TYPE edge_cluster_chat_conflicts_total counter\nedge_cluster_chat_conflicts_total {}\n",
            s.written.load(Ordering::Relaxed),
            s.retried.load(Ordering::Relaxed),
            s.backlog.load(Ordering::Relaxed).max(0),
            s.records.load(Ordering::Relaxed),
            s.adopted.load(Ordering::Relaxed),
            s.fenced.load(Ordering::Relaxed),
            s.conflicts.load(Ordering::Relaxed),
        );
    }
}

/// Take-overs in flight at once when a node is gone.
const ADOPT_AT_ONCE: usize = 128;

/// How long a take-over waits before reading its record back (a racing write of
/// another node is applied by then: one Raft round on a healthy NATS cluster).
const SETTLE: Duration = Duration::from_millis(250);

/// Wait for a publish's acknowledgement (at most [`READ`]).
async fn acked(
    ack: jetstream::context::PublishAckFuture,
) -> Result<jetstream::publish::PublishAck, String> {
    match tokio::time::timeout(READ, ack).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no acknowledgement".into()),
    }
}

/// A key's entry, asked again when NATS does not answer within a short while: a
/// node's first read of the bucket sometimes gets no answer at all (seen with
/// nats-server 2.9 right after the bucket was made by another node: 5 s of
/// silence, then the next request answered in 2 ms).
async fn read_entry(kv: &kv::Store, key: &str) -> Result<Option<kv::Entry>, String> {
    const TRIES: u32 = 3;
    for _ in 1..TRIES {
        if let Ok(r) = tokio::time::timeout(READ / TRIES, kv.entry(key)).await {
            return r.map_err(|e| e.to_string());
        }
    }
    timed(kv.entry(key)).await
}

async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(READ, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("NATS did not answer".into()),
    }
}

fn record_json(r: &ChatRecord, node: &str, agents: &[String]) -> bytes::Bytes {
    let v = json!({
        "id": r.id,
        "queue": r.queue,
        "fields": r.fields,
        "token_hash": r.token_hash,
        "state": r.state,
        "agent": r.agent,
        "created_ms": r.created_ms,
        "ended_ms": r.ended_ms,
        "node": node,
        "agents": agents,
    });
    serde_json::to_vec(&v).unwrap_or_default().into()
}

/// (record, owning node, agents) from a bucket value.
fn record_of(b: &[u8]) -> Option<(ChatRecord, String, Vec<String>)> {
    let v: Value = serde_json::from_slice(b).ok()?;
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let rec = ChatRecord {
        id: s("id")?,
        queue: s("queue")?,
        fields: v["fields"].as_object().cloned().unwrap_or_else(Map::new),
        token_hash: s("token_hash")?,
        state: s("state")?,
        agent: s("agent"),
        created_ms: v["created_ms"].as_u64()?,
        ended_ms: v["ended_ms"].as_u64(),
    };
    let agents = v["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((rec, s("node")?, agents))
}

/// Publish entries in offset order, up to [`BATCH`] before awaiting their
/// acknowledgements in the same order; a failed one is published again (its
/// message id makes a second copy impossible) until it is stored.
async fn write_entries(log: Arc<ChatLog>, mut rx: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut acks = Vec::with_capacity(batch.len());
        for e in &batch {
            acks.push(log.send(e).await);
        }
        for (e, ack) in batch.iter().zip(acks) {
            let mut stored = match ack {
                Ok(f) => log.settle(e, f).await.ok(),
                Err(_) => None,
            };
            while stored.is_none() {
                log.stats.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RETRY).await;
                match log.publish(e).await {
                    Ok(s) => stored = Some(s),
                    Err(err) => {
                        debug!(chat = %e.chat, offset = e.offset.0, error = %err, "chat entry not written yet")
                    }
                }
            }
            if stored == Some(true) {
                // Nothing of a chat is acknowledged before another node can
                // find the chat to take it over.
                log.await_record(&e.chat).await;
                log.confirmed(e);
            } else {
                // Another node wrote this offset: it owns the chat. The entry
                // is never acknowledged here; its sender resends it there.
                warn!(chat = %e.chat, offset = e.offset.0, "chat entry refused: another node wrote this offset (two owners after a take-over race)");
                log.stats.backlog.fetch_sub(1, Ordering::Relaxed);
                log.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                log.fence(&e.chat);
            }
        }
        batch.clear();
    }
}

/// Write records, the newest of each chat, each until it is written or fenced.
async fn write_records(log: Arc<ChatLog>, mut rx: mpsc::UnboundedReceiver<ChatRecord>) {
    let mut batch = Vec::new();
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // Only the newest record of each chat matters.
        let mut newest: HashMap<String, usize> = HashMap::new();
        for (i, r) in batch.iter().enumerate() {
            newest.insert(r.id.clone(), i);
        }
        for (i, r) in batch.iter().enumerate() {
            if newest.get(&r.id) != Some(&i) {
                continue;
            }
            loop {
                match log.put_record(r).await {
                    Ok(_) => break,
                    Err(e) => {
                        debug!(chat = %r.id, error = %e, "chat record not written yet");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
        batch.clear();
    }
}

/// Take over the open chats of nodes that are gone: once this node takes new work
/// (its own chats after a restart, and those of nodes that died before), then
/// each time a node it saw live at the last sweep is gone. A sweep lists every
/// chat record of the bucket, so it does not run while membership only grows; a
/// failed sweep is tried again each `lease`.
async fn sweep(log: Arc<ChatLog>, lease: Duration) {
    let mut t = tokio::time::interval(lease);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The live nodes at the last successful sweep; `None` before the first.
    let mut swept: Option<HashSet<String>> = None;
    loop {
        t.tick().await;
        let live = log.cluster.live();
        // Only a node taking new work takes chats over (not one starting,
        // draining or held).
        if !live
            .iter()
            .any(|n| n.node == log.cluster.node && !n.refusing)
        {
            continue;
        }
        let now: HashSet<String> = live.into_iter().map(|n| n.node).collect();
        if let Some(before) = &swept {
            if before.is_subset(&now) {
                swept = Some(now);
                continue;
            }
        }
        match log.adopt_orphans().await {
            Ok(n) => {
                if n > 0 {
                    info!(chats = n, "chats of nodes that are gone taken over");
                }
                swept = Some(now);
            }
            Err(e) => warn!(error = %e, "chat take-over sweep failed; next round"),
        }
    }
}
