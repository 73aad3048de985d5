//! Unit tests of `dialog.rs`.

use super::*;
use crate::message::parse;

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:5070".parse().unwrap(),
    }
}

#[test]
fn uas_dialog_follows_record_route_and_contact() {
    let text = "INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
Record-Route: <sip:127.0.0.2:5060;lr>, <sip:127.0.0.3;lr>\r\nFrom: \"Al\" <sip:a@x>;tag=ft\r\nTo: <sip:1000@y>\r\n\
Call-ID: cid\r\nCSeq: 5 INVITE\r\nContact: <sip:a@127.0.0.9:5099>\r\nContent-Length: 0\r\n\r\n";
    let (msg, head) = parse(text.as_bytes()).unwrap();
    let rsip::SipMessage::Request(req) = msg else {
        panic!()
    };
    let mut d = Dialog::uas(
        &req,
        &head,
        "lt".into(),
        flow(),
        "<sip:edge@127.0.0.1:5060>".into(),
    );
    assert_eq!(
        d.route_set,
        vec!["<sip:127.0.0.2:5060;lr>", "<sip:127.0.0.3;lr>"]
    );
    assert_eq!(
        d.flow.remote,
        "127.0.0.2:5060".parse().unwrap(),
        "first route wins"
    );
    assert!(!d.accept_remote_seq(5, Method::Bye), "CSeq must grow");
    assert!(d.accept_remote_seq(6, Method::Bye));
    let bye = d.request(Method::Bye, None, "edge").to_string();
    assert!(
        bye.starts_with("BYE sip:a@127.0.0.9:5099 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("Route: <sip:127.0.0.2:5060;lr>\r\nRoute: <sip:127.0.0.3;lr>\r\n"),
        "{bye}"
    );
    assert!(bye.contains("From: <sip:1000@y>;tag=lt\r\n"), "{bye}");
    assert!(bye.contains("To: \"Al\" <sip:a@x>;tag=ft\r\n"), "{bye}");
    assert!(bye.contains("CSeq: 1 BYE\r\n"));
}
