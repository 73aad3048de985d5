//! Unit tests of `pike.rs` (virtual time).

use super::*;

fn cfg(limit: u32) -> PikeConfig {
    PikeConfig {
        limit,
        window: Duration::from_secs(1),
        block: Duration::from_secs(30),
        max_sources: 3,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn a_source_over_the_limit_is_blocked_for_the_block_time_then_starts_afresh() {
    let t0 = Instant::now();
    let mut p = Pike::new(cfg(5));
    let a = ip("192.0.2.1");
    for _ in 0..5 {
        assert_eq!(p.check(a, t0), Verdict::Allow);
    }
    assert_eq!(p.check(a, t0), Verdict::Block { first: true });
    assert_eq!(p.check(a, t0), Verdict::Block { first: false });
    // Another source is not affected.
    assert_eq!(p.check(ip("192.0.2.2"), t0), Verdict::Allow);
    // Still blocked just before the block ends, even in a new window.
    let late = t0 + Duration::from_millis(29_999);
    assert_eq!(p.check(a, late), Verdict::Block { first: false });
    let after = t0 + Duration::from_secs(30);
    assert_eq!(p.check(a, after), Verdict::Allow);
    assert_eq!(p.blocks, 1);
}

#[test]
fn the_window_resets_the_count() {
    let t0 = Instant::now();
    let mut p = Pike::new(cfg(5));
    let a = ip("192.0.2.1");
    for i in 0..50u64 {
        // 4 per 1 s window: never over.
        let now = t0 + Duration::from_millis(250 * i);
        assert_eq!(p.check(a, now), Verdict::Allow, "message {i}");
    }
}

#[test]
fn zero_turns_it_off_and_the_table_stays_bounded() {
    let t0 = Instant::now();
    let mut off = Pike::new(cfg(0));
    for _ in 0..1000 {
        assert_eq!(off.check(ip("192.0.2.1"), t0), Verdict::Allow);
    }
    assert_eq!(off.tracked(), 0);
    let mut p = Pike::new(cfg(1));
    for i in 0..100 {
        p.check(ip(&format!("198.51.100.{i}")), t0);
    }
    assert_eq!(p.tracked(), 3, "at most max_sources tracked");
    // Expired entries are swept after a window; new sources are tracked again.
    let later = t0 + Duration::from_secs(2);
    p.check(ip("203.0.113.1"), later);
    assert_eq!(p.tracked(), 1);
}
