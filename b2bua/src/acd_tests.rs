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
