//! Unit tests of `port_pool.rs`.

use super::*;

#[test]
fn even_pairs_in_range_and_fifo_reuse() {
    let mut p = PortPool::new(20001, 20009);
    assert_eq!(p.capacity(), 4); // 20002, 20004, 20006, 20008 (20009 = last RTCP)
    let a = p.allocate().unwrap();
    assert_eq!(a, 20002);
    let b = p.allocate().unwrap();
    assert_eq!(p.in_use(), 2);
    p.release(a);
    assert_eq!(p.allocate(), Some(20006));
    assert_eq!(p.allocate(), Some(20008));
    assert_eq!(p.allocate(), Some(a), "released port comes back last");
    assert_eq!(p.allocate(), None);
    p.release(b);
    assert_eq!(p.in_use(), 3);
}

#[test]
fn pairs_someone_else_holds_are_skipped_and_tried_again_later() {
    let mut p = PortPool::new(20000, 20009); // 20000, 20002, 20004, 20006, 20008
    let held = [20000u16, 20002];
    let (got, skipped) = p.allocate_with(8, |port| !held.contains(&port));
    assert_eq!((got, skipped), (Some(20004), 2));
    // The skipped ones went to the back: the rest come first.
    assert_eq!(p.allocate_with(8, |_| true), (Some(20006), 0));
    assert_eq!(p.allocate_with(8, |_| true), (Some(20008), 0));
    assert_eq!(p.allocate_with(8, |_| true), (Some(20000), 0));
    // Bounded: nothing usable within `tries` → none, and nothing lost.
    let (got, skipped) = p.allocate_with(1, |_| false);
    assert_eq!((got, skipped), (None, 1));
    assert_eq!(p.in_use(), 4, "20002 is still free");
}

#[test]
fn peek_names_the_pair_that_many_allocations_from_now_hands_out() {
    let mut p = PortPool::new(20000, 20009); // 20000, 20002, 20004, 20006, 20008
    assert_eq!(p.peek(0), Some(20000));
    assert_eq!(p.peek(3), Some(20006));
    assert_eq!(p.peek(5), None);
    assert_eq!(p.allocate(), Some(20000));
    assert_eq!(p.allocate(), Some(20002));
    assert_eq!(
        p.peek(1),
        Some(20006),
        "two allocations moved the queue on by two"
    );
    p.release(20000);
    assert_eq!(p.peek(3), Some(20000), "a released pair comes last");
}
