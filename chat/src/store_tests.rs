//! The journal sees every chat change and room entry as accepted, and a service
//! restored from what it saw carries on: same offsets, same dedup, same tokens,
//! agents keep their chats, queued chats are offered again.

use crate::hub::Limits;
use crate::service::*;
use crate::store::*;
use crate::testing::{frames, Svc};
use crate::Offset;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Default)]
struct Memory {
    chats: Mutex<BTreeMap<String, ChatRecord>>,
    msgs: Mutex<Vec<(String, StoredMessage)>>,
}

impl Store for Memory {
    fn chat(&self, c: &ChatRecord) {
        self.chats.lock().unwrap().insert(c.id.clone(), c.clone());
    }
    fn message(&self, chat: &str, offset: crate::Offset, private: bool, _ts: u64, frame: &str) {
        self.msgs.lock().unwrap().push((
            chat.to_string(),
            StoredMessage {
                offset,
                private,
                frame: frame.to_string(),
            },
        ));
    }
}

impl Memory {
    /// What a store would load at start: open chats with their entries.
    fn open(&self) -> Vec<(ChatRecord, Vec<StoredMessage>)> {
        let msgs = self.msgs.lock().unwrap();
        self.chats
            .lock()
            .unwrap()
            .values()
            .filter(|c| c.state != "ended")
            .map(|c| {
                let m = msgs
                    .iter()
                    .filter(|(id, _)| *id == c.id)
                    .map(|(_, m)| m.clone())
                    .collect();
                (c.clone(), m)
            })
            .collect()
    }
}

const CONFIG: &str = r#"
[[queues]]
name = "web"
channel = "chat"
agents = ["ann"]
[[users]]
name = "ann"
role = "agent"
token = "ann-token-1"
"#;

#[test]
fn a_restored_service_continues_offsets_dedup_tokens_and_assignments() {
    let s = Arc::new(control::parse("t", CONFIG).unwrap());
    let mem = Arc::new(Memory::default());
    let c = Svc::with_store(Limits::default(), 9, mem.clone());
    let t0 = Instant::now();
    let mut ann = c.console(&s, "ann", 1, t0);
    let f = json!({"name":"Cy"}).as_object().unwrap().clone();
    let (active, token) = c.start(&s, "web", f.clone(), t0).unwrap();
    c.accept(&s, "ann", &active, t0).unwrap();
    c.message(&active, "customer", "", Some("k1"), "hello", false)
        .unwrap();
    c.message(&active, "agent", "ann", None, "note to self", true)
        .unwrap();
    let (ended, _) = c.start(&s, "web", f.clone(), t0).unwrap();
    frames(&mut ann);
    c.accept(&s, "ann", &ended, t0).unwrap();
    c.end(&s, &ended, "customer", "bye");
    let (queued, queued_token) = c.start(&s, "web", f.clone(), t0).unwrap();
    c.release(&s, "ann", &queued, t0).ok();

    // What the journal saw: states as they changed, the token only as a digest,
    // every entry with its offset.
    let rows = mem.chats.lock().unwrap().clone();
    assert_eq!(rows[&active].state, "active");
    assert_eq!(rows[&active].agent.as_deref(), Some("ann"));
    assert_eq!(rows[&ended].state, "ended");
    assert!(rows[&ended].ended_ms.is_some());
    assert_eq!(rows[&active].token_hash, token_hash(&token));
    assert!(!format!("{rows:?}").contains(&token));
    let offsets: Vec<u64> = mem
        .msgs
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| *id == active)
        .map(|(_, m)| m.offset.0)
        .collect();
    assert_eq!(offsets, [1, 2, 3], "join, hello, private note");

    // A new service from the store: the ended chat is gone for good.
    let c2 = Svc::new(Limits::default(), 10);
    assert_eq!(c2.restore(mem.open(), t0), 2);
    assert_eq!(
        c2.resume(&s, &token, None, None, None),
        Ok(Resume::Continue(active.clone()))
    );
    assert_eq!(
        c2.resume(&s, &queued_token, None, None, None),
        Ok(Resume::Continue(queued.clone()))
    );
    let mut cust = c2.customer_attach(&active, 5, 2).unwrap();
    assert_eq!(cust.replay.len(), 1, "public entries from offset 2: hello");
    assert_eq!(
        c2.message(&active, "customer", "Cy", Some("k1"), "hello", false),
        Ok(super::hub::Published::Duplicate { offset: Offset(2) }),
        "a resend after the restart is recognised"
    );
    assert_eq!(
        c2.message(&active, "customer", "Cy", None, "again", false),
        Ok(super::hub::Published::New {
            offset: Offset(4),
            evicted: 0
        })
    );
    let got: Vec<Value> = std::iter::from_fn(|| cust.inbox.rx.try_recv().ok())
        .map(|f| serde_json::from_str(&f).unwrap())
        .collect();
    assert_eq!(got[0]["offset"], 4);
    // ann's console reconnects: she still has the active chat, and the queued one is
    // offered to her.
    let mut ann2 = c2.console(&s, "ann", 7, t0);
    let mine = c2.agent_connect(&s, "ann", 7, 3, t0);
    assert_eq!(mine, vec![active.clone()]);
    let offers = frames(&mut ann2);
    assert_eq!(offers[0]["type"], "offer");
    assert_eq!(offers[0]["chat"], queued.as_str());
}

#[test]
fn a_chat_taken_over_keeps_its_wait_time_and_is_taken_once() {
    let s = Arc::new(control::parse("t", CONFIG).unwrap());
    let mem = Arc::new(Memory::default());
    let c = Svc::with_store(Limits::default(), 9, mem.clone());
    let t0 = Instant::now();
    let f = json!({"name":"Cy"}).as_object().unwrap().clone();
    let (queued, _) = c.start(&s, "web", f, t0).unwrap();
    // Another service (the node taking over) reads it 90 s after the chat began.
    let c2 = Svc::new(Limits::default(), 10);
    let later = t0 + std::time::Duration::from_secs(90);
    assert_eq!(c2.restore(mem.open(), later), 1);
    assert_eq!(
        c2.restore(mem.open(), later),
        0,
        "a chat already here is left alone"
    );
    let list = c2.list(later);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, queued);
    assert!(
        (89.0..91.0).contains(&list[0].wait_secs),
        "waited {} s, not counted from the start",
        list[0].wait_secs
    );
}
