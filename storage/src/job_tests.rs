//! Unit tests of `job.rs`.

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
