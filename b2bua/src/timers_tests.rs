//! Unit tests of `timers.rs`.

use super::*;
use crate::CallId;
use std::time::Duration;

#[test]
fn timers_come_due_in_deadline_order_and_not_before() {
    let t0 = Instant::now();
    let mut t = TimerTable::default();
    t.set(t0 + Duration::from_secs(5), Timer::MaxWait(CallId(1)));
    t.set(t0 + Duration::from_secs(1), Timer::QueueRetry);
    t.set(t0 + Duration::from_secs(3), Timer::Ring(CallId(2), 1));
    assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
    assert_eq!(t.pop_due(t0), None);
    let at4 = t0 + Duration::from_secs(4);
    assert_eq!(t.pop_due(at4), Some(Timer::QueueRetry));
    assert_eq!(t.pop_due(at4), Some(Timer::Ring(CallId(2), 1)));
    assert_eq!(t.pop_due(at4), None);
    assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(5)));
}
