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

fn seen(agent: &str) -> CoreMsg {
    CoreMsg::ClaimSeen {
        agent: agent.into(),
    }
}

/// The agents a message from the watches names, in order (a batch unpacked).
fn agents(m: CoreMsg) -> Vec<String> {
    match m {
        CoreMsg::ClaimSeen { agent } | CoreMsg::ClaimGone { agent } => vec![agent],
        CoreMsg::Batch(v) => v.into_iter().flat_map(agents).collect(),
        _ => panic!("not a watch's message"),
    }
}

#[tokio::test(start_paused = true)]
async fn other_nodes_changes_reach_the_core_at_once_after_a_quiet_spell_then_gathered() {
    let (tx, mut rx) = crate::core::inbox(16, 16);
    let mut out = Gathered::new();
    let idle = Duration::from_secs(10);
    assert_eq!(out.wait(idle), idle, "nothing gathered: wait for entries");
    // Quiet until now: the first change goes at once, alone.
    out.msgs.push(seen("a1"));
    out.flush(&tx, false).await.unwrap();
    assert_eq!(agents(rx.try_next().expect("sent at once")), ["a1"]);
    // Within GATHER of it: kept, and the watch waits no longer than GATHER.
    tokio::time::advance(Duration::from_millis(5)).await;
    out.msgs.push(seen("a2"));
    out.flush(&tx, false).await.unwrap();
    out.msgs.push(CoreMsg::ClaimGone { agent: "a2".into() });
    out.flush(&tx, false).await.unwrap();
    assert!(rx.try_next().is_none(), "gathered, not sent yet");
    assert_eq!(out.wait(idle), GATHER - Duration::from_millis(5));
    // Due: one message for both, in order.
    tokio::time::advance(GATHER).await;
    out.msgs.push(seen("a3"));
    out.flush(&tx, false).await.unwrap();
    assert_eq!(agents(rx.try_next().expect("due")), ["a2", "a2", "a3"]);
    assert!(rx.try_next().is_none());
    // Before this node's own verdict: sent whatever the time.
    out.msgs.push(seen("a4"));
    out.flush(&tx, true).await.unwrap();
    assert_eq!(agents(rx.try_next().expect("forced")), ["a4"]);
}
