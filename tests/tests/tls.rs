//! SIP over TLS through the real edge (`tls:` listen entry, `[tls]` with a
//! certificate made at test time): a phone on a rustls client connection REGISTERs
//! with digest auth, a customer's UDP call to the queue reaches the phone over that
//! same TLS connection (Via `SIP/2.0/TLS`, Contact `;transport=tls`), answer and
//! BYE; baresip (a phone nobody here wrote) registers over TLS, trusting the test
//! certificate, and answers a queue call with audio both ways; a certificate file
//! that does not load stops the edge with an error naming it. Outbound: a call
//! routed to a `sips:` trunk goes out over a TLS connection the edge opens, the
//! trunk's certificate checked against `[tls] ca`; a trunk whose certificate is
//! not trusted gets no INVITE and the caller a clear failure.

use edge_tests::baresip::Baresip;
use edge_tests::sipmsg::{self, header, status};
use edge_tests::ua::Uac;
use edge_tests::{
    free_port, have_tool, http, run_with_timeout, tempdir, wait_until, Edge, ADMIN_TOKEN,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const EXTRA: &str = r#"
[tls]
cert = "{dir}/edge.pem"
key = "{dir}/edge-key.pem"

[[queues]]
name = "secure"
numbers = ["5000"]
agents = ["5001"]
max_wait = "20s"

[[agents]]
id = "5001"
name = "Tess"
password = "tess-sip-secret"
"#;

/// A certificate for 127.0.0.1 written into `dir`; returns it (DER) for the client.
fn certificate(dir: &tempdir::Dir) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("edge.pem"), c.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("edge-key.pem"),
        c.signing_key.serialize_pem(),
    )
    .unwrap();
    c.cert.der().clone()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;
type TlsServer = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// A SIP peer on one TLS connection (a phone that connected, or a trunk the edge
/// connected to): writes messages, reads them framed by Content-Length.
struct Phone<S = Tls> {
    r: BufReader<S>,
    local: SocketAddr,
}

/// A certificate for 127.0.0.1 that only the trunk holds: (PEM, server config).
fn trunk_identity() -> (String, Arc<rustls::ServerConfig>) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(c.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.cert.der().clone()], key)
        .unwrap();
    (c.cert.pem(), Arc::new(config))
}

/// The connection the edge opens to the trunk listening on `l` (within 15 s).
fn accept_trunk(l: &TcpListener, config: Arc<rustls::ServerConfig>) -> Phone<TlsServer> {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let tcp = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the edge did not connect"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let local = tcp.local_addr().unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    Phone {
        r: BufReader::new(rustls::StreamOwned::new(conn, tcp)),
        local,
    }
}

/// EXTRA with `[tls] ca` trusting `ca_pem` and a route `9*` to a `sips:` trunk.
fn trunk_extra(dir: &tempdir::Dir, ca_pem: &str, trunk: SocketAddr) -> String {
    std::fs::write(dir.path().join("trunk-ca.pem"), ca_pem).unwrap();
    let extra = EXTRA.replacen(
        "key = \"{dir}/edge-key.pem\"\n",
        "key = \"{dir}/edge-key.pem\"\nca = \"{dir}/trunk-ca.pem\"\n",
        1,
    );
    format!("{extra}\n[[routes]]\nnumber = \"9*\"\ntarget = \"sips:{trunk}\"\n")
}

/// A TLS connection to `edge` trusting `ca` only (15 s read timeout).
fn tls_to(edge: SocketAddr, ca: CertificateDer<'static>) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(edge).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

impl Phone {
    fn connect(edge: SocketAddr, ca: CertificateDer<'static>) -> Phone {
        let s = tls_to(edge, ca);
        let local = s.sock.local_addr().unwrap();
        Phone {
            r: BufReader::new(s),
            local,
        }
    }
}

impl<S: Read + Write> Phone<S> {
    fn send(&mut self, msg: &str) {
        let s = self.r.get_mut();
        s.write_all(msg.as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// The next SIP message (keep-alive CRLFs skipped).
    fn recv(&mut self) -> String {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .r
                .read_line(&mut line)
                .expect("a message from the edge");
            assert!(n > 0, "the edge closed the TLS connection");
            if line == "\r\n" && head.is_empty() {
                continue;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let len: usize = header(&head, "Content-Length").parse().unwrap_or(0);
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        head + &String::from_utf8(body).unwrap()
    }
}

/// The Contact a TLS phone or trunk answers with.
fn tls_contact(local: SocketAddr) -> String {
    format!("<sip:5001@{local};transport=tls>")
}

fn register(p: &mut Phone<Tls>, edge: SocketAddr, cseq: u32, auth: Option<String>) -> String {
    let local = p.local;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    p.send(&format!(
        "REGISTER sips:{edge} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-reg-{cseq};rport\r\n\
From: <sips:5001@{edge}>;tag=ph1\r\nTo: <sips:5001@{edge}>\r\nCall-ID: tls-reg-1\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sips:5001@{local}>\r\nExpires: 300\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
    ));
    p.recv()
}

#[test]
fn a_phone_registers_over_tls_and_takes_a_queue_call_on_that_connection() {
    let dir = tempdir::Dir::new("tls");
    let ca = certificate(&dir);
    let tls_port = free_port();
    let edge = Edge::start_in(dir, &format!("\"tls:127.0.0.1:{tls_port}\""), EXTRA);
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut phone = Phone::connect(tls_addr, ca);

    // Digest over TLS with a sips: address of record: 401, then the credentials.
    let r = register(&mut phone, tls_addr, 1, None);
    assert_eq!(status(&r), 401, "{r}");
    assert!(header(&r, "Via").starts_with("SIP/2.0/TLS"), "{r}");
    let uri = format!("sips:{tls_addr}");
    let auth = sipmsg::register_authorization(&r, "5001", "tess-sip-secret", &uri);
    let r = register(&mut phone, tls_addr, 2, Some(auth));
    assert_eq!(status(&r), 200, "{r}");
    let regs = http::get(edge.http, "/api/v1/registrations", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    let b = &regs["registrations"][0];
    assert_eq!(b["agent"], "5001", "{regs}");
    assert_eq!(b["transport"], "TLS", "{regs}");

    // A customer over UDP calls the queue: the INVITE comes down the phone's TLS
    // connection, not a new one.
    let sip = edge.sip;
    let caller = std::thread::spawn(move || {
        let mut c = Uac::new(sip);
        let code = c.call("5000");
        (c, code)
    });
    let invite = phone.recv();
    assert!(
        invite.starts_with("INVITE sips:5001@"),
        "the binding's sips: contact: {invite}"
    );
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/TLS"),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact").contains("transport=tls"),
        "{invite}"
    );
    let sdp = &sipmsg::pcmu_sdp(40000);
    phone.send(&sipmsg::answer(&invite, 180, &tls_contact(phone.local), ""));
    phone.send(&sipmsg::answer(
        &invite,
        200,
        &tls_contact(phone.local),
        sdp,
    ));
    let ack = phone.recv();
    assert!(ack.starts_with("ACK "), "{ack}");
    let (mut cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);

    // The customer hangs up: the BYE reaches the phone over TLS too.
    let bye_thread = std::thread::spawn(move || cust.bye());
    let bye = phone.recv();
    assert!(bye.starts_with("BYE "), "{bye}");
    phone.send(&sipmsg::answer(&bye, 200, &tls_contact(phone.local), ""));
    assert_eq!(bye_thread.join().unwrap(), 200);
    edge.wait_idle(10);
}

#[test]
fn a_call_to_a_sips_trunk_goes_out_over_tls_checked_against_the_configured_ca() {
    let dir = tempdir::Dir::new("tls-out");
    certificate(&dir);
    let (trunk_pem, trunk_config) = trunk_identity();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let trunk_addr = listener.local_addr().unwrap();
    let extra = trunk_extra(&dir, &trunk_pem, trunk_addr);
    let tls_port = free_port();
    let edge = Edge::start_in(dir, &format!("\"tls:127.0.0.1:{tls_port}\""), &extra);

    let sip = edge.sip;
    let caller = std::thread::spawn(move || {
        let mut c = Uac::new(sip);
        let code = c.call("9123");
        (c, code)
    });
    let mut trunk = accept_trunk(&listener, trunk_config);
    let invite = trunk.recv();
    assert!(
        invite.starts_with(&format!("INVITE sips:{trunk_addr} SIP/2.0")),
        "{invite}"
    );
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/TLS 127.0.0.1:"),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact").contains(&format!(":{tls_port};transport=tls")),
        "the trunk's requests come back to the edge's tls: address: {invite}"
    );
    let sdp = &sipmsg::pcmu_sdp(40000);
    trunk.send(&sipmsg::answer(
        &invite,
        200,
        &tls_contact(trunk.local),
        sdp,
    ));
    let ack = trunk.recv();
    assert!(ack.starts_with("ACK "), "{ack}");
    let (mut cust, code) = caller.join().unwrap();
    assert_eq!(code, 200);

    // The BYE goes down the same TLS connection (no second one is opened).
    let bye_thread = std::thread::spawn(move || cust.bye());
    let bye = trunk.recv();
    assert!(bye.starts_with("BYE "), "{bye}");
    trunk.send(&sipmsg::answer(&bye, 200, &tls_contact(trunk.local), ""));
    assert_eq!(bye_thread.join().unwrap(), 200);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "one connection for the dialog"
    );
    assert_eq!(edge.metric("edge_sip_tls_handshake_failures_total"), 0.0);
    edge.wait_idle(10);
}

#[test]
fn a_trunk_whose_certificate_is_not_trusted_gets_no_invite_and_the_caller_a_failure() {
    let dir = tempdir::Dir::new("tls-untrusted");
    certificate(&dir);
    // The edge trusts one certificate; the trunk presents another, for the right
    // address but from no trusted issuer.
    let (trusted_pem, _) = trunk_identity();
    let (_, impostor) = trunk_identity();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let trunk_addr = listener.local_addr().unwrap();
    let extra = trunk_extra(&dir, &trusted_pem, trunk_addr);
    let edge = Edge::start_in(dir, &format!("\"tls:127.0.0.1:{}\"", free_port()), &extra);

    let sip = edge.sip;
    let caller = std::thread::spawn(move || Uac::new(sip).call("9123"));
    let mut trunk = accept_trunk(&listener, impostor);
    let mut line = String::new();
    let read = trunk.r.read_line(&mut line);
    assert!(
        read.is_err() || read.is_ok_and(|n| n == 0),
        "the edge must abort the handshake, got {line:?}"
    );
    let code = caller.join().unwrap();
    assert!(code >= 500, "the caller gets a failure, got {code}");
    assert!(
        wait_until(5, || edge.metric("edge_sip_tls_handshake_failures_total")
            >= 1.0),
        "{}",
        edge.log_text()
    );
    assert!(
        edge.logged(5, "SIP TLS handshake failed"),
        "{}",
        edge.log_text()
    );
    edge.wait_idle(10);
}

#[test]
fn a_certificate_that_does_not_load_stops_the_edge_naming_the_file() {
    let dir = tempdir::Dir::new("tls-bad");
    std::fs::write(dir.path().join("edge.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("edge-key.pem"), "not a key\n").unwrap();
    let config = Edge::config(
        free_port(),
        free_port(),
        edge_tests::rtp_block(10),
        dir.path(),
        free_port(),
        [free_port(), free_port()],
        &EXTRA.replace("{dir}", &dir.path().display().to_string()),
    );
    let port = free_port();
    let config = config.replacen(
        "\"]\nagent_ring_timeout",
        &format!("\", \"tls:127.0.0.1:{port}\"]\nagent_ring_timeout"),
        1,
    );
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = std::process::Command::new(edge_tests::edge_binary());
    cmd.arg("--config").arg(&path).env("NO_COLOR", "1");
    let (code, out, err) = run_with_timeout(&mut cmd, 20);
    assert_ne!(code, 0, "the edge must not start");
    let text = format!("{out}{err}");
    assert!(
        text.contains("[tls] cert") && text.contains("edge.pem") && text.contains("no CERTIFICATE"),
        "{text}"
    );
}

#[test]
fn baresip_registers_over_tls_and_answers_a_queue_call_with_audio_both_ways() {
    if !have_tool("baresip") {
        return;
    }
    let dir = tempdir::Dir::new("tls-baresip");
    certificate(&dir);
    let ca = dir.path().join("edge.pem");
    let tls_port = free_port();
    let edge = Edge::start_in(dir, &format!("\"tls:127.0.0.1:{tls_port}\""), EXTRA);
    let phone = Baresip::spawn(
        &format!("<sip:5001@127.0.0.1:{tls_port};transport=tls>"),
        "tess-sip-secret",
        "auto",
        &format!("sip_cafile {}", ca.display()),
    );
    let regs = || edge.registrations();
    assert!(
        wait_until(10, || !regs().is_empty()),
        "baresip did not register over TLS; baresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    assert_eq!(regs()[0]["transport"], "TLS");
    let mut uac = Uac::new(edge.sip);
    assert_eq!(
        uac.call("5000"),
        200,
        "baresip log:\n{}\nedge log:\n{}",
        phone.log(),
        edge.log_text()
    );
    phone.assert_audio_both_ways(&uac);
    assert_eq!(
        uac.bye(),
        200,
        "the BYE reaches baresip over TLS and is answered"
    );
}

/// The HTTPS address the edge reports at start (`[http] tls_listen` on port 0).
fn https_addr(edge: &Edge) -> SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = edge.log_text();
        if let Some(a) = log
            .split("https=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
        {
            return a;
        }
        assert!(std::time::Instant::now() < deadline, "no https= in {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn browsers_reach_sip_over_secure_websocket_on_the_https_listener() {
    use edge_tests::ws::tungstenite as tg;
    use tg::client::IntoClientRequest;
    let dir = tempdir::Dir::new("wss");
    let ca = certificate(&dir);
    let edge = Edge::start_tables(
        "",
        "",
        "tls_listen = \"127.0.0.1:0\"",
        &EXTRA.replace("{dir}", &dir.path().display().to_string()),
    );
    let https = https_addr(&edge);
    // The API answers over HTTPS too.
    let mut s = tls_to(https, ca.clone());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let mut req = format!("wss://{https}/ws/sip")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, _) = tg::client(req, tls_to(https, ca)).expect("wss upgrade");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{https} SIP/2.0\r\nVia: SIP/2.0/WSS q1w2e3.invalid;branch=z9hG4bK-wss-{cseq}\r\n\
Max-Forwards: 69\r\nTo: <sip:5001@{https}>\r\nFrom: <sip:5001@{https}>;tag=w1\r\nCall-ID: wss-reg\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:z9@q1w2e3.invalid;transport=wss>;expires=600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut exchange = |text: String| -> String {
        ws.send(tg::Message::text(text)).unwrap();
        loop {
            match ws.read().unwrap() {
                tg::Message::Text(t) => return t.to_string(),
                tg::Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
                _ => {}
            }
        }
    };
    let r = exchange(register(1, ""));
    assert_eq!(status(&r), 401, "{r}");
    assert!(header(&r, "Via").starts_with("SIP/2.0/WSS "), "{r}");
    let auth =
        sipmsg::register_authorization(&r, "5001", "tess-sip-secret", &format!("sip:{https}"));
    let r = exchange(register(2, &format!("Authorization: {auth}\r\n")));
    assert_eq!(status(&r), 200, "{r}");
    let regs = edge.registrations();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["transport"], "WSS", "{regs:?}");
    // Plain HTTP on the HTTPS port gets no page, and its failed handshake is
    // counted (one that never finishes is dropped after [http] header_timeout).
    let mut raw = TcpStream::connect(https).unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("200"),
        "plain HTTP on the HTTPS port"
    );
    let failures = || edge.metric("edge_https_handshake_failures_total");
    assert!(wait_until(5, || failures() >= 1.0));
}
