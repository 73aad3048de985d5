//! The node hop (cluster mode), with the virtual wire: node A (127.0.0.9:5060)
//! calls a phone registered straight to this node (B) through B.

use super::registrar_tests::{sign_in, values, PHONE, REG_CONFIG};
use super::*;

const NODE_A: &str = "127.0.0.9:5060";
const ME: &str = "127.0.0.1:5060";

fn cluster(n: &mut Net, with_a: bool) {
    let mut nodes = vec![("edge-b".to_string(), ME.parse().unwrap())];
    if with_a {
        nodes.push(("edge-a".to_string(), NODE_A.parse().unwrap()));
    }
    n.b.set_cluster_nodes(n.now, ME.parse().unwrap(), nodes);
    n.pump();
}

/// Node B, in a cluster with A, with the phone registered straight to it.
fn node_b_with_phone() -> Net {
    let mut n = Net::new(REG_CONFIG);
    let contact = format!("Contact: <sip:1001@{PHONE}>\r\n");
    let ok = sign_in(&mut n, "1001", "alice-sip-secret", PHONE, "r1", &contact);
    assert_eq!(ok.status_code.code(), 200);
    cluster(&mut n, true);
    n
}

/// The hop Path B shares for the phone's binding.
fn shared_path(n: &Net) -> String {
    let wall = n.b.wall(n.now);
    let b = n.b.registrar.live("1001", wall)[0].clone();
    crate::hop_path(ME.parse().unwrap(), "1001", b.flow)
}

/// An INVITE as node A sends it: Route = the shared Path.
fn invite_from_a(route: &str, branch: &str) -> String {
    format!(
        "INVITE sip:1001@{PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP {NODE_A};branch={branch}\r\nRoute: {route}\r\n\
Max-Forwards: 69\r\nFrom: <sip:caller@127.0.0.9>;tag=a1\r\nTo: <sip:1001@{PHONE}>\r\nCall-ID: hop-1@edge\r\n\
CSeq: 1 INVITE\r\nContact: <sip:edge@{NODE_A}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn text(m: &SipMessage) -> String {
    m.to_string()
}

#[test]
fn a_node_reaches_a_phone_on_this_node_through_the_hop_and_back() {
    let mut n = node_b_with_phone();
    let path = shared_path(&n);
    assert!(
        path.starts_with(&format!("<sip:{ME};lr;edge-hop=")),
        "{path}"
    );

    // A → B → phone: our Route taken off, Max-Forwards lowered, B record-routes
    // the dialog through itself and puts its Via on top.
    n.send(NODE_A, &invite_from_a(&path, "z9hG4bK-a-1"));
    let (inv, _) = n.wire.recv(PHONE);
    let inv = text(&inv);
    assert!(values(&inv, "Route").is_empty(), "{inv}");
    assert_eq!(values(&inv, "Max-Forwards"), ["68"]);
    let rr = values(&inv, "Record-Route");
    assert_eq!(rr.len(), 1, "{inv}");
    assert!(
        rr[0].starts_with(&format!("<sip:{ME};lr;edge-hop=")),
        "{inv}"
    );
    let vias = values(&inv, "Via");
    assert!(
        vias[0].contains("edge-back=udp~127.0.0.1:5060~127.0.0.9:5060"),
        "{inv}"
    );
    assert!(vias[1].contains("z9hG4bK-a-1"), "{inv}");
    assert_eq!(n.b.active_calls(), 0, "stateless: no call on B");
    // A retransmission goes the same way with the same branch.
    n.send(NODE_A, &invite_from_a(&path, "z9hG4bK-a-1"));
    let (again, _) = n.wire.recv(PHONE);
    assert_eq!(values(&text(&again), "Via")[0], vias[0]);

    // The phone answers: the 200 goes back to A without B's Via.
    let SipMessage::Request(inv_req) = message::parse(inv.as_bytes()).unwrap().0 else {
        unreachable!()
    };
    n.send(PHONE, &answer(&inv_req, 200, "ph", Some(&sdp(6000)), PHONE));
    let (ok, _) = n.wire.recv(NODE_A);
    let ok = text(&ok);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let vias = values(&ok, "Via");
    assert_eq!(vias.len(), 1, "{ok}");
    assert!(vias[0].contains("z9hG4bK-a-1"), "{ok}");
    assert_eq!(
        values(&ok, "Record-Route"),
        rr,
        "A learns the route through B"
    );

    // The phone hangs up: its BYE follows the Record-Route to B and goes on to
    // A's contact.
    let bye = format!(
        "BYE sip:edge@{NODE_A} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-p-bye;rport\r\nRoute: {}\r\n\
Max-Forwards: 70\r\nFrom: <sip:1001@{PHONE}>;tag=ph\r\nTo: <sip:caller@127.0.0.9>;tag=a1\r\nCall-ID: hop-1@edge\r\n\
CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        rr[0]
    );
    n.send(PHONE, &bye);
    let (fwd, _) = n.wire.recv(NODE_A);
    let fwd = text(&fwd);
    assert!(fwd.starts_with(&format!("BYE sip:edge@{NODE_A}")), "{fwd}");
    assert!(values(&fwd, "Route").is_empty(), "{fwd}");
    assert!(
        values(&fwd, "Via")[0].contains(&format!("edge-back=udp~127.0.0.1:5060~{PHONE}")),
        "{fwd}"
    );
    // A's 200 to the BYE comes back to the phone.
    let SipMessage::Request(bye_req) = message::parse(fwd.as_bytes()).unwrap().0 else {
        unreachable!()
    };
    n.send(NODE_A, &answer(&bye_req, 200, "a1", None, NODE_A));
    let (r, _) = n.wire.recv(PHONE);
    assert!(text(&r).starts_with("SIP/2.0 200"));
    assert_eq!(n.b.stats.hop_relayed, 5, "INVITE twice, 200, BYE, 200");
    assert_eq!(n.b.stats.hop_refused, 0);
}

#[test]
fn the_hop_refuses_strangers_forged_vias_unknown_bindings_and_dead_nodes() {
    let mut n = node_b_with_phone();
    let path = shared_path(&n);
    // Not a cluster node: 403, nothing reaches the phone.
    const STRANGER: &str = "192.0.2.66:5060";
    n.send(
        STRANGER,
        &invite_from_a(&path, "z9hG4bK-s-1").replace(NODE_A, STRANGER),
    );
    n.expect_response(STRANGER, 403);
    assert!(n.quiet(PHONE));
    // A token naming no live binding: 480.
    let stale = path.replace(&format!("edge-hop={}", "31303031"), "edge-hop=39393939");
    assert_ne!(stale, path);
    n.send(NODE_A, &invite_from_a(&stale, "z9hG4bK-a-2"));
    n.expect_response(NODE_A, 480);
    // Max-Forwards 0: 483.
    n.send(
        NODE_A,
        &invite_from_a(&path, "z9hG4bK-a-3").replace("Max-Forwards: 69", "Max-Forwards: 0"),
    );
    n.expect_response(NODE_A, 483);
    // A response with a hop Via this node did not write is dropped (no reflection).
    let forged = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {ME};branch=z9hG4bK-hop-000000000000000000000000;edge-back=udp~127.0.0.1:5060~192.0.2.77:5060\r\n\
Via: SIP/2.0/UDP {NODE_A};branch=z9hG4bK-a-9\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: f@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    n.send(PHONE, &forged);
    assert!(n.quiet("192.0.2.77:5060") && n.quiet(NODE_A));
    assert_eq!(n.b.stats.hop_refused, 4);
    // Outside cluster mode nothing is relayed: a hop Route is an ordinary one.
    assert_eq!(n.b.stats.hop_relayed, 0);
}

#[test]
fn a_binding_another_node_shares_through_its_hop_is_called_only_while_that_node_lives() {
    let mut n = Net::new(REG_CONFIG);
    cluster(&mut n, true);
    let wall = n.b.wall(n.now);
    let flow_on_a = sip::testing::flow(NODE_A, "192.0.2.50:5062");
    let b = Binding {
        agent: "1001".into(),
        contact: "sip:1001@192.0.2.50:5062".into(),
        flow: flow_on_a,
        expires: wall + Duration::from_secs(300),
        call_id: "on-a".into(),
        cseq: 1,
        user_agent: None,
        path: vec![crate::hop_path(NODE_A.parse().unwrap(), "1001", flow_on_a)],
    };
    n.b.remote_bindings(n.now, "edge-a".into(), "1001".into(), vec![b.clone()]);
    assert!(n.b.agent_reachable(n.now, "1001"));
    // Node A dies: its flows die with it.
    cluster(&mut n, false);
    assert!(!n.b.agent_reachable(n.now, "1001"));
    n.send(CALLER, &invite("1000", "q1", &sdp(4000)));
    n.expect_response(CALLER, 100);
    n.expect_response(CALLER, 180);
    assert!(n.quiet(NODE_A));
    // Back: the waiting call goes to the phone through A.
    cluster(&mut n, true);
    let (inv, _) = n.expect_request(NODE_A, Method::Invite);
    assert_eq!(values(&inv.to_string(), "Route"), b.path);
    assert_eq!(inv.uri.to_string(), "sip:1001@192.0.2.50:5062");
}

/// A browser's binding on its own WebSocket to this node (B).
fn browser_binding(n: &Net) -> Binding {
    let ws = sip::Flow {
        transport: control::Transport::Ws,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: BROWSER.parse().unwrap(),
    };
    Binding {
        agent: "1001".into(),
        contact: "sip:r4nd0m@r4nd0m.invalid;transport=ws".into(),
        flow: ws,
        expires: n.b.wall(n.now) + Duration::from_secs(300),
        call_id: "ws-reg".into(),
        cseq: 1,
        user_agent: Some("JsSIP".into()),
        path: Vec::new(),
    }
}

const BROWSER: &str = "127.0.0.1:40777";

#[test]
fn a_browser_on_this_node_is_reached_through_the_hop_and_its_requests_go_back() {
    let mut n = Net::new(REG_CONFIG);
    cluster(&mut n, true);
    let b = browser_binding(&n);
    n.b.registrar
        .bindings
        .insert("1001".into(), vec![b.clone()]);
    let path = crate::hop_path(ME.parse().unwrap(), "1001", b.flow);
    n.send(NODE_A, &invite_from_a(&path, "z9hG4bK-a-ws"));
    // Down the WebSocket; the dialog is record-routed by this node's SIP address
    // (what A reaches and what `is_me` knows), with no `transport=ws`.
    let (inv, _) = n.wire.recv(BROWSER);
    let inv = text(&inv);
    let rr = values(&inv, "Record-Route");
    assert_eq!(rr.len(), 1, "{inv}");
    assert!(
        rr[0].starts_with(&format!("<sip:{ME};lr;edge-hop=")),
        "{inv}"
    );
    assert!(!rr[0].contains("transport"), "{inv}");
    assert!(values(&inv, "Via")[0].starts_with("SIP/2.0/WS "), "{inv}");
    // The browser hangs up: its BYE (on its WebSocket, Route = that value) goes
    // on to A's contact.
    let bye = format!(
        "BYE sip:edge@{NODE_A} SIP/2.0\r\nVia: SIP/2.0/WS r4nd0m.invalid;branch=z9hG4bK-ws-bye\r\nRoute: {}\r\n\
Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=js\r\nTo: <sip:caller@127.0.0.9>;tag=a1\r\nCall-ID: hop-1@edge\r\n\
CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        rr[0]
    );
    n.b.handle_datagram(n.now, b.flow, bye.as_bytes());
    n.pump();
    let (fwd, _) = n.wire.recv(NODE_A);
    assert!(text(&fwd).starts_with(&format!("BYE sip:edge@{NODE_A}")));
    assert_eq!(n.b.stats.hop_refused, 0);
}

#[test]
fn a_browser_another_node_shares_is_offered_webrtc_through_that_nodes_hop() {
    let mut n = Net::new(REG_CONFIG);
    n.b.set_webrtc_fingerprint("AA:BB:CC".into());
    cluster(&mut n, true);
    // Node A's browser binding, as A shares it.
    let mut b = browser_binding(&n);
    b.flow.local = "127.0.0.9:8080".parse().unwrap();
    b.path = vec![crate::hop_path(NODE_A.parse().unwrap(), "1001", b.flow)];
    n.b.remote_bindings(n.now, "edge-a".into(), "1001".into(), vec![b.clone()]);
    assert!(n.b.agent_reachable(n.now, "1001"));
    n.send(CALLER, &invite("1000", "wq1", &sdp(4000)));
    // To A over UDP (not a WebSocket of ours), through its hop, with WebRTC
    // media of this node's own.
    let (inv, _) = n.expect_request(NODE_A, Method::Invite);
    assert_eq!(values(&inv.to_string(), "Route"), b.path);
    assert!(inv.uri.to_string().eq_ignore_ascii_case(&b.contact));
    assert!(values(&inv.to_string(), "Via")[0].starts_with("SIP/2.0/UDP "));
    let offer = String::from_utf8_lossy(&inv.body).into_owned();
    for want in [
        "UDP/TLS/RTP/SAVPF",
        "a=ice-lite",
        "a=fingerprint:sha-256 AA:BB:CC",
    ] {
        assert!(offer.contains(want), "{want} not in {offer}");
    }
}
