//! The SQLite transcript store: what the journal is given is readable after a flush
//! and after reopening, searchable by date, queue and agent; private entries only
//! when asked.

use crate::transcript::{Query, Transcripts};
use chat::store::{ChatRecord, Store};
use serde_json::json;

fn rec(id: &str, queue: &str, state: &str, agent: Option<&str>, created: u64) -> ChatRecord {
    ChatRecord {
        id: id.into(),
        queue: queue.into(),
        fields: json!({"name":"Cy"}).as_object().unwrap().clone(),
        token_hash: format!("hash-{id}"),
        state: state.into(),
        agent: agent.map(String::from),
        created_ms: created,
        ended_ms: (state == "ended").then_some(created + 5000),
    }
}

fn msg(t: &Transcripts, chat: &str, offset: u64, private: bool) {
    let f = json!({"type":"message","chat":chat,"offset":offset,"text":format!("m{offset}")});
    t.message(
        chat,
        chat::Offset(offset),
        private,
        1000 + offset,
        &f.to_string(),
    );
}

#[test]
fn entries_survive_reopen_and_search_filters_by_date_queue_agent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = Transcripts::open(dir.path()).unwrap();
        t.chat(&rec("a", "web", "queued", None, 1_000));
        t.chat(&rec("a", "web", "active", Some("ann"), 1_000));
        msg(&t, "a", 1, false);
        msg(&t, "a", 2, true);
        msg(&t, "a", 3, false);
        // Transferred: a second agent, another queue.
        t.chat(&rec("a", "vip", "active", Some("bob"), 1_000));
        t.chat(&rec("b", "web", "ended", Some("bob"), 50_000));
        msg(&t, "b", 1, false);
        t.chat(&rec("c", "web", "queued", None, 90_000));
        t.flush();
        assert_eq!(t.errors(), 0);
        assert_eq!(t.backlog(), 0);
    }
    let t = Transcripts::open(dir.path()).unwrap();
    let (a, msgs) = t.get("a", false).unwrap().unwrap();
    assert_eq!(a.queue, "vip");
    assert_eq!(a.agent.as_deref(), Some("bob"));
    let mut agents = a.agents.clone();
    agents.sort();
    assert_eq!(agents, ["ann", "bob"]);
    assert_eq!(
        msgs.iter().map(|m| m.offset.0).collect::<Vec<_>>(),
        [1, 3],
        "public view"
    );
    let (_, all) = t.get("a", true).unwrap().unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[1].private);
    assert!(t.get("zz", true).unwrap().is_none());
    assert!(t.handled_by("a", "ann").unwrap());
    assert!(!t.handled_by("c", "ann").unwrap());

    let ids = |q: Query| -> Vec<String> {
        t.search(&Query { limit: 100, ..q })
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    assert_eq!(ids(Query::default()), ["c", "b", "a"], "newest first");
    assert_eq!(
        ids(Query {
            from_ms: Some(40_000),
            to_ms: Some(90_000),
            ..Default::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(Query {
            queue: Some("web".into()),
            ..Default::default()
        }),
        ["c", "b"]
    );
    assert_eq!(
        ids(Query {
            agent: Some("ann".into()),
            ..Default::default()
        }),
        ["a"],
        "ann handled a before the transfer"
    );
    assert_eq!(
        ids(Query {
            agent: Some("bob".into()),
            ..Default::default()
        }),
        ["b", "a"]
    );
    // Open chats for restore: not b (ended), with all entries.
    let open = t.open_chats().unwrap();
    let open_ids: Vec<&str> = open.iter().map(|(c, _)| c.id.as_str()).collect();
    assert_eq!(open_ids, ["a", "c"]);
    assert_eq!(open[0].1.len(), 3);
    assert_eq!(open[0].0.token_hash, "hash-a");
}

#[test]
fn a_store_that_cannot_be_created_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = Transcripts::open(&file).err().unwrap();
    assert!(e.to_string().contains("plain-file"), "{e}");
}
