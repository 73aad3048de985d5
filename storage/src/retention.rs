//! The hard retention bound: any local recording older than `retention` is deleted,
//! whatever its upload state; a tombstone journal stays so the API can say so.

use crate::journal::Journal;
use crate::spool::Spool;
use std::time::Duration;

/// Expire every job older than `retention` at `now_ms`; returns the expired ones.
pub fn sweep(spool: &Spool, jobs: &[Journal], now_ms: u64, retention: Duration) -> Vec<Journal> {
    let bound = retention.as_millis() as u64;
    let mut out = Vec::new();
    for j in jobs {
        if now_ms.saturating_sub(j.created_ms) > bound {
            match spool.expire(j) {
                Ok(()) => {
                    tracing::warn!(recording = %j.id, state = j.state.as_str(), age_days = (now_ms - j.created_ms) as f64 / 86_400_000.0, "retention: local recording deleted");
                    out.push(j.clone());
                }
                Err(e) => {
                    tracing::error!(recording = %j.id, error = %e, "retention: cannot delete")
                }
            }
        }
    }
    out
}
