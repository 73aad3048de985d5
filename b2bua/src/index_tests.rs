//! Unit tests of `index.rs`.

use super::*;
use sip::message::parse;

fn request() -> Request {
    let raw =
        "OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
               From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:edge@127.0.0.1>\r\nCall-ID: x\r\n\
               CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    match parse(raw.as_bytes()).expect("valid").0 {
        rsip::SipMessage::Request(r) => r,
        _ => unreachable!(),
    }
}

#[test]
fn relayed_request_comes_back_once_and_server_entry_goes_with_it() {
    let mut ix = Index::default();
    let tx = TxId(1);
    ix.add_relayed(tx, CallId(7), ServerRole::Relayed, request());
    assert!(matches!(
        ix.server(&tx),
        Some((CallId(7), ServerRole::Relayed))
    ));
    assert_eq!(ix.sizes(), [0, 1, 0, 1]);
    assert!(ix.answered(&tx).is_some());
    assert!(ix.answered(&tx).is_none(), "a request is answered once");
    assert_eq!(ix.sizes(), [0; 4]);
}

#[test]
fn client_transactions_know_their_owner_and_whether_they_are_invites() {
    let mut ix = Index::default();
    let (a, b, c) = (TxId(1), TxId(2), TxId(3));
    ix.add_client(a, CallId(1), ClientRole::Initial(1));
    ix.add_client(b, CallId(1), ClientRole::Ending);
    ix.add_monitor_client(c, MonitorId(2), MonitorRole::Invite);
    assert!(ix.client(&a).unwrap().is_invite());
    assert!(!ix.client(&b).unwrap().is_invite());
    assert!(matches!(
        ix.client(&c),
        Some(ClientTx::Monitor(MonitorId(2), MonitorRole::Invite))
    ));
    for t in [a, b, c] {
        assert!(ix.remove_client(&t).is_some());
    }
    assert_eq!(ix.sizes(), [0; 4]);
}

#[test]
fn dialogs_of_calls_and_monitors_share_one_table() {
    let mut ix = Index::default();
    ix.add_dialog(
        ("c1".into(), "t1".into()),
        DialogOwner::Call(CallId(1), Side::A),
    );
    ix.add_dialog(
        ("c2".into(), "t2".into()),
        DialogOwner::Monitor(MonitorId(2)),
    );
    assert!(matches!(
        ix.dialog("c1", "t1"),
        Some(DialogOwner::Call(CallId(1), Side::A))
    ));
    assert!(
        ix.dialog("c1", "t2").is_none(),
        "both parts of the key count"
    );
    assert_eq!(ix.monitor_dialogs(), 1);
    ix.remove_dialog("c2", "t2");
    ix.remove_dialog("c1", "t1");
    assert_eq!(ix.sizes(), [0; 4]);
}
