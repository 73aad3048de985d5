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
                Step::PutChunk(i) => {
                    j.chunks[i].acked = true;
                    j.bytes_uploaded += j.chunks[i].len;
                }
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
mod tests {
    use super::*;
    use crate::journal::Chunk;

    fn journal(n: usize) -> Journal {
        Journal {
            id: "r1".into(),
            call_id: None,
            file: "a.wav".into(),
            size: 100,
            sha256: String::new(),
            created_ms: 0,
            state: State::Pending,
            target: "http".into(),
            chunks: (0..n)
                .map(|index| Chunk {
                    index,
                    offset: index as u64 * 50,
                    len: 50,
                    sha256: String::new(),
                    acked: false,
                    etag: None,
                })
                .collect(),
            completed: false,
            remote_upload_id: None,
            attempts: 0,
            failures: 0,
            last_error: None,
            next_attempt_ms: None,
            bytes_uploaded: 0,
        }
    }

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };

    #[test]
    fn chunks_in_order_then_complete_then_done() {
        let mut j = journal(2);
        let mut steps = Vec::new();
        loop {
            let s = next_step(&j);
            steps.push(s);
            if s == Step::Done {
                break;
            }
            begin(&mut j);
            apply(&mut j, s, Outcome::Ok, 0, &B, None, 0.5);
        }
        assert_eq!(
            steps,
            vec![
                Step::PutChunk(0),
                Step::PutChunk(1),
                Step::Complete,
                Step::Done
            ]
        );
        assert_eq!(j.state, State::Uploaded);
        assert_eq!(j.bytes_uploaded, 100);
    }

    #[test]
    fn retry_keeps_progress_and_schedules_with_retry_after() {
        let mut j = journal(2);
        begin(&mut j);
        apply(&mut j, Step::PutChunk(0), Outcome::Ok, 0, &B, None, 0.5);
        begin(&mut j);
        let d = apply(
            &mut j,
            Step::PutChunk(1),
            Outcome::Retry {
                reason: "503".into(),
                retry_after: Some(Duration::from_secs(30)),
            },
            1_000,
            &B,
            None,
            0.5,
        );
        assert_eq!(d, Some(Duration::from_secs(30)));
        assert_eq!(j.next_attempt_ms, Some(31_000));
        assert_eq!(j.state, State::Pending);
        assert_eq!(
            next_step(&j),
            Step::PutChunk(1),
            "acknowledged chunk 0 is not sent again"
        );
    }

    #[test]
    fn fatal_and_exhausted_attempts_fail() {
        let mut j = journal(1);
        begin(&mut j);
        apply(
            &mut j,
            Step::PutChunk(0),
            Outcome::Fatal {
                reason: "403 Forbidden".into(),
            },
            0,
            &B,
            None,
            0.5,
        );
        assert_eq!(j.state, State::Failed);
        assert_eq!(j.last_error.as_deref(), Some("403 Forbidden"));
        let mut j = journal(1);
        for _ in 0..3 {
            begin(&mut j);
            apply(
                &mut j,
                Step::PutChunk(0),
                Outcome::Retry {
                    reason: "timeout".into(),
                    retry_after: None,
                },
                0,
                &B,
                Some(3),
                0.5,
            );
        }
        assert_eq!(j.state, State::Failed);
    }
}
