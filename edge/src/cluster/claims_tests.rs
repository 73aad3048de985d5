//! The shared agent state's JSON in the `edge_agents` bucket.

use super::*;

#[test]
fn a_shared_agent_state_reads_back_as_written() {
    let share = b2bua::AgentShare {
        choice: b2bua::Choice::NotReady("lunch".into()),
        idle_since_ms: 1_765_000_000_000,
        tally: Some(b2bua::Tally {
            calls_today: 12,
            day: 20_429,
            no_answer: 2,
        }),
        wrap_until_ms: Some(1_765_000_030_000),
    };
    let v = state_json(&share);
    assert_eq!(v["missed_in_a_row"], 2);
    assert_eq!(state_of(&v), Some(share.clone()));
    // Not in a wrap-up: no end.
    let idle = b2bua::AgentShare {
        wrap_until_ms: None,
        ..share
    };
    assert_eq!(state_of(&state_json(&idle)), Some(idle));
}

#[test]
fn a_value_written_before_the_counters_were_shared_still_reads() {
    // What a node of the previous version wrote: choice and idle time only. The
    // counters stay as the reading node has them.
    let old = serde_json::json!({
        "state": "ready", "reason": null, "idle_since_ms": 5u64, "node": "edge-a"
    });
    let s = state_of(&old).unwrap();
    assert_eq!(s.choice, b2bua::Choice::Ready);
    assert_eq!((s.tally, s.wrap_until_ms), (None, None));
    // Unreadable: no state, not a guess.
    assert_eq!(state_of(&serde_json::json!({ "state": "asleep" })), None);
}
