//! Whether a cluster node may take new work, from what it sees of NATS. Sans-IO:
//! the driver reports each heartbeat write's outcome with the time, and asks
//! [`Gate::poll`] whether the node must hold or release.
//!
//! Two kinds of failure, two patiences:
//! - **unreachable** (no connection to any NATS server): held after `grace`. A
//!   move to another server of the cluster takes milliseconds and goes unnoticed.
//! - **no quorum** (connected, but the JetStream write is refused or not
//!   acknowledged): held after [`QUORUM_GRACE`]. When the NATS server leading the
//!   stream dies, the other two elect a new leader and writes fail meanwhile —
//!   seen at 5 to 9 s with nats-server 2.9 — and losing one server of three must
//!   not stop the node. Two servers of three gone is a lost quorum: held.
//!
//! A node starts held (it has not joined yet); the first successful write
//! releases it, as does any later success.

use std::time::{Duration, Instant};

/// How long JetStream writes may fail while connected before the node holds.
pub const QUORUM_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not connected to any NATS server.
    Unreachable,
    /// Connected, but the write was refused or not acknowledged in time.
    NoQuorum,
}

#[derive(Debug)]
pub struct Gate {
    grace: Duration,
    held: bool,
    /// The first failure since the last success, and the first while unreachable.
    failing_since: Option<Instant>,
    unreachable_since: Option<Instant>,
    /// What the driver was last told (so [`Gate::poll`] reports changes only).
    reported: Option<bool>,
}

impl Gate {
    pub fn new(grace: Duration) -> Gate {
        Gate {
            grace,
            held: true,
            failing_since: None,
            unreachable_since: None,
            reported: None,
        }
    }

    /// A heartbeat reached the cluster's shared state.
    pub fn ok(&mut self, _now: Instant) {
        self.failing_since = None;
        self.unreachable_since = None;
        self.held = false;
    }

    /// A heartbeat failed.
    pub fn failed(&mut self, now: Instant, why: Failure) {
        self.failing_since.get_or_insert(now);
        match why {
            Failure::Unreachable => {
                self.unreachable_since.get_or_insert(now);
            }
            Failure::NoQuorum => self.unreachable_since = None,
        }
    }

    /// `Some(held)` when the node must change (hold, or release); `None` when it
    /// stays as it was last told.
    pub fn poll(&mut self, now: Instant) -> Option<bool> {
        let unreachable = self
            .unreachable_since
            .is_some_and(|t| now >= t + self.grace);
        let no_quorum = self
            .failing_since
            .is_some_and(|t| now >= t + QUORUM_GRACE.max(self.grace));
        if unreachable || no_quorum {
            self.held = true;
        }
        if self.reported == Some(self.held) {
            return None;
        }
        self.reported = Some(self.held);
        Some(self.held)
    }
}
