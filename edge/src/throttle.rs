//! Warnings that repeat — a node or server that stays unreachable, a
//! certificate refused at every retry — are said once a minute per key, not
//! once per client and attempt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A warning with the same key is said again after this long.
pub const EVERY: Duration = Duration::from_secs(60);

/// Whether the warning `key` is said now: the first time, and again once
/// [`EVERY`] has passed since it was last said.
pub fn warn_now(key: &str) -> bool {
    static LAST: std::sync::OnceLock<parking_lot::Mutex<HashMap<String, Instant>>> =
        std::sync::OnceLock::new();
    let mut last = LAST.get_or_init(Default::default).lock();
    let now = Instant::now();
    match last.get(key) {
        Some(t) if now.duration_since(*t) < EVERY => false,
        _ => {
            last.insert(key.to_string(), now);
            true
        }
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
