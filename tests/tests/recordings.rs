//! Recording upload through the real edge: a faulty CRM webhook, a `kill -9` in
//! the middle of uploads, a permanent refusal with an admin retry, and the API.

use edge_tests::crm::{Crm, Faults};
use edge_tests::sha2::{Digest, Sha256};
use edge_tests::{http, wait_until, Edge, ADMIN_TOKEN, AGENT_TOKEN};
use std::time::{Duration, Instant};

const TOKEN: &str = "crm-secret-token";

fn storage_lines(crm: &Crm) -> String {
    format!(
        "chunk_size = \"16KiB\"\nretention = \"7d\"\n\n[storage.upload]\ntarget = \"http\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n\
backoff_base = \"50ms\"\nbackoff_max = \"500ms\"\nrequest_timeout = \"1s\"\nconcurrency = 2\n",
        crm.url()
    )
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 + 1;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

/// Hand a recording to the edge the way any producer does: data first, metadata last.
fn drop_in(edge: &Edge, id: &str, data: &[u8]) {
    let inbox = edge.dir.path().join("data/inbox");
    std::fs::write(inbox.join(format!("{id}.wav")), data).unwrap();
    let meta = serde_json::json!({"recording_id": id, "call_id": format!("call-{id}"), "caller": "sip:a@x"});
    let tmp = inbox.join(format!(".{id}.json.tmp"));
    std::fs::write(&tmp, meta.to_string()).unwrap();
    std::fs::rename(tmp, inbox.join(format!("{id}.json"))).unwrap();
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool, edge: &Edge) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out waiting for {what}; edge log:\n{}",
        edge.log_text()
    );
}

fn recordings(edge: &Edge) -> Vec<serde_json::Value> {
    http::get(edge.http, "/api/v1/recordings", Some(ADMIN_TOKEN))
        .unwrap()
        .json()["recordings"]
        .as_array()
        .unwrap()
        .clone()
}

fn check_intact(crm: &Crm, id: &str, data: &[u8]) {
    assert_eq!(
        crm.assembled(id).as_deref(),
        Some(data),
        "{id} arrives byte-identical and in order"
    );
    let r = crm.received.lock().unwrap();
    let (_, meta) = r.completed.iter().find(|(c, _)| c == id).unwrap();
    let sha: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(meta["sha256"], sha);
    assert_eq!(meta["size"], data.len());
    assert_eq!(meta["call_id"], format!("call-{id}"));
}

#[test]
fn every_recording_arrives_whole_through_503s_dropped_connections_429s_and_stalls() {
    let crm = Crm::start(
        Faults {
            fail_every: 3,
            drop_every: 7,
            throttle_first: 2,
            stall_every: 11,
            stall: Duration::from_millis(1500),
            ..Default::default()
        },
        TOKEN,
    );
    let edge = Edge::start_full(&storage_lines(&crm), "");
    let sizes = [
        (1_000usize, "small"),
        (70_000, "five-chunks"),
        (16_384, "exact-chunk"),
        (0, "empty"),
        (200_000, "thirteen"),
    ];
    let data: Vec<(&str, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, (n, id))| (*id, bytes(*n, i as u8)))
        .collect();
    for (id, d) in &data {
        drop_in(&edge, id, d);
    }
    wait(
        120,
        "all recordings uploaded",
        || crm.completed_ids().len() == data.len() && recordings(&edge).is_empty(),
        &edge,
    );
    for (id, d) in &data {
        check_intact(&crm, id, d);
    }
    let r = crm.received.lock().unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.resent_after_ack.is_empty(),
        "acknowledged chunks sent again: {:?}",
        r.resent_after_ack
    );
    drop(r);
    // Faults happened and were counted.
    let m = http::get(edge.http, "/metrics", None).unwrap().body;
    for reason in ["http_503", "http_429", "connection", "timeout"] {
        assert!(
            m.contains(&format!(
                "edge_recordings_upload_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted:\n{m}"
        );
    }
    assert_eq!(edge.metric("edge_recordings_uploaded_total"), 5.0);
    assert_eq!(
        edge.metric("edge_recordings_upload_bytes_total"),
        data.iter().map(|(_, d)| d.len()).sum::<usize>() as f64
    );
    assert_eq!(edge.metric("edge_recordings_queue_depth"), 0.0);
    assert!(
        std::fs::read_dir(edge.dir.path().join("data/spool"))
            .unwrap()
            .all(|e| e.unwrap().file_name() == "expired"),
        "spool empty"
    );
    assert!(
        !edge.log_text().contains(TOKEN),
        "the CRM token is never logged"
    );
}

#[test]
fn uploads_resume_after_kill_9_without_resending_acknowledged_chunks() {
    let crm = Crm::start(
        Faults {
            slow: Duration::from_millis(60),
            ..Default::default()
        },
        TOKEN,
    );
    let mut edge = Edge::start_full(&storage_lines(&crm), "");
    let data: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("rec{i}"), bytes(300_000, 10 + i as u8)))
        .collect();
    for (id, d) in &data {
        drop_in(&edge, id, d);
    }
    // 3 × 19 chunks at ~60 ms each, two at a time: kill mid-way.
    wait(
        30,
        "some chunks acknowledged",
        || crm.received.lock().unwrap().acks.len() >= 12,
        &edge,
    );
    let acked_before = crm.received.lock().unwrap().acks.len();
    edge.crash_and_restart();
    assert!(
        edge.logged(5, "resuming spooled uploads"),
        "{}",
        edge.log_text()
    );
    wait(
        120,
        "all recordings uploaded after the restart",
        || crm.completed_ids().len() == 3 && recordings(&edge).is_empty(),
        &edge,
    );
    for (id, d) in &data {
        check_intact(&crm, id, d);
    }
    let r = crm.received.lock().unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // A chunk the CRM acknowledged in the instant before the kill, before the edge
    // journaled the ack, is sent once more (the receiver is idempotent): at most
    // the chunks in flight, two per upload, of the two concurrent uploads.
    // Everything journaled is never sent again.
    assert!(
        r.resent_after_ack.len() <= 2 * storage::uploader::CHUNKS_IN_FLIGHT,
        "re-sent after restart: {:?} (of {acked_before} acknowledged before the kill)",
        r.resent_after_ack
    );
    assert_eq!(r.acks.len(), 3 * 19 + r.resent_after_ack.len());
}

#[test]
fn refused_upload_stays_local_visible_and_retryable_by_an_admin() {
    let crm = Crm::start(
        Faults {
            forbid: true,
            ..Default::default()
        },
        TOKEN,
    );
    let edge = Edge::start_full(&storage_lines(&crm), "");
    let d = bytes(40_000, 3);
    drop_in(&edge, "refused", &d);
    wait(
        20,
        "the upload to fail",
        || {
            recordings(&edge)
                .first()
                .is_some_and(|r| r["state"] == "failed")
        },
        &edge,
    );
    let list = recordings(&edge);
    assert_eq!(list[0]["id"], "refused");
    assert_eq!(list[0]["call_id"], "call-refused");
    assert_eq!(list[0]["size"], 40_000);
    assert!(
        list[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 403"),
        "{}",
        list[0]
    );
    // Permissions.
    assert_eq!(
        http::get(edge.http, "/api/v1/recordings", Some(AGENT_TOKEN))
            .unwrap()
            .status,
        403
    );
    assert_eq!(
        http::get(edge.http, "/api/v1/recordings", None)
            .unwrap()
            .status,
        401
    );
    // Metadata and audio while local.
    let one = http::get(edge.http, "/api/v1/recordings/refused", Some(ADMIN_TOKEN))
        .unwrap()
        .json();
    assert_eq!(one["metadata"]["caller"], "sip:a@x");
    let audio = http::get(
        edge.http,
        "/api/v1/recordings/refused/audio",
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(audio.status, 200);
    assert_eq!(audio.bytes, d, "whole file served");
    assert_eq!(
        http::get(edge.http, "/api/v1/recordings/nope", Some(ADMIN_TOKEN))
            .unwrap()
            .status,
        404
    );
    // The CRM is fixed; the admin retries.
    crm.faults.lock().unwrap().forbid = false;
    let r = http::request(
        edge.http,
        "POST",
        "/api/v1/recordings/refused/retry",
        Some(ADMIN_TOKEN),
    )
    .unwrap();
    assert_eq!(r.status, 202);
    wait(
        20,
        "the retried upload",
        || recordings(&edge).is_empty(),
        &edge,
    );
    check_intact(&crm, "refused", &d);
    assert_eq!(
        http::request(
            edge.http,
            "POST",
            "/api/v1/recordings/refused/retry",
            Some(ADMIN_TOKEN)
        )
        .unwrap()
        .status,
        404
    );
}

#[test]
fn bad_inbox_entries_are_set_aside_with_a_reason() {
    let crm = Crm::start(Faults::default(), TOKEN);
    let edge = Edge::start_full(&storage_lines(&crm), "");
    let inbox = edge.dir.path().join("data/inbox");
    std::fs::write(inbox.join("broken.json"), "{not json").unwrap();
    std::fs::write(inbox.join("orphan.json"), "{}").unwrap();
    std::fs::write(inbox.join("evil.wav"), b"x").unwrap();
    std::fs::write(inbox.join("evil.json"), r#"{"recording_id": "../../etc"}"#).unwrap();
    wait(
        10,
        "bad entries moved aside",
        || {
            std::fs::read_dir(&inbox)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().is_file())
                .count()
                == 0
        },
        &edge,
    );
    let failed = inbox.join("failed");
    assert!(std::fs::read_to_string(failed.join("broken.error.txt"))
        .unwrap()
        .contains("unreadable metadata"));
    assert!(std::fs::read_to_string(failed.join("orphan.error.txt"))
        .unwrap()
        .contains("no recording file"));
    assert!(std::fs::read_to_string(failed.join("evil.error.txt"))
        .unwrap()
        .contains("not a safe name"));
    assert!(recordings(&edge).is_empty());
}

/// A real S3-compatible server (moto, from PyPI) on loopback, with one bucket.
struct S3 {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl S3 {
    fn start(bucket: &str) -> Option<S3> {
        if !edge_tests::have_tool("moto_server") {
            return None;
        }
        let port = edge_tests::free_port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Owned at once, so the process is killed and reaped whatever happens next.
        let s3 = S3 { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http::request(addr, "PUT", &format!("/{bucket}"), None) {
                if r.status == 200 {
                    return Some(s3);
                }
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn storage_lines(&self, bucket: &str, mode: &str) -> String {
        format!(
            "chunk_size = \"5MiB\"\n\n[storage.upload]\ntarget = \"s3\"\nendpoint = \"http://{}\"\nbucket = \"{bucket}\"\n\
access_key_id = \"test\"\nsecret_access_key = \"s3-secret-key\"\nmode = \"{mode}\"\nbackoff_base = \"50ms\"\nbackoff_max = \"500ms\"\n",
            self.addr
        )
    }

    /// The ETag of `key` in `bucket` from a listing (quotes removed).
    fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let listing = http::get(self.addr, &format!("/{bucket}?list-type=2"), None)
            .ok()?
            .body;
        let at = listing.find(&format!("<Key>{key}</Key>"))?;
        let rest = &listing[at..];
        let tag = rest.split("<ETag>").nth(1)?.split("</ETag>").next()?;
        Some(tag.replace("&#34;", "").replace('"', ""))
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        let r = http::get(self.addr, path, None).ok()?;
        (r.status == 200).then_some(r.bytes)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn s3_multipart_upload_resumes_the_same_upload_after_kill_9() {
    let Some(s3) = S3::start("recs") else { return };
    let mut edge = Edge::start_full(&s3.storage_lines("recs", "multipart"), "");
    let data = bytes(48 * 1024 * 1024 + 12_345, 9); // 10 parts of 5 MiB max
    drop_in(&edge, "big", &data);
    let journal = edge.dir.path().join("data/spool/big/journal.json");
    let mut upload_id = String::new();
    wait(
        60,
        "the first part journaled",
        || {
            let Ok(b) = std::fs::read(&journal) else {
                return false;
            };
            let Ok(j) = serde_json::from_slice::<serde_json::Value>(&b) else {
                return false;
            };
            let acked = j["chunks"]
                .as_array()
                .map(|c| c.iter().filter(|c| c["acked"] == true).count())
                .unwrap_or(0);
            upload_id = j["remote_upload_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (1..10).contains(&acked)
        },
        &edge,
    );
    assert!(!upload_id.is_empty());
    edge.crash_and_restart();
    wait(
        120,
        "the upload after the restart",
        || recordings(&edge).is_empty(),
        &edge,
    );
    let id = format!("upload_id={upload_id}");
    let completed = |l: &str| l.contains("s3 multipart upload completed") && l.contains(&id);
    // (Logged before the upload left the spool; the log reader may lag.)
    wait_until(5, || edge.log_text().lines().any(completed));
    let log = edge.log_text();
    assert!(
        log.lines().any(completed),
        "the upload started before the kill is the one completed:\n{log}"
    );
    assert_eq!(
        log.matches("s3 multipart upload started").count(),
        1,
        "no second upload was started"
    );
    let got = s3.get("/recs/recordings/big.wav").expect("object stored");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "object is byte-identical");
    assert!(
        s3.etag("recs", "recordings/big.json").is_some(),
        "metadata object stored"
    );
    assert!(
        !edge.log_text().contains("s3-secret-key"),
        "the secret is never logged"
    );
}

#[test]
fn s3_split_mode_writes_one_object_per_chunk() {
    let Some(s3) = S3::start("split") else { return };
    let edge = Edge::start_full(&s3.storage_lines("split", "split"), "");
    let data = bytes(11 * 1024 * 1024, 4);
    drop_in(&edge, "parts", &data);
    wait(
        60,
        "the split upload",
        || edge.metric("edge_recordings_uploaded_total") == 1.0,
        &edge,
    );
    // Objects written with a plain PUT have the MD5 of their bytes as ETag.
    use edge_tests::md5::{Digest as _, Md5};
    for (i, chunk) in data.chunks(5 * 1024 * 1024).enumerate() {
        let md5: String = Md5::digest(chunk)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            s3.etag("split", &format!("recordings/parts/{i:05}"))
                .as_deref(),
            Some(md5.as_str()),
            "chunk {i}"
        );
    }
    assert!(s3.etag("split", "recordings/parts/00003").is_none());
    assert!(s3.etag("split", "recordings/parts/metadata.json").is_some());
}
