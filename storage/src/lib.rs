//! Recordings on their way out of the edge: the spool ([`spool`]) holds each finished
//! recording with its metadata and a crash-safe journal ([`journal`]); the upload
//! logic ([`job`], sans-IO, with [`backoff`]) decides each next step; targets
//! ([`target`]: fs, http) carry the chunks; the [`uploader`] drives it all with
//! bounded concurrency; [`retention`] deletes what is older than the hard bound.

pub mod backoff;
pub mod job;
pub mod journal;
pub mod retention;
pub mod spool;
pub mod target;
pub mod uploader;

pub use journal::{Journal, State};
pub use spool::Spool;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Milliseconds since the Unix epoch of a time (0 before the epoch).
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
#[cfg(test)]
mod tests;
