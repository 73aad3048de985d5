//! Web chat through the real edge with real WebSocket clients on loopback: customer ↔
//! agent ↔ two silent supervisors, refresh/restore, dedup of resends, end, abandon,
//! consultation and transfer, the chat list and admin end, and protocol errors.

use chat::{ClientFrame, Offset};
use edge_tests::http;
use edge_tests::ws::Ws;
use edge_tests::{Edge, ADMIN_TOKEN, AGENT_TOKEN};
use serde_json::{json, Value};

const SAM: &str = "sam-token-1";
const KIM: &str = "kim-token-1";
const BEA: &str = "bea-token-1";

const EXTRA: &str = r#"
[[queues]]
name = "web"
channel = "chat"
agents = ["ann"]
[[queues]]
name = "quick"
channel = "chat"
agents = ["ann"]
abandon_after = "1s"
left_message = "Your customer left"
[[queues]]
name = "tier2"
channel = "chat"
agents = ["bea"]
[[users]]
name = "bea"
role = "agent"
token = "bea-token-1"
[[users]]
name = "sam"
role = "supervisor"
token = "sam-token-1"
[[users]]
name = "kim"
role = "supervisor"
token = "kim-token-1"
"#;

fn is(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == t
}

fn text_is(t: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "message" && v["text"] == t
}

/// A customer starts in `queue`; the agent gets the offer and accepts.
fn start_and_accept(edge: &Edge, agent: &mut Ws, queue: &str) -> (Ws, String, String) {
    let mut cust = Ws::connect(edge.http, "/ws/chat", None);
    cust.send(json!({"type":"start","queue":queue,"fields":{"name":"Cy","order":"A-17"}}));
    let started = cust.until("started", 5.0, is("started"));
    let chat = started["chat"].as_str().unwrap().to_string();
    let token = started["token"].as_str().unwrap().to_string();
    let offer = agent.until("offer", 5.0, is("offer"));
    assert_eq!(offer["chat"], chat.as_str());
    assert_eq!(offer["fields"]["order"], "A-17");
    agent.send(json!({"type":"accept","chat":chat}));
    agent.until("accepted", 5.0, is("accepted"));
    cust.until("join message", 5.0, text_is("ann joined the conversation"));
    (cust, chat, token)
}

#[test]
fn customer_agent_and_two_silent_supervisors_with_refresh_and_end() {
    let edge = Edge::start_with(EXTRA);
    let mut agent = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    let hello = agent.until("hello", 5.0, is("hello"));
    assert_eq!(hello["user"], "ann");
    let (mut cust, chat, token) = start_and_accept(&edge, &mut agent, "web");

    // Supervisors: one by header, one by a first `auth` frame (as a browser does).
    let mut sam = Ws::connect(edge.http, "/ws/agent", Some(SAM));
    sam.until("hello", 5.0, is("hello"));
    let mut kim = Ws::connect(edge.http, "/ws/agent", None);
    kim.send(json!({"type":"auth","token":KIM}));
    kim.until("hello", 5.0, is("hello"));
    cust.send(json!({"type":"message","client_id":"c1","text":"my order is late"}));
    agent.until("customer message", 5.0, text_is("my order is late"));
    for s in [&mut sam, &mut kim] {
        s.send(json!({"type":"watch","chat":chat,"offset":0}));
        s.until("watching", 5.0, is("watching"));
        // The whole history so far, in order.
        s.until("history", 5.0, text_is("my order is late"));
    }
    agent.send(json!({"type":"message","chat":chat,"client_id":"a1","text":"let me check"}));
    agent.send(json!({"type":"typing","chat":chat,"on":true}));
    let m = cust.until("agent reply", 5.0, text_is("let me check"));
    cust.until("typing", 5.0, is("typing"));
    let last = m["offset"].as_u64().unwrap();
    for s in [&mut sam, &mut kim] {
        s.until("live reply", 5.0, text_is("let me check"));
    }
    // Supervisors are read-only; the customer and the agent are never told about them.
    sam.send(json!({"type":"message","chat":chat,"text":"psst"}));
    let e = sam.until("read-only error", 5.0, is("error"));
    assert!(e["error"].as_str().unwrap().contains("read-only"), "{e}");
    let everything: Vec<&Value> = cust.seen.iter().chain(agent.seen.iter()).collect();
    assert!(
        !everything
            .iter()
            .any(|v| v.to_string().contains("sam") || v.to_string().contains("kim")),
        "nobody is told about supervisors"
    );

    // Supervisor list: the chat, its queue, agent and customer fields.
    let r = http::get(edge.http, "/api/v1/chats", Some(SAM)).unwrap();
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list["chats"][0]["id"], chat.as_str());
    assert_eq!(list["chats"][0]["state"], "active");
    assert_eq!(list["chats"][0]["agent"], "ann");
    assert_eq!(list["chats"][0]["fields"]["name"], "Cy");
    assert_eq!(
        http::get(edge.http, "/api/v1/chats", Some(AGENT_TOKEN))
            .unwrap()
            .status,
        403
    );

    // The customer refreshes: the socket drops, two messages arrive meanwhile.
    drop(cust);
    agent.send(json!({"type":"message","chat":chat,"client_id":"a2","text":"found it"}));
    agent.send(json!({"type":"message","chat":chat,"client_id":"a3","text":"ships today"}));
    sam.until("second", 5.0, text_is("ships today"));
    let mut cust = Ws::connect(edge.http, "/ws/chat", None);
    cust.send_frame(&ClientFrame::Resume {
        token: token.to_string(),
        offset: Offset(last + 1),
        choice: None,
        queue: None,
        fields: None,
    });
    cust.until("resumed", 5.0, is("resumed"));
    let missed: Vec<Value> = cust
        .drain(0.8)
        .into_iter()
        .filter(|v| v["type"] == "message")
        .collect();
    let texts: Vec<&str> = missed.iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["found it", "ships today"],
        "exactly the missed messages"
    );
    // A resend of an already delivered client id (the page retries) is not doubled.
    cust.send(json!({"type":"message","client_id":"c1","text":"my order is late"}));
    cust.send(json!({"type":"message","client_id":"c2","text":"thanks"}));
    agent.until("thanks", 5.0, text_is("thanks"));
    let late = agent
        .seen
        .iter()
        .filter(|v| v["text"] == "my order is late")
        .count();
    assert_eq!(late, 1, "resend not delivered twice");
    // Offsets strictly increase for every party, with no gap on the agent's side.
    let offs: Vec<u64> = agent
        .seen
        .iter()
        .filter(|v| v["chat"] == chat.as_str() && v["type"] == "message")
        .map(|v| v["offset"].as_u64().unwrap())
        .collect();
    assert!(offs.windows(2).all(|w| w[1] == w[0] + 1), "{offs:?}");

    // The customer ends: the agent sees the leave message, `ended`, and chat_ended.
    cust.send(json!({"type":"end"}));
    // Room frames and console frames travel separately: look for both.
    agent.drain(1.0);
    assert!(agent
        .seen
        .iter()
        .any(text_is("The other participant has left the conversation")));
    assert!(agent.seen.iter().any(is("chat_ended")));
    assert!(agent
        .seen
        .iter()
        .any(|v| v["type"] == "message" && v["from"] == "customer" && v["name"] == "Cy"));
    kim.until("ended", 5.0, is("ended"));
    assert_eq!(cust.closed(5.0), Some(1000));
    // Ended for good: resuming with the token says so.
    let mut again = Ws::connect(edge.http, "/ws/chat", None);
    again.send(json!({"type":"resume","token":token}));
    let e = again.until("ended", 5.0, is("ended"));
    assert!(e["reason"].as_str().unwrap().contains("start a new one"));
    let r = http::get(edge.http, "/api/v1/chats", Some(SAM)).unwrap();
    assert_eq!(r.json()["chats"], json!([]));
}

#[test]
fn abandon_admin_end_and_protocol_errors() {
    let edge = Edge::start_with(EXTRA);
    let mut agent = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    agent.until("hello", 5.0, is("hello"));
    // Abandon: the customer goes away and does not come back within 1 s.
    let (cust, chat, _) = start_and_accept(&edge, &mut agent, "quick");
    drop(cust);
    let ended = agent.until("chat_ended", 6.0, is("chat_ended"));
    agent.drain(0.5);
    assert!(agent.seen.iter().any(text_is("Your customer left")));
    assert_eq!(ended["chat"], chat.as_str());
    assert!(ended["reason"]
        .as_str()
        .unwrap()
        .contains("did not come back"));

    // Admin ends a stuck chat.
    let (mut cust, chat, _) = start_and_accept(&edge, &mut agent, "web");
    let path = format!("/api/v1/chats/{chat}");
    assert_eq!(
        http::request_body(edge.http, "DELETE", &path, Some(SAM), "")
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        http::request_body(edge.http, "DELETE", &path, Some(ADMIN_TOKEN), "")
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        http::request_body(
            edge.http,
            "DELETE",
            "/api/v1/chats/nope",
            Some(ADMIN_TOKEN),
            ""
        )
        .unwrap()
        .status,
        404
    );
    cust.until("ended", 5.0, is("ended"));
    assert_eq!(cust.closed(5.0), Some(1000));
    agent.until("chat_ended", 5.0, is("chat_ended"));

    // Protocol errors: bad first frame, unknown queue, bad token, bad JSON mid-chat.
    let mut c = Ws::connect(edge.http, "/ws/chat", None);
    c.send(json!({"type":"message","text":"hi"}));
    assert_eq!(c.closed(5.0), Some(4002));
    let mut c = Ws::connect(edge.http, "/ws/chat", None);
    c.send(json!({"type":"start","queue":"nope"}));
    assert_eq!(c.closed(5.0), Some(4002));
    let mut c = Ws::connect(edge.http, "/ws/chat", None);
    c.send(json!({"type":"resume","token":"forged"}));
    let e = c.until("bad token", 5.0, is("error"));
    assert_eq!(e["error"], "unknown chat token");
    let mut a = Ws::connect(edge.http, "/ws/agent", None);
    a.send(json!({"type":"auth","token":"wrong"}));
    assert_eq!(a.closed(5.0), Some(4001));
    let (mut cust, chat, _) = start_and_accept(&edge, &mut agent, "web");
    cust.send_raw("{not json");
    let e = cust.until("json error", 5.0, is("error"));
    assert!(e["error"].as_str().unwrap().contains("invalid JSON"));
    cust.send(json!({"type":"message","client_id":"x","text":""}));
    cust.until("empty text error", 5.0, is("error"));
    // Another agent's chat: not yours.
    agent.send(json!({"type":"end","chat":"ch-0000"}));
    agent.until("not yours", 5.0, is("error"));
    cust.send(json!({"type":"message","client_id":"y","text":"still here"}));
    agent.until("message after errors", 5.0, text_is("still here"));
    assert_eq!(
        agent
            .seen
            .iter()
            .filter(|v| v["chat"] == chat.as_str() && v["type"] == "offer")
            .count(),
        1
    );
}

#[test]
fn consult_privately_then_transfer_to_an_agent_and_to_a_queue() {
    let edge = Edge::start_with(EXTRA);
    let mut ann = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    ann.until("hello", 5.0, is("hello"));
    let mut bea = Ws::connect(edge.http, "/ws/agent", Some(BEA));
    bea.until("hello", 5.0, is("hello"));
    let mut sam = Ws::connect(edge.http, "/ws/agent", Some(SAM));
    sam.until("hello", 5.0, is("hello"));
    let (mut cust, chat, _token) = start_and_accept(&edge, &mut ann, "web");
    sam.send(json!({"type":"watch","chat":chat}));
    sam.until("watching", 5.0, is("watching"));

    // bea is not in the chat: she may neither write nor watch it yet.
    bea.send(json!({"type":"watch","chat":chat}));
    bea.until("refused watch", 5.0, is("error"));
    ann.send(json!({"type":"consult","chat":chat,"agent":"bea"}));
    ann.until("consulting", 5.0, is("consulting"));
    let invite = bea.until("consult invite", 5.0, is("consult"));
    assert_eq!(invite["from"], "ann");
    assert_eq!(invite["fields"]["order"], "A-17");
    bea.send(json!({"type":"watch","chat":chat}));
    bea.until("watching", 5.0, is("watching"));
    bea.until("history", 5.0, text_is("ann joined the conversation"));
    ann.send(json!({"type":"message","chat":chat,"text":"refund ok?","private":true}));
    bea.until("private question", 5.0, text_is("refund ok?"));
    // A consultant writes privately even when it does not say so.
    bea.send(json!({"type":"message","chat":chat,"text":"yes, up to 50"}));
    let answer = ann.until("private answer", 5.0, text_is("yes, up to 50"));
    assert_eq!(answer["private"], true);
    sam.until("supervisor sees it", 5.0, text_is("yes, up to 50"));
    ann.send(json!({"type":"message","chat":chat,"text":"Your refund is approved"}));
    let seen = cust.until("public", 5.0, text_is("Your refund is approved"));
    assert!(seen.get("private").is_none());

    // Warm transfer to bea: she gets the offer, ann loses the chat, the customer is
    // told (and never saw the consultation).
    ann.send(json!({"type":"transfer","chat":chat,"to_agent":"bea"}));
    ann.until("transferred", 5.0, is("transferred"));
    let offer = bea.until("transfer offer", 5.0, is("offer"));
    assert_eq!(offer["transfer_from"], "ann");
    bea.send(json!({"type":"accept","chat":chat}));
    bea.until("accepted", 5.0, is("accepted"));
    let customer_saw = cust.drain(0.5);
    assert!(customer_saw
        .iter()
        .any(|f| f["text"] == "You are being transferred to another agent"));
    assert!(customer_saw
        .iter()
        .any(|f| f["text"] == "bea joined the conversation"));
    assert!(
        customer_saw.iter().all(|f| f.get("private").is_none()),
        "{customer_saw:?}"
    );
    ann.send(json!({"type":"message","chat":chat,"text":"still here?"}));
    ann.until("ann is out", 5.0, is("error"));
    cust.send(json!({"type":"message","text":"thanks","client_id":"c1"}));
    bea.until("bea has the chat", 5.0, text_is("thanks"));

    // On to a queue: web, where ann picks it up again.
    bea.send(json!({"type":"transfer","chat":chat,"to_queue":"nope"}));
    bea.until("unknown queue", 5.0, is("error"));
    bea.send(json!({"type":"transfer","chat":chat,"to_queue":"web"}));
    bea.until("transferred", 5.0, is("transferred"));
    let offer = ann.until("offer from the queue", 5.0, is("offer"));
    assert_eq!(offer["chat"], chat.as_str());
    let list = http::get(edge.http, "/api/v1/chats", Some(SAM))
        .unwrap()
        .json();
    assert_eq!(list["chats"][0]["queue"], "web");
    assert_eq!(list["chats"][0]["state"], "offered");
    // The supervisor watched the whole time, unseen by anyone.
    let sup = sam.drain(0.5);
    assert!(sup
        .iter()
        .any(|f| f["text"] == "bea transferred the chat to queue web"));
}

/// A request with one extra header line (the customer's chat token) and a raw body.
fn raw(edge: &Edge, method: &str, path: &str, header: &str, body: &[u8]) -> http::Reply {
    let headers = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    http::request_raw(edge.http, method, path, &headers, body).unwrap()
}

fn get_with(edge: &Edge, path: &str, header: &str) -> http::Reply {
    raw(edge, "GET", path, header, b"")
}

#[test]
fn chats_and_transcripts_survive_an_edge_crash() {
    let mut edge = Edge::start_with(EXTRA);
    let mut ann = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    ann.until("hello", 5.0, is("hello"));
    let (mut cust, chat, token) = start_and_accept(&edge, &mut ann, "web");
    cust.send(json!({"type":"message","text":"my parcel <is> late","client_id":"c1"}));
    ann.until("customer message", 5.0, text_is("my parcel <is> late"));
    ann.send(json!({"type":"message","chat":chat,"text":"internal: check depot","private":true}));
    ann.send(json!({"type":"message","chat":chat,"text":"Let me check"}));
    let last = cust.until("reply", 5.0, text_is("Let me check"));
    let seen_offset = last["offset"].as_u64().unwrap();

    // The transcript endpoint reads SQLite: once it shows the reply, it is committed.
    let path = format!("/api/v1/chats/{chat}/transcript");
    let mut stored = Value::Null;
    for _ in 0..100 {
        stored = http::get(edge.http, &path, Some(SAM)).unwrap().json();
        if stored["messages"].as_array().map(|m| m.len()) >= Some(4) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(stored["messages"].as_array().unwrap().len(), 4, "{stored}");

    edge.crash_and_restart();

    // The agent's console reconnects and still has the chat.
    let mut ann = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    let hello = ann.until("hello", 5.0, is("hello"));
    assert_eq!(hello["chats"], json!([chat]));
    ann.send_frame(&ClientFrame::Watch {
        chat: chat.to_string(),
        offset: Offset(seen_offset + 1),
    });
    ann.until("watching", 5.0, is("watching"));
    ann.send(json!({"type":"message","chat":chat,"text":"Found it: tomorrow"}));
    // The customer comes back with its token and gets exactly what it missed.
    let mut cust2 = Ws::connect(edge.http, "/ws/chat", None);
    cust2.send_frame(&ClientFrame::Resume {
        token: token.to_string(),
        offset: Offset(seen_offset + 1),
        choice: None,
        queue: None,
        fields: None,
    });
    cust2.until("resumed", 5.0, is("resumed"));
    let missed = cust2.until("missed reply", 5.0, text_is("Found it: tomorrow"));
    assert_eq!(
        missed["offset"].as_u64(),
        Some(seen_offset + 1),
        "offsets go on from where they were"
    );
    // A resend from before the crash is still recognised.
    cust2.send(json!({"type":"message","text":"my parcel <is> late","client_id":"c1"}));
    cust2.send(json!({"type":"message","text":"great, thanks","client_id":"c2"}));
    let next = cust2.until("next", 5.0, text_is("great, thanks"));
    assert_eq!(
        next["offset"].as_u64(),
        Some(seen_offset + 2),
        "resend not stored"
    );
    drop(cust);

    // The customer's transcript (its token): no private entries.
    cust2.send(json!({"type":"end"}));
    assert_eq!(cust2.closed(5.0), Some(1000));
    let mut mine = Value::Null;
    for _ in 0..100 {
        let r = get_with(&edge, &path, &format!("X-Chat-Token: {token}"));
        assert_eq!(r.status, 200, "{}", r.body);
        mine = r.json();
        if mine["chat"]["state"] == "ended" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let texts: Vec<&str> = mine["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.contains(&"Found it: tomorrow") && texts.contains(&"great, thanks"));
    assert!(!texts.contains(&"internal: check depot"), "{texts:?}");
    assert_eq!(
        texts
            .iter()
            .filter(|t| **t == "my parcel <is> late")
            .count(),
        1
    );
    assert_eq!(mine["chat"]["state"], "ended");
    assert!(mine["chat"].get("token_hash").is_none());
    let wrong = get_with(&edge, &path, "X-Chat-Token: not-the-token");
    assert_eq!(wrong.status, 403);
    assert_eq!(
        http::get(edge.http, &path, Some(BEA)).unwrap().status,
        403,
        "an agent who never had the chat"
    );
    assert_eq!(http::get(edge.http, &path, None).unwrap().status, 401);
    // Text and printable HTML; the agent's view includes the private note.
    let t = http::get(edge.http, &format!("{path}?format=text"), Some(AGENT_TOKEN)).unwrap();
    assert!(t.body.contains("Cy: my parcel <is> late"), "{}", t.body);
    assert!(t.body.contains("ann (private): internal: check depot"));
    let h = http::get(edge.http, &format!("{path}?format=html"), Some(AGENT_TOKEN)).unwrap();
    assert!(h.body.contains("my parcel &lt;is&gt; late") && h.body.contains("window.print()"));
    assert_eq!(
        http::get(edge.http, &format!("{path}?format=pdf"), Some(SAM))
            .unwrap()
            .status,
        400
    );
    // Search by date, queue, agent.
    let found = |q: &str| -> Vec<String> {
        let r = http::get(edge.http, &format!("/api/v1/transcripts?{q}"), Some(SAM)).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(found("queue=web&agent=ann"), vec![chat.clone()]);
    assert!(found("queue=quick").is_empty());
    assert!(found("agent=bea").is_empty());
    assert_eq!(found("from=2000-01-01"), vec![chat.clone()]);
    assert!(found("to=2000-01-01").is_empty());
    let bad = http::get(edge.http, "/api/v1/transcripts?from=yesterday", Some(SAM)).unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("yesterday"));
    assert_eq!(
        http::get(edge.http, "/api/v1/transcripts", Some(AGENT_TOKEN))
            .unwrap()
            .status,
        403
    );
}

#[test]
fn attachments_are_shared_as_signed_links_that_expire() {
    let extra =
        format!("{EXTRA}\n[chat]\nattachment_max_size = \"64KB\"\nattachment_link_ttl = \"2s\"\n");
    let edge = Edge::start_with(&extra);
    let mut ann = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    ann.until("hello", 5.0, is("hello"));
    let (mut cust, chat, token) = start_and_accept(&edge, &mut ann, "web");
    let up = format!("/api/v1/chats/{chat}/attachments");
    let tok = format!("X-Chat-Token: {token}");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..5000u32).map(|i| (i * 7) as u8));

    let r = raw(&edge, "POST", &format!("{up}?name=receipt.png"), &tok, &png);
    assert_eq!(r.status, 201, "{}", r.body);
    let att = r.json();
    assert_eq!(att["size"], 5008);
    assert_eq!(att["content_type"], "image/png");
    // Everyone in the room gets the link as a message.
    let m = ann.until("attachment message", 5.0, text_is("receipt.png"));
    assert_eq!(m["from"], "customer");
    assert_eq!(m["name"], "Cy");
    let url = m["attachment"]["url"].as_str().unwrap().to_string();
    assert_eq!(url, att["url"].as_str().unwrap());
    cust.until("customer sees it too", 5.0, text_is("receipt.png"));
    let got = get_with(&edge, &url, "");
    assert_eq!(got.status, 200);
    assert!(
        got.bytes == png,
        "the same bytes back ({} bytes)",
        got.bytes.len()
    );
    // Tampered: another expiry, another signature, another file.
    let exp = att["expires"].as_u64().unwrap();
    let moved = url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    assert_eq!(get_with(&edge, &moved, "").status, 403);
    let flipped = format!("{}0", &url[..url.len() - 1]);
    let flipped = if flipped == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        flipped
    };
    assert_eq!(get_with(&edge, &flipped, "").status, 403);
    assert_eq!(
        get_with(&edge, &url.replace(".png", ".pdf"), "").status,
        403
    );

    // Refused uploads: type by name, type by content, size, who.
    let r = raw(&edge, "POST", &format!("{up}?name=x.gif"), &tok, b"GIF89a");
    assert_eq!(r.status, 415);
    assert!(r.body.contains("png, jpg, pdf, mp4"), "{}", r.body);
    let r = raw(
        &edge,
        "POST",
        &format!("{up}?name=invoice.pdf"),
        &tok,
        b"MZ\x90\0evil",
    );
    assert_eq!(r.status, 415);
    assert!(r.body.contains("not a pdf"), "{}", r.body);
    let mut big = b"%PDF-1.7\n".to_vec();
    big.resize(64_001, b'x');
    assert_eq!(
        raw(&edge, "POST", &format!("{up}?name=big.pdf"), &tok, &big).status,
        413
    );
    assert_eq!(raw(&edge, "POST", &up, &tok, &png).status, 400, "no name");
    let r = raw(
        &edge,
        "POST",
        &format!("{up}?name=a.png"),
        "X-Chat-Token: nope",
        &png,
    );
    assert_eq!(r.status, 403);
    let bea = format!("Authorization: Bearer {BEA}");
    assert_eq!(
        raw(&edge, "POST", &format!("{up}?name=a.png"), &bea, &png).status,
        403
    );
    // The agent shares a pdf.
    let mine = format!("Authorization: Bearer {AGENT_TOKEN}");
    let r = raw(
        &edge,
        "POST",
        &format!("{up}?name=Terms.PDF"),
        &mine,
        b"%PDF-1.4 terms",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let m = cust.until("agent's file", 5.0, text_is("Terms.PDF"));
    assert_eq!(m["from"], "agent");
    assert_eq!(m["attachment"]["content_type"], "application/pdf");

    // After the link's lifetime: 410, however valid its signature.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = get_with(&edge, &url, "");
    assert_eq!(r.status, 410, "{}", r.body);
    // An ended chat takes no more files.
    cust.send(json!({"type":"end"}));
    cust.closed(5.0);
    let r = raw(&edge, "POST", &format!("{up}?name=late.png"), &tok, &png);
    assert_eq!(r.status, 403);
}

#[test]
fn an_agent_has_one_console_supervisors_any_number() {
    let edge = Edge::start_with(EXTRA);
    let mut first = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    first.until("hello", 5.0, is("hello"));
    let mut second = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    second.until("hello", 5.0, is("hello"));
    assert_eq!(
        first.closed(5.0),
        Some(4009),
        "the older console is told why"
    );
    // Offers now reach the newer console.
    let (_cust, chat, _) = start_and_accept(&edge, &mut second, "web");
    let mut sups: Vec<Ws> = (0..3)
        .map(|_| {
            let mut s = Ws::connect(edge.http, "/ws/agent", Some(SAM));
            s.until("hello", 5.0, is("hello"));
            s.send(json!({"type":"watch","chat":chat}));
            s.until("watching", 5.0, is("watching"));
            s
        })
        .collect();
    second.send(json!({"type":"message","chat":chat,"text":"to all three"}));
    for s in &mut sups {
        s.until("each supervisor console", 5.0, text_is("to all three"));
    }
}

#[test]
fn a_customer_frame_cannot_rename_its_author() {
    let edge = Edge::start_with(EXTRA);
    let mut agent = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    agent.until("hello", 5.0, is("hello"));
    let (mut cust, chat, tok) = start_and_accept(&edge, &mut agent, "web");
    // The start form said "Cy"; the frame claims to be the support team.
    let spoof = json!({"type":"message","client_id":"s1",
        "text":"please send your password","name":"Support Team"});
    cust.send(spoof.clone());
    let m = agent.until("spoof", 5.0, text_is("please send your password"));
    assert_eq!(m["name"], "Cy", "{m}");
    assert_eq!(m["from"], "customer", "{m}");
    // A resend of the same client_id under yet another name is the same message.
    let mut again = spoof;
    again["name"] = json!("Admin");
    cust.send(again);
    cust.send(json!({"type":"message","client_id":"s2","text":"next"}));
    agent.until("next", 5.0, text_is("next"));
    let copies = agent
        .seen
        .iter()
        .filter(|v| v["text"] == "please send your password")
        .count();
    assert_eq!(copies, 1, "dedup does not depend on the name");
    // The stored transcript shows the start form's name too.
    let r = http::get(
        edge.http,
        &format!("/api/v1/chats/{chat}/transcript"),
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("Support Team"), "{}", r.body);
    assert!(!r.body.contains("Admin"), "{}", r.body);
    assert!(r.body.contains("Cy"), "{}", r.body);
    // Offsets are inclusive (README, protocol.rs): resuming at the spoof message's own
    // offset replays it first; at offset + 1 it does not.
    let at = m["offset"].as_u64().unwrap();
    drop(cust);
    let first_after = |offset: u64| {
        let mut c = Ws::connect(edge.http, "/ws/chat", None);
        c.send(json!({"type":"resume","token":tok,"offset":offset}));
        c.until("resumed", 5.0, is("resumed"));
        c.drain(0.5)
            .into_iter()
            .find(|v| v["type"] == "message")
            .map(|v| v["offset"].as_u64().unwrap())
    };
    assert_eq!(first_after(at), Some(at));
    assert_eq!(first_after(at + 1), Some(at + 1));
}

#[test]
fn no_secret_or_message_text_reaches_the_log_even_at_trace() {
    let edge = Edge::start_logged("", EXTRA, "trace");
    let mut agent = Ws::connect(edge.http, "/ws/agent", None);
    agent.send(json!({"type":"auth","token":AGENT_TOKEN}));
    agent.until("hello", 5.0, is("hello"));
    let (mut cust, chat, token) = start_and_accept(&edge, &mut agent, "web");
    cust.send(json!({"type":"message","client_id":"x1","text":"my card is 4111-secret"}));
    agent.until("text", 5.0, text_is("my card is 4111-secret"));
    let r = http::get(edge.http, "/api/v1/chats", Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(r.status, 200);
    let r = get_with(
        &edge,
        &format!("/api/v1/chats/{chat}/transcript"),
        &format!("x-chat-token: {token}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(cust);
    // The edge's own debug lines still show (a malformed SIP datagram is one).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"NOT SIP\r\n\r\n", edge.sip).unwrap();
    assert!(
        edge.logged(5, "malformed SIP message"),
        "debug is on:\n{}",
        edge.log_text()
    );
    let log = edge.log_text();
    for secret in [AGENT_TOKEN, ADMIN_TOKEN, token.as_str(), "4111-secret"] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

/// A raw WebSocket on `/ws/chat` after the handshake, to send what no client
/// library would.
fn raw_ws(edge: &Edge) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(edge.http).unwrap();
    t.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    write!(
        t,
        "GET /ws/chat HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        edge.http
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(t.read(&mut b).unwrap(), 1, "handshake");
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"));
    t
}

/// The close code of the first frame the server sends, if it is a Close.
fn server_close_code(t: &mut std::net::TcpStream) -> Option<u16> {
    use std::io::Read;
    let mut h = [0u8; 4];
    t.read_exact(&mut h).ok()?;
    (h[0] & 0x0f == 0x8).then(|| u16::from_be_bytes([h[2], h[3]]))
}

/// A client frame (masked with a zero key unless `masked` is false).
fn client_frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&[0, 0, 0, 0]);
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn websocket_protocol_errors_get_their_rfc_6455_close_codes() {
    use std::io::Write;
    let edge = Edge::start_with(EXTRA);
    // Over the 64 KiB frame limit: 1009.
    let mut t = raw_ws(&edge);
    let big = format!(
        r#"{{"type":"start","queue":"web","x":"{}"}}"#,
        "a".repeat(70_000)
    );
    t.write_all(&client_frame(0x1, big.as_bytes(), true))
        .unwrap();
    assert_eq!(server_close_code(&mut t), Some(1009));
    // Text that is not UTF-8: 1007.
    let mut t = raw_ws(&edge);
    t.write_all(&client_frame(0x1, &[0xff, 0xfe, 0x22], true))
        .unwrap();
    assert_eq!(server_close_code(&mut t), Some(1007));
    // An unmasked client frame breaks the protocol: 1002.
    let mut t = raw_ws(&edge);
    t.write_all(&client_frame(0x1, br#"{"type":"start"}"#, false))
        .unwrap();
    assert_eq!(server_close_code(&mut t), Some(1002));
    // And the edge serves the next client as usual.
    let mut agent = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    agent.until("hello", 5.0, is("hello"));
}

/// Send `head` (request line + headers, no body) and read what comes back within
/// `secs`: the response the edge gives before any body byte, or "" if none.
fn answer_before_body(edge: &Edge, head: &str, secs: u64) -> String {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect(edge.http).unwrap();
    t.set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .unwrap();
    t.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while let Ok(n) = t.read(&mut b) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&b[..n]);
        if String::from_utf8_lossy(&got).contains("\"status\"") {
            break;
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

#[test]
fn http_checks_the_token_and_the_length_before_reading_a_body_and_drops_slow_clients() {
    let edge = Edge::start_http("header_timeout = \"1s\"", EXTRA);
    let mut agent = Ws::connect(edge.http, "/ws/agent", Some(AGENT_TOKEN));
    agent.until("hello", 5.0, is("hello"));
    let (_cust, chat, token) = start_and_accept(&edge, &mut agent, "web");
    // A 10 MB upload without a token is refused from its headers: no body is sent.
    let head = |path: &str, auth: &str, len: u64| {
        format!("POST {path} HTTP/1.1\r\nHost: edge\r\n{auth}Content-Length: {len}\r\n\r\n")
    };
    let r = answer_before_body(
        &edge,
        &head(
            &format!("/api/v1/chats/{chat}/attachments?name=a.png"),
            "",
            10_000_000,
        ),
        3,
    );
    assert!(
        r.starts_with("HTTP/1.1 401") || r.starts_with("HTTP/1.1 403"),
        "{r}"
    );
    // The same with the customer's token but over the limit: 413, the JSON error.
    let r = answer_before_body(
        &edge,
        &head(
            &format!("/api/v1/chats/{chat}/attachments?name=a.png"),
            &format!("x-chat-token: {token}\r\n"),
            100_000_000,
        ),
        3,
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("\"status\":413"), "{r}");
    // A call command's 2 MB body without a token: refused before it is read.
    let r = answer_before_body(
        &edge,
        &head("/api/v1/calls/nope/monitors", "", 2_000_000),
        3,
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    // With a token but larger than a command can be: 413.
    let r = answer_before_body(
        &edge,
        &head(
            "/api/v1/calls/nope/monitors",
            &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"),
            2_000_000,
        ),
        3,
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // A valid upload still works (streamed to disk).
    let png = {
        let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
        b.resize(64, 0);
        b
    };
    let r = raw(
        &edge,
        "POST",
        &format!("/api/v1/chats/{chat}/attachments?name=a.png"),
        &format!("x-chat-token: {token}"),
        &png,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Slowloris: headers begun and never finished, or nothing at all, are closed
    // after header_timeout.
    for partial in ["GET /healthz HTTP/1.1\r\nHost: edge\r\n", ""] {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(edge.http).unwrap();
        t.write_all(partial.as_bytes()).unwrap();
        t.set_read_timeout(Some(std::time::Duration::from_secs(4)))
            .unwrap();
        let mut b = [0u8; 1024];
        let closed = loop {
            match t.read(&mut b) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(_) => break false,
            }
        };
        assert!(closed, "a slow client ({partial:?}) is dropped");
    }
    assert_eq!(http::get(edge.http, "/healthz", None).unwrap().status, 200);
}
