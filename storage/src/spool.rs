//! The spool: `{dir}/spool/{id}/` holds one recording (its file, `meta.json` and
//! `journal.json`). A recording is accepted into a temporary directory and renamed
//! into place only when complete and synced, so a crash never leaves half a job.

use crate::journal::{plan, sync_dir, write_atomic, Chunk, Journal, State};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recording id `{0}` is not a safe name (letters, digits, - _ .)")]
    BadId(String),
    #[error("recording `{0}` is already spooled")]
    Exists(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Spool {
    pub root: PathBuf,
    chunk_size: u64,
    target: String,
}

pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Spool {
    /// Open (create) the spool under `dir/spool`.
    pub fn open(dir: &Path, chunk_size: u64, target: &str) -> Result<Spool, SpoolError> {
        let root = dir.join("spool");
        std::fs::create_dir_all(root.join("expired")).map_err(io(&root))?;
        Ok(Spool {
            root,
            chunk_size,
            target: target.to_string(),
        })
    }

    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Accept a finished recording: move `src` in (copy when it is on another
    /// filesystem), hash it, plan its chunks, write its metadata and journal, and
    /// publish the job with one rename. On error `src` is where it was; on success
    /// it is gone (moved) or still there (copied: the caller removes it).
    pub fn accept(
        &self,
        src: &Path,
        id: &str,
        meta: &serde_json::Value,
        now_ms: u64,
    ) -> Result<Journal, SpoolError> {
        if !safe_id(id) {
            return Err(SpoolError::BadId(id.to_string()));
        }
        let final_dir = self.job_dir(id);
        if final_dir.exists() {
            return Err(SpoolError::Exists(id.to_string()));
        }
        let tmp = self.root.join(format!(".incoming-{id}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let file = src
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_else(|| "recording".into());
        let dst = tmp.join(&file);
        // Same filesystem (the inbox lives under storage.dir): move, no copy.
        let moved = std::fs::rename(src, &dst).is_ok();
        let result = (|| {
            let size = if moved {
                std::fs::metadata(&dst).map_err(io(&dst))?.len()
            } else {
                std::fs::copy(src, &dst).map_err(io(&dst))?
            };
            let mut f = std::fs::File::open(&dst).map_err(io(&dst))?;
            let mut whole = Sha256::new();
            let mut chunks = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            for (index, (offset, len)) in plan(size, self.chunk_size).into_iter().enumerate() {
                let mut h = Sha256::new();
                let mut left = len;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = f.read(&mut buf[..want]).map_err(io(&dst))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    whole.update(&buf[..n]);
                    left -= n as u64;
                }
                chunks.push(Chunk {
                    index,
                    offset,
                    len,
                    sha256: hex::encode(h.finalize()),
                    acked: false,
                    etag: None,
                });
            }
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .map_err(io(&dst))?;
            let j = Journal {
                id: id.to_string(),
                call_id: meta
                    .get("call_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                file,
                size,
                sha256: hex::encode(whole.finalize()),
                created_ms: now_ms,
                state: State::Pending,
                target: self.target.clone(),
                chunks,
                completed: false,
                remote_upload_id: None,
                attempts: 0,
                failures: 0,
                last_error: None,
                next_attempt_ms: None,
                bytes_uploaded: 0,
            };
            let meta_bytes = serde_json::to_vec_pretty(meta).map_err(|e| SpoolError::Io {
                path: tmp.clone(),
                source: std::io::Error::other(e),
            })?;
            write_atomic(&tmp, "meta.json", &meta_bytes).map_err(io(&tmp))?;
            j.save(&tmp).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
            sync_dir(&self.root).map_err(io(&self.root))?;
            Ok(j)
        })();
        if result.is_err() {
            if moved {
                // Give the producer its file back.
                let _ = std::fs::rename(&dst, src);
            }
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Every spooled job (half-accepted temporaries are removed: their source was
    /// never released by the producer).
    pub fn load(&self) -> Vec<Journal> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".incoming-") {
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            if name == "expired" || name.starts_with('.') || !e.path().is_dir() {
                continue;
            }
            match Journal::load(&e.path()) {
                Ok(j) => out.push(j),
                Err(err) => {
                    tracing::error!(dir = %e.path().display(), error = %err, "unreadable journal: job left in place")
                }
            }
        }
        out.sort_by_key(|j| j.created_ms);
        out
    }

    /// Tombstones of expired recordings.
    pub fn load_expired(&self) -> Vec<Journal> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("expired")) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    if let Ok(j) = serde_json::from_slice::<Journal>(&b) {
                        out.push(j);
                    }
                }
            }
        }
        out
    }

    pub fn save(&self, j: &Journal) -> Result<(), SpoolError> {
        let d = self.job_dir(&j.id);
        j.save(&d).map_err(io(&d))
    }

    pub fn read_meta(&self, id: &str) -> Result<serde_json::Value, SpoolError> {
        let p = self.job_dir(id).join("meta.json");
        let b = std::fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&b).map_err(|e| SpoolError::Io {
            path: p,
            source: std::io::Error::other(e),
        })
    }

    pub fn file_path(&self, j: &Journal) -> PathBuf {
        self.job_dir(&j.id).join(&j.file)
    }

    pub fn read_chunk(&self, j: &Journal, index: usize) -> Result<Vec<u8>, SpoolError> {
        let c = &j.chunks[index];
        read_range(&self.file_path(j), c.offset, c.len)
    }

    /// Delete an uploaded job.
    pub fn remove(&self, id: &str) -> Result<(), SpoolError> {
        let d = self.job_dir(id);
        std::fs::remove_dir_all(&d).map_err(io(&d))?;
        sync_dir(&self.root).map_err(io(&self.root))
    }

    /// Delete a job's files but keep its journal as a tombstone (retention).
    pub fn expire(&self, j: &Journal) -> Result<(), SpoolError> {
        let mut t = j.clone();
        t.state = State::Expired;
        let bytes = serde_json::to_vec_pretty(&t).map_err(|e| SpoolError::Io {
            path: self.root.clone(),
            source: std::io::Error::other(e),
        })?;
        let dir = self.root.join("expired");
        write_atomic(&dir, &format!("{}.json", j.id), &bytes).map_err(io(&dir))?;
        self.remove(&j.id)
    }
}

/// Read `len` bytes at `offset` of `path`.
pub fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, SpoolError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io(path))?;
    Ok(buf)
}

/// Write `data` at `offset` of `path` (created if needed) and sync it.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    f.sync_all()
}
