//! Unit tests of `protocol.rs`.

use super::*;

#[test]
fn client_frames_parse_with_defaults_and_name_their_errors() {
    assert_eq!(
        ClientFrame::parse(r#"{"type":"typing","chat":"c"}"#).unwrap(),
        ClientFrame::Typing {
            chat: "c".into(),
            on: true
        }
    );
    assert_eq!(
        ClientFrame::parse(r#"{"type":"resume","token":"t","offset":7,"choice":"new"}"#).unwrap(),
        ClientFrame::Resume {
            token: "t".into(),
            offset: Offset(7),
            choice: Some(Choice::New),
            queue: None,
            fields: None
        }
    );
    let e = ClientFrame::parse("{nope").unwrap_err();
    assert!(matches!(e, FrameError::Json(_)), "{e}");
    assert!(e.to_string().starts_with("invalid JSON"));
    let e = ClientFrame::parse(r#"{"type":"dance"}"#).unwrap_err();
    assert!(matches!(e, FrameError::Frame(_)), "{e}");
    assert!(e.to_string().contains("dance"), "{e}");
    let e = ClientFrame::parse(r#"{"chat":"c"}"#).unwrap_err();
    assert!(matches!(e, FrameError::Frame(_)), "{e}");
    assert!(e.to_string().contains("type"), "{e}");
}

#[test]
fn server_frames_have_their_documented_shape() {
    let f = ServerFrame::Message {
        chat: "c".into(),
        offset: Offset(3),
        from: Author::Customer,
        name: Some("Ann".into()),
        text: "hi".into(),
        client_id: Some("x1".into()),
        attachment: None,
        private: false,
        ts: 5,
    };
    let v: Value = serde_json::from_str(&f.to_json()).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["offset"], 3);
    assert_eq!(v["from"], "customer");
    assert_eq!(v["client_id"], "x1");
    assert!(v.get("private").is_none() && v.get("attachment").is_none());
    assert_eq!(ServerFrame::parse(&f.to_json()).unwrap(), f);
    let e = ServerFrame::Ended {
        chat: None,
        offset: None,
        by: None,
        reason: "r".into(),
    };
    let v: Value = serde_json::from_str(&e.to_json()).unwrap();
    assert!(v["chat"].is_null() && v.get("offset").is_none());
    let w = ServerFrame::OfferWithdrawn {
        chat: "c".into(),
        reason: "r".into(),
    };
    assert!(w.to_json().contains(r#""type":"offer_withdrawn""#));
}

#[test]
fn kind_is_the_type_on_the_wire() {
    let frames = [
        r#"{"type":"start","queue":"q"}"#,
        r#"{"type":"resume","token":"t"}"#,
        r#"{"type":"auth","token":"t"}"#,
        r#"{"type":"message","chat":"c","text":"x"}"#,
        r#"{"type":"typing","chat":"c","on":true}"#,
        r#"{"type":"end","chat":"c"}"#,
        r#"{"type":"accept","chat":"c"}"#,
        r#"{"type":"release","chat":"c"}"#,
        r#"{"type":"transfer","chat":"c","to_queue":"q"}"#,
        r#"{"type":"consult","chat":"c","agent":"a"}"#,
        r#"{"type":"consult_end","chat":"c"}"#,
        r#"{"type":"watch","chat":"c"}"#,
        r#"{"type":"unwatch","chat":"c"}"#,
    ];
    for text in frames {
        let f = ClientFrame::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let wire: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(f.kind(), wire["type"], "{text}");
        let back = serde_json::to_value(&f).unwrap();
        assert_eq!(back["type"], f.kind(), "{text}");
    }
}
