use super::members::{Members, NodeInfo};
use std::time::{Duration, Instant};

fn info(node: &str, calls: usize) -> NodeInfo {
    NodeInfo {
        node: node.into(),
        sip: "127.0.0.2:5060".into(),
        http: "127.0.0.2:8080".into(),
        https: None,
        calls,
        refusing: false,
        heads: Default::default(),
    }
}

fn names(m: &mut Members, now: Instant) -> Vec<String> {
    m.live(now).into_iter().map(|i| i.node).collect()
}

#[test]
fn nodes_live_while_their_heartbeats_are_younger_than_the_lease() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut m = Members::new(5 * s);
    m.seen(t0, info("b", 1));
    m.seen(t0 + s, info("a", 0));
    assert_eq!(names(&mut m, t0 + s), ["a", "b"], "sorted by name");
    // b's next heartbeat replaces the first one, with its new figures.
    m.seen(t0 + 4 * s, info("b", 7));
    let live = m.live(t0 + 5 * s);
    assert_eq!(live.iter().find(|i| i.node == "b").unwrap().calls, 7);
    // a stopped beating: gone once its last heartbeat is a lease old.
    assert_eq!(
        names(&mut m, t0 + 6 * s - Duration::from_millis(1)),
        ["a", "b"]
    );
    assert_eq!(names(&mut m, t0 + 6 * s), ["b"]);
    // A node that leaves on purpose is gone at once.
    m.left("b");
    assert!(m.live(t0 + 6 * s).is_empty());
    m.left("never-seen");
}

#[test]
fn the_other_nodes_oldest_waiting_call_per_queue_keeps_its_start() {
    use std::collections::HashMap;
    let t0 = Instant::now() + Duration::from_secs(60);
    let s = Duration::from_secs(1);
    let mut m = Members::new(5 * s);
    let with = |node: &str, heads: &[(&str, &str, u64)]| {
        let mut i = info(node, 0);
        i.heads = heads
            .iter()
            .map(|(q, c, ms)| (q.to_string(), (c.to_string(), *ms)))
            .collect();
        i
    };
    // b's call waited 10 s, c's 30 s (the older); this node's own is left out.
    m.seen(t0, with("b", &[("sales", "call-b", 10_000)]));
    m.seen(
        t0,
        with("c", &[("sales", "call-c", 30_000), ("vip", "v1", 1_000)]),
    );
    m.seen(t0, with("a", &[("sales", "call-a", 99_000)]));
    let h = m.heads(t0, "a", &HashMap::new());
    assert_eq!(h["sales"], ("call-c".to_string(), t0 - 30 * s));
    assert_eq!(h["vip"], ("v1".to_string(), t0 - s));
    // c's next heartbeat, read a little late: the same call keeps its start.
    m.seen(
        t0 + s,
        with("c", &[("sales", "call-c", 30_900), ("vip", "v1", 2_000)]),
    );
    let again = m.heads(t0 + s, "a", &h);
    assert_eq!(again, h, "unchanged while the heads are the same calls");
    // c's head is served: b's call is the oldest now; c gone: only b's.
    m.seen(t0 + 2 * s, with("c", &[]));
    let h2 = m.heads(t0 + 2 * s, "a", &again);
    assert_eq!(h2["sales"].0, "call-b");
    assert!(!h2.contains_key("vip"));
    assert!(m.heads(t0 + 10 * s, "a", &h2).is_empty(), "nobody live");
}
