//! The upload logic of one recording, without I/O: which step comes next, and how a
//! step's outcome changes the journal (ack, retry with backoff, or fail).

use crate::backoff::Backoff;
use crate::journal::{Journal, State};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send chunk `i` (chunks go strictly in order).
    PutChunk(usize),
    /// Every chunk acknowledged: finish (http: POST …/complete; fs: move into place).
    Complete,
    /// Uploaded: delete the local copy.
    Done,
}

/// What a step's attempt returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Connection error, timeout, 5xx, 408, 429: try again later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Any other refusal (4xx): stop, keep the file, record why.
    Fatal {
        reason: String,
    },
}

pub fn next_step(j: &Journal) -> Step {
    match j.chunks.iter().position(|c| !c.acked) {
        Some(i) => Step::PutChunk(i),
        None if !j.completed => Step::Complete,
        None => Step::Done,
    }
}

/// Record that `step` is about to be attempted (journal saved before the attempt).
/// Chunk `i` was acknowledged by the target.
pub fn ack(j: &mut Journal, i: usize) {
    j.chunks[i].acked = true;
    j.bytes_uploaded += j.chunks[i].len;
}

pub fn begin(j: &mut Journal) {
    j.state = State::Uploading;
    j.attempts += 1;
    j.next_attempt_ms = None;
}

/// Apply the outcome of `step`. `now_ms` is the clock, `unit` a jitter draw in [0,1).
/// Returns the delay before the next attempt when a retry is scheduled.
pub fn apply(
    j: &mut Journal,
    step: Step,
    outcome: Outcome,
    now_ms: u64,
    backoff: &Backoff,
    max_attempts: Option<u32>,
    unit: f64,
) -> Option<Duration> {
    match outcome {
        Outcome::Ok => {
            j.last_error = None;
            j.failures = 0;
            match step {
                Step::PutChunk(i) => ack(j, i),
                Step::Complete => {
                    j.completed = true;
                    j.state = State::Uploaded;
                }
                Step::Done => {}
            }
            None
        }
        Outcome::Retry {
            reason,
            retry_after,
        } => {
            j.last_error = Some(reason);
            j.failures += 1;
            if max_attempts.is_some_and(|m| j.failures >= m) {
                j.state = State::Failed;
                return None;
            }
            let d = backoff.delay(j.failures, unit, retry_after);
            j.state = State::Pending;
            j.next_attempt_ms = Some(now_ms + d.as_millis() as u64);
            Some(d)
        }
        Outcome::Fatal { reason } => {
            j.last_error = Some(reason);
            j.state = State::Failed;
            None
        }
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
