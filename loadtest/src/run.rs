//! The drivers of `loadtest call` and `loadtest answer`: sockets, the rate
//! scheduler, the RTP engine, the live progress line and the final summary.

use crate::answerer::{self, AnswerConfig, Answerer, PortSource};
use crate::caller::{self, Caller, CallerConfig};
use crate::collector::Collector;
use crate::net::{Inbound, Net};
use crate::rtp::{self, Mode, StreamConfig};
use serde_json::{json, Value};
use sip::{Flow, Transport};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("loadtest speaks SIP over UDP and TCP, not {0}")]
    Unsupported(Transport),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to {target} over TCP: {source}")]
    Connect {
        target: SocketAddr,
        source: std::io::Error,
    },
    #[error("target {target} refused: nothing is listening there (ICMP port unreachable / connection refused)")]
    Refused { target: SocketAddr },
    #[error("target {target} did not answer: no SIP response to any of {calls} INVITEs")]
    Silent { target: SocketAddr, calls: u64 },
    #[error("cannot write the report {path}: {source}")]
    Report {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot draw the report: {0}")]
    Plot(String),
    #[error("cannot make the DTLS certificate of the browsers: {0}")]
    Certificate(String),
}

#[derive(Debug, Clone)]
pub struct CallArgs {
    pub target: SocketAddr,
    pub transport: Transport,
    pub rate: f64,
    pub ramp: Duration,
    pub calls: u64,
    pub concurrency: usize,
    pub hold: Duration,
    pub rtp: bool,
    pub tone_hz: f64,
    pub dtmf: Option<String>,
    pub from: String,
    pub to: String,
    pub auth: Option<(String, String)>,
    pub local: SocketAddr,
    pub media_ip: IpAddr,
    pub answer_timeout: Duration,
    pub progress: bool,
    /// RTP worker threads (the SIP loop runs on its own thread).
    pub media_threads: usize,
}

pub(crate) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Calls due by `t` at `rate`/s after a linear ramp of `ramp`.
fn due(rate: f64, ramp: Duration, t: Duration) -> f64 {
    let (t, r) = (t.as_secs_f64(), ramp.as_secs_f64());
    if r > 0.0 && t < r {
        rate * t * t / (2.0 * r)
    } else {
        rate * (t - r / 2.0)
    }
}

/// When call number `n` (1-based) is due.
fn due_at(rate: f64, ramp: Duration, n: u64) -> Duration {
    let r = ramp.as_secs_f64();
    let n = n as f64;
    let t = if r > 0.0 && n < rate * r / 2.0 {
        (2.0 * r * n / rate).sqrt()
    } else {
        n / rate + r / 2.0
    };
    Duration::from_secs_f64(t.max(0.0))
}

pub(crate) struct Progress {
    enabled: bool,
    tty: bool,
    next: Instant,
    every: Duration,
}

impl Progress {
    fn new(enabled: bool, start: Instant) -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress {
            enabled,
            tty,
            next: start + Duration::from_secs(1),
            every: Duration::from_secs(if tty { 1 } else { 5 }),
        }
    }

    fn maybe(&mut self, now: Instant, c: &Collector, up: usize) {
        if !self.enabled || now < self.next {
            return;
        }
        self.next = now + self.every;
        let g = c.inner.lock();
        let t = now.duration_since(c.start).as_secs_f64();
        let ok = g.statuses.get(&200).copied().unwrap_or(0);
        let fin: u64 = g.statuses.values().sum();
        let (e, l) = g
            .buckets
            .iter()
            .fold((0, 0), |(e, l), b| (e + b.rtp_expected, l + b.rtp_lost));
        let loss = if e > 0 {
            100.0 * l as f64 / e as f64
        } else {
            0.0
        };
        let line = format!(
            "[{t:6.1}s] up {up:5}  started {:7} ({:7.1}/s)  answered {ok:7}  failed {:5}  rtp loss {loss:.3}%",
            g.attempted,
            g.attempted as f64 / t.max(1e-3),
            fin - ok
        );
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// Run `loadtest call`; returns the JSON summary and the collector (for the report).
pub async fn run_call(a: CallArgs) -> Result<(Value, Arc<Collector>), RunError> {
    let (net, mut inbound) = match a.transport {
        Transport::Udp => Net::udp(a.local, false)
            .await
            .map_err(|source| RunError::Bind {
                what: "the SIP socket",
                addr: a.local,
                source,
            })?,
        Transport::Tcp => Net::tcp_connect(a.target)
            .await
            .map_err(|source| RunError::Connect {
                target: a.target,
                source,
            })?,
        t @ (Transport::Tls | Transport::Ws | Transport::Wss) => {
            return Err(RunError::Unsupported(t))
        }
    };
    let flow = Flow {
        transport: a.transport,
        local: net.local,
        remote: a.target,
    };
    let direct = net.udp_socket().cloned();
    let mut rbuf = vec![0u8; sip::message::MAX_MESSAGE_SIZE + 1];
    let mut caller = Caller::new(
        CallerConfig {
            flow,
            from_user: a.from.clone(),
            to_user: a.to.clone(),
            auth: a.auth.clone(),
            hold: a.hold,
            answer_timeout: a.answer_timeout,
            media_ip: a.media_ip,
            user_agent: format!("loadtest/{}", env!("CARGO_PKG_VERSION")),
        },
        seed(),
    );
    let (start, collector, mut progress, engine) = begin(a.progress, a.media_threads, a.media_ip)?;
    let mut sockets: HashMap<u64, std::net::UdpSocket> = HashMap::new();
    let mut streaming: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut started = 0u64;
    let mut any_response = false;
    let mut refused = false;
    let stream_cfg = StreamConfig {
        mode: Mode::Tone(a.tone_hz),
        dtmf: a.dtmf.clone(),
        dtmf_after: Duration::from_millis(500),
    };
    loop {
        let now = Instant::now();
        // Start the calls that are due.
        let want = due(a.rate, a.ramp, now - start).floor() as u64;
        while started < a.calls && started < want && caller.active() < a.concurrency {
            let port = if a.rtp {
                let addr = SocketAddr::new(a.media_ip, 0);
                let s = std::net::UdpSocket::bind(addr)
                    .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    .map_err(|source| RunError::Bind {
                        what: "an RTP socket",
                        addr,
                        source,
                    })?;
                let p = s.local_addr().map(|l| l.port()).ok();
                Some((s, p))
            } else {
                None
            };
            let id = caller.start_call(now, port.as_ref().and_then(|p| p.1));
            if let Some((s, _)) = port {
                sockets.insert(id, s);
            }
            started += 1;
            collector.call_started(now, caller.active() as u64);
        }
        // Apply outputs.
        while let Some(o) = caller.poll_output() {
            match o {
                caller::Output::MediaStart { call, remote } => {
                    if let Some(sock) = sockets.remove(&call) {
                        engine.start_stream(
                            call,
                            sock,
                            remote,
                            stream_cfg.clone(),
                            (seed() as u32) | 1,
                        );
                        streaming.insert(call);
                    }
                }
                caller::Output::MediaStop { call } => {
                    if streaming.remove(&call) {
                        engine.stop_stream(call);
                    }
                }
                caller::Output::Finished(r) => {
                    if !r.timed_out {
                        any_response = true;
                    }
                    sockets.remove(&r.call);
                    if streaming.remove(&r.call) {
                        engine.stop_stream(r.call);
                    }
                    collector.call_finished(now, r.status, r.timed_out, r.setup, r.pdd);
                    collector.call_outcome(
                        r.started,
                        r.status,
                        r.setup,
                        r.bye_status,
                        r.ended_by_callee,
                    );
                }
            }
        }
        while let Some(t) = caller.poll_transmit() {
            net.send(t.flow, t.data);
        }
        collector.concurrency(now, caller.active() as u64);
        progress.maybe(now, &collector, caller.active());
        if started >= a.calls && caller.active() == 0 {
            break;
        }
        if refused && !any_response {
            return Err(RunError::Refused { target: a.target });
        }
        // Sleep until the next call is due, a timer fires, or a message arrives.
        let mut wake = caller
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(200));
        if started < a.calls && caller.active() < a.concurrency {
            wake = wake.min(start + due_at(a.rate, a.ramp, started + 1));
        }
        wake = wake.min(now + Duration::from_millis(250)).max(now);
        tokio::select! {
            r = async { match &direct { Some(s) => s.readable().await, None => std::future::pending().await } } => {
                if r.is_ok() {
                    let s = direct.as_ref().expect("direct UDP");
                    let now = Instant::now();
                    for _ in 0..1024 {
                        match s.try_recv_from(&mut rbuf) {
                            Ok((n, from)) => {
                                let flow = Flow { transport: Transport::Udp, local: net.local, remote: from };
                                caller.handle_datagram(now, flow, &rbuf[..n]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
                            Err(_) => break,
                        }
                    }
                }
            }
            m = inbound.recv() => {
                let mut next = m;
                let now = Instant::now();
                let mut n = 0;
                while let Some(msg) = next.take() {
                    match msg {
                        Inbound::Message(flow, data) => caller.handle_datagram(now, flow, &data),
                        Inbound::Refused(_) => refused = true,
                        Inbound::Ping(_) => {}
                    }
                    n += 1;
                    if n < 512 {
                        next = inbound.try_recv().ok();
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => caller.handle_timeout(Instant::now()),
        }
    }
    progress.done();
    engine.shutdown();
    let elapsed = start.elapsed();
    {
        let g = collector.inner.lock();
        if g.attempted > 0 && g.timeouts == g.attempted && !any_response {
            return Err(RunError::Silent {
                target: a.target,
                calls: g.attempted,
            });
        }
    }
    let config = json!({
        "rate": a.rate, "ramp_s": a.ramp.as_secs_f64(), "calls": a.calls, "concurrency": a.concurrency,
        "duration_s": a.hold.as_secs_f64(), "transport": a.transport.as_str().to_ascii_lowercase(),
        "rtp": a.rtp, "dtmf": a.dtmf, "from": a.from, "to": a.to,
    });
    let summary = crate::summary::build("call", &a.target.to_string(), config, &collector, elapsed);
    Ok((summary, collector))
}

#[derive(Debug, Clone)]
pub struct AnswerArgs {
    pub listen: SocketAddr,
    pub transport: Transport,
    pub mode: Option<Mode>,
    pub ring: Duration,
    pub reject: Option<(u16, f64)>,
    pub media_ip: IpAddr,
    /// Exit after this many calls have finished (None: run until interrupted).
    pub calls: Option<u64>,
    pub progress: bool,
    pub media_threads: usize,
    /// Transfer each answered call blind by REFER.
    pub refer: Option<crate::answerer::ReferPlan>,
}

/// What the transfers asked by `loadtest answer --refer-to` came to.
#[derive(Debug, Default)]
struct TransferTally {
    /// By the REFER's response (202 when accepted).
    refer_status: std::collections::BTreeMap<u16, u64>,
    /// Accepted transfers by their final sipfrag status (0: none came).
    outcome: std::collections::BTreeMap<u16, u64>,
    took: Vec<Duration>,
}

impl TransferTally {
    fn json(&mut self) -> Value {
        self.took.sort();
        let pct = |p: f64| -> Value {
            if self.took.is_empty() {
                return Value::Null;
            }
            let i = ((self.took.len() - 1) as f64 * p).round() as usize;
            json!(self.took[i].as_secs_f64() * 1000.0)
        };
        let completed = self.outcome.get(&200).copied().unwrap_or(0);
        let asked: u64 = self.refer_status.values().sum();
        let map = |m: &std::collections::BTreeMap<u16, u64>| -> serde_json::Map<String, Value> {
            m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
        };
        json!({
            "referred": asked,
            "refer_status": map(&self.refer_status),
            "outcome": map(&self.outcome),
            "completed": completed,
            "failed": asked - completed,
            "refer_to_final_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0) },
        })
    }
}

/// The clock, collector, progress line and RTP engine of a run.
pub(crate) fn begin(
    progress: bool,
    threads: usize,
    media_ip: IpAddr,
) -> Result<(Instant, Arc<Collector>, Progress, rtp::Engine), RunError> {
    let start = Instant::now();
    let collector = Arc::new(Collector::new(start));
    let engine =
        rtp::Engine::start(threads, collector.clone()).map_err(|source| RunError::Bind {
            what: "the RTP workers",
            addr: SocketAddr::new(media_ip, 0),
            source,
        })?;
    Ok((start, collector, Progress::new(progress, start), engine))
}

struct BoundPorts {
    ip: IpAddr,
    sockets: HashMap<u16, std::net::UdpSocket>,
}

impl PortSource for BoundPorts {
    fn take(&mut self) -> Option<u16> {
        let s = std::net::UdpSocket::bind((self.ip, 0)).ok()?;
        s.set_nonblocking(true).ok()?;
        let p = s.local_addr().ok()?.port();
        self.sockets.insert(p, s);
        Some(p)
    }
}

/// Run `loadtest answer` until `calls` finished or Ctrl-C / SIGTERM.
pub async fn run_answer(a: AnswerArgs) -> Result<(Value, Arc<Collector>), RunError> {
    let (net, mut inbound) = match a.transport {
        Transport::Udp => Net::udp(a.listen, true).await,
        Transport::Tcp => Net::tcp_listen(a.listen).await,
        t @ (Transport::Tls | Transport::Ws | Transport::Wss) => {
            return Err(RunError::Unsupported(t))
        }
    }
    .map_err(|source| RunError::Bind {
        what: "the SIP listener",
        addr: a.listen,
        source,
    })?;
    let mut answerer = Answerer::new(
        AnswerConfig {
            ring: a.ring,
            reject: a.reject,
            media_ip: a.media_ip,
            user_agent: format!("loadtest/{}", env!("CARGO_PKG_VERSION")),
            refer: a.refer.clone(),
        },
        seed(),
    );
    let mut transfers = TransferTally::default();
    let (start, collector, mut progress, engine) = begin(a.progress, a.media_threads, a.media_ip)?;
    let mut ports = BoundPorts {
        ip: a.media_ip,
        sockets: HashMap::new(),
    };
    let mut streaming: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut finished = 0u64;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let now = Instant::now();
        while let Some(o) = answerer.poll_output() {
            match o {
                answerer::Output::MediaStart { call, port, remote } => {
                    collector.call_started(now, answerer.active() as u64);
                    let Some(std_sock) = ports.sockets.remove(&port) else {
                        continue;
                    };
                    let Some(mode) = a.mode else { continue };
                    let cfg = StreamConfig {
                        mode,
                        dtmf: None,
                        dtmf_after: Duration::ZERO,
                    };
                    let remote = if mode == Mode::Echo { None } else { remote };
                    engine.start_stream(call, std_sock, remote, cfg, (seed() as u32) | 1);
                    streaming.insert(call);
                }
                answerer::Output::MediaStop { call } => {
                    if streaming.remove(&call) {
                        engine.stop_stream(call);
                    }
                }
                answerer::Output::Finished(r) => {
                    if r.status != 200 {
                        collector.call_started(now, answerer.active() as u64);
                    }
                    if streaming.remove(&r.call) {
                        engine.stop_stream(r.call);
                    }
                    collector.call_finished(now, r.status, false, None, None);
                    finished += 1;
                }
                answerer::Output::Transfer {
                    refer_status,
                    outcome,
                    took,
                    ..
                } => {
                    *transfers.refer_status.entry(refer_status).or_default() += 1;
                    if (200..300).contains(&refer_status) {
                        *transfers.outcome.entry(outcome.unwrap_or(0)).or_default() += 1;
                    }
                    transfers.took.extend(took);
                }
            }
        }
        while let Some(t) = answerer.poll_transmit() {
            net.send(t.flow, t.data);
        }
        progress.maybe(now, &collector, answerer.active());
        if a.calls.is_some_and(|n| finished >= n) {
            break;
        }
        let wake = answerer
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(250))
            .min(now + Duration::from_millis(250))
            .max(now);
        tokio::select! {
            m = inbound.recv() => {
                let now = Instant::now();
                if let Some(Inbound::Message(flow, data)) = m {
                    answerer.handle_datagram(now, flow, &data, &mut ports);
                }
                for _ in 0..512 {
                    match inbound.try_recv() {
                        Ok(Inbound::Message(flow, data)) => answerer.handle_datagram(now, flow, &data, &mut ports),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => answerer.handle_timeout(Instant::now(), &mut ports),
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
        }
    }
    progress.done();
    // Let the last responses leave and the streams finish.
    while let Some(t) = answerer.poll_transmit() {
        net.send(t.flow, t.data);
    }
    engine.shutdown();
    let config = json!({
        "listen": a.listen.to_string(), "transport": a.transport.as_str().to_ascii_lowercase(),
        "rtp": match a.mode { Some(Mode::Echo) => json!("echo"), Some(Mode::Tone(hz)) => json!(format!("tone:{hz}")), None => Value::Null },
        "ring_s": a.ring.as_secs_f64(), "reject": a.reject.map(|(c, p)| format!("{c}%{p}")),
    });
    let mut summary = crate::summary::build(
        "answer",
        &a.listen.to_string(),
        config,
        &collector,
        start.elapsed(),
    );
    if a.refer.is_some() {
        summary["transfers"] = transfers.json();
    }
    Ok((summary, collector))
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;

/// `loadtest register`: what to sign in, how fast.
#[derive(Debug, Clone)]
pub struct RegisterArgs {
    pub target: SocketAddr,
    pub rate: f64,
    pub count: u64,
    pub first: u64,
    pub password: String,
    pub expires: u32,
    pub concurrency: usize,
    pub local: SocketAddr,
}

/// Sign `count` users in at `rate` per second over UDP; the JSON summary.
pub async fn run_register(a: RegisterArgs) -> Result<Value, RunError> {
    use crate::register::{RegisterConfig, Registerer, Tally};
    let sock = tokio::net::UdpSocket::bind(a.local)
        .await
        .map_err(|source| RunError::Bind {
            what: "the SIP socket",
            addr: a.local,
            source,
        })?;
    let local = sock.local_addr().map_err(|source| RunError::Bind {
        what: "the SIP socket",
        addr: a.local,
        source,
    })?;
    let flow = Flow {
        transport: Transport::Udp,
        local,
        remote: a.target,
    };
    let mut reg = Registerer::new(
        RegisterConfig {
            flow,
            first: a.first,
            password: a.password.clone(),
            expires: a.expires,
            user_agent: format!("loadtest/{}", env!("CARGO_PKG_VERSION")),
        },
        seed(),
    );
    let mut tally = Tally::default();
    let mut buf = vec![0u8; sip::message::MAX_MESSAGE_SIZE + 1];
    let start = Instant::now();
    let mut started = 0u64;
    let mut refused = false;
    loop {
        let now = Instant::now();
        let want = due(a.rate, Duration::ZERO, now - start).floor() as u64;
        while started < a.count && started < want && reg.active() < a.concurrency {
            reg.start(now);
            started += 1;
        }
        while let Some(t) = reg.poll_transmit() {
            if let Err(e) = sock.try_send_to(&t.data, t.flow.remote) {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    refused = true;
                }
            }
        }
        for f in reg.take_finished() {
            tally.add(f);
        }
        if started >= a.count && reg.active() == 0 {
            break;
        }
        if refused && tally.finished() == 0 && now - start > Duration::from_secs(5) {
            return Err(RunError::Refused { target: a.target });
        }
        let mut wake = reg
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(200));
        if started < a.count && reg.active() < a.concurrency {
            wake = wake.min(start + due_at(a.rate, Duration::ZERO, started + 1));
        }
        wake = wake.min(now + Duration::from_millis(250)).max(now);
        tokio::select! {
            r = sock.readable() => {
                if r.is_ok() {
                    let now = Instant::now();
                    for _ in 0..1024 {
                        match sock.try_recv_from(&mut buf) {
                            Ok((n, from)) => {
                                let flow = Flow { transport: Transport::Udp, local, remote: from };
                                reg.handle_datagram(now, flow, &buf[..n]);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => reg.handle_timeout(Instant::now()),
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let mut took = tally.took_us.clone();
    took.sort_unstable();
    let pct = |f: f64| {
        took.get(((took.len() as f64 - 1.0) * f).round() as usize)
            .map(|us| *us as f64 / 1000.0)
    };
    let ok = tally.ok();
    Ok(json!({
        "tool": "loadtest",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": "register",
        "target": a.target.to_string(),
        "config": {"rate": a.rate, "count": a.count, "first": a.first, "expires": a.expires},
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "registrations": {
            "attempted": started,
            "ok": ok,
            "failed": tally.finished() - ok,
            "timeouts": tally.by_status.get(&408).copied().unwrap_or(0),
            "by_status": tally.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "rate_per_s": (started as f64 / secs * 100.0).round() / 100.0,
        },
        "setup_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }))
}
