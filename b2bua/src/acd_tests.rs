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
    acd.call_done(&first, t0 + Duration::from_secs(10), Duration::ZERO);
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
    acd.call_done("a", t0, Duration::ZERO);
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

#[test]
fn wrap_up_ends_on_time_and_idle_counts_from_its_end() {
    let t0 = Instant::now();
    let mut acd = Acd::new();
    acd.sync(["a", "b"].into_iter(), t0);
    let ids = ["a".to_string(), "b".to_string()];
    acd.seize("a");
    acd.call_done("a", t0 + Duration::from_secs(5), Duration::from_secs(10));
    assert_eq!(acd.presence("a", true).unwrap().0, Presence::WrapUp);
    assert_eq!(acd.pick(&ids, &HashSet::new()), Some("b"));
    assert_eq!(acd.next_wrap_up_end(), Some(t0 + Duration::from_secs(15)));
    assert!(acd.end_wrap_ups(t0 + Duration::from_secs(14)).is_empty());
    assert_eq!(acd.end_wrap_ups(t0 + Duration::from_secs(15)), ["a"]);
    assert_eq!(acd.presence("a", true).unwrap().0, Presence::Ready);
    // b (idle since t0) before a (idle since the end of its wrap-up).
    acd.seize("b");
    acd.call_done("b", t0 + Duration::from_secs(16), Duration::ZERO);
    assert_eq!(acd.pick(&ids, &HashSet::new()), Some("a"));
    // A wrap-up ended early by a choice leaves a stale heap entry that does nothing.
    acd.seize("a");
    acd.call_done("a", t0 + Duration::from_secs(20), Duration::from_secs(10));
    acd.choose("a", Choice::Ready, t0 + Duration::from_secs(21));
    acd.seize("a");
    acd.call_done("a", t0 + Duration::from_secs(22), Duration::from_secs(30));
    assert!(acd.end_wrap_ups(t0 + Duration::from_secs(30)).is_empty());
    assert_eq!(acd.presence("a", true).unwrap().0, Presence::WrapUp);
}

#[test]
fn presence_precedence_and_change_reports() {
    let t0 = Instant::now();
    let mut acd = Acd::new();
    acd.sync(["a"].into_iter(), t0);
    assert_eq!(
        acd.presence("a", false),
        Some((Presence::LoggedOut, Some("no_phone".into())))
    );
    let ch = acd.refresh("a", false, t0).unwrap();
    assert_eq!(ch.presence, Presence::LoggedOut);
    let ch = acd.refresh("a", true, t0).unwrap();
    assert_eq!(ch.presence, Presence::Ready);
    assert!(acd.refresh("a", true, t0).is_none(), "no change, no report");
    acd.choose("a", Choice::NotReady("lunch".into()), t0);
    acd.seize("a");
    assert_eq!(acd.presence("a", true).unwrap().0, Presence::Busy);
    acd.missed("a", false, 3);
    assert_eq!(
        acd.presence("a", false),
        Some((Presence::NotReady, Some("lunch".into()))),
        "a chosen state shows even without a phone"
    );
    assert!(!acd.is_free("a"));
    acd.choose("a", Choice::Ready, t0);
    assert!(acd.is_free("a"));
    // Three offers rang out in a row: not ready (no_answer); others do not count.
    for _ in 0..2 {
        acd.seize("a");
        assert!(!acd.missed("a", true, 3));
    }
    acd.seize("a");
    assert!(!acd.missed("a", false, 3));
    acd.seize("a");
    assert!(acd.missed("a", true, 3));
    assert_eq!(
        acd.presence("a", true),
        Some((Presence::NotReady, Some(NO_ANSWER_REASON.into())))
    );
}
