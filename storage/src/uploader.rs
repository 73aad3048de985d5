//! The upload driver: keeps every spooled job's journal in memory (mirroring disk),
//! runs up to `concurrency` uploads at once, saves the journal before and after each
//! step, deletes the local copy once the target acknowledged everything, and sweeps
//! the retention bound. Admin actions (list, retry) go through it.

use crate::backoff::{Backoff, Jitter};
use crate::job::{self, Outcome, Step};
use crate::journal::{Journal, State};
use crate::spool::{Spool, SpoolError};
use crate::target::Target;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Settings {
    pub backoff: Backoff,
    pub max_attempts: Option<u32>,
    pub concurrency: usize,
    pub retention: Duration,
}

impl Settings {
    pub fn from_config(c: &control::StorageConfig) -> Settings {
        Settings {
            backoff: Backoff {
                base: c.upload.backoff_base,
                cap: c.upload.backoff_max,
            },
            max_attempts: c.upload.max_attempts,
            concurrency: c.upload.concurrency.max(1),
            retention: c.retention,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub bytes_uploaded: AtomicU64,
    pub attempts: AtomicU64,
    pub uploaded: AtomicU64,
    pub expired: AtomicU64,
    pub spool_errors: AtomicU64,
    pub failures: Mutex<BTreeMap<String, u64>>,
}

/// Short failure class for metrics labels ("http_503", "connection", "timeout", "fs").
fn failure_class(reason: &str) -> String {
    if let Some(rest) = reason.strip_prefix("HTTP ") {
        format!(
            "http_{}",
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("")
        )
    } else {
        reason
            .split(':')
            .next()
            .unwrap_or("other")
            .trim()
            .to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    #[error("no such recording")]
    NotFound,
    #[error("recording is {0}: nothing to retry")]
    State(&'static str),
}

pub struct Uploader {
    pub spool: Spool,
    target: Target,
    settings: Settings,
    jobs: Mutex<HashMap<String, Journal>>,
    expired: Mutex<Vec<Journal>>,
    running: Mutex<HashSet<String>>,
    jitter: Mutex<Jitter>,
    wake: Notify,
    pub metrics: Metrics,
}

/// Chunks of one recording sent at once (s3: parts read whole, so the memory
/// bound is this times the chunk size).
pub const CHUNKS_IN_FLIGHT: usize = 2;

fn now_ms() -> u64 {
    crate::unix_ms(SystemTime::now())
}

impl Uploader {
    /// Open the spool and load every job, including those a crash left mid-upload.
    pub fn new(spool: Spool, target: Target, settings: Settings, seed: u64) -> Arc<Uploader> {
        let jobs: HashMap<String, Journal> = spool
            .load()
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        let expired = spool.load_expired();
        if !jobs.is_empty() {
            tracing::info!(jobs = jobs.len(), "resuming spooled uploads");
        }
        Arc::new(Uploader {
            spool,
            target,
            settings,
            jobs: Mutex::new(jobs),
            expired: Mutex::new(expired),
            running: Mutex::new(HashSet::new()),
            jitter: Mutex::new(Jitter::new(seed)),
            wake: Notify::new(),
            metrics: Metrics::default(),
        })
    }

    /// Take a finished recording into the spool; the upload starts at once.
    pub fn accept(
        &self,
        src: &Path,
        id: &str,
        meta: &serde_json::Value,
    ) -> Result<Journal, SpoolError> {
        let r = self.spool.accept(src, id, meta, now_ms());
        match &r {
            Ok(j) => {
                tracing::info!(recording = %j.id, size = j.size, chunks = j.chunks.len(), "recording spooled");
                self.jobs.lock().insert(j.id.clone(), j.clone());
                self.wake.notify_one();
            }
            Err(e) => {
                self.metrics.spool_errors.fetch_add(1, Relaxed);
                tracing::error!(recording = %id, error = %e, "cannot spool recording");
            }
        }
        r
    }

    /// Every known recording: spooled ones and expired tombstones.
    pub fn list(&self) -> Vec<Journal> {
        let mut v: Vec<Journal> = self.jobs.lock().values().cloned().collect();
        v.extend(self.expired.lock().iter().cloned());
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<Journal> {
        self.jobs
            .lock()
            .get(id)
            .cloned()
            .or_else(|| self.expired.lock().iter().find(|j| j.id == id).cloned())
    }

    /// Pending or uploading jobs, and the age of the oldest in seconds.
    pub fn queue(&self) -> (usize, f64) {
        let jobs = self.jobs.lock();
        let now = now_ms();
        let pending: Vec<&Journal> = jobs
            .values()
            .filter(|j| matches!(j.state, State::Pending | State::Uploading))
            .collect();
        let oldest = pending
            .iter()
            .map(|j| now.saturating_sub(j.created_ms))
            .max()
            .unwrap_or(0);
        (pending.len(), oldest as f64 / 1000.0)
    }

    /// Retry a failed (or waiting) upload now.
    pub fn retry(&self, id: &str) -> Result<(), RetryError> {
        let mut jobs = self.jobs.lock();
        let Some(j) = jobs.get_mut(id) else {
            return match self.expired.lock().iter().any(|j| j.id == id) {
                true => Err(RetryError::State("expired")),
                false => Err(RetryError::NotFound),
            };
        };
        match j.state {
            State::Failed | State::Pending => {
                j.state = State::Pending;
                j.next_attempt_ms = None;
                j.failures = 0;
                let _ = self.spool.save(j);
                drop(jobs);
                self.wake.notify_one();
                Ok(())
            }
            s => Err(RetryError::State(s.as_str())),
        }
    }

    /// Apply the retention bound at `now_ms` (injectable clock).
    pub fn sweep_retention(&self, now_ms: u64) -> Vec<Journal> {
        let candidates: Vec<Journal> = {
            let running = self.running.lock();
            self.jobs
                .lock()
                .values()
                .filter(|j| !running.contains(&j.id))
                .cloned()
                .collect()
        };
        let gone =
            crate::retention::sweep(&self.spool, &candidates, now_ms, self.settings.retention);
        let mut jobs = self.jobs.lock();
        let mut exp = self.expired.lock();
        for j in &gone {
            jobs.remove(&j.id);
            let mut t = j.clone();
            t.state = State::Expired;
            exp.push(t);
            self.metrics.expired.fetch_add(1, Relaxed);
        }
        gone
    }

    /// Run the scheduler forever.
    pub async fn run(self: Arc<Self>) {
        let mut last_sweep = 0u64;
        loop {
            let now = now_ms();
            if now.saturating_sub(last_sweep) >= 60_000 {
                self.sweep_retention(now);
                last_sweep = now;
            }
            let mut next_wake = now + 1_000;
            let ready: Vec<String> = {
                let jobs = self.jobs.lock();
                let running = self.running.lock();
                let mut r: Vec<&Journal> = jobs
                    .values()
                    .filter(|j| {
                        matches!(j.state, State::Pending | State::Uploading | State::Uploaded)
                            && !running.contains(&j.id)
                    })
                    .filter(|j| match j.next_attempt_ms {
                        Some(t) if t > now => {
                            next_wake = next_wake.min(t);
                            false
                        }
                        _ => true,
                    })
                    .collect();
                r.sort_by_key(|j| j.created_ms);
                r.into_iter().map(|j| j.id.clone()).collect()
            };
            for id in ready {
                if self.running.lock().len() >= self.settings.concurrency {
                    break;
                }
                self.running.lock().insert(id.clone());
                let me = self.clone();
                tokio::spawn(async move {
                    me.upload(&id).await;
                    me.running.lock().remove(&id);
                    me.wake.notify_one();
                });
            }
            let wait = Duration::from_millis(next_wake.saturating_sub(now_ms()).max(10));
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    /// Drive one job until it is done, scheduled for a retry, or failed.
    async fn upload(&self, id: &str) {
        loop {
            let Some(mut j) = self.jobs.lock().get(id).cloned() else {
                return;
            };
            // Uploaded: only the local delete is left (also after a crash right here).
            if !matches!(j.state, State::Pending | State::Uploading | State::Uploaded) {
                return;
            }
            let step = job::next_step(&j);
            if step == Step::Done {
                match self.spool.remove(id) {
                    Ok(()) => {
                        self.jobs.lock().remove(id);
                        self.metrics.uploaded.fetch_add(1, Relaxed);
                        tracing::info!(recording = %id, target = self.target.name(), "uploaded; local copy deleted");
                    }
                    Err(e) => {
                        self.metrics.spool_errors.fetch_add(1, Relaxed);
                        tracing::error!(recording = %id, error = %e, "uploaded but cannot delete the local copy");
                    }
                }
                return;
            }
            // S3 multipart: create the remote upload and journal its id first.
            if self.target.needs_upload_id()
                && j.remote_upload_id.is_none()
                && matches!(step, Step::PutChunk(_))
            {
                match self.target.begin(&j).await {
                    Ok(upload_id) => {
                        tracing::info!(recording = %id, upload_id = %upload_id, "s3 multipart upload started");
                        j.remote_upload_id = Some(upload_id);
                        for c in j.chunks.iter_mut() {
                            c.acked = false;
                            c.etag = None;
                        }
                        if let Err(e) = self.spool.save(&j) {
                            self.metrics.spool_errors.fetch_add(1, Relaxed);
                            tracing::error!(recording = %id, error = %e, "cannot journal the upload id; will retry");
                            return;
                        }
                        self.jobs.lock().insert(id.to_string(), j.clone());
                    }
                    Err(outcome) => {
                        job::begin(&mut j);
                        self.finish_step(id, &mut j, step, outcome).await;
                        return;
                    }
                }
            }
            if matches!(step, Step::PutChunk(_)) {
                if !self.put_chunks(id, j).await {
                    return;
                }
                continue;
            }
            if !self.begin_step(id, &mut j) {
                return;
            }
            let outcome = match step {
                Step::Complete => match self.spool.read_meta(id) {
                    Ok(meta) => self.target.complete(&j, meta).await,
                    Err(e) => Outcome::Retry {
                        reason: format!("spool: {e}"),
                        retry_after: None,
                    },
                },
                Step::PutChunk(_) | Step::Done => unreachable!("handled above"),
            };
            if !self.finish_step(id, &mut j, step, outcome).await {
                return;
            }
        }
    }

    /// Journal a step as begun (its attempt counted) before it is taken; false when
    /// the journal cannot be written (the job waits 5 s and the step is not taken).
    fn begin_step(&self, id: &str, j: &mut Journal) -> bool {
        job::begin(j);
        if let Err(e) = self.spool.save(j) {
            // Without a durable journal we do not take the step.
            self.metrics.spool_errors.fetch_add(1, Relaxed);
            tracing::error!(recording = %id, error = %e, "cannot write journal; will retry");
            let mut jobs = self.jobs.lock();
            if let Some(m) = jobs.get_mut(id) {
                m.state = State::Pending;
                m.next_attempt_ms = Some(now_ms() + 5_000);
            }
            return false;
        }
        self.jobs.lock().insert(id.to_string(), j.clone());
        self.metrics.attempts.fetch_add(1, Relaxed);
        true
    }

    /// Put every chunk not yet acknowledged, [`CHUNKS_IN_FLIGHT`] at a time (the
    /// next one starts as soon as one is answered, so a chunk's round trip and its
    /// journal writes overlap the others' bytes). Whether to go on at once: after a
    /// failure no chunk starts, those in flight are waited for (their
    /// acknowledgements kept), and the first failure alone sets the backoff.
    async fn put_chunks(&self, id: &str, mut j: Journal) -> bool {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut todo: std::collections::VecDeque<usize> = (0..j.chunks.len())
            .filter(|&i| !j.chunks[i].acked)
            .collect();
        let mut flight = FuturesUnordered::new();
        let mut go_on = true;
        let mut failed = false;
        loop {
            while go_on && !failed && flight.len() < CHUNKS_IN_FLIGHT {
                let Some(i) = todo.pop_front() else {
                    break;
                };
                if !self.begin_step(id, &mut j) {
                    go_on = false;
                    break;
                }
                let snapshot = j.clone();
                flight.push(async move {
                    let r = self.put_chunk(&snapshot, i).await;
                    (i, r)
                });
            }
            let Some((i, r)) = flight.next().await else {
                break;
            };
            if r.etag.is_some() {
                j.chunks[i].etag = r.etag;
            }
            if !failed {
                let ok = matches!(r.outcome, Outcome::Ok);
                go_on &= self
                    .finish_step(id, &mut j, Step::PutChunk(i), r.outcome)
                    .await;
                failed = !ok;
            } else {
                // After the first failure: count it, keep an acknowledgement (not
                // its reset of the failure count: the backoff stays the first
                // failure's).
                self.count(&j, Step::PutChunk(i), &r.outcome);
                if matches!(r.outcome, Outcome::Ok) {
                    job::ack(&mut j, i);
                    self.journal(id, &j);
                }
            }
        }
        go_on && !failed
    }

    /// One chunk to the target: streamed from the spooled file (http), or read
    /// whole and sent (s3 part, fs).
    async fn put_chunk(&self, j: &Journal, i: usize) -> crate::target::ChunkResult {
        if self.target.streams() {
            let path = self.spool.file_path(j);
            return self.target.put_chunk_from(j, i, path).await;
        }
        match self.read_chunk(j, i).await {
            Ok(data) => self.target.put_chunk(j, i, data).await,
            Err(e) => Outcome::Retry {
                reason: format!("spool: {e}"),
                retry_after: None,
            }
            .into(),
        }
    }

    /// Count, apply and journal a step's outcome. Returns whether to go on at once.
    async fn finish_step(&self, id: &str, j: &mut Journal, step: Step, outcome: Outcome) -> bool {
        self.count(j, step, &outcome);
        let unit = self.jitter.lock().unit();
        let delay = job::apply(
            j,
            step,
            outcome,
            now_ms(),
            &self.settings.backoff,
            self.settings.max_attempts,
            unit,
        );
        if j.state == State::Failed {
            // An upload that cannot finish must not leave parts behind.
            self.target.abort(j).await;
        }
        self.journal(id, j);
        match (j.state, delay) {
            (State::Failed, _) => {
                tracing::warn!(recording = %id, error = ?j.last_error, "upload failed; admin can retry")
            }
            (_, Some(d)) => {
                tracing::info!(recording = %id, error = ?j.last_error, retry_in_ms = d.as_millis() as u64, "upload step failed; will retry")
            }
            _ => {}
        }
        j.state != State::Failed && delay.is_none()
    }

    /// A step's outcome in the metrics: failures by class, bytes acknowledged.
    fn count(&self, j: &Journal, step: Step, outcome: &Outcome) {
        match (outcome, step) {
            (Outcome::Retry { reason, .. } | Outcome::Fatal { reason }, _) => {
                *self
                    .metrics
                    .failures
                    .lock()
                    .entry(failure_class(reason))
                    .or_default() += 1;
            }
            (Outcome::Ok, Step::PutChunk(i)) => {
                self.metrics
                    .bytes_uploaded
                    .fetch_add(j.chunks[i].len, Relaxed);
            }
            (Outcome::Ok, _) => {}
        }
    }

    /// Write `j` after a step, and keep it as the job's state in memory.
    fn journal(&self, id: &str, j: &Journal) {
        if let Err(e) = self.spool.save(j) {
            self.metrics.spool_errors.fetch_add(1, Relaxed);
            tracing::error!(recording = %id, error = %e, "cannot write journal after a step");
        }
        self.jobs.lock().insert(id.to_string(), j.clone());
    }

    async fn read_chunk(&self, j: &Journal, i: usize) -> Result<Vec<u8>, SpoolError> {
        // Chunks are at most chunk_size (50 MB by default); read off the async threads.
        let path = self.spool.file_path(j);
        let (offset, len) = (j.chunks[i].offset, j.chunks[i].len);
        tokio::task::spawn_blocking(move || crate::spool::read_range(&path, offset, len))
            .await
            .unwrap_or_else(|e| {
                Err(SpoolError::Io {
                    path: std::path::PathBuf::new(),
                    source: std::io::Error::other(e),
                })
            })
    }
}
