use super::members::{Members, NodeInfo};
use std::time::{Duration, Instant};

fn info(node: &str, calls: usize) -> NodeInfo {
    NodeInfo {
        node: node.into(),
        sip: "127.0.0.2:5060".into(),
        http: "127.0.0.2:8080".into(),
        calls,
        refusing: false,
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
