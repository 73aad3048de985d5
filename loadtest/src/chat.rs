//! `loadtest chat`: rooms of a customer, an agent and two supervisors over WebSocket,
//! customer and agent writing at a steady total rate; every frame each connection
//! receives is checked (per room and sender: sequence without gap, duplicate or
//! reordering) and its delivery latency measured (send and receive clocks are the
//! same process). The same fan-out runs against nats-server's WebSocket listener
//! (`--server nats`: a subject per room, all four connections subscribed) to
//! compare like with like.
//!
//! Edge rooms need agents that can take one chat each: users `lt-agent-{i}` with
//! tokens `lt-agent-token-{i}` (i from 0), `max_chats = 1`, in the chat queue
//! `--queue`, and a supervisor token (`bench/chat.sh` writes such a config).
//!
//! Server memory per idle connection is the server's RSS growth (`--server-pid`)
//! from before the first connection to when all rooms are set up, divided by the
//! connections.

use chat::{ClientFrame, Offset, ServerFrame};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Edge,
    Nats,
}

#[derive(Debug, Clone)]
pub struct ChatArgs {
    /// HOST:PORT of the edge's HTTP listener or nats-server's WebSocket listener.
    pub target: String,
    /// Edge only: HOST:PORT where the agents and supervisors connect (another
    /// cluster node: their frames are relayed to the chats' node); `None`: the
    /// target.
    pub staff_target: Option<String>,
    pub server: Server,
    pub rooms: usize,
    /// Messages per second, all rooms together (half from customers, half agents).
    pub rate: f64,
    pub duration: Duration,
    pub queue: String,
    pub supervisor_token: String,
    pub server_pid: Option<u32>,
    /// Bytes of message text.
    pub size: usize,
    pub setup_concurrency: usize,
}

#[derive(Debug, Default)]
pub struct ChatReport {
    pub connections: usize,
    pub setup_secs: f64,
    pub rss_before: Option<u64>,
    pub rss_idle: Option<u64>,
    pub sent: u64,
    pub send_secs: f64,
    pub deliveries: u64,
    pub expected: u64,
    pub lost: u64,
    pub dup_or_reordered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub disconnects: u64,
}

fn epoch() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What every receiving connection accumulates.
struct Recv {
    /// Last sequence seen per sender (0 customer, 1 agent).
    last: [u64; 2],
    unique: u64,
    bad: u64,
    hist: Histogram<u64>,
}

impl Recv {
    fn new() -> Recv {
        Recv {
            last: [0; 2],
            unique: 0,
            bad: 0,
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
        }
    }

    /// A payload `L|room|sender|seq|nanos|…` found in `frame`.
    fn see(&mut self, frame: &[u8]) {
        let Some(at) = frame.windows(2).position(|w| w == b"L|") else {
            return;
        };
        let mut it = frame[at + 2..].split(|b| *b == b'|');
        let _room = it.next();
        let num = |x: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(x?).ok()?.parse().ok() };
        let (Some(sender), Some(seq), Some(t)) = (num(it.next()), num(it.next()), num(it.next()))
        else {
            return;
        };
        let s = (sender as usize).min(1);
        if seq == self.last[s] + 1 {
            self.last[s] = seq;
            self.unique += 1;
        } else if seq > self.last[s] {
            // A gap: counted lost at the end unless it shows up (then reordered).
            self.last[s] = seq;
            self.unique += 1;
            self.bad += 1;
        } else {
            self.bad += 1;
        }
        let now = epoch().elapsed().as_nanos() as u64;
        let us = now.saturating_sub(t) / 1000;
        let _ = self.hist.record(us.max(1));
    }
}

struct Shared {
    recvs: Mutex<Vec<Recv>>,
    disconnects: AtomicU64,
    /// Frames read by all readers so far (to see when deliveries stop coming).
    frames: AtomicU64,
}

async fn connect(target: &str, path: &str, bearer: Option<&str>) -> Result<Ws, String> {
    let mut req = format!("ws://{target}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(t) = bearer {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().map_err(|_| "bad token")?,
        );
    }
    // Small read buffers: 10 000 connections at tungstenite's default 128 KiB would
    // cost the generator 1.3 GB.
    let cfg =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .map_err(|e| format!("connect {target}{path}: {e}"))?;
    Ok(ws)
}

fn frame(f: &ClientFrame) -> Message {
    Message::Text(
        serde_json::to_string(f)
            .expect("client frames serialize")
            .into(),
    )
}

/// Read server frames until `want` picks one (`what` names it in errors); an
/// `error` frame or a close ends the wait.
async fn until<T>(
    ws: &mut Ws,
    what: &str,
    mut want: impl FnMut(ServerFrame) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| format!("no `{what}` within 60 s"))?;
        match m {
            Some(Ok(Message::Text(t))) => {
                match ServerFrame::parse(&t).map_err(|e| e.to_string())? {
                    ServerFrame::Error { error, .. } => {
                        return Err(format!("server error while waiting for `{what}`: {error}"))
                    }
                    f => {
                        if let Some(v) = want(f) {
                            return Ok(v);
                        }
                    }
                }
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!("closed waiting for `{what}`: {c:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("waiting for `{what}`: {e}")),
            None => return Err(format!("closed waiting for `{what}`")),
        }
    }
}

/// A room's chat id (edge) and its four connections: customer, agent, sup1, sup2.
type Room = (String, [Ws; 4]);

async fn setup_edge(a: &ChatArgs) -> Result<Vec<Room>, String> {
    let sem = Arc::new(Semaphore::new(a.setup_concurrency));
    // Agents first: each takes exactly one chat (max_chats = 1).
    let mut agents = Vec::with_capacity(a.rooms);
    let mut set = tokio::task::JoinSet::new();
    let staff = a.staff_target.clone().unwrap_or_else(|| a.target.clone());
    for i in 0..a.rooms {
        let (t, sem) = (staff.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await;
            let tok = format!("lt-agent-token-{i}");
            let mut ws = connect(&t, "/ws/agent", Some(&tok)).await?;
            until(&mut ws, "hello", |f| {
                matches!(f, ServerFrame::Hello { .. }).then_some(())
            })
            .await?;
            Ok::<_, String>(ws)
        });
    }
    while let Some(r) = set.join_next().await {
        agents.push(r.map_err(|e| e.to_string())??);
    }
    // Agents wait for their offer and accept it.
    let mut accepting = tokio::task::JoinSet::new();
    for mut ws in agents {
        accepting.spawn(async move {
            let chat = until(&mut ws, "offer", |f| match f {
                ServerFrame::Offer { chat, .. } => Some(chat),
                _ => None,
            })
            .await?;
            ws.send(frame(&ClientFrame::Accept { chat: chat.clone() }))
                .await
                .map_err(|e| e.to_string())?;
            until(&mut ws, "accepted", |f| {
                matches!(f, ServerFrame::Accepted { .. }).then_some(())
            })
            .await?;
            Ok::<_, String>((chat, ws))
        });
    }
    let mut customers = tokio::task::JoinSet::new();
    for i in 0..a.rooms {
        let (t, q, sem) = (a.target.clone(), a.queue.clone(), sem.clone());
        customers.spawn(async move {
            let _p = sem.acquire().await;
            let mut ws = connect(&t, "/ws/chat", None).await?;
            let mut fields = serde_json::Map::new();
            fields.insert("name".into(), format!("load-{i}").into());
            let start = ClientFrame::Start {
                queue: Some(q),
                fields: Some(fields),
            };
            ws.send(frame(&start)).await.map_err(|e| e.to_string())?;
            let chat = until(&mut ws, "started", |f| match f {
                ServerFrame::Started { chat, .. } => Some(chat),
                _ => None,
            })
            .await?;
            Ok::<_, String>((chat, ws))
        });
    }
    let mut by_chat = std::collections::HashMap::new();
    while let Some(r) = customers.join_next().await {
        let (chat, ws) = r.map_err(|e| e.to_string())??;
        by_chat.insert(chat, ws);
    }
    let mut pairs = Vec::new();
    while let Some(r) = accepting.join_next().await {
        let (chat, agent) = r.map_err(|e| e.to_string())??;
        let cust = by_chat
            .remove(&chat)
            .ok_or_else(|| format!("agent got unknown chat {chat}"))?;
        pairs.push((chat, cust, agent));
    }
    // Two supervisors per room, each watching it.
    let mut rooms = tokio::task::JoinSet::new();
    for (chat, mut cust, agent) in pairs {
        let (t, tok, sem) = (staff.clone(), a.supervisor_token.clone(), sem.clone());
        rooms.spawn(async move {
            let _p = sem.acquire().await;
            // The customer has seen the join message before the load starts.
            let mut sups = Vec::new();
            for _ in 0..2 {
                let mut ws = connect(&t, "/ws/agent", Some(&tok)).await?;
                until(&mut ws, "hello", |f| {
                    matches!(f, ServerFrame::Hello { .. }).then_some(())
                })
                .await?;
                let watch = ClientFrame::Watch {
                    chat: chat.clone(),
                    offset: Offset(0),
                };
                ws.send(frame(&watch)).await.map_err(|e| e.to_string())?;
                until(&mut ws, "watching", |f| {
                    matches!(f, ServerFrame::Watching { .. }).then_some(())
                })
                .await?;
                sups.push(ws);
            }
            until(&mut cust, "message", |f| {
                matches!(f, ServerFrame::Message { .. }).then_some(())
            })
            .await?;
            let [s1, s2]: [Ws; 2] = sups.try_into().map_err(|_| "supervisors")?;
            Ok::<Room, String>((chat, [cust, agent, s1, s2]))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = rooms.join_next().await {
        out.push(r.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

async fn setup_nats(a: &ChatArgs) -> Result<Vec<Room>, String> {
    let sem = Arc::new(Semaphore::new(a.setup_concurrency));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..a.rooms {
        let (t, sem) = (a.target.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await;
            let mut v = Vec::new();
            for _ in 0..4 {
                let mut ws = connect(&t, "/", None).await?;
                let hello = format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":true}}\r\nSUB room.{i} 1\r\nPING\r\n"
                );
                ws.send(Message::Binary(hello.into_bytes().into()))
                    .await
                    .map_err(|e| e.to_string())?;
                // PONG after our PING: the subscription is registered.
                let mut buf = Vec::new();
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                        Ok(Some(Ok(m))) => buf.extend_from_slice(&m.into_data()),
                        _ => return Err("nats: no PONG".to_string()),
                    }
                    if buf.windows(4).any(|w| w == b"PONG") {
                        break;
                    }
                    if buf.windows(4).any(|w| w == b"-ERR") {
                        return Err(format!("nats: {}", String::from_utf8_lossy(&buf)));
                    }
                }
                v.push(ws);
            }
            let r: [Ws; 4] = v.try_into().map_err(|_| "four".to_string())?;
            Ok::<_, String>((i, (String::new(), r)))
        });
    }
    let mut rooms: Vec<(usize, Room)> = Vec::new();
    while let Some(r) = set.join_next().await {
        rooms.push(r.map_err(|e| e.to_string())??);
    }
    rooms.sort_by_key(|(i, _)| *i);
    Ok(rooms.into_iter().map(|(_, r)| r).collect())
}

/// Read frames until the stream ends or `stop` turns true; NATS frames carry
/// protocol lines. (A `Notify` lost the stop of a reader that was busy with a
/// frame when it fired: `notify_waiters` wakes only futures waiting right then,
/// and under heavy load runs hung after sending; `wait_for` sees the value.)
async fn reader(mut rx: Stream, shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut r = Recv::new();
    loop {
        tokio::select! {
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    shared.frames.fetch_add(1, Ordering::Relaxed);
                    r.see(t.as_bytes())
                }
                Some(Ok(Message::Binary(b))) => {
                    shared.frames.fetch_add(1, Ordering::Relaxed);
                    // NATS: one WS message may hold several MSG lines; payloads are
                    // found by their marker (one per MSG).
                    let mut rest: &[u8] = &b;
                    while let Some(at) = rest.windows(2).position(|w| w == b"L|") {
                        r.see(&rest[at..]);
                        rest = &rest[at + 2..];
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    shared.disconnects.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(Ok(_)) => {}
            },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    shared
        .recvs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(r);
}

fn payload(room: usize, sender: u8, seq: u64, size: usize) -> String {
    let t = epoch().elapsed().as_nanos() as u64;
    let mut s = format!("L|{room}|{sender}|{seq}|{t}|");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Run one load: set up rooms, send for `duration`, wait for stragglers, report.
pub async fn run_chat(a: ChatArgs) -> Result<ChatReport, String> {
    epoch();
    let mut rep = ChatReport {
        rss_before: a.server_pid.and_then(rss_bytes),
        ..Default::default()
    };
    let t0 = Instant::now();
    let rooms = match a.server {
        Server::Edge => setup_edge(&a).await?,
        Server::Nats => setup_nats(&a).await?,
    };
    rep.setup_secs = t0.elapsed().as_secs_f64();
    rep.connections = rooms.len() * 4;
    // Idle: let the server settle, then read its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rep.rss_idle = a.server_pid.and_then(rss_bytes);
    eprintln!(
        "loadtest chat: {} rooms, {} connections up in {:.1} s",
        rooms.len(),
        rep.connections,
        rep.setup_secs
    );

    let shared = Arc::new(Shared {
        recvs: Mutex::new(Vec::new()),
        disconnects: AtomicU64::new(0),
        frames: AtomicU64::new(0),
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    let mut senders: Vec<(String, Sink, Sink)> = Vec::new();
    for (chat, room) in rooms {
        let [c, ag, s1, s2] = room;
        let (cs, cr) = c.split();
        let (as_, ar) = ag.split();
        senders.push((chat, cs, as_));
        for rx in [cr, ar, s1.split().1, s2.split().1] {
            readers.push(tokio::spawn(reader(rx, shared.clone(), stop.clone())));
        }
    }
    // Each room sends at rate/rooms, alternating customer and agent, ticks spread
    // over the period so the total is steady.
    let per_room = a.rate / senders.len().max(1) as f64;
    let period = Duration::from_secs_f64(1.0 / per_room.max(0.001));
    let sent = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + a.duration;
    let n = senders.len();
    let mut tasks = Vec::new();
    for (i, (chat, mut cs, mut as_)) in senders.into_iter().enumerate() {
        let (sent, server, size) = (sent.clone(), a.server, a.size);
        let offset = period.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = [0u64; 2];
            let mut k = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                let who = (k % 2) as u8;
                k += 1;
                seq[who as usize] += 1;
                let text = payload(i, who, seq[who as usize], size);
                let msg = match server {
                    Server::Edge => frame(&ClientFrame::Message {
                        chat: chat.clone(),
                        client_id: Some(seq[who as usize].to_string()),
                        text,
                        private: false,
                    }),
                    Server::Nats => Message::Binary(
                        format!("PUB room.{i} {}\r\n{text}\r\n", text.len())
                            .into_bytes()
                            .into(),
                    ),
                };
                let sink = if who == 0 { &mut cs } else { &mut as_ };
                if sink.send(msg).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            (seq, cs, as_)
        }));
    }
    let ts = Instant::now();
    let mut sent_per_room = Vec::new();
    let mut keep = Vec::new();
    for t in tasks {
        let (seq, cs, as_) = t.await.map_err(|e| e.to_string())?;
        sent_per_room.push(seq);
        keep.push((cs, as_));
    }
    rep.send_secs = ts.elapsed().as_secs_f64();
    rep.sent = sent.load(Ordering::Relaxed);
    // Stragglers: wait until frames stop coming for a second (at least 3 s, at
    // most 60 s), so a server that is behind is not counted as losing what it
    // still delivers; what never comes is lost.
    let grace = Instant::now();
    let mut last = shared.frames.load(Ordering::Relaxed);
    let mut quiet = 0;
    while grace.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = shared.frames.load(Ordering::Relaxed);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet >= 4 && grace.elapsed() >= Duration::from_secs(3) {
            break;
        }
    }
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    let recvs = std::mem::take(&mut *shared.recvs.lock().unwrap_or_else(|e| e.into_inner()));
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for r in &recvs {
        rep.deliveries += r.unique + r.bad;
        rep.dup_or_reordered += r.bad;
        let _ = hist.add(&r.hist);
    }
    rep.expected = 4 * rep.sent;
    let unique: u64 = recvs.iter().map(|r| r.unique).sum();
    rep.lost = rep.expected.saturating_sub(unique);
    rep.p50_ms = hist.value_at_quantile(0.5) as f64 / 1000.0;
    rep.p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
    rep.max_ms = hist.max() as f64 / 1000.0;
    rep.disconnects = shared.disconnects.load(Ordering::Relaxed);
    drop(keep);
    let _ = sent_per_room;
    Ok(rep)
}

impl ChatReport {
    pub fn print(&self, a: &ChatArgs) {
        let name = match a.server {
            Server::Edge => "edge",
            Server::Nats => "nats",
        };
        println!("server: {name}");
        println!(
            "rooms: {}  connections: {}  setup: {:.1} s",
            a.rooms, self.connections, self.setup_secs
        );
        if let (Some(b), Some(i)) = (self.rss_before, self.rss_idle) {
            println!(
                "server RSS: {:.1} MiB before, {:.1} MiB idle with all connections = {:.1} KiB per connection",
                b as f64 / 1048576.0,
                i as f64 / 1048576.0,
                i.saturating_sub(b) as f64 / 1024.0 / self.connections.max(1) as f64
            );
        }
        println!(
            "sent: {} messages in {:.1} s = {:.0}/s (asked {:.0}/s)",
            self.sent,
            self.send_secs,
            self.sent as f64 / self.send_secs.max(1e-9),
            a.rate
        );
        println!(
            "deliveries: {} = {:.0}/s  latency p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
            self.deliveries,
            self.deliveries as f64 / self.send_secs.max(1e-9),
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        );
        println!(
            "lost: {}  duplicated or out of order: {}  disconnects: {}",
            self.lost, self.dup_or_reordered, self.disconnects
        );
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
