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
