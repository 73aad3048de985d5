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

/// A log filter for libraries that log each retry themselves (the NATS client
/// logs every failed connection attempt, every few seconds while a server
/// refuses the node): their events at INFO and above pass once per [`EVERY`]
/// per call site; more verbose ones, and every other target's, pass as they
/// are. The edge's own warning for the same trouble is throttled alike.
pub struct LibraryRepeats {
    /// The libraries' targets (a module path prefix).
    pub targets: &'static [&'static str],
}

/// Whether a log `target` is one of `modules` or inside one of them.
pub fn target_in(target: &str, modules: &[&str]) -> bool {
    modules
        .iter()
        .any(|t| target == *t || target.strip_prefix(t).is_some_and(|r| r.starts_with("::")))
}

impl LibraryRepeats {
    /// Whether events of this call site are throttled.
    fn throttles(&self, m: &tracing::Metadata<'_>) -> bool {
        m.is_event() && *m.level() <= tracing::Level::INFO && target_in(m.target(), self.targets)
    }
}

impl<S> tracing_subscriber::layer::Filter<S> for LibraryRepeats {
    /// Asked once per event of a throttled call site (see `callsite_enabled`).
    /// (Not `event_enabled`: tracing-subscriber 0.3.23 leaves its per-layer
    /// filter state dirty when that says no.)
    fn enabled(
        &self,
        m: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // The call site's name holds its file and line.
        !self.throttles(m) || warn_now(&format!("log {}: {}", m.target(), m.name()))
    }

    fn callsite_enabled(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.throttles(m) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
