//! Recordings on their way out of the edge: the spool ([`spool`]) holds each finished
//! recording with its metadata and a crash-safe journal ([`journal`]); the upload
//! logic ([`job`], sans-IO, with [`backoff`]) decides each next step; targets
//! ([`target`]: fs, http) carry the chunks; the [`uploader`] drives it all with
//! bounded concurrency; [`retention`] deletes what is older than the hard bound.
//! Chat transcripts live in SQLite ([`transcript`]), agents' registrations too
//! ([`registrations`]).

pub mod backoff;
pub mod job;
pub mod journal;
pub mod registrations;
pub mod retention;
pub mod spool;
pub mod target;
pub mod transcript;
#[cfg(test)]
mod transcript_tests;
pub mod uploader;

pub use journal::{Journal, State};
pub use spool::Spool;

/// SHA-256 of a whole file, lowercase hex (read in 1 MiB blocks).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Milliseconds since the Unix epoch of a time (0 before the epoch).
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
#[cfg(test)]
mod tests;
