//! Unit tests of `hours.rs`: any instant is passed in, so these are the clock.

use super::*;

fn at(s: &str) -> SystemTime {
    SystemTime::from(s.parse::<Timestamp>().unwrap())
}

fn office() -> Hours {
    Hours::parse(
        "Europe/Paris",
        &["mon-fri 08:00-18:00".into(), "sat 09:00-12:00".into()],
        &["2026-12-25".into()],
    )
    .unwrap()
}

#[test]
fn weekly_spans_in_the_time_zone() {
    let h = office();
    // Monday 2026-12-07: Paris is UTC+1 in winter.
    assert!(!h.is_open(at("2026-12-07T06:59:59Z")), "07:59 Paris");
    assert!(h.is_open(at("2026-12-07T07:00:00Z")), "08:00 Paris");
    assert!(h.is_open(at("2026-12-07T16:59:59Z")), "17:59 Paris");
    assert!(
        !h.is_open(at("2026-12-07T17:00:00Z")),
        "18:00 Paris: closed"
    );
    // Saturday morning only; Sunday never.
    assert!(h.is_open(at("2026-12-12T10:00:00Z")));
    assert!(!h.is_open(at("2026-12-12T11:00:00Z")), "12:00 Paris");
    assert!(!h.is_open(at("2026-12-13T10:00:00Z")), "Sunday");
    // Summer time: UTC+2, so 08:00 Paris is 06:00 UTC.
    assert!(h.is_open(at("2026-07-06T06:00:00Z")));
    assert!(
        !h.is_open(at("2026-07-06T16:00:00Z")),
        "18:00 Paris in July"
    );
}

#[test]
fn a_closed_date_closes_the_whole_local_day() {
    let h = office();
    assert!(
        !h.is_open(at("2026-12-25T10:00:00Z")),
        "Christmas (a Friday)"
    );
    assert!(h.is_open(at("2026-12-24T10:00:00Z")));
    // 00:30 on the 26th in Paris is still the 25th in UTC: the local date counts.
    let night = Hours::parse(
        "Europe/Paris",
        &["daily 00:00-24:00".into()],
        &["2026-12-25".into()],
    )
    .unwrap();
    assert!(
        night.is_open(at("2026-12-25T23:30:00Z")),
        "00:30 on the 26th, Paris"
    );
    assert!(
        !night.is_open(at("2026-12-24T23:30:00Z")),
        "00:30 on the 25th, Paris"
    );
}

#[test]
fn overnight_spans_day_lists_and_wrapping_ranges() {
    let h = Hours::parse(
        "UTC",
        &["fri 22:00-02:00".into(), "sat-sun 10:00-11:00".into()],
        &[],
    )
    .unwrap();
    assert!(h.is_open(at("2026-12-11T23:00:00Z")), "Friday 23:00");
    assert!(
        h.is_open(at("2026-12-12T01:59:00Z")),
        "Saturday 01:59, carried over"
    );
    assert!(!h.is_open(at("2026-12-12T02:00:00Z")));
    assert!(!h.is_open(at("2026-12-10T23:00:00Z")), "Thursday");
    assert!(h.is_open(at("2026-12-13T10:30:00Z")), "Sunday");
    let wrap = Hours::parse("UTC", &["sat-mon 00:00-24:00".into()], &[]).unwrap();
    assert!(
        wrap.is_open(at("2026-12-07T12:00:00Z")),
        "Monday in sat-mon"
    );
    assert!(!wrap.is_open(at("2026-12-08T12:00:00Z")), "Tuesday");
    let list = Hours::parse("UTC", &["mon,wed 09:00-10:00".into()], &[]).unwrap();
    assert!(list.is_open(at("2026-12-09T09:30:00Z")), "Wednesday");
    assert!(!list.is_open(at("2026-12-08T09:30:00Z")), "Tuesday");
}

#[test]
fn bad_entries_say_what_is_wrong() {
    let e = |tz: &str, open: &str, closed: &str| {
        let closed: Vec<String> = if closed.is_empty() {
            vec![]
        } else {
            vec![closed.into()]
        };
        Hours::parse(tz, &[open.into()], &closed).unwrap_err()
    };
    assert!(e("Mars/Olympus", "mon 08:00-09:00", "").contains("time zone"));
    assert!(e("UTC", "moon 08:00-09:00", "").contains("not a day"));
    assert!(e("UTC", "mon 8:00-09:00", "").contains("not a time"));
    assert!(e("UTC", "mon 08:00-25:00", "").contains("not a time"));
    assert!(e("UTC", "mon", "").contains("expected"));
    assert!(e("UTC", "mon 08:00-09:00", "2026-13-01").contains("not a date"));
}
