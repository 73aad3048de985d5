//! Hub tests without sockets: ordering under concurrent senders, dedup, resume from any
//! offset, slow-consumer eviction, private entries, many rooms across threads.

use crate::hub::*;
use crate::Offset;
use std::sync::Arc;

fn hub(queue: usize, history: usize) -> Arc<Hub> {
    Arc::new(Hub::new(Limits {
        queue,
        history,
        durable_first: false,
    }))
}

fn msg(sender: &str, n: u64) -> impl FnOnce(Offset) -> String + '_ {
    move |o| format!(r#"{{"offset":{o},"from":"{sender}","n":{n}}}"#)
}

fn parse(f: &Frame) -> serde_json::Value {
    serde_json::from_str(f).unwrap()
}

fn drain(inbox: &mut Inbox) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    while let Ok(f) = inbox.rx.try_recv() {
        v.push(parse(&f));
    }
    v
}

#[test]
fn concurrent_senders_get_one_order_seen_identically_by_everyone() {
    let h = hub(100_000, 100_000);
    h.create("r");
    let mut a = h.subscribe("r", 1, Offset(0), false).unwrap();
    let mut b = h.subscribe("r", 2, Offset(0), true).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let name = format!("s{t}");
                for n in 0..2000 {
                    h.publish("r", None, false, msg(&name, n)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (fa, fb) = (drain(&mut a.inbox), drain(&mut b.inbox));
    assert_eq!(fa.len(), 8000);
    assert_eq!(fa, fb, "every subscriber sees the same order");
    for (i, f) in fa.iter().enumerate() {
        assert_eq!(f["offset"], i as u64 + 1, "offsets 1.. without gaps");
    }
    for t in 0..4 {
        let mine: Vec<u64> = fa
            .iter()
            .filter(|f| f["from"] == format!("s{t}").as_str())
            .map(|f| f["n"].as_u64().unwrap())
            .collect();
        assert_eq!(
            mine,
            (0..2000).collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }
}

#[test]
fn a_resend_with_the_same_client_id_is_not_delivered_twice() {
    let h = hub(16, 100);
    h.create("r");
    let mut s = h.subscribe("r", 1, Offset(0), false).unwrap();
    let p1 = h
        .publish("r", Some(("cust", "c1")), false, msg("cust", 1))
        .unwrap();
    let p2 = h
        .publish("r", Some(("cust", "c1")), false, msg("cust", 1))
        .unwrap();
    assert_eq!(
        p1,
        Published::New {
            offset: Offset(1),
            evicted: 0
        }
    );
    assert_eq!(p2, Published::Duplicate { offset: Offset(1) });
    // Another sender may use the same client id.
    let p3 = h
        .publish("r", Some(("agent", "c1")), false, msg("agent", 1))
        .unwrap();
    assert!(matches!(
        p3,
        Published::New {
            offset: Offset(2),
            ..
        }
    ));
    assert_eq!(drain(&mut s.inbox).len(), 2);
}

#[test]
fn resume_from_any_offset_replays_exactly_the_rest_then_live() {
    let h = hub(64, 5);
    h.create("r");
    for n in 0..8 {
        h.publish("r", None, false, msg("a", n)).unwrap();
    }
    // History keeps offsets 4..=8.
    for from in 0..=9u64 {
        let mut s = h.subscribe("r", 10 + from, Offset(from), false).unwrap();
        let got: Vec<u64> = s
            .replay
            .iter()
            .map(|f| parse(f)["offset"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (from.max(4)..=8).collect();
        assert_eq!(got, want, "from {from}");
        assert_eq!(s.truncated, from < 4, "from {from}");
        assert_eq!(s.next, Offset(9));
        assert!(drain(&mut s.inbox).is_empty());
    }
    // Live frames follow the replay with no gap and no overlap.
    let mut s = h.subscribe("r", 99, Offset(7), false).unwrap();
    h.publish("r", None, false, msg("a", 9)).unwrap();
    let live = drain(&mut s.inbox);
    assert_eq!(s.replay.len(), 2);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["offset"], 9);
}

#[test]
fn a_slow_consumer_is_evicted_and_nobody_else_waits() {
    let h = hub(4, 1000);
    h.create("r");
    let slow = h.subscribe("r", 1, Offset(0), false).unwrap();
    let mut fast = h.subscribe("r", 2, Offset(0), false).unwrap();
    let mut evicted = 0;
    let mut got = 0;
    for n in 0..100 {
        if let Published::New { evicted: e, .. } = h.publish("r", None, false, msg("a", n)).unwrap()
        {
            evicted += e;
        }
        got += drain(&mut fast.inbox).len(); // the fast one keeps up
    }
    assert_eq!(got, 100, "the fast subscriber got everything");
    assert_eq!(evicted, 1);
    assert_eq!(h.subscribers("r"), 1);
    assert_eq!(slow.inbox.reason(), Closed::SlowConsumer);
    // The slow one drains what it has (offsets 1..=4), then sees the end of its queue;
    // it resumes from offset 5 and gets exactly the rest.
    let mut slow = slow;
    let had = drain(&mut slow.inbox);
    assert_eq!(had.len(), 4);
    assert!(slow.inbox.rx.try_recv().is_err());
    let again = h.subscribe("r", 1, Offset(5), false).unwrap();
    assert_eq!(again.replay.len(), 96);
    assert_eq!(parse(&again.replay[0])["offset"], 5);
}

#[test]
fn private_entries_and_signals_reach_only_whom_they_may() {
    let h = hub(16, 100);
    h.create("r");
    let mut customer = h.subscribe("r", 1, Offset(0), false).unwrap();
    let mut agent = h.subscribe("r", 2, Offset(0), true).unwrap();
    h.publish("r", None, false, msg("c", 0)).unwrap();
    h.publish("r", None, true, msg("note", 1)).unwrap();
    h.signal("r", 2, false, |o| {
        format!(r#"{{"type":"typing","offset":{o}}}"#)
    })
    .unwrap();
    let c = drain(&mut customer.inbox);
    let a = drain(&mut agent.inbox);
    assert_eq!(c.len(), 2, "message + typing, not the private note");
    assert_eq!(c[1]["offset"], 2, "typing carries the last offset");
    assert_eq!(a.len(), 2, "message + note; not its own typing");
    let replay = h.subscribe("r", 3, Offset(0), false).unwrap().replay;
    assert_eq!(
        replay.len(),
        1,
        "customers never get private entries on resume"
    );
}

#[test]
fn ending_a_room_closes_subscribers_and_refuses_messages() {
    let h = hub(16, 100);
    h.create("r");
    let mut s = h.subscribe("r", 1, Offset(0), false).unwrap();
    h.publish("r", None, false, msg("a", 0)).unwrap();
    h.end("r");
    assert_eq!(s.inbox.reason(), Closed::Ended);
    assert_eq!(
        drain(&mut s.inbox).len(),
        1,
        "what was queued is still delivered"
    );
    assert_eq!(
        h.publish("r", None, false, msg("a", 1)),
        Err(HubError::Ended)
    );
    assert_eq!(h.history("r", false).unwrap().len(), 1);
    assert!(matches!(
        h.subscribe("nope", 1, Offset(0), false),
        Err(HubError::NoRoom)
    ));
    // A replaced subscription closes the old one.
    h.create("q");
    let old = h.subscribe("q", 7, Offset(0), false).unwrap();
    let _new = h.subscribe("q", 7, Offset(0), false).unwrap();
    assert_eq!(old.inbox.reason(), Closed::Removed);
    assert_eq!(h.subscribers("q"), 1);
}

#[test]
fn many_rooms_across_threads_stay_separate() {
    let h = hub(1024, 1024);
    let rooms = 2000;
    let subs: Vec<Subscription> = (0..rooms)
        .map(|i| {
            let id = format!("room-{i}");
            h.create(&id);
            h.subscribe(&id, i as u64, Offset(0), false).unwrap()
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in (t..rooms).step_by(4) {
                    for n in 0..10 {
                        h.publish(&format!("room-{i}"), None, false, msg("x", n))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.rooms(), rooms);
    for mut s in subs {
        let got = drain(&mut s.inbox);
        assert_eq!(got.len(), 10);
        assert!(got
            .iter()
            .enumerate()
            .all(|(k, f)| f["offset"] == k as u64 + 1));
    }
}

/// A hub that delivers only what its store confirmed, with room `r`.
fn durable_hub() -> Hub {
    let h = Hub::new(Limits {
        queue: 100,
        history: 100,
        durable_first: true,
    });
    h.create("r");
    h
}

/// The `n` of each frame received.
fn numbers(inbox: &mut Inbox) -> Vec<u64> {
    drain(inbox)
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_durable_first_room_delivers_only_what_the_store_confirmed_in_order() {
    let h = durable_hub();
    let mut a = h.subscribe("r", 1, Offset(0), true).unwrap();
    for n in 1..=3 {
        h.publish("r", None, false, msg("c", n)).unwrap();
    }
    // Nothing out before the store confirms: no echo (the sender's acknowledgement).
    assert!(drain(&mut a.inbox).is_empty());
    assert_eq!(h.unconfirmed("r"), 3);
    // A subscriber arriving now replays only confirmed entries.
    assert!(h
        .subscribe("r", 2, Offset(0), true)
        .unwrap()
        .replay
        .is_empty());
    h.confirm("r", Offset(2));
    let got = numbers(&mut a.inbox);
    assert_eq!(got, vec![1, 2]);
    assert_eq!(h.unconfirmed("r"), 1);
    // A confirmation older than the last one changes nothing; one past the end is capped.
    assert_eq!(h.confirm("r", Offset(1)), 0);
    h.confirm("r", Offset(99));
    let got = numbers(&mut a.inbox);
    assert_eq!(got, vec![3]);
    assert_eq!(
        h.subscribe("r", 3, Offset(0), true).unwrap().replay.len(),
        3
    );
}

#[test]
fn an_ended_durable_first_room_closes_only_after_its_last_entry_is_out() {
    let h = durable_hub();
    let mut a = h.subscribe("r", 1, Offset(0), false).unwrap();
    h.publish("r", None, false, msg("c", 1)).unwrap();
    h.publish("r", None, false, msg("system", 2)).unwrap();
    h.end("r");
    assert_eq!(
        h.subscribers("r"),
        1,
        "closed before its last entries were out"
    );
    h.confirm("r", Offset(2));
    let got = numbers(&mut a.inbox);
    assert_eq!(got, vec![1, 2]);
    assert_eq!(h.subscribers("r"), 0);
    assert_eq!(a.inbox.reason(), Closed::Ended);
}
