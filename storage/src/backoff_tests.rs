//! Unit tests of `backoff.rs`.

use super::*;

#[test]
fn full_jitter_grows_to_the_cap_and_honours_retry_after() {
    let b = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };
    assert_eq!(b.delay(1, 0.999_999, None).as_secs(), 0); // [0, 1s)
    assert!(b.delay(4, 0.5, None) == Duration::from_secs(4)); // 0.5 × 8 s
    assert_eq!(b.delay(40, 1.0, None), Duration::from_secs(300));
    assert_eq!(
        b.delay(1, 0.0, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
    let mut j = Jitter::new(1);
    for _ in 0..1000 {
        let u = j.unit();
        assert!((0.0..1.0).contains(&u));
    }
}
