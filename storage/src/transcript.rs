//! Chat transcripts in embedded SQLite (`{storage.dir}/chat/transcripts.sqlite`).
//!
//! The chat service hands every chat change and room entry to [`Transcripts`] as it
//! accepts it (through [`chat::store::Store`], called with a lock
//! held, so it only queues). One writer thread drains the queue in group commits:
//! whatever arrived while the last transaction was committing goes into the next one.
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed
//! transaction survives the edge process being killed (not a power cut before the OS
//! flushes); what can be lost on a kill is the batch being committed at that moment.
//!
//! Readers (transcript endpoint, search, restore at start) use their own connection;
//! WAL lets them read while the writer writes.

use chat::store::{ChatRecord, Store, StoredMessage};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tracing::error;

/// Entries committed in one transaction at most.
const BATCH: usize = 8192;

enum Op {
    Chat(ChatRecord),
    Msg {
        chat: String,
        offset: u64,
        private: bool,
        ts_ms: u64,
        frame: String,
    },
    Flush(mpsc::SyncSender<()>),
}

/// A chat as stored, with every agent that handled it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredChat {
    pub id: String,
    pub queue: String,
    pub fields: Map<String, Value>,
    pub state: String,
    pub agent: Option<String>,
    pub agents: Vec<String>,
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
    #[serde(skip)]
    pub token_hash: String,
}

/// Search criteria; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Started at or after (Unix ms).
    pub from_ms: Option<u64>,
    /// Started before (Unix ms).
    pub to_ms: Option<u64>,
    pub queue: Option<String>,
    /// Handled (at some point) by this agent.
    pub agent: Option<String>,
    pub limit: u32,
}

pub struct Transcripts {
    tx: Mutex<mpsc::Sender<Op>>,
    read: Mutex<Connection>,
    path: PathBuf,
    errors: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chats(
  id TEXT PRIMARY KEY, queue TEXT NOT NULL, fields TEXT NOT NULL,
  token_hash TEXT NOT NULL, state TEXT NOT NULL, agent TEXT,
  created_ms INTEGER NOT NULL, ended_ms INTEGER);
CREATE INDEX IF NOT EXISTS chats_created ON chats(created_ms);
CREATE INDEX IF NOT EXISTS chats_open ON chats(state) WHERE state != 'ended';
CREATE TABLE IF NOT EXISTS chat_agents(
  chat TEXT NOT NULL, agent TEXT NOT NULL, PRIMARY KEY(chat, agent)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chat_agents_agent ON chat_agents(agent);
CREATE TABLE IF NOT EXISTS messages(
  chat TEXT NOT NULL, offset INTEGER NOT NULL, private INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL, frame TEXT NOT NULL, PRIMARY KEY(chat, offset)) WITHOUT ROWID;
";

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(c)
}

/// Why the transcript store cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("chat transcripts {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start the transcript writer: {0}")]
    Writer(std::io::Error),
}

impl Transcripts {
    /// Open (or create) the store under `dir` and start its writer thread.
    pub fn open(dir: &Path) -> Result<Arc<Transcripts>, OpenError> {
        let cdir = dir.join("chat");
        std::fs::create_dir_all(&cdir).map_err(|source| OpenError::CreateDir {
            dir: cdir.clone(),
            source,
        })?;
        let path = cdir.join("transcripts.sqlite");
        let err = |source: rusqlite::Error| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let w = open_conn(&path).map_err(err)?;
        w.execute_batch(SCHEMA).map_err(err)?;
        let read = open_conn(&path).map_err(err)?;
        let (tx, rx) = mpsc::channel();
        let errors = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let (e2, q2) = (errors.clone(), queued.clone());
        std::thread::Builder::new()
            .name("chat-transcripts".into())
            .spawn(move || writer(w, rx, e2, q2))
            .map_err(OpenError::Writer)?;
        Ok(Arc::new(Transcripts {
            tx: Mutex::new(tx),
            read: Mutex::new(read),
            path,
            errors,
            queued,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Failed writes so far (each is logged).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Entries accepted but not yet committed.
    pub fn backlog(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    fn send(&self, op: Op) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.send(op).is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
            error!("chat transcript writer is gone: entry not stored");
        }
    }

    /// Wait until everything queued before this call is committed.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Op::Flush(tx));
        let _ = rx.recv();
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chats not ended, with all their entries (restore at start).
    pub fn open_chats(&self) -> rusqlite::Result<Vec<(ChatRecord, Vec<StoredMessage>)>> {
        let c = self.conn();
        let chats = select_chats(&c, "WHERE state != 'ended' ORDER BY created_ms", [])?;
        chats
            .into_iter()
            .map(|s| {
                let m = messages(&c, &s.id, true)?;
                Ok((record(s), m))
            })
            .collect()
    }

    /// One chat and its entries (`private`: include consultation and notes).
    pub fn get(
        &self,
        id: &str,
        private: bool,
    ) -> rusqlite::Result<Option<(StoredChat, Vec<StoredMessage>)>> {
        let c = self.conn();
        let Some(chat) = select_chats(&c, "WHERE id = ?1", [id])?.pop() else {
            return Ok(None);
        };
        let m = messages(&c, id, private)?;
        Ok(Some((chat, m)))
    }

    /// Whether `agent` ever handled chat `id`.
    pub fn handled_by(&self, id: &str, agent: &str) -> rusqlite::Result<bool> {
        self.conn()
            .query_row(
                "SELECT 1 FROM chat_agents WHERE chat = ?1 AND agent = ?2",
                [id, agent],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
    }

    /// Chats by start date, queue and agent, newest first.
    pub fn search(&self, q: &Query) -> rusqlite::Result<Vec<StoredChat>> {
        let c = self.conn();
        let sql = "WHERE (?1 IS NULL OR created_ms >= ?1) AND (?2 IS NULL OR created_ms < ?2)
              AND (?3 IS NULL OR queue = ?3)
              AND (?4 IS NULL OR id IN (SELECT chat FROM chat_agents WHERE agent = ?4))
            ORDER BY created_ms DESC, id LIMIT ?5";
        select_chats(
            &c,
            sql,
            params![
                q.from_ms.map(|v| v as i64),
                q.to_ms.map(|v| v as i64),
                q.queue,
                q.agent,
                q.limit.clamp(1, 1000)
            ],
        )
    }
}

impl Store for Transcripts {
    fn chat(&self, c: &ChatRecord) {
        self.send(Op::Chat(c.clone()));
    }

    fn message(&self, chat: &str, offset: chat::Offset, private: bool, ts_ms: u64, frame: &str) {
        self.send(Op::Msg {
            chat: chat.to_string(),
            offset: offset.0,
            private,
            ts_ms,
            frame: frame.to_string(),
        });
    }
}

fn record(s: StoredChat) -> ChatRecord {
    ChatRecord {
        id: s.id,
        queue: s.queue,
        fields: s.fields,
        token_hash: s.token_hash,
        state: s.state,
        agent: s.agent,
        created_ms: s.created_ms,
        ended_ms: s.ended_ms,
    }
}

fn select_chats(
    c: &Connection,
    tail: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<StoredChat>> {
    let sql = format!(
        "SELECT id, queue, fields, token_hash, state, agent, created_ms, ended_ms,
           (SELECT group_concat(agent, char(31)) FROM chat_agents WHERE chat = chats.id)
         FROM chats {tail}"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(p, |r| {
        let fields: String = r.get(2)?;
        let agents: Option<String> = r.get(8)?;
        Ok(StoredChat {
            id: r.get(0)?,
            queue: r.get(1)?,
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            token_hash: r.get(3)?,
            state: r.get(4)?,
            agent: r.get(5)?,
            created_ms: r.get::<_, i64>(6)? as u64,
            ended_ms: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            agents: agents
                .map(|a| a.split('\u{1f}').map(String::from).collect())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}

fn messages(c: &Connection, id: &str, private: bool) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut st = c.prepare_cached(
        "SELECT offset, private, frame FROM messages
         WHERE chat = ?1 AND (?2 OR private = 0) ORDER BY offset",
    )?;
    let rows = st.query_map(params![id, private], |r| {
        Ok(StoredMessage {
            offset: chat::Offset(r.get::<_, i64>(0)? as u64),
            private: r.get(1)?,
            frame: r.get(2)?,
        })
    })?;
    rows.collect()
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::Chat(c) => {
            tx.prepare_cached(
                "INSERT INTO chats(id, queue, fields, token_hash, state, agent, created_ms, ended_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET queue = excluded.queue, state = excluded.state,
                   agent = excluded.agent, ended_ms = excluded.ended_ms",
            )?
            .execute(params![
                c.id,
                c.queue,
                Value::Object(c.fields.clone()).to_string(),
                c.token_hash,
                c.state,
                c.agent,
                c.created_ms as i64,
                c.ended_ms.map(|v| v as i64)
            ])?;
            if let Some(a) = &c.agent {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO chat_agents(chat, agent) VALUES (?1, ?2)",
                )?
                .execute([&c.id, a])?;
            }
        }
        Op::Msg {
            chat,
            offset,
            private,
            ts_ms,
            frame,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO messages(chat, offset, private, ts_ms, frame)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![chat, *offset as i64, private, *ts_ms as i64, frame])?;
        }
        Op::Flush(_) => {}
    }
    Ok(())
}

/// The writer: block for one entry, take whatever else is queued (up to BATCH), commit
/// them together, then answer flushes.
fn writer(
    mut c: Connection,
    rx: mpsc::Receiver<Op>,
    errors: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let r = c.transaction().and_then(|tx| {
            for op in &batch {
                apply(&tx, op)?;
            }
            tx.commit()
        });
        if let Err(e) = r {
            errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
            error!(entries = batch.len(), error = %e, "chat transcript batch not stored");
        }
        queued.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                let _ = done.send(());
            }
        }
    }
}
