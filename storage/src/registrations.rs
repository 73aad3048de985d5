//! Agents' registrations (SIP bindings) in SQLite, so they survive a restart: the
//! SIP core hands each agent's current bindings to a writer thread, which batches
//! them into transactions; at start the live ones are read back.

use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::warn;

/// One binding as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub agent: String,
    pub contact: String,
    /// `udp` / `tcp`.
    pub transport: String,
    /// The edge's listen address the REGISTER came to, and where it came from.
    pub local: String,
    pub remote: String,
    pub expires: SystemTime,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    /// The REGISTER's Path values (RFC 3327), in order.
    pub path: Vec<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bindings(
  agent TEXT NOT NULL, contact TEXT NOT NULL, transport TEXT NOT NULL,
  local TEXT NOT NULL, remote TEXT NOT NULL, expires_s INTEGER NOT NULL,
  call_id TEXT NOT NULL, cseq INTEGER NOT NULL, user_agent TEXT, path TEXT,
  PRIMARY KEY(agent, contact)) WITHOUT ROWID;
";

/// Path values are kept one per line (a header value holds no line break).
fn path_text(path: &[String]) -> Option<String> {
    (!path.is_empty()).then(|| path.join("\n"))
}

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("registrations {}: {source}", path.display())]
pub struct OpenError {
    path: PathBuf,
    source: rusqlite::Error,
}

enum Op {
    Set(String, Vec<Row>),
    Flush(mpsc::Sender<()>),
}

pub struct Registrations {
    tx: Mutex<mpsc::Sender<Op>>,
}

fn secs(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()).unwrap_or(i64::MAX)
}

impl Registrations {
    /// Open (or create) `DIR/registrations.sqlite`, read the bindings live at
    /// `now`, and start the writer.
    pub fn open(dir: &Path, now: SystemTime) -> Result<(Registrations, Vec<Row>), OpenError> {
        let path = dir.join("registrations.sqlite");
        let err = |source| OpenError {
            path: path.clone(),
            source,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
        }
        let c = Connection::open(&path).map_err(err)?;
        c.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        c.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        c.execute_batch(SCHEMA).map_err(err)?;
        // A store written before Path was kept gains the column (no Path).
        let has_path = c
            .prepare("SELECT 1 FROM pragma_table_info('bindings') WHERE name = 'path'")
            .and_then(|mut q| q.exists([]))
            .map_err(err)?;
        if !has_path {
            c.execute_batch("ALTER TABLE bindings ADD COLUMN path TEXT")
                .map_err(err)?;
        }
        c.execute(
            "DELETE FROM bindings WHERE expires_s <= ?1",
            params![secs(now)],
        )
        .map_err(err)?;
        let rows = {
            let mut q = c
                .prepare(
                    "SELECT agent, contact, transport, local, remote, expires_s, call_id, cseq, user_agent, path \
                     FROM bindings ORDER BY agent, expires_s",
                )
                .map_err(err)?;
            let it = q
                .query_map([], |r| {
                    Ok(Row {
                        agent: r.get(0)?,
                        contact: r.get(1)?,
                        transport: r.get(2)?,
                        local: r.get(3)?,
                        remote: r.get(4)?,
                        expires: UNIX_EPOCH
                            + Duration::from_secs(u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0)),
                        call_id: r.get(6)?,
                        cseq: r.get(7)?,
                        user_agent: r.get(8)?,
                        path: r
                            .get::<_, Option<String>>(9)?
                            .map(|p| p.lines().map(str::to_string).collect())
                            .unwrap_or_default(),
                    })
                })
                .map_err(err)?;
            it.collect::<Result<Vec<_>, _>>().map_err(err)?
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("registrations".into())
            .spawn(move || writer(c, rx))
            .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok((Registrations { tx: Mutex::new(tx) }, rows))
    }

    /// `agent` now holds exactly `rows` (none: unregistered).
    pub fn set(&self, agent: &str, rows: Vec<Row>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send(Op::Set(agent.to_string(), rows));
    }

    /// Wait until everything handed over is written.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            if tx.send(Op::Flush(done)).is_err() {
                return;
            }
        }
        let _ = wait.recv_timeout(Duration::from_secs(10));
    }
}

/// How long the writer gathers changes after the first before it writes them.
/// Phones re-register at thousands a second in a big centre: one transaction
/// (and one wake-up of this thread) per change cost more CPU than the change.
const GATHER: Duration = Duration::from_millis(20);

fn writer(mut c: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        // A flush asked for alone is answered at once; otherwise wait a moment
        // for the changes right behind the first.
        if !matches!(first, Op::Flush(_)) {
            std::thread::sleep(GATHER);
        }
        // Everything queued goes in one transaction, an agent's last rows only.
        let mut latest: HashMap<String, Vec<Row>> = HashMap::new();
        let mut flushed = Vec::new();
        let mut take = |op| match op {
            Op::Set(agent, rows) => {
                latest.insert(agent, rows);
            }
            Op::Flush(done) => flushed.push(done),
        };
        take(first);
        let mut n = 1;
        while let Ok(op) = rx.try_recv() {
            take(op);
            n += 1;
            if n >= 16384 {
                break;
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let t = c.transaction()?;
            {
                let mut delete = t.prepare_cached("DELETE FROM bindings WHERE agent = ?1")?;
                let mut insert = t.prepare_cached(
                    "INSERT OR REPLACE INTO bindings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for (agent, rows) in latest {
                    delete.execute(params![agent])?;
                    for r in rows {
                        insert.execute(params![
                            r.agent,
                            r.contact,
                            r.transport,
                            r.local,
                            r.remote,
                            secs(r.expires),
                            r.call_id,
                            r.cseq,
                            r.user_agent,
                            path_text(&r.path)
                        ])?;
                    }
                }
            }
            t.commit()
        })();
        if let Err(e) = result {
            warn!(error = %e, "registrations could not be written; they will not survive a restart");
        }
        for f in flushed {
            let _ = f.send(());
        }
    }
}

#[cfg(test)]
#[path = "registrations_tests.rs"]
mod tests;
