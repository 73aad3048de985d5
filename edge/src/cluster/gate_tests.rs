use super::gate::{Failure, Gate, QUORUM_GRACE};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

#[test]
fn a_node_is_held_until_it_joins_and_held_again_only_after_the_grace() {
    let t0 = Instant::now();
    let mut g = Gate::new(2 * S);
    assert_eq!(g.poll(t0), Some(true), "held before the first heartbeat");
    assert_eq!(g.poll(t0 + S), None, "told once");
    g.ok(t0 + S);
    assert_eq!(g.poll(t0 + S), Some(false), "joined");
    // Unreachable: a success within the grace changes nothing.
    g.failed(t0 + 2 * S, Failure::Unreachable);
    assert_eq!(g.poll(t0 + 3 * S), None);
    g.ok(t0 + 3 * S);
    assert_eq!(g.poll(t0 + 10 * S), None, "the failure was forgotten");
    // Unreachable for the grace (counted from the first failure): held.
    g.failed(t0 + 11 * S, Failure::Unreachable);
    g.failed(t0 + 12 * S, Failure::Unreachable);
    assert_eq!(g.poll(t0 + 12 * S), None);
    assert_eq!(g.poll(t0 + 13 * S), Some(true));
    g.failed(t0 + 14 * S, Failure::Unreachable);
    assert_eq!(g.poll(t0 + 20 * S), None);
    g.ok(t0 + 21 * S);
    assert_eq!(g.poll(t0 + 21 * S), Some(false), "released by a success");
}

#[test]
fn refused_writes_while_connected_hold_only_after_the_quorum_grace() {
    let t0 = Instant::now();
    let mut g = Gate::new(2 * S);
    g.ok(t0);
    assert_eq!(g.poll(t0), Some(false));
    // A leader election: writes refused for 9 s while connected, then accepted.
    for i in 0..9 {
        g.failed(t0 + i * S, Failure::NoQuorum);
        assert_eq!(g.poll(t0 + i * S), None, "{i} s into an election");
    }
    g.ok(t0 + 9 * S);
    assert_eq!(g.poll(t0 + 9 * S), None);
    // A lost quorum: refused for the whole quorum grace.
    let t1 = t0 + 10 * S;
    g.failed(t1, Failure::NoQuorum);
    g.failed(t1 + QUORUM_GRACE - S, Failure::NoQuorum);
    assert_eq!(g.poll(t1 + QUORUM_GRACE - S), None);
    assert_eq!(g.poll(t1 + QUORUM_GRACE), Some(true));
    // Unreachable after refused writes: the unreachable grace counts from when
    // the connection went, not from the first refusal.
    let mut g = Gate::new(2 * S);
    g.ok(t0);
    g.poll(t0);
    g.failed(t0, Failure::NoQuorum);
    g.failed(t0 + 5 * S, Failure::Unreachable);
    assert_eq!(g.poll(t0 + 6 * S), None);
    assert_eq!(g.poll(t0 + 7 * S), Some(true));
}
