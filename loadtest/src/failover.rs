//! `loadtest chat-failover`: what a node kill does to live chats in cluster mode.
//! Each of `--rooms` customers starts a chat on `--first` and writes a message
//! every `--interval`, waiting for each one's echo (the acknowledgement, with its
//! offset) before the next. When its connection breaks (the node was killed; the
//! operator or `bench/cluster_chat.sh` does that) the customer resumes on
//! `--then` from offset 1, retrying while that node still says the chat is on the
//! old one (close 4010), and checks that every acknowledged message is in the
//! room with the offset it was acknowledged with; then it sends one more and waits
//! for its echo (the chat goes on). Lost = acknowledged and missing or moved.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone)]
pub struct FailoverArgs {
    /// HOST:PORT of the node the chats start on.
    pub first: String,
    /// HOST:PORT of the node they resume on.
    pub then: String,
    pub rooms: usize,
    pub queue: String,
    /// Between one customer's messages.
    pub interval: Duration,
    /// How long a customer keeps trying to resume after its connection broke.
    pub resume_within: Duration,
    /// Stop writing on `first` after this long if the connection never breaks.
    pub max_wait: Duration,
    pub setup_concurrency: usize,
}

#[derive(Debug, Default)]
pub struct FailoverReport {
    pub rooms: usize,
    pub started: usize,
    /// Messages acknowledged (echoed with an offset) before the break.
    pub acked: u64,
    /// Acknowledged messages missing after the resume, or at another offset.
    pub lost: u64,
    /// Rooms resumed on the other node.
    pub resumed: usize,
    /// Rooms whose message after the resume was acknowledged.
    pub continued: usize,
    /// Rooms whose connection never broke within `max_wait`.
    pub never_broke: usize,
    /// From the break to `resumed`, per room.
    pub resume_p50_ms: f64,
    pub resume_max_ms: f64,
    /// The first few errors, for the operator.
    pub errors: Vec<String>,
}

struct Outcome {
    started: bool,
    acked: u64,
    lost: u64,
    broke: bool,
    resume_ms: Option<f64>,
    continued: bool,
    error: Option<String>,
}

async fn connect(target: &str) -> Result<Ws, String> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{target}/ws/chat"))
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    Ok(ws)
}

fn text(v: &Value) -> Message {
    Message::Text(v.to_string().into())
}

/// The next JSON frame; `Err` on close, break or `within` passing.
async fn next(ws: &mut Ws, within: Duration) -> Result<Value, String> {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Err(_) => return Err("timeout".into()),
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(&t).map_err(|e| e.to_string())
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return Err(format!(
                    "closed {}",
                    c.map(|c| u16::from(c.code)).unwrap_or(0)
                ))
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("closed".into()),
        }
    }
}

/// Wait for the echo of `client_id`; its offset.
async fn echo(ws: &mut Ws, client_id: &str) -> Result<u64, String> {
    loop {
        let v = next(ws, Duration::from_secs(10)).await?;
        if v["type"] == "message" && v["client_id"] == client_id {
            return v["offset"]
                .as_u64()
                .ok_or_else(|| "echo without offset".into());
        }
    }
}

async fn room(i: usize, a: Arc<FailoverArgs>, sem: Arc<Semaphore>) -> Outcome {
    let mut out = Outcome {
        started: false,
        acked: 0,
        lost: 0,
        broke: false,
        resume_ms: None,
        continued: false,
        error: None,
    };
    let setup = async {
        let _p = sem.acquire().await.map_err(|e| e.to_string())?;
        let mut ws = connect(&a.first).await?;
        ws.send(text(
            &json!({"type":"start","queue":a.queue,"fields":{"name":format!("lt-{i}")}}),
        ))
        .await
        .map_err(|e| e.to_string())?;
        loop {
            let v = next(&mut ws, Duration::from_secs(30)).await?;
            if v["type"] == "started" {
                let token = v["token"].as_str().unwrap_or_default().to_string();
                return Ok::<_, String>((ws, token));
            }
        }
    };
    let (mut ws, token) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            out.error = Some(format!("room {i}: start: {e}"));
            return out;
        }
    };
    out.started = true;
    // Write until the connection breaks.
    let mut acked: Vec<(u64, String)> = Vec::new();
    let until = Instant::now() + a.max_wait;
    let mut k = 0u64;
    let broke_at = loop {
        if Instant::now() > until {
            break None;
        }
        let id = format!("m{k}");
        let body = format!("lt-{i}-{k}");
        if ws
            .send(text(&json!({"type":"message","client_id":id,"text":body})))
            .await
            .is_err()
        {
            break Some(Instant::now());
        }
        match echo(&mut ws, &id).await {
            Ok(offset) => acked.push((offset, body)),
            Err(_) => break Some(Instant::now()),
        }
        k += 1;
        tokio::time::sleep(a.interval).await;
    };
    out.acked = acked.len() as u64;
    let Some(broke_at) = broke_at else {
        return out;
    };
    out.broke = true;
    drop(ws);
    // Resume on the other node.
    let deadline = broke_at + a.resume_within;
    let (mut ws, replay) = loop {
        if Instant::now() > deadline {
            out.lost = out.acked;
            out.error = Some(format!(
                "room {i}: not resumed within {:?}",
                a.resume_within
            ));
            return out;
        }
        let tried = async {
            let mut ws = connect(&a.then).await?;
            ws.send(text(&json!({"type":"resume","token":token,"offset":1})))
                .await
                .map_err(|e| e.to_string())?;
            let v = next(&mut ws, Duration::from_secs(10)).await?;
            if v["type"] != "resumed" {
                return Err(format!("answered {v}"));
            }
            // The replay comes at once; it is over when the room is quiet.
            let mut replay = Vec::new();
            while let Ok(v) = next(&mut ws, Duration::from_millis(500)).await {
                replay.push(v);
            }
            Ok::<_, String>((ws, replay))
        };
        match tried.await {
            Ok(x) => break x,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    out.resume_ms = Some(broke_at.elapsed().as_secs_f64() * 1000.0);
    let have: std::collections::HashMap<u64, String> = replay
        .iter()
        .filter(|v| v["type"] == "message" && v["from"] == "customer")
        .filter_map(|v| Some((v["offset"].as_u64()?, v["text"].as_str()?.to_string())))
        .collect();
    out.lost = acked
        .iter()
        .filter(|(o, body)| have.get(o) != Some(body))
        .count() as u64;
    let id = "after";
    if ws
        .send(text(
            &json!({"type":"message","client_id":id,"text":format!("lt-{i}-after")}),
        ))
        .await
        .is_ok()
    {
        out.continued = echo(&mut ws, id).await.is_ok();
    }
    out
}

pub async fn run_failover(a: FailoverArgs) -> FailoverReport {
    let a = Arc::new(a);
    let sem = Arc::new(Semaphore::new(a.setup_concurrency));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..a.rooms {
        set.spawn(room(i, a.clone(), sem.clone()));
    }
    let mut rep = FailoverReport {
        rooms: a.rooms,
        ..Default::default()
    };
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    while let Some(r) = set.join_next().await {
        let Ok(o) = r else { continue };
        rep.started += o.started as usize;
        rep.acked += o.acked;
        rep.lost += o.lost;
        rep.never_broke += (o.started && !o.broke) as usize;
        rep.continued += o.continued as usize;
        if let Some(ms) = o.resume_ms {
            rep.resumed += 1;
            let _ = hist.record(ms as u64);
        }
        if let Some(e) = o.error {
            if rep.errors.len() < 5 {
                rep.errors.push(e);
            }
        }
    }
    if !hist.is_empty() {
        rep.resume_p50_ms = hist.value_at_quantile(0.5) as f64;
        rep.resume_max_ms = hist.max() as f64;
    }
    rep
}

impl FailoverReport {
    pub fn print(&self) {
        println!(
            "rooms: {}  started: {}  acknowledged before the kill: {}  lost: {}",
            self.rooms, self.started, self.acked, self.lost
        );
        println!(
            "resumed on the other node: {}  went on after the resume: {}  never broke: {}",
            self.resumed, self.continued, self.never_broke
        );
        println!(
            "from the break to resumed: p50 {:.0} ms, max {:.0} ms",
            self.resume_p50_ms, self.resume_max_ms
        );
        for e in &self.errors {
            println!("error: {e}");
        }
    }

    /// Every room started, broke, resumed and went on, and nothing acknowledged is missing.
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.started == self.rooms
            && self.resumed == self.rooms
            && self.continued == self.rooms
    }
}
