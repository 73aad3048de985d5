//! Unit tests of `transcripts.rs`.

use super::*;

#[test]
fn times_parse_and_print() {
    assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
    assert_eq!(parse_time("2026-11-21").unwrap(), 1_795_219_200_000);
    assert_eq!(
        parse_time("2026-11-21T01:00:00Z").unwrap(),
        1_795_219_200_000 + 3_600_000
    );
    assert!(parse_time("21/11/2026")
        .unwrap_err()
        .to_string()
        .contains("21/11/2026"));
    assert_eq!(utc(1_795_219_200_000), "2026-11-21 00:00:00 UTC");
}

#[test]
fn html_escapes_what_people_typed() {
    let chat = StoredChat {
        id: "ch-1".into(),
        queue: "web".into(),
        fields: json!({"name":"<b>Cy</b>"}).as_object().unwrap().clone(),
        state: "ended".into(),
        agent: None,
        agents: vec![],
        created_ms: 0,
        ended_ms: None,
        token_hash: String::new(),
    };
    let msgs = vec![StoredMessage {
        offset: chat::Offset(1),
        private: false,
        frame: json!({"type":"message","from":"customer","name":"Cy","text":"<script>x</script>","ts":0})
            .to_string(),
    }];
    let h = as_html(&chat, &lines(&msgs));
    assert!(!h.contains("<script>x") && h.contains("&lt;script&gt;x"));
    assert!(!h.contains("<b>Cy") && h.contains("&lt;b&gt;Cy"));
    let t = as_text(&chat, &lines(&msgs));
    assert!(t.contains("] Cy: <script>x</script>"), "{t}");
}
