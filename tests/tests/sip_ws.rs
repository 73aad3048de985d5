//! SIP over WebSocket (RFC 7118) through the real edge at `/ws/sip`: a browser
//! phone (a tungstenite client speaking SIP as JsSIP does: `.invalid` Via host and
//! contact, `transport=ws`, `+sip.instance`) REGISTERs with digest auth, takes a
//! queue call on its socket (Request-URI = its registered contact), ACK and BYE
//! come the same way; closing the socket drops its binding at once. Bad input: no
//! `sip` subprotocol (400, counted), a frame that is not SIP (the socket stays,
//! the next request is answered), a message over the size limit (socket closed).
//! And JsSIP itself (npm, in Node over `ws`): registers, receives a queue call's
//! INVITE at its contact and turns it down, un-registers when stopped.

use edge_tests::sipmsg::{self, header, status};
use edge_tests::ua::Uac;
use edge_tests::ws::read_timed_out;
use edge_tests::ws::tungstenite as tg;
use edge_tests::{wait_until, Edge};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tg::client::IntoClientRequest;
use tg::stream::MaybeTlsStream;
use tg::{Message, WebSocket};

const EXTRA: &str = edge_tests::WEB_AGENT;

const CONTACT: &str = "<sip:k3l2m9@df7jal23ls0d.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:0f2d9a2e-6a38-4f7e-9d55-5b3c2a1d4e6f>\"";

/// A browser's SIP socket.
struct WsPhone {
    s: WebSocket<MaybeTlsStream<TcpStream>>,
}

/// Open `/ws/sip`, offering `protocol` (None: no subprotocol); the handshake's
/// error when refused.
fn open(http: SocketAddr, protocol: Option<&str>) -> Result<WsPhone, tg::Error> {
    let mut req = format!("ws://{http}/ws/sip").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (s, resp) = tg::connect(req)?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("sip"),
        "the edge selects the sip subprotocol"
    );
    if let MaybeTlsStream::Plain(t) = s.get_ref() {
        t.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    Ok(WsPhone { s })
}

impl WsPhone {
    fn send(&mut self, msg: &str) {
        self.s.send(Message::Text(msg.into())).unwrap();
    }

    /// The next SIP message within `secs`; None on timeout; panics when closed.
    fn recv(&mut self, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            match self.s.read() {
                Ok(Message::Text(t)) => return Some(t.to_string()),
                Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).into_owned()),
                Ok(Message::Close(f)) => panic!("the edge closed the SIP WebSocket: {f:?}"),
                Ok(_) => {}
                Err(e) if read_timed_out(&e) => {}
                Err(e) => panic!("SIP WebSocket failed: {e}"),
            }
        }
        None
    }

    fn expect(&mut self, what: &str) -> String {
        self.recv(15)
            .unwrap_or_else(|| panic!("no {what} on the SIP WebSocket"))
    }

    /// The close code the edge sends within `secs` (1006: dropped without one).
    fn closed(&mut self, secs: u64) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            match self.s.read() {
                Ok(Message::Close(f)) => return Some(f.map(|f| u16::from(f.code)).unwrap_or(1005)),
                Ok(_) => {}
                Err(e) if read_timed_out(&e) => {}
                Err(_) => return Some(1006),
            }
        }
        None
    }

    fn register(&mut self, edge_http: SocketAddr, cseq: u32, auth: Option<&str>) -> String {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        self.send(&format!(
            "REGISTER sip:{edge_http} SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-ws-{cseq}\r\n\
Max-Forwards: 69\r\nTo: <sip:5001@{edge_http}>\r\nFrom: <sip:5001@{edge_http}>;tag=js1\r\nCall-ID: ws-reg-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: {CONTACT};expires=600\r\nExpires: 600\r\n{auth}Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
Supported: path,gruu,outbound\r\nUser-Agent: JsSIP-like test\r\nContent-Length: 0\r\n\r\n"
        ));
        self.expect("REGISTER response")
    }

    /// REGISTER, 401, REGISTER with credentials, 200.
    fn sign_in(&mut self, edge_http: SocketAddr) {
        let r = self.register(edge_http, 1, None);
        assert_eq!(status(&r), 401, "{r}");
        assert!(
            header(&r, "Via").starts_with("SIP/2.0/WS df7jal23ls0d.invalid"),
            "{r}"
        );
        let auth = sipmsg::register_authorization(
            &r,
            "5001",
            "wendy-sip-secret",
            &format!("sip:{edge_http}"),
        );
        let r = self.register(edge_http, 2, Some(&auth));
        assert_eq!(status(&r), 200, "{r}");
        assert!(
            header(&r, "Contact").contains("k3l2m9@df7jal23ls0d.invalid"),
            "the 200 lists the phone's own contact (JsSIP ignores one that does not): {r}"
        );
    }
}

#[test]
fn a_browser_phone_registers_over_websocket_and_takes_a_queue_call_on_its_socket() {
    let edge = Edge::start_with(EXTRA);
    let mut phone = open(edge.http, Some("sip")).expect("the sip subprotocol is accepted");
    phone.sign_in(edge.http);
    let regs = edge.registrations();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["transport"], "WS", "{regs:?}");
    assert_eq!(edge.metric("edge_sip_ws_connections"), 1.0);

    let caller = Uac::call_in_background(edge.sip, "5000");
    let invite = phone.expect("INVITE");
    assert!(
        // (URI parameter values compare case-insensitively, RFC 3261 §19.1.4.)
        invite
            .to_ascii_lowercase()
            .starts_with("invite sip:k3l2m9@df7jal23ls0d.invalid;transport=ws sip/2.0"),
        "requests go to the registered contact (JsSIP refuses others): {invite}"
    );
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/WS "),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact").contains("transport=ws"),
        "{invite}"
    );
    let contact = "<sip:k3l2m9@df7jal23ls0d.invalid;transport=ws>";
    phone.send(&sipmsg::answer(&invite, 180, contact, ""));
    phone.send(&sipmsg::answer(
        &invite,
        200,
        contact,
        &sipmsg::pcmu_sdp(40100),
    ));
    let ack = phone.expect("ACK");
    assert!(ack.starts_with("ACK "), "{ack}");
    let (mut cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);

    let bye_thread = std::thread::spawn(move || cust.bye());
    let bye = loop {
        let m = phone.expect("BYE");
        if m.starts_with("BYE ") {
            break m;
        }
    };
    phone.send(&sipmsg::answer(&bye, 200, contact, ""));
    assert_eq!(bye_thread.join().unwrap(), 200);
    edge.wait_idle(10);

    // The tab closes: its binding goes at once (nothing can reach it any more).
    drop(phone);
    assert!(
        wait_until(5, || edge.registrations().is_empty()),
        "{:?}",
        edge.registrations()
    );
    assert!(wait_until(5, || edge.metric("edge_sip_ws_connections") == 0.0));
    let agents = edge_tests::http::get(edge.http, "/api/v1/agents", Some(edge_tests::ADMIN_TOKEN))
        .unwrap()
        .json();
    let wendy = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "5001")
        .unwrap();
    assert_eq!(wendy["state"], "logged_out", "{agents}");
    assert_eq!(wendy["reason"], "no_phone", "{agents}");
}

#[test]
fn a_websocket_without_the_sip_subprotocol_is_refused() {
    let edge = Edge::start_with(EXTRA);
    match open(edge.http, None) {
        Err(tg::Error::Http(r)) => assert_eq!(r.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e}"),
        Ok(_) => panic!("the upgrade must be refused"),
    }
    assert!(open(edge.http, Some("chat")).is_err());
    assert_eq!(edge.metric("edge_sip_ws_refused_total"), 2.0);
}

#[test]
fn garbage_on_the_socket_loses_nothing_and_an_oversized_message_closes_it() {
    let edge = Edge::start_with(EXTRA);
    let mut phone = open(edge.http, Some("sip")).unwrap();
    phone.send("hello, this is not SIP");
    phone.send("\u{1}\u{2}\u{3}");
    // The socket is still a SIP flow: an OPTIONS keep-alive is answered on it.
    phone.send(&format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK-opt1\r\nMax-Forwards: 70\r\n\
To: <sip:{0}>\r\nFrom: <sip:5001@{0}>;tag=o1\r\nCall-ID: ws-opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        edge.http
    ));
    let r = loop {
        let m = phone.expect("OPTIONS response");
        if header(&m, "Call-ID") == "ws-opt-1" {
            break m;
        }
    };
    assert_eq!(status(&r), 200, "{r}");
    phone.sign_in(edge.http);

    // 70 KiB in one message: over the limit, the socket is closed (1009).
    let big = format!(
        "MESSAGE sip:{} SIP/2.0\r\nContent-Length: 71680\r\n\r\n{}",
        edge.http,
        "x".repeat(71_680)
    );
    let _ = phone.s.send(Message::Text(big.into()));
    let code = phone.closed(10);
    assert!(matches!(code, Some(1009 | 1006)), "{code:?}");
    assert!(wait_until(5, || edge.registrations().is_empty()));
    assert!(
        edge.logged(5, "SIP WebSocket closed"),
        "{}",
        edge.log_text()
    );
}

/// JsSIP itself (npm, run in Node with `ws` as its WebSocket: Node has no WebRTC,
/// so it turns calls down): it registers over /ws/sip with digest, gets a queue
/// call's INVITE at its registered contact, answers 486, and un-registers when
/// stopped.
#[test]
fn jssip_registers_over_websocket_receives_a_queue_call_and_unregisters() {
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../tests/browser");
    if !edge_tests::have_tool("node") {
        return;
    }
    if !dir.join("node_modules/jssip").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "jssip is required under CI (npm ci in tests/browser: see .ci/run)"
        );
        eprintln!("SKIP: run `npm ci` in tests/browser");
        return;
    }
    let edge = Edge::start_logged(
        "",
        &EXTRA.replace("max_wait = \"20s\"", "max_wait = \"3s\""),
        "info,edge::ws=debug",
    );
    let mut node = std::process::Command::new("node")
        .arg(dir.join("jssip-phone.mjs"))
        .args([
            &format!("ws://{}/ws/sip", edge.http),
            "5001",
            "wendy-sip-secret",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node runs");
    let (tx, events) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let next = |what: &str| {
        events
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| {
                panic!(
                    "JsSIP did not report {what}; edge log:\n{}",
                    edge.log_text()
                )
            })
    };
    let e = next("registered");
    assert_eq!(e["event"], "registered", "{e}");
    let regs = edge.registrations();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["transport"], "WS");
    assert_eq!(regs[0]["user_agent"], "JsSIP (edge interop test)");

    let mut caller = Uac::new(edge.sip);
    let call = std::thread::spawn(move || caller.call("5000"));
    let e = next("an INVITE");
    assert_eq!(e["event"], "invite", "{e}");
    assert!(
        e["ruri"].as_str().unwrap().contains(".invalid"),
        "the INVITE went to JsSIP's registered contact: {e}"
    );
    assert!(e["sdp"].as_str().unwrap().contains("m=audio"), "{e}");
    // terminate() fires the session's `failed` before it returns.
    let (a, b) = (next("the session's end"), next("the rejection"));
    assert_eq!(
        (a["event"].as_str(), b["event"].as_str()),
        (Some("failed"), Some("rejected")),
        "{a} {b}"
    );
    let code = call.join().unwrap();
    assert!(code >= 400, "no agent took it: {code}");

    // Stopping JsSIP un-registers (REGISTER Expires: 0 over the socket).
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    assert!(
        wait_until(10, || edge.registrations().is_empty()),
        "{:?}",
        edge.registrations()
    );
    let _ = node.wait();
}

/// What a browser answers (ICE credentials, a fingerprint, `setup:active`) — from a
/// phone that then never runs ICE or DTLS.
fn webrtc_answer(port: u16) -> String {
    format!(
        "v=0\r\no=- 5 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio {port} UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 127.0.0.1\r\na=ice-ufrag:Qx9z\r\n\
a=ice-pwd:silentbrowserpassword123\r\na=fingerprint:sha-256 01:02:03:04\r\na=setup:active\r\n\
a=mid:0\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

#[test]
fn a_browser_that_never_completes_ice_and_dtls_ends_its_call_and_returns_the_ports() {
    let edge = Edge::start_tables("", "webrtc_timeout = \"2s\"", "", EXTRA);
    let mut phone = open(edge.http, Some("sip")).expect("the sip subprotocol is accepted");
    phone.sign_in(edge.http);
    let caller = Uac::call_in_background(edge.sip, "5000");
    let invite = phone.expect("INVITE");
    // The edge offers a browser WebRTC: ICE-lite, its fingerprint, actpass.
    for want in [
        "UDP/TLS/RTP/SAVPF",
        "a=ice-lite",
        "a=fingerprint:sha-256 ",
        "a=setup:actpass",
    ] {
        assert!(invite.contains(want), "{want} not in {invite}");
    }
    let contact = "<sip:k3l2m9@df7jal23ls0d.invalid;transport=ws>";
    phone.send(&sipmsg::answer(
        &invite,
        200,
        contact,
        &webrtc_answer(40200),
    ));
    phone.expect("ACK");
    let (mut cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        edge.metric("edge_rtp_ports_in_use"),
        2.0,
        "two RTP/RTCP pairs"
    );
    // No check, no DTLS: after webrtc_timeout the leg fails and the call ends on
    // both sides, its ports back in the pool.
    let bye = loop {
        let m = phone.expect("BYE");
        if m.starts_with("BYE ") {
            break m;
        }
    };
    phone.send(&sipmsg::answer(&bye, 200, contact, ""));
    assert!(
        cust.answer_bye(10),
        "the customer gets no BYE\n{}",
        edge.log_text()
    );
    edge.wait_idle(10);
    assert_eq!(edge.metric("edge_rtp_ports_in_use"), 0.0);
    assert_eq!(edge.metric("edge_webrtc_legs_failed_total"), 1.0);
    assert_eq!(edge.metric("edge_webrtc_legs_connected_total"), 0.0);
    assert!(edge.logged(5, "WebRTC media failed"));
}
