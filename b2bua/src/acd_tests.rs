//! Unit tests of `acd.rs`.

use super::*;
use std::time::Duration;

#[test]
fn longest_idle_free_agent_first() {
    let t0 = Instant::now();
    let mut acd = Acd::new();
    let ids = ["a".to_string(), "b".to_string(), "c".to_string()];
    acd.sync(ids.iter().map(String::as_str), t0);
    let none = HashSet::new();
    // All idle since t0: ties broken by order → "a".
    let first = acd.pick(&ids, &none).unwrap().to_string();
    acd.seize(&first);
    let second = acd.pick(&ids, &none).unwrap().to_string();
    assert_ne!(first, second);
    acd.seize(&second);
    // The first finishes a call: now idle since t0+10s, so the third (idle since t0) comes first.
    acd.release(&first, t0 + Duration::from_secs(10), true);
    let third = acd.pick(&ids, &none).unwrap();
    assert!(third != first && third != second);
    let mut skip = HashSet::new();
    skip.insert(third.to_string());
    assert_eq!(acd.pick(&ids, &skip), Some(first.as_str()));
}

#[test]
fn sync_keeps_busy_agents_until_released() {
    let t0 = Instant::now();
    let mut acd = Acd::new();
    acd.sync(["a", "b"].into_iter(), t0);
    acd.seize("a");
    acd.sync(["b"].into_iter(), t0);
    assert!(!acd.is_free("a"));
    acd.release("a", t0, true);
    acd.sync(["b"].into_iter(), t0);
    assert!(!acd.is_free("a") && !acd.agents.contains_key("a"));
}

#[test]
fn waiting_calls_keep_their_order_across_an_offer_round() {
    let mut acd = Acd::new();
    for i in 1..=4 {
        acd.enqueue(CallId(i));
    }
    acd.withdraw(CallId(2));
    // A round takes the oldest two; call 1 still waits, call 3 was offered.
    let mut still = std::collections::VecDeque::new();
    assert_eq!(acd.pop_waiting(), Some(CallId(1)));
    still.push_back(CallId(1));
    assert_eq!(acd.pop_waiting(), Some(CallId(3)));
    // A call that arrives during the round queues behind those still waiting.
    acd.enqueue(CallId(5));
    acd.requeue(still);
    let order: Vec<CallId> = acd.waiting().collect();
    assert_eq!(order, [CallId(1), CallId(4), CallId(5)]);
}
