//! Caller against Answerer on the in-memory `sip::testing::Wire`, with a virtual
//! clock and a lossy network.

use crate::answerer::{self, AnswerConfig, Answerer, PortSource};
use crate::caller::{self, Caller, CallerConfig};
use sip::testing::{self, Wire};
use sip::Flow;
use std::time::{Duration, Instant};

struct Ports(u16);
impl PortSource for Ports {
    fn take(&mut self) -> Option<u16> {
        self.0 += 2;
        Some(self.0)
    }
}

fn setup(reject: Option<(u16, f64)>, ring: Duration) -> (Caller, Answerer, Flow, Flow) {
    let to_b = testing::flow("127.0.0.1:5070", "127.0.0.1:5080");
    let to_a = testing::flow("127.0.0.1:5080", "127.0.0.1:5070");
    let caller = Caller::new(
        CallerConfig {
            flow: to_b,
            from_user: "lt".into(),
            to_user: "svc".into(),
            auth: None,
            hold: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(60),
            media_ip: "127.0.0.1".parse().unwrap(),
            user_agent: "loadtest".into(),
        },
        1,
    );
    let answerer = Answerer::new(
        AnswerConfig {
            ring,
            reject,
            media_ip: "127.0.0.1".parse().unwrap(),
            user_agent: "answer".into(),
            refer: None,
        },
        2,
    );
    (caller, answerer, to_b, to_a)
}

/// Run both sides until `end` on a [`Wire`] that loses every `drop_nth` SIP
/// datagram (0: none).
fn run(
    c: &mut Caller,
    a: &mut Answerer,
    to_b: Flow,
    to_a: Flow,
    t0: Instant,
    end: Duration,
    drop_nth: usize,
) -> (Vec<caller::CallRecord>, Vec<answerer::AnswerRecord>) {
    let mut ports = Ports(30000);
    let mut wire = Wire::lossy(drop_nth);
    let (mut cr, mut ar) = (Vec::new(), Vec::new());
    let mut now = t0;
    let step = Duration::from_millis(10);
    while now < t0 + end {
        loop {
            let mut moved = false;
            while let Some(t) = c.poll_transmit() {
                moved = true;
                wire.deliver(&t);
            }
            while let Some(d) = wire.recv_bytes(to_b.remote) {
                a.handle_datagram(now, to_a, &d, &mut ports);
            }
            while let Some(t) = a.poll_transmit() {
                moved = true;
                wire.deliver(&t);
            }
            while let Some(d) = wire.recv_bytes(to_a.remote) {
                c.handle_datagram(now, to_b, &d);
            }
            if !moved {
                break;
            }
        }
        while let Some(o) = c.poll_output() {
            if let caller::Output::Finished(r) = o {
                cr.push(r);
            }
        }
        while let Some(o) = a.poll_output() {
            if let answerer::Output::Finished(r) = o {
                ar.push(r);
            }
        }
        now += step;
        c.handle_timeout(now);
        a.handle_timeout(now, &mut ports);
    }
    (cr, ar)
}

#[test]
fn calls_complete_with_setup_time_and_pdd() {
    let t0 = Instant::now();
    let (mut c, mut a, to_b, to_a) = setup(None, Duration::from_millis(300));
    for _ in 0..10 {
        c.start_call(t0, Some(40000));
    }
    let (cr, ar) = run(&mut c, &mut a, to_b, to_a, t0, Duration::from_secs(5), 0);
    assert_eq!(cr.len(), 10);
    assert!(cr
        .iter()
        .all(|r| r.status == 200 && r.bye_status == Some(200)));
    let setup = cr[0].setup.unwrap();
    assert!(
        setup >= Duration::from_millis(300) && setup < Duration::from_millis(330),
        "{setup:?}"
    );
    assert!(cr[0].pdd.unwrap() < Duration::from_millis(20));
    assert_eq!(ar.len(), 10);
    assert!(ar.iter().all(|r| r.ended_by_bye));
    assert_eq!(c.active() + a.active(), 0);
}

#[test]
fn rejected_share_is_spread_and_reported() {
    let t0 = Instant::now();
    let (mut c, mut a, to_b, to_a) = setup(Some((486, 10.0)), Duration::ZERO);
    for _ in 0..100 {
        c.start_call(t0, Some(40000));
    }
    let (cr, _) = run(&mut c, &mut a, to_b, to_a, t0, Duration::from_secs(5), 0);
    assert_eq!(cr.iter().filter(|r| r.status == 486).count(), 10);
    assert_eq!(cr.iter().filter(|r| r.status == 200).count(), 90);
}

#[test]
fn retransmissions_carry_calls_over_a_lossy_network() {
    let t0 = Instant::now();
    let (mut c, mut a, to_b, to_a) = setup(None, Duration::ZERO);
    for _ in 0..20 {
        c.start_call(t0, Some(40000));
    }
    // Every 7th SIP datagram is lost; RFC 3261 retransmissions recover.
    let (cr, _) = run(&mut c, &mut a, to_b, to_a, t0, Duration::from_secs(40), 7);
    assert_eq!(cr.len(), 20);
    assert_eq!(
        cr.iter().filter(|r| r.status == 200).count(),
        20,
        "{:?}",
        cr.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[test]
fn no_answer_times_out_with_408() {
    let t0 = Instant::now();
    let (mut c, _a, _to_b, _to_a) = setup(None, Duration::ZERO);
    c.start_call(t0, None);
    let mut now = t0;
    let mut rec = None;
    while now < t0 + Duration::from_secs(40) && rec.is_none() {
        now += Duration::from_millis(100);
        c.handle_timeout(now);
        while c.poll_transmit().is_some() {}
        while let Some(o) = c.poll_output() {
            if let caller::Output::Finished(r) = o {
                rec = Some(r);
            }
        }
    }
    let r = rec.expect("finished");
    assert!(r.timed_out && r.status == 408);
}
