//! One SIP datagram: parse (framing, normalising, rsip, the Head), the fallback
//! reply to what cannot be parsed, and a response built from what can.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip::message;

fuzz_target!(|data: &[u8]| {
    match message::parse(data) {
        Ok((rsip::SipMessage::Request(req), head)) => {
            let _ = message::request_user(&req);
            let _ = message::is_sip_uri(&req.uri);
            let r = message::response(&req, 486, Some("t"), "edge");
            let _ = r.to_string();
            let _ = message::stateless_tag(&head);
        }
        Ok((rsip::SipMessage::Response(_), _)) => {}
        Err(e) => {
            if let Some(reply) = message::raw_reply(data, &e, "edge") {
                // What the edge sends back is a response whose top Via it can read
                // (responses travel by Via).
                let text = std::str::from_utf8(&reply).expect("the reply is text");
                assert!(text.starts_with("SIP/2.0 "));
                let via = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Via: "))
                    .expect("the reply has a Via");
                message::Via::parse_value(via).expect("the reply's Via parses");
            }
        }
    }
});
