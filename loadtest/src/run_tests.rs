//! Unit tests of `run.rs`.

use super::*;

#[test]
fn schedule_is_steady_after_the_ramp() {
    let r = Duration::from_secs(10);
    assert_eq!(
        due(100.0, Duration::ZERO, Duration::from_secs(3)).round(),
        300.0
    );
    // During a 10 s ramp to 100/s: 500 calls by t=10, then 100/s.
    assert!((due(100.0, r, Duration::from_secs(10)) - 500.0).abs() < 1e-6);
    assert!((due(100.0, r, Duration::from_secs(11)) - 600.0).abs() < 1e-6);
    for n in [1u64, 50, 499, 500, 501, 2000] {
        let t = due_at(100.0, r, n);
        assert!((due(100.0, r, t) - n as f64).abs() < 1e-6, "{n}");
    }
}
