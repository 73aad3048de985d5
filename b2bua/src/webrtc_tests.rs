//! Browser legs (SIP over WebSocket): the offer to a browser is WebRTC, its answer
//! reaches the media as ICE/DTLS parameters and the caller as plain RTP.

use super::*;
use sip::digest::{response, Challenge};

const CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
[media]
address = "127.0.0.1"
rtp_ports = "20000-20099"
[[trunks]]
name = "t"
sources = ["127.0.0.1/32"]
[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001"]
max_wait = "30s"
[[agents]]
id = "1001"
password = "alice-sip-secret"
[[users]]
name = "sam"
role = "supervisor"
token = "sam-token"
[[routes]]
number = "service"
target = "sip:service@127.0.0.1:5090"
"#;

const BROWSER: &str = "127.0.0.1:40777";

const SUPERVISOR: &str = "127.0.0.1:40888";

fn ws_flow_at(remote: &str) -> sip::Flow {
    sip::Flow {
        transport: control::Transport::Ws,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

fn send_ws_at(n: &mut Net, remote: &str, text: &str) {
    n.b.handle_datagram(n.now, ws_flow_at(remote), text.as_bytes());
    n.pump();
}

fn send_ws(n: &mut Net, text: &str) {
    send_ws_at(n, BROWSER, text)
}

/// JsSIP's REGISTER: a `.invalid` contact with `transport=ws`.
fn register_as(aor: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bK-ws{aor}{cseq}\r\n\
From: <sip:{aor}@127.0.0.1>;tag=js\r\nTo: <sip:{aor}@127.0.0.1>\r\nCall-ID: jsreg{aor}\r\nCSeq: {cseq} REGISTER\r\n\
Max-Forwards: 70\r\nContact: <sip:r4nd0m@r4nd0m.invalid;transport=ws>;expires=600\r\n{auth}Content-Length: 0\r\n\r\n"
    )
}

fn register(cseq: u32, auth: &str) -> String {
    register_as("1001", cseq, auth)
}

fn sign_in_over_ws(n: &mut Net) {
    send_ws(n, &register(1, ""));
    let (r, _) = n.expect_response(BROWSER, 401);
    let c = r
        .headers
        .iter()
        .find_map(|h| match h {
            Header::WwwAuthenticate(w) => Challenge::parse(w.value()),
            _ => None,
        })
        .unwrap();
    let uri = "sip:127.0.0.1";
    let resp = response(
        c.algorithm,
        "1001",
        &c.realm,
        "alice-sip-secret",
        "REGISTER",
        uri,
        &c.nonce,
        Some(("00000001", "cn")),
    );
    let auth = format!(
        "Authorization: Digest username=\"1001\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\"\r\n",
        c.realm, c.nonce
    );
    send_ws(n, &register(2, &auth));
    n.expect_response(BROWSER, 200);
}

/// Chromium's answer to the edge's offer (it takes `setup:active`).
fn browser_answer() -> String {
    "v=0\r\no=- 77 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS s1\r\n\
m=audio 50123 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:9 1 udp 2113937151 127.0.0.1 50123 typ host generation 0\r\na=ice-ufrag:Br0w\r\n\
a=ice-pwd:browserpasswordbrowserpw\r\na=fingerprint:sha-256 0A:0B:0C\r\na=setup:active\r\na=mid:0\r\n\
a=sendrecv\r\na=msid:s1 t1\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=ssrc:99 cname:x\r\n"
        .to_string()
}

/// The browser agent signs in over its WebSocket and answers a queue call
/// (`call_id`) with Chromium's answer.
fn browser_takes_a_call(n: &mut Net, call_id: &str) {
    sign_in_over_ws(n);
    n.send(CALLER, &invite("1000", call_id, &sdp(4000)));
    let (inv, _) = n.expect_request(BROWSER, Method::Invite);
    send_ws(
        n,
        &answer(&inv, 200, "js", Some(&browser_answer()), BROWSER),
    );
    n.expect_request(BROWSER, Method::Ack);
}

fn webrtc_commands(outputs: &[Output]) -> Vec<Command> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Media(_, c @ (Command::WebRtc { .. } | Command::WebRtcRemote { .. })) => {
                Some(c.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_queue_call_reaches_a_browser_as_webrtc_and_the_caller_as_plain_rtp() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    sign_in_over_ws(&mut n);
    n.send(CALLER, &invite("1000", "wr1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    let (inv, _) = n.expect_request(BROWSER, Method::Invite);
    let offer = String::from_utf8(inv.body.clone()).unwrap();
    for want in [
        "a=ice-lite\r\n",
        "UDP/TLS/RTP/SAVPF 0 8 101\r\n",
        "a=fingerprint:sha-256 AA:BB:CC\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "typ host\r\n",
    ] {
        assert!(offer.contains(want), "{want:?} not in {offer}");
    }
    let cmds = webrtc_commands(&n.outputs);
    let Some(Command::WebRtc {
        side: Side::B,
        local: Some(local),
    }) = cmds.first()
    else {
        panic!("{cmds:?}")
    };
    assert!(offer.contains(&format!("a=ice-ufrag:{}\r\n", local.ufrag)));
    assert!(offer.contains(&format!("a=ice-pwd:{}\r\n", local.pwd)));
    assert!(local.ufrag.len() >= 4 && local.pwd.len() >= 22);
    n.outputs.clear();
    send_ws(
        &mut n,
        &answer(&inv, 200, "js", Some(&browser_answer()), BROWSER),
    );
    n.expect_request(BROWSER, Method::Ack);
    let (ok, _) = n.expect_response(CALLER, 200);
    let to_caller = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        to_caller.contains("m=audio 20000 RTP/AVP 0 101\r\n"),
        "{to_caller}"
    );
    for gone in [
        "ice",
        "fingerprint",
        "setup",
        "rtcp-mux",
        "msid",
        "ssrc",
        "BUNDLE",
    ] {
        assert!(!to_caller.contains(gone), "{gone} in {to_caller}");
    }
    let cmds = webrtc_commands(&n.outputs);
    assert_eq!(
        cmds,
        vec![Command::WebRtcRemote {
            side: Side::B,
            remote: media::webrtc::RemoteParams {
                ufrag: "Br0w".into(),
                pwd: "browserpasswordbrowserpw".into(),
                fingerprint: "0A:0B:0C".into(),
                setup: media::webrtc::Setup::Active,
            },
        }]
    );
}

#[test]
fn a_browser_answer_without_a_fingerprint_ends_the_call() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    sign_in_over_ws(&mut n);
    n.send(CALLER, &invite("1000", "wr2", &sdp(4000)));
    let (inv, _) = n.expect_request(BROWSER, Method::Invite);
    let bad = browser_answer().replace("a=fingerprint:sha-256 0A:0B:0C\r\n", "");
    send_ws(&mut n, &answer(&inv, 200, "js", Some(&bad), BROWSER));
    n.expect_request(BROWSER, Method::Ack);
    n.expect_request(BROWSER, Method::Bye);
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    n.expect_response(CALLER, 488);
}

#[test]
fn a_caller_offering_webrtc_without_g711_gets_488_and_with_it_a_webrtc_leg() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    let opus_only = browser_answer()
        .replace("a=setup:active", "a=setup:actpass")
        .replace("SAVPF 0 101", "SAVPF 111")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:111 opus/48000/2\r\n");
    n.send(CALLER, &invite("1000", "wr3", &opus_only));
    let (r, _) = n.expect_response(CALLER, 488);
    assert!(r.to_string().contains("does not transcode"));
    n.outputs.clear();
    let offer = browser_answer().replace("a=setup:active", "a=setup:actpass");
    n.send(CALLER, &invite("1000", "wr4", &offer));
    n.expect_response(CALLER, 100);
    let cmds = webrtc_commands(&n.outputs);
    assert!(
        matches!(
            cmds.as_slice(),
            [
                Command::WebRtc {
                    side: Side::A,
                    local: Some(_)
                },
                Command::WebRtcRemote {
                    side: Side::A,
                    remote: media::webrtc::RemoteParams {
                        setup: media::webrtc::Setup::ActPass,
                        ..
                    }
                }
            ]
        ),
        "{cmds:?}"
    );
}

#[test]
fn a_supervisor_signed_in_by_token_registers_without_digest_and_is_monitored_over_webrtc() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    // Not signed in: challenged like any phone.
    send_ws_at(&mut n, SUPERVISOR, &register_as("sam", 1, ""));
    n.expect_response(SUPERVISOR, 401);
    // Signed in as sam: sam registers at once; another AOR is still challenged.
    n.b.flow_signed_in(ws_flow_at(SUPERVISOR), "sam".into());
    send_ws_at(&mut n, SUPERVISOR, &register_as("1001", 7, ""));
    n.expect_response(SUPERVISOR, 401);
    send_ws_at(&mut n, SUPERVISOR, &register_as("sam", 3, ""));
    n.expect_response(SUPERVISOR, 200);

    browser_takes_a_call(&mut n, "wr5");
    let call = n.b.calls(n.now)[0].id.clone();
    n.outputs.clear();

    // Monitoring calls sam's browser with a WebRTC offer of its own.
    n.b.add_monitor(n.now, &call, "sam", MonitorMode::Listen)
        .unwrap();
    n.pump();
    let (inv, _) = n.expect_request(SUPERVISOR, Method::Invite);
    let offer = String::from_utf8(inv.body.clone()).unwrap();
    assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    let local = n
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Media(_, Command::MonitorWebRtc { local, .. }) => Some(local.clone()),
            _ => None,
        })
        .expect("the monitor's port becomes a WebRTC leg");
    assert!(offer.contains(&format!("a=ice-ufrag:{}", local.ufrag)));
    n.outputs.clear();
    send_ws_at(
        &mut n,
        SUPERVISOR,
        &answer(&inv, 200, "sup", Some(&browser_answer()), SUPERVISOR),
    );
    n.expect_request(SUPERVISOR, Method::Ack);
    assert!(n.outputs.iter().any(|o| matches!(
        o,
        Output::Media(_, Command::MonitorWebRtcRemote { remote, .. }) if remote.ufrag == "Br0w"
    )));
    // A plain answer to the WebRTC offer would have been refused; the socket
    // closing drops the sign-in with the binding.
    n.b.flow_closed(n.now, ws_flow_at(SUPERVISOR));
    send_ws_at(&mut n, SUPERVISOR, &register_as("sam", 4, ""));
    n.expect_response(SUPERVISOR, 401);
}

/// The browser's own offer (Chromium offers `actpass`).
fn browser_offer() -> String {
    browser_answer().replace("a=setup:active", "a=setup:actpass")
}

/// An INVITE from agent 1001's browser to `number`, with `auth` lines.
fn agent_invite(number: &str, cseq: u32, auth: &str) -> String {
    let body = browser_offer();
    format!(
        "INVITE sip:{number}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bK-out{cseq}\r\n\
From: <sip:1001@127.0.0.1>;tag=out\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: out-1\r\nCSeq: {cseq} INVITE\r\n\
Max-Forwards: 70\r\nContact: <sip:r4nd0m@r4nd0m.invalid;transport=ws;ob>\r\n{auth}\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn an_agent_dials_out_from_the_browser_with_digest_and_gets_a_webrtc_answer() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    // Signed in on the same socket: ready for queue calls.
    sign_in_over_ws(&mut n);
    let state = |n: &Net| {
        n.b.agents(n.now)
            .into_iter()
            .find(|a| a.id == "1001")
            .map(|a| a.state)
    };
    assert_eq!(state(&n), Some("ready"));
    // Over a WebSocket the caller is an agent (never a trunk): 407 first.
    send_ws(&mut n, &agent_invite("service", 1, ""));
    let (r, _) = n.expect_response(BROWSER, 407);
    let c = r
        .headers
        .iter()
        .find_map(|h| match h {
            Header::ProxyAuthenticate(w) => Challenge::parse(w.value()),
            _ => None,
        })
        .expect("a Proxy-Authenticate challenge");
    let auth = |pw: &str| {
        let uri = "sip:service@127.0.0.1";
        let resp = response(
            c.algorithm,
            "1001",
            &c.realm,
            pw,
            "INVITE",
            uri,
            &c.nonce,
            Some(("00000001", "cn")),
        );
        format!(
            "Proxy-Authorization: Digest username=\"1001\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\"\r\n",
            c.realm, c.nonce
        )
    };
    // A wrong password: 403.
    send_ws(&mut n, &agent_invite("service", 2, &auth("guess")));
    n.expect_response(BROWSER, 403);
    n.outputs.clear();
    send_ws(
        &mut n,
        &agent_invite("service", 3, &auth("alice-sip-secret")),
    );
    n.expect_response(BROWSER, 100);
    // The route target gets plain RTP; the browser's leg is WebRTC (actpass offer).
    let (inv, _) = n.expect_request(SERVICE, Method::Invite);
    let to_service = String::from_utf8(inv.body.clone()).unwrap();
    assert!(to_service.contains("RTP/AVP 0 101"), "{to_service}");
    assert!(!to_service.contains("fingerprint"), "{to_service}");
    let cmds = webrtc_commands(&n.outputs);
    assert!(
        matches!(
            cmds.as_slice(),
            [
                Command::WebRtc { side: Side::A, .. },
                Command::WebRtcRemote { side: Side::A, .. }
            ]
        ),
        "{cmds:?}"
    );
    n.send(
        SERVICE,
        &answer(&inv, 200, "svc", Some(&sdp(7000)), SERVICE),
    );
    n.expect_request(SERVICE, Method::Ack);
    let (ok, _) = n.expect_response(BROWSER, 200);
    let to_browser = String::from_utf8(ok.body.clone()).unwrap();
    for want in [
        "UDP/TLS/RTP/SAVPF",
        "a=setup:passive",
        "a=ice-lite",
        "a=fingerprint:sha-256 AA:BB:CC",
    ] {
        assert!(to_browser.contains(want), "{want} not in {to_browser}");
    }
    // On its own call the agent is busy: a queue call waits rather than ring it.
    assert_eq!(state(&n), Some("busy"));
    n.send(CALLER, &invite("1000", "q-while-out", &sdp(4100)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    assert!(n.quiet(BROWSER), "a busy agent is offered a queue call");
    // The call ends: the agent is free again and the waiting call rings it.
    let out =
        n.b.calls(n.now)
            .into_iter()
            .find(|c| c.callee == "service")
            .unwrap()
            .id;
    assert!(n.b.hangup(n.now, &out));
    n.pump();
    let (b1, _) = n.expect_request(SERVICE, Method::Bye);
    n.send(SERVICE, &answer(&b1, 200, "x", None, SERVICE));
    let (b2, _) = n.expect_request(BROWSER, Method::Bye);
    send_ws(&mut n, &answer(&b2, 200, "out", None, BROWSER));
    let (inv, _) = n.expect_request(BROWSER, Method::Invite);
    assert!(String::from_utf8_lossy(&inv.body).contains("UDP/TLS/RTP/SAVPF"));
    // From a source that is no trunk, a phone naming an agent is challenged too;
    // a stranger still gets 403.
    let phone = "192.0.2.50:5060";
    let udp = |from: &str| {
        format!(
            "INVITE sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-u{from}\r\n\
From: <sip:{from}@127.0.0.1>;tag=u\r\nTo: <sip:service@127.0.0.1>\r\nCall-ID: u-{from}\r\nCSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\nContact: <sip:{from}@{phone}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    n.send(phone, &udp("1001"));
    n.expect_response(phone, 407);
    n.send(phone, &udp("stranger"));
    n.expect_response(phone, 403);
}

#[test]
fn a_browser_agent_hands_a_consulted_call_to_a_plain_phone_and_the_b_port_turns_plain() {
    let mut n = Net::new(CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    browser_takes_a_call(&mut n, "wr-consult");
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    n.expect_response(CALLER, 200);
    let call = n.b.calls(n.now)[0].id.clone();
    let by_agent = Some("1001".to_string());
    let cmd = CallCommand::Consult {
        call: call.clone(),
        to: "service".into(),
        by_agent: by_agent.clone(),
    };
    assert_eq!(n.b.handle_command(n.now, cmd), Ok(Reply::Done));
    n.pump();
    let (to_service, _) = n.expect_request(SERVICE, Method::Invite);
    n.send(
        SERVICE,
        &answer(&to_service, 200, "svc", Some(&sdp(6000)), SERVICE),
    );
    n.expect_request(SERVICE, Method::Ack);
    n.outputs.clear();
    let cmd = CallCommand::ConsultComplete { call, by_agent };
    assert_eq!(n.b.handle_command(n.now, cmd), Ok(Reply::Done));
    n.pump();
    let (reinvite, _) = n.expect_request(SERVICE, Method::Invite);
    let offer = String::from_utf8_lossy(&reinvite.body).into_owned();
    assert!(
        offer.contains("RTP/AVP") && !offer.contains("SAVPF"),
        "{offer}"
    );
    n.send(
        SERVICE,
        &answer(&reinvite, 200, "svc", Some(&sdp(6002)), SERVICE),
    );
    n.expect_request(SERVICE, Method::Ack);
    n.expect_request(BROWSER, Method::Bye);
    // Without this the media kept ICE/DTLS-SRTP on the B port: the plain
    // phone's RTP was dropped and what went to it was SRTP.
    assert_eq!(
        webrtc_commands(&n.outputs),
        vec![Command::WebRtc {
            side: Side::B,
            local: None
        }]
    );
    let calls = n.b.calls(n.now);
    assert_eq!(calls[0].transfers[0].outcome, "completed");
}
