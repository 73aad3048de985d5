//! After-hours deflection through the real edge, with hours that are never open
//! (`open = []`): `announce` (the caller hears the file, then BYE), `voicemail`
//! (announcement, then the caller's tone is recorded mono, `#` ends it, the spool's
//! archive has it with `"voicemail": true`), `queue:NAME` (the call reaches the open
//! queue's agent), `forward:URI` (a second leg to the target), and chat queues (the
//! customer reads the message and the chat ends, or it moves to the open queue).

use edge_tests::tone_peer::TonePeer;
use edge_tests::ua::{Uac, Uas};
use edge_tests::ws::Ws;
use edge_tests::{http, tempdir, tone_wav, wait_until, Edge, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn config(announcement: &Path) -> String {
    format!(
        r#"
[[hours]]
name = "never"
timezone = "Europe/Paris"
open = []
[[hours]]
name = "always"
timezone = "UTC"
open = ["daily 00:00-24:00"]

[[queues]]
name = "ann"
numbers = ["4000"]
agents = ["1001"]
hours = "never"
after_hours = "announce"
after_hours_announcement = "{a}"

[[queues]]
name = "vm"
numbers = ["4001"]
agents = ["1001"]
hours = "never"
after_hours = "voicemail"
after_hours_announcement = "{a}"
voicemail_max = "20s"

[[queues]]
name = "night"
numbers = ["4002"]
agents = ["1001"]
hours = "never"
after_hours = "queue:day"

[[queues]]
name = "day"
agents = ["4101"]
hours = "always"
after_hours_announcement = "{a}"

[[queues]]
name = "fwd"
numbers = ["4003"]
agents = ["1001"]
hours = "never"
after_hours = "forward:sip:duty@127.0.0.1:{{route_port}}"

[[agents]]
id = "4101"
name = "Day"
contact = "sip:4101@127.0.0.1:{{route_port}}"

[[queues]]
name = "shutchat"
channel = "chat"
agents = ["ann"]
hours = "never"
after_hours_message = "Closed: back at 8."

[[queues]]
name = "nightchat"
channel = "chat"
agents = ["ann"]
hours = "never"
after_hours = "queue:daychat"

[[queues]]
name = "daychat"
channel = "chat"
agents = ["ann"]
"#,
        a = announcement.display()
    )
}

fn start() -> (Edge, tempdir::Dir) {
    let dir = tempdir::Dir::new("after-hours");
    let ann = dir.path().join("closed.wav");
    tone_wav(&ann, 2300.0, 1.0);
    (Edge::start_with(&config(&ann)), dir)
}

fn calls(edge: &Edge) -> Vec<Value> {
    http::get(edge.http, "/api/v1/calls", Some(ADMIN_TOKEN))
        .unwrap()
        .json()["calls"]
        .as_array()
        .cloned()
        .unwrap()
}

fn after_hours_metric(edge: &Edge, action: &str) -> f64 {
    edge.metric(&format!(
        "edge_calls_after_hours_total{{action=\"{action}\"}}"
    ))
}

#[test]
fn announce_then_bye_and_voicemail_recorded_mono_into_the_spool() {
    let (edge, _dir) = start();

    // announce: answered by the edge, the caller hears the file, then the edge hangs up.
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("4000"), 200);
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xA11,
    );
    let call = calls(&edge).pop().expect("the closed call is listed");
    assert_eq!(call["after_hours"], "announce", "{call}");
    std::thread::sleep(Duration::from_millis(700));
    assert!(c.hears(2300.0, 400), "the caller hears the announcement");
    assert!(cust.answer_bye(5), "then the edge hangs up");
    drop(c);
    assert_eq!(after_hours_metric(&edge, "announce"), 1.0);

    // voicemail: the announcement, then the caller's 440 Hz is recorded until `#`.
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("4001"), 200);
    let c = TonePeer::start(
        cust.rtp.try_clone().unwrap(),
        cust.remote_rtp.unwrap(),
        440.0,
        0xB22,
    );
    let id = calls(&edge).pop().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(700));
    assert!(c.hears(2300.0, 400), "the announcement first");
    // After the 1 s announcement, 2 s of message.
    std::thread::sleep(Duration::from_millis(2300));
    c.send_digit('#');
    assert!(cust.answer_bye(5), "`#` ends the voicemail with BYE");
    drop(c);
    assert_eq!(after_hours_metric(&edge, "voicemail"), 1.0);
    assert_eq!(edge.metric("edge_voicemails_total"), 1.0);

    let archive = edge.dir.path().join("data").join("archive");
    let (wav, meta) = (
        archive.join(format!("{id}.wav")),
        archive.join(format!("{id}.json")),
    );
    assert!(
        wait_until(20, || wav.exists() && meta.exists()),
        "the voicemail reaches the spool"
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["voicemail"], true, "{m}");
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 1, "mono");
    let samples: Vec<i16> = bytes[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let secs = samples.len() as f64 / 8000.0;
    assert!(
        (1.0..4.0).contains(&secs),
        "about the 2 s message ({secs:.2} s)"
    );
    assert!(
        media::tone::detect(&samples, 440.0, 8000),
        "the caller's tone is in the message"
    );
    assert!(
        !media::tone::detect(&samples, 2300.0, 8000),
        "the announcement is not"
    );
}

#[test]
fn queue_and_forward_send_the_call_elsewhere_and_a_closed_chat_queue_answers_with_its_message() {
    let (edge, _dir) = start();
    let phone = Uas::spawn(edge.route_port);

    // queue:day → agent 4101's phone.
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("4002"), 200);
    assert_eq!(phone.invites.load(std::sync::atomic::Ordering::Relaxed), 1);
    let call = calls(&edge).pop().unwrap();
    assert_eq!(call["queue"], "day", "{call}");
    assert_eq!(cust.bye(), 200);
    edge.wait_idle(10);
    assert_eq!(after_hours_metric(&edge, "queue"), 1.0);

    // forward:sip:duty@… → a second leg to that target.
    let mut cust = Uac::new(edge.sip);
    assert_eq!(cust.call("4003"), 200);
    assert_eq!(phone.invites.load(std::sync::atomic::Ordering::Relaxed), 2);
    let call = calls(&edge).pop().unwrap();
    assert_eq!(call["after_hours"], "forward", "{call}");
    assert_eq!(cust.bye(), 200);
    assert_eq!(after_hours_metric(&edge, "forward"), 1.0);

    // A closed chat queue: the message, then the chat is over before it began.
    let mut ws = Ws::connect(edge.http, "/ws/chat", None);
    ws.send(json!({"type":"start","queue":"shutchat","fields":{"name":"Cy"}}));
    let ended = ws.until("ended", 5.0, |v| v["type"] == "ended");
    assert_eq!(ended["reason"], "Closed: back at 8.");
    assert_eq!(ended["by"], "system");
    assert_eq!(ws.closed(5.0), Some(1000));
    assert_eq!(edge.metric("edge_chats_after_hours_total"), 1.0);
    // A chat queue deflected to an open one: started there.
    let mut ws = Ws::connect(edge.http, "/ws/chat", None);
    ws.send(json!({"type":"start","queue":"nightchat","fields":{"name":"Di"}}));
    let started = ws.until("started", 5.0, |v| v["type"] == "started");
    let chat = started["chat"].as_str().unwrap();
    let r = http::get(edge.http, "/api/v1/chats", Some(ADMIN_TOKEN)).unwrap();
    let list = r.json()["chats"].as_array().cloned().unwrap();
    let c = list.iter().find(|c| c["id"] == chat).unwrap();
    assert_eq!(c["queue"], "daychat");
}
