//! Unit tests of `jitter.rs`.

use super::*;

fn f(v: i16) -> Frame {
    [v; FRAME]
}

#[test]
fn reorders_within_the_delay_and_plays_in_sequence() {
    let mut j = JitterBuffer::new();
    assert_eq!(j.pop(), SILENCE, "nothing before playout starts");
    for seq in [10u16, 12, 11] {
        j.push(seq, &f(seq as i16));
    }
    for want in [10i16, 11, 12] {
        assert_eq!(j.pop()[0], want);
    }
    assert_eq!(j.stats.played, 3);
}

#[test]
fn conceals_loss_then_silence_and_drops_late_and_duplicates() {
    let mut j = JitterBuffer::new();
    for seq in 0u16..3 {
        j.push(seq, &f(1000));
    }
    j.push(2, &f(1000));
    assert_eq!(j.stats.duplicates, 1);
    for _ in 0..3 {
        j.pop();
    }
    // 3 and 4 lost: half-level repeat, then silence; 5 plays.
    j.push(5, &f(2000));
    assert_eq!(j.pop()[0], 500);
    assert_eq!(j.pop()[0], 0);
    assert_eq!(j.pop()[0], 2000);
    j.push(1, &f(9));
    assert_eq!(j.stats.late, 1);
    assert_eq!(j.stats.concealed, 2);
}

#[test]
fn sequence_wrap_and_jumps() {
    let mut j = JitterBuffer::new();
    for seq in [65534u16, 65535, 0, 1] {
        j.push(seq, &f(seq as i16));
    }
    for want in [65534u16, 65535, 0, 1] {
        assert_eq!(j.pop()[0], want as i16);
    }
    j.push(30_000, &f(7));
    assert_eq!(j.pop()[0], 7, "a jump restarts playout at the new position");
}
