//! The journal of one upload, written crash-safely (temp file, fsync, rename, fsync of
//! the directory) before every step, so a killed edge resumes exactly where it was.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Uploading,
    Uploaded,
    Failed,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Uploading => "uploading",
            State::Uploaded => "uploaded",
            State::Failed => "failed",
            State::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: usize,
    pub offset: u64,
    pub len: u64,
    pub sha256: String,
    pub acked: bool,
    /// S3 multipart: the part's ETag, needed to complete the same upload.
    #[serde(default)]
    pub etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub call_id: Option<String>,
    /// File name of the recording inside its spool directory.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// When it was spooled (ms since the epoch): retention counts from here.
    pub created_ms: u64,
    pub state: State,
    pub target: String,
    pub chunks: Vec<Chunk>,
    /// The final step (http: POST …/complete; fs: rename into place) was acknowledged.
    pub completed: bool,
    pub remote_upload_id: Option<String>,
    /// Requests made so far (every chunk, the completion, and their retries).
    pub attempts: u32,
    /// Failed attempts in a row; drives the backoff and `max_attempts`.
    #[serde(default)]
    pub failures: u32,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<u64>,
    pub bytes_uploaded: u64,
}

/// Plan chunks of at most `chunk_size` over a file of `size` bytes (at least one,
/// even for an empty file).
pub fn plan(size: u64, chunk_size: u64) -> Vec<(u64, u64)> {
    let cs = chunk_size.max(1);
    let n = size.div_ceil(cs).max(1);
    (0..n).map(|i| (i * cs, (size - i * cs).min(cs))).collect()
}

/// Write `bytes` to `dir/name` atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Journal {
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(dir, "journal.json", &bytes)
    }

    pub fn load(dir: &Path) -> std::io::Result<Journal> {
        let bytes = std::fs::read(dir.join("journal.json"))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub fn acked_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.acked).count()
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
