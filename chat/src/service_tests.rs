//! The chat service on a virtual clock: queueing, offers, accept/release, multi-chat
//! agents, restore modes, abandon, end.

use crate::hub::{Frame, Inbox, Limits};
use crate::service::*;
use crate::testing::{frames, Console, Svc};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[queues]]
name = "web"
channel = "chat"
agents = ["ann", "bob"]
abandon_after = "2m"
[[queues]]
name = "vip"
channel = "chat"
agents = ["ann"]
restore = "prompt"
[[queues]]
name = "fresh"
channel = "chat"
agents = ["ann"]
restore = "new"
[[users]]
name = "ann"
role = "agent"
token = "ann-token-1"
max_chats = 2
[[users]]
name = "bob"
role = "agent"
token = "bob-token-1"
"#;

fn snap() -> Arc<control::Snapshot> {
    Arc::new(control::parse("t", CONFIG).unwrap())
}

fn fields(name: &str) -> Map<String, Value> {
    json!({"name": name}).as_object().unwrap().clone()
}

fn frames_of(rx: &mut tokio::sync::mpsc::Receiver<Frame>) -> Vec<Value> {
    let mut v = Vec::new();
    while let Ok(f) = rx.try_recv() {
        v.push(serde_json::from_str(&f).unwrap());
    }
    v
}

fn inbox(i: &mut Inbox) -> Vec<Value> {
    frames_of(&mut i.rx)
}

fn agent(chats: &Svc, s: &control::Snapshot, name: &str, conn: u64, now: Instant) -> Console {
    chats.console(s, name, conn, now)
}

#[test]
fn queued_offered_accepted_then_messages_both_ways_then_end() {
    let s = snap();
    let c = Svc::new(Limits::default(), 1);
    let t0 = Instant::now();
    assert_eq!(
        c.start(&s, "nope", fields("x"), t0),
        Err(ChatError::NoQueue)
    );
    let (id, _token) = c.start(&s, "web", fields("Cy"), t0).unwrap();
    let mut cust = c.customer_attach(&id, 100, 0).unwrap();
    assert_eq!(c.list(t0)[0].state, "queued");
    // Ann connects 5 s later: offered (fewest chats), accepts.
    let t1 = t0 + Duration::from_secs(5);
    let mut ann = agent(&c, &s, "ann", 1, t1);
    let offer = frames(&mut ann);
    assert_eq!(offer[0]["type"], "offer");
    assert_eq!(offer[0]["fields"]["name"], "Cy");
    assert_eq!(offer[0]["waited_secs"], 5.0);
    assert_eq!(c.accept(&s, "bob", &id, t1), Err(ChatError::NotOffered));
    c.accept(&s, "ann", &id, t1).unwrap();
    let mut ann_room = c.hub().subscribe(&id, 1, crate::Offset(0), true).unwrap();
    assert_eq!(c.list(t1)[0].state, "active");
    assert_eq!(c.list(t1)[0].agent.as_deref(), Some("ann"));
    c.message(&id, "customer", "Cy", Some("k1"), "hello", false)
        .unwrap();
    c.message(&id, "customer", "Cy", Some("k1"), "hello", false)
        .unwrap();
    c.message(&id, "agent", "ann", Some("k1"), "hi Cy", false)
        .unwrap();
    assert_eq!(
        c.message(&id, "agent", "ann", None, "", false),
        Err(ChatError::BadText)
    );
    let got = inbox(&mut cust.inbox);
    let texts: Vec<&str> = got.iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["ann joined the conversation", "hello", "hi Cy"],
        "dedup by client id"
    );
    assert_eq!(ann_room.replay.len(), 1, "the join message");
    assert_eq!(inbox(&mut ann_room.inbox).len(), 2);
    // The agent ends: the leave message, `ended`, and the room is closed.
    c.end(&s, &id, "agent", "agent ended the chat");
    let got = inbox(&mut cust.inbox);
    assert_eq!(
        got[0]["text"],
        "The other participant has left the conversation"
    );
    assert_eq!(got[1]["type"], "ended");
    assert!(c.list(t1).is_empty());
    assert_eq!(
        c.message(&id, "customer", "Cy", None, "x", false),
        Err(ChatError::Ended)
    );
}

#[test]
fn max_chats_release_and_offer_timeout_move_chats_between_agents() {
    let s = snap();
    let c = Svc::new(Limits::default(), 2);
    let t = Instant::now();
    let mut ann = agent(&c, &s, "ann", 1, t);
    let ids: Vec<String> = (0..3)
        .map(|i| c.start(&s, "web", fields(&format!("c{i}")), t).unwrap().0)
        .collect();
    // One offer at a time per agent; Ann (max 2) takes two.
    for id in &ids[..2] {
        let o = frames(&mut ann);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0]["chat"], id.as_str());
        c.accept(&s, "ann", id, t).unwrap();
    }
    assert!(frames(&mut ann).is_empty(), "full: the third waits");
    assert_eq!(c.list(t)[2].state, "queued");
    // Bob arrives: gets the third; does not accept in time → back to the queue, and
    // not re-offered to him in this round.
    let mut bob = agent(&c, &s, "bob", 2, t);
    assert_eq!(frames(&mut bob)[0]["chat"], ids[2].as_str());
    c.sweep(&s, t + OFFER_TIMEOUT);
    assert_eq!(frames(&mut bob)[0]["type"], "offer_withdrawn");
    assert_eq!(c.list(t + OFFER_TIMEOUT)[2].state, "queued");
    // Ann releases one: it goes back to the queue head, to Bob (not Ann again).
    c.release(&s, "ann", &ids[0], t + OFFER_TIMEOUT).unwrap();
    let o = frames(&mut bob);
    assert_eq!(o[0]["chat"], ids[0].as_str());
    assert_eq!(c.release(&s, "bob", &ids[1], t), Err(ChatError::NotYours));
    // Ann has room again: the third chat comes to her.
    assert_eq!(frames(&mut ann)[0]["chat"], ids[2].as_str());
}

#[test]
fn restore_modes_and_abandon() {
    let s = snap();
    let c = Svc::new(Limits::default(), 3);
    let t = Instant::now();
    // restore: always continue.
    let (id, tok) = c.start(&s, "web", fields("a"), t).unwrap();
    assert_eq!(
        c.resume(&s, &tok, Some("web"), Some(&fields("other")), None),
        Ok(Resume::Continue(id.clone()))
    );
    assert_eq!(
        c.resume(&s, "bad", None, None, None),
        Err(ChatError::BadToken)
    );
    // prompt: same start → continue; different → ask; the answer decides.
    let (vid, vtok) = c.start(&s, "vip", fields("v"), t).unwrap();
    assert_eq!(
        c.resume(&s, &vtok, Some("vip"), Some(&fields("v")), None),
        Ok(Resume::Continue(vid.clone()))
    );
    assert_eq!(
        c.resume(&s, &vtok, Some("vip"), Some(&fields("w")), None),
        Ok(Resume::Prompt(vid.clone()))
    );
    assert_eq!(
        c.resume(&s, &vtok, Some("vip"), Some(&fields("w")), Some(true)),
        Ok(Resume::Continue(vid.clone()))
    );
    assert_eq!(
        c.resume(&s, &vtok, Some("vip"), Some(&fields("w")), Some(false)),
        Ok(Resume::StartNew)
    );
    assert!(c.list(t).iter().all(|x| x.id != vid), "ended for good");
    assert_eq!(c.resume(&s, &vtok, None, None, None), Ok(Resume::StartNew));
    // new: the old chat ends.
    let (_, ftok) = c.start(&s, "fresh", fields("f"), t).unwrap();
    assert_eq!(c.resume(&s, &ftok, None, None, None), Ok(Resume::StartNew));
    // abandon: the customer leaves; at 2 min the chat ends and the agent is told.
    let mut ann = agent(&c, &s, "ann", 1, t);
    let _ = frames(&mut ann);
    c.accept(&s, "ann", &id, t).unwrap();
    let sub = c.customer_attach(&id, 50, 0).unwrap();
    c.customer_detach(&id, 50, t);
    drop(sub);
    c.sweep(&s, t + Duration::from_secs(119));
    assert!(c.list(t).iter().any(|x| x.id == id), "not yet");
    // Coming back in time resets the clock.
    let sub = c.customer_attach(&id, 51, 0).unwrap();
    c.sweep(&s, t + Duration::from_secs(300));
    assert!(c.list(t).iter().any(|x| x.id == id));
    c.customer_detach(&id, 51, t + Duration::from_secs(300));
    drop(sub);
    c.sweep(&s, t + Duration::from_secs(420));
    assert!(c.list(t).iter().all(|x| x.id != id), "abandoned");
    let f = frames(&mut ann);
    assert!(f
        .iter()
        .any(|x| x["type"] == "chat_ended" && x["chat"] == id.as_str()));
}

#[test]
fn consult_is_private_and_transfer_moves_the_chat_to_an_agent_then_a_queue() {
    let s = snap();
    let c = Svc::new(Limits::default(), 4);
    let t0 = Instant::now();
    let mut ann = agent(&c, &s, "ann", 1, t0);
    let mut bob = agent(&c, &s, "bob", 2, t0);
    let (id, _) = c.start(&s, "web", fields("Cy"), t0).unwrap();
    assert_eq!(frames(&mut ann)[0]["type"], "offer");
    c.accept(&s, "ann", &id, t0).unwrap();
    let mut cust = c.customer_attach(&id, 10, 0).unwrap();
    // Consultation: only ann may start it, bob is told, the customer sees nothing.
    assert_eq!(c.consult("bob", &id, "ann"), Err(ChatError::NotYours));
    assert_eq!(
        c.consult("ann", &id, "nobody"),
        Err(ChatError::AgentUnavailable)
    );
    c.consult("ann", &id, "bob").unwrap();
    let invite = frames(&mut bob);
    assert_eq!(invite[0]["type"], "consult");
    assert_eq!(invite[0]["from"], "ann");
    assert!(c.is_consultant("bob", &id) && !c.is_agent_of("bob", &id));
    let mut bob_room = c.hub().subscribe(&id, 2, crate::Offset(0), true).unwrap();
    c.message(&id, "agent", "ann", None, "bob, refund ok?", true)
        .unwrap();
    c.message(&id, "agent", "bob", None, "yes, up to 50", true)
        .unwrap();
    c.message(&id, "customer", "", None, "hello?", false)
        .unwrap();
    let seen = inbox(&mut cust.inbox);
    let texts: Vec<&str> = seen.iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["hello?"],
        "the customer sees none of the consultation"
    );
    let bob_texts: Vec<String> = inbox(&mut bob_room.inbox)
        .iter()
        .map(|f| f["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bob_texts, ["bob, refund ok?", "yes, up to 50", "hello?"]);
    assert_eq!(
        c.consult_end("bob", &id, None).as_deref(),
        Ok("bob"),
        "the consultant leaves"
    );
    assert!(frames(&mut ann)
        .iter()
        .any(|f| f["type"] == "consult_ended" && f["consultant"] == "bob"));
    assert_eq!(
        c.consult_end("bob", &id, None),
        Err(ChatError::NotConsulting)
    );
    frames(&mut bob);

    // Transfer to bob: offered to him with the origin; ann no longer has it.
    assert_eq!(
        c.transfer(&s, "bob", &id, &Target::Queue("web".into()), t0),
        Err(ChatError::NotYours)
    );
    assert_eq!(
        c.transfer(&s, "ann", &id, &Target::Agent("zed".into()), t0),
        Err(ChatError::AgentUnavailable)
    );
    c.transfer(&s, "ann", &id, &Target::Agent("bob".into()), t0)
        .unwrap();
    let offer = frames(&mut bob);
    assert_eq!(offer[0]["type"], "offer");
    assert_eq!(offer[0]["transfer_from"], "ann");
    assert!(!c.is_agent_of("ann", &id));
    assert_eq!(c.list(t0)[0].state, "offered");
    let seen = inbox(&mut cust.inbox);
    assert_eq!(
        seen.last().unwrap()["text"],
        "You are being transferred to another agent"
    );
    assert!(seen.iter().all(|f| f.get("private").is_none()));
    c.accept(&s, "bob", &id, t0).unwrap();
    // bob's new view of the room holds the consultation and the transfer note.
    let bob_view = c.hub().subscribe(&id, 2, crate::Offset(0), true).unwrap();
    let all: Vec<Value> = bob_view
        .replay
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(all
        .iter()
        .any(|f| f["text"] == "ann transferred the chat to bob" && f["private"] == true));

    // bob sends it on to the vip queue, where only ann works.
    assert_eq!(
        c.transfer(&s, "bob", &id, &Target::Queue("nope".into()), t0),
        Err(ChatError::NoQueue)
    );
    c.transfer(&s, "bob", &id, &Target::Queue("vip".into()), t0)
        .unwrap();
    assert_eq!(c.list(t0)[0].queue, "vip");
    let offer = frames(&mut ann);
    assert!(offer
        .iter()
        .any(|f| f["type"] == "offer" && f["queue"] == "vip"));
    c.accept(&s, "ann", &id, t0).unwrap();
    assert!(c.is_agent_of("ann", &id));
    // A directed offer nobody takes goes back to the chat's queue.
    c.transfer(&s, "ann", &id, &Target::Agent("bob".into()), t0)
        .unwrap();
    c.sweep(&s, t0 + OFFER_TIMEOUT + Duration::from_secs(1));
    assert!(frames(&mut bob)
        .iter()
        .any(|f| f["type"] == "offer_withdrawn"));
    assert_eq!(c.list(t0)[0].queue, "vip");
}

#[test]
fn chat_ids_and_tokens_come_from_separate_caller_keys_and_tokens_are_kept_as_digests() {
    // The service reads no random source: the id comes from `Keys::id`, the token
    // (the customer's secret) from `Keys::token`, 128 bits the edge draws from the OS
    // CSPRNG. Same id bytes with different token bytes: same id, unrelated tokens.
    let s = snap();
    let rooms = Arc::new(crate::Rooms::in_memory(Limits::default()));
    let mut c = Chats::new(rooms);
    let at = At {
        now: Instant::now(),
        unix_ms: 1,
    };
    let ka = Keys {
        id: [1; 8],
        token: [0xab; 16],
    };
    let (ida, ta) = c.start(&s, "web", fields("x"), at, ka).unwrap();
    assert_eq!(ida, "ch-0101010101010101");
    assert_eq!(ta, "ab".repeat(16));
    assert_eq!(ta.len(), 32);
    let kb = Keys {
        id: [2; 8],
        token: [0xcd; 16],
    };
    let (idb, tb) = c.start(&s, "web", fields("x"), at, kb).unwrap();
    assert_ne!(ida, idb);
    assert_eq!(c.chat_of_token(&ta), Some(ida.clone()));
    assert_eq!(c.chat_of_token(&tb), Some(idb.clone()));
    assert_eq!(c.chat_of_token(&"ab".repeat(15)), None);
    // Only the digest is kept: the listing and the debug view never show the token.
    assert!(!format!("{:?}", c.list(at.now)).contains(&ta));
}

#[test]
fn a_second_console_replaces_the_first_and_a_disconnect_moves_the_offer_on() {
    let s = snap();
    let c = Svc::new(Limits::default(), 3);
    let t = Instant::now();
    let (id, token) = c.start(&s, "web", fields("Cy"), t).unwrap();
    assert_eq!(c.chat_of_token(&token), Some(id.clone()));
    let mut first = agent(&c, &s, "bob", 1, t);
    assert_eq!(frames(&mut first)[0]["type"], "offer");
    let second = agent(&c, &s, "bob", 2, t);
    assert!(first.replaced.get(), "the older console is told to close");
    assert!(!second.replaced.get());
    // The replaced console going away changes nothing; the current one going away
    // puts the offered chat back in line, and the next agent gets it.
    c.agent_disconnect(&s, "bob", 1, t);
    assert_eq!(c.list(t)[0].state, "offered");
    c.agent_disconnect(&s, "bob", 2, t);
    assert_eq!(c.list(t)[0].state, "queued");
    let mut ann = agent(&c, &s, "ann", 3, t);
    let offer = frames(&mut ann);
    assert_eq!(offer[0]["type"], "offer");
    assert_eq!(offer[0]["chat"], id.as_str());
}

#[test]
fn an_agent_not_ready_for_calls_is_offered_no_chat_and_its_pending_offer_goes_back() {
    let s = snap();
    let c = Svc::new(Limits::default(), 1);
    let t0 = Instant::now();
    let mut ann = agent(&c, &s, "ann", 1, t0);
    let (id, _) = c.start(&s, "vip", fields("Cy"), t0).unwrap();
    assert_eq!(frames(&mut ann)[0]["type"], "offer");
    // Ann's agent goes on break: the offer is withdrawn and the chat waits.
    c.agent_state(&s, "ann", "not_ready", false, t0);
    let got = frames(&mut ann);
    assert_eq!(got[0]["type"], "agent_state");
    assert_eq!(got[0]["state"], "not_ready");
    assert_eq!(got[1]["type"], "offer_withdrawn");
    assert_eq!(c.list(t0)[0].state, "queued");
    assert_eq!(c.accept(&s, "ann", &id, t0), Err(ChatError::NotOffered));
    // A new chat is not offered either, and no transfer can target her.
    c.start(&s, "vip", fields("Di"), t0).unwrap();
    assert!(frames(&mut ann).is_empty());
    // On a call (busy) she takes chats again: both are offered, oldest first.
    c.agent_state(&s, "ann", "busy", true, t0);
    let got = frames(&mut ann);
    assert_eq!(got[0]["type"], "agent_state");
    assert_eq!(got[1]["type"], "offer");
    assert_eq!(got[1]["chat"], id.as_str());
    c.accept(&s, "ann", &id, t0).unwrap();
    assert_eq!(c.list(t0).iter().filter(|x| x.state == "active").count(), 1);
}

#[test]
fn pre_chat_fields_named_like_reserved_data_are_checked_the_same_way() {
    let s = Arc::new(
        control::parse(
            "t",
            &format!("{CONFIG}\n[[reserved_data]]\nfield = \"verified_customer\"\nheader = \"X-Verified-Customer\"\nmax_length = 5\n"),
        )
        .unwrap(),
    );
    let c = Svc::new(Limits::default(), 1);
    let t0 = Instant::now();
    let bad = json!({"name": "Cy", "verified_customer": "yes\r\nX-Evil: 1"});
    assert!(matches!(
        c.start(&s, "web", bad.as_object().unwrap().clone(), t0),
        Err(ChatError::BadField(f, _)) if f == "verified_customer"
    ));
    let long = json!({"verified_customer": "yes-yes"});
    assert!(c
        .start(&s, "web", long.as_object().unwrap().clone(), t0)
        .is_err());
    let ok = json!({"name": "Cy", "verified_customer": true});
    c.start(&s, "web", ok.as_object().unwrap().clone(), t0)
        .unwrap();
    assert_eq!(c.list(t0)[0].fields["verified_customer"], "true");
}

#[test]
fn a_closed_queue_ends_the_start_with_its_message_or_moves_it_and_refuses_transfers_in() {
    // The virtual clock starts at 1 700 000 000 000 ms: Tuesday 22:13 UTC, after
    // the office's hours.
    let extra = r#"
[[hours]]
name = "office"
timezone = "UTC"
open = ["mon-fri 08:00-18:00"]
[[hours]]
name = "always"
timezone = "UTC"
open = ["daily 00:00-24:00"]
[[queues]]
name = "night"
channel = "chat"
agents = ["ann"]
hours = "office"
after_hours = "queue:web"
[[queues]]
name = "shut"
channel = "chat"
agents = ["ann"]
hours = "office"
after_hours_message = "Back at 8."
[[queues]]
name = "late"
channel = "chat"
agents = ["bob"]
hours = "office"
transfer_when_closed = true
[[queues]]
name = "open"
channel = "chat"
agents = ["bob"]
hours = "always"
"#;
    let s = Arc::new(control::parse("t", &format!("{CONFIG}{extra}")).unwrap());
    let c = Svc::new(Limits::default(), 1);
    let t0 = Instant::now();
    assert_eq!(
        c.start(&s, "shut", fields("Cy"), t0),
        Err(ChatError::Closed("Back at 8.".into()))
    );
    assert!(
        c.list(t0).is_empty(),
        "a refused start leaves no chat behind"
    );
    let (moved, _) = c.start(&s, "night", fields("Di"), t0).unwrap();
    let (open, _) = c.start(&s, "open", fields("Ed"), t0).unwrap();
    let list = c.list(t0);
    let queue_of = |id: &str| list.iter().find(|x| x.id == id).unwrap().queue.clone();
    assert_eq!(queue_of(&moved), "web");
    assert_eq!(queue_of(&open), "open");
    // Ann takes the web chat; she may not transfer it into a closed queue unless
    // that queue allows it.
    let _ann = agent(&c, &s, "ann", 1, t0);
    c.accept(&s, "ann", &moved, t0).unwrap();
    assert!(matches!(
        c.transfer(&s, "ann", &moved, &Target::Queue("shut".into()), t0),
        Err(ChatError::Closed(_))
    ));
    c.transfer(&s, "ann", &moved, &Target::Queue("late".into()), t0)
        .unwrap();
    let list = c.list(t0);
    assert_eq!(list.iter().find(|x| x.id == moved).unwrap().queue, "late");
}

#[test]
fn a_console_that_takes_no_chats_still_hears_of_its_calls() {
    let rooms = Arc::new(crate::Rooms::in_memory(Limits::default()));
    let mut c = Chats::new(rooms);
    let frame = |call: &str| crate::ServerFrame::Call {
        call: call.into(),
        state: "ringing".into(),
        caller: "sip:x@y".into(),
        queue: None,
        reserved_data: Map::new(),
    };
    c.notify("wendy", frame("c0"));
    assert!(c.poll_effect().is_none(), "nobody listens yet");
    c.listen("wendy", 7);
    c.listen("wendy", 8);
    c.notify("wendy", frame("c1"));
    let conns: Vec<u64> = std::iter::from_fn(|| c.poll_effect())
        .map(|e| match e {
            Effect::Console { conn, .. } => conn,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(conns, vec![7, 8], "every console of the user");
    c.unlisten("wendy", 7);
    c.unlisten("wendy", 8);
    c.notify("wendy", frame("c2"));
    assert!(c.poll_effect().is_none());
}

#[test]
fn chats_an_agent_has_on_other_nodes_count_against_its_max_chats() {
    let s = snap();
    let c = Svc::new(Limits::default(), 1);
    let t0 = Instant::now();
    // ann (max_chats 2) has one chat here and, its console's node says, one on
    // another node: full.
    let mut ann = agent(&c, &s, "ann", 1, t0);
    let (first, _) = c.start(&s, "vip", fields("Cy"), t0).unwrap();
    assert_eq!(frames(&mut ann)[0]["type"], "offer");
    c.accept(&s, "ann", &first, t0).unwrap();
    frames(&mut ann);
    c.agent_elsewhere(&s, "ann", 1, 1, t0);
    let (second, _) = c.start(&s, "vip", fields("Di"), t0).unwrap();
    assert!(
        !frames(&mut ann).iter().any(|f| f["type"] == "offer"),
        "offered beyond max_chats"
    );
    // Another console's count changes nothing (a replaced link's late frame).
    c.agent_elsewhere(&s, "ann", 99, 0, t0);
    assert!(!frames(&mut ann).iter().any(|f| f["type"] == "offer"));
    // The chat elsewhere ends: the waiting one is offered at once.
    let t1 = t0 + Duration::from_secs(1);
    c.agent_elsewhere(&s, "ann", 1, 0, t1);
    let f = frames(&mut ann);
    assert!(
        f.iter()
            .any(|f| f["type"] == "offer" && f["chat"] == second.as_str()),
        "{f:?}"
    );
}
