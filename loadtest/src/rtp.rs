//! RTP streams: per-core worker threads, each polling (level-triggered epoll) the
//! sockets of its streams and sending every due packet from a timer heap, so
//! thousands of streams cost no task wakeup per packet. A stream sends G.711 µ-law
//! packets of a tone every 20 ms (with the send-time header extension for one-way
//! delay) or echoes what it receives, sends RFC 4733 DTMF when asked, and measures
//! what arrives; at its end the figures go to the [`Collector`].

use crate::collector::{Collector, StreamResult};
use hdrhistogram::Histogram;
use media::rtp::{self, RtpHeader};
use media::stats::RecvStats;
use media::tone::ToneTable;
use media::webrtc::{Inbound, Leg};
use rtp_io::{Flow, Handler, Poller, Workers};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Telephone-event payload type offered in our SDP.
pub const DTMF_PT: u8 = 101;
const PTIME: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Send a sine tone of this frequency.
    Tone(f64),
    /// Send back every packet received, to where it came from.
    Echo,
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub mode: Mode,
    pub dtmf: Option<String>,
    /// When the DTMF digits start after the stream starts.
    pub dtmf_after: Duration,
}

/// One shared pre-encoded second per tone frequency (streams only copy slices).
fn table(hz: f64) -> Arc<ToneTable> {
    static TABLES: OnceLock<Mutex<HashMap<u64, Arc<ToneTable>>>> = OnceLock::new();
    let mut m = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    m.entry(hz.to_bits())
        .or_insert_with(|| Arc::new(ToneTable::new(hz, 8000, false)))
        .clone()
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Plans DTMF: each digit is 5 packets of 20 ms (100 ms), then 3 end packets, then
/// 60 ms of audio before the next digit. Entries: (event, packet index in the digit).
fn dtmf_plan(digits: &str) -> Vec<Option<(u8, usize)>> {
    let mut plan = Vec::new();
    for c in digits.chars() {
        if let Some(e) = media::dtmf::event_code(c) {
            plan.extend((0..8).map(|k| Some((e, k))));
            plan.extend([None, None, None]);
        }
    }
    plan
}

enum Cmd {
    Start {
        id: u64,
        sock: UdpSocket,
        remote: Option<SocketAddr>,
        cfg: StreamConfig,
        ssrc: u32,
        webrtc: Option<Box<Leg>>,
    },
    Stop {
        id: u64,
    },
    Shutdown,
}

struct Stream {
    sock: UdpSocket,
    peer: Option<SocketAddr>,
    /// A WebRTC stream (a browser's): ICE, DTLS and SRTP around the RTP.
    webrtc: Option<Box<Leg>>,
    tone: Option<Arc<ToneTable>>,
    tone_pos: usize,
    plan: Vec<Option<(u8, usize)>>,
    dtmf_from: usize,
    slot: usize,
    event_ts: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
    sent: u64,
    started: Instant,
    stats: RecvStats,
    delays: Histogram<u64>,
    delay_sum: u128,
    delay_n: u64,
    dtmf_rx: media::dtmf::Receiver,
    dtmf_received: String,
    dtmf_sent: String,
    sec_expected: u64,
    sec_lost: u64,
    next_second: Instant,
    /// When the first and the last media packet came.
    first_rx: Option<Instant>,
    last_rx: Option<Instant>,
}

impl Stream {
    fn new(
        sock: UdpSocket,
        remote: Option<SocketAddr>,
        cfg: StreamConfig,
        ssrc: u32,
        now: Instant,
    ) -> Stream {
        let tone = match cfg.mode {
            Mode::Tone(hz) => Some(table(hz)),
            Mode::Echo => None,
        };
        Stream {
            sock,
            peer: remote,
            webrtc: None,
            tone,
            tone_pos: 0,
            plan: cfg.dtmf.as_deref().map(dtmf_plan).unwrap_or_default(),
            dtmf_from: (cfg.dtmf_after.as_millis() / 20) as usize,
            slot: 0,
            event_ts: 0,
            ssrc,
            seq: (ssrc >> 16) as u16,
            ts: ssrc.rotate_left(7),
            sent: 0,
            started: now,
            stats: RecvStats::new(8000),
            delays: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            delay_sum: 0,
            delay_n: 0,
            dtmf_rx: Default::default(),
            dtmf_received: String::new(),
            dtmf_sent: String::new(),
            sec_expected: 0,
            sec_lost: 0,
            next_second: now + Duration::from_secs(1),
            first_rx: None,
            last_rx: None,
        }
    }

    /// A WebRTC stream's timers (its checks, DTLS retransmissions) and what they
    /// send.
    fn webrtc_timers(&mut self, now: Instant) {
        if let Some(leg) = self.webrtc.as_deref_mut() {
            if leg.poll_timeout().is_some_and(|t| t <= now) {
                leg.handle_timeout(now);
            }
            while let Some((to, p)) = leg.poll_transmit() {
                let _ = self.sock.send_to(&p, to);
            }
        }
    }

    /// Send `pkt` to the peer: as it is, or protected for a WebRTC peer once its
    /// keys are ready (before that nothing is sent, nor counted, as a browser
    /// sends no media before its handshake; the leg would hold it).
    fn send(&mut self, pkt: &[u8], peer: SocketAddr) {
        let sent = match self.webrtc.as_deref_mut() {
            None => self.sock.send_to(pkt, peer).is_ok(),
            Some(leg) if !leg.ready() => false,
            Some(leg) => match (leg.protect(pkt), leg.peer()) {
                (Some(sealed), Some(to)) => self.sock.send_to(&sealed, to).is_ok(),
                _ => false,
            },
        };
        if sent {
            self.sent += 1;
        }
    }

    /// Send the packet of the next 20 ms slot (audio or a DTMF event packet).
    fn send_slot(&mut self, out: &mut [u8; 256], now: Instant) {
        self.webrtc_timers(now);
        let (Some(tone), Some(peer)) = (&self.tone, self.peer) else {
            return;
        };
        let step = self
            .slot
            .checked_sub(self.dtmf_from)
            .and_then(|i| self.plan.get(i))
            .copied()
            .flatten();
        self.slot += 1;
        let n = match step {
            None => {
                let h = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: self.seq,
                    timestamp: self.ts,
                    ssrc: self.ssrc,
                };
                let hl = rtp::write_header(out, &h, Some(wall_us()));
                self.tone_pos = tone.fill(&mut out[hl..hl + 160], self.tone_pos);
                hl + 160
            }
            Some((event, k)) => {
                if k == 0 {
                    self.event_ts = self.ts;
                }
                let duration = ((k.min(4) as u16) + 1) * 160;
                let h = RtpHeader {
                    marker: k == 0,
                    payload_type: DTMF_PT,
                    sequence: self.seq,
                    timestamp: self.event_ts,
                    ssrc: self.ssrc,
                };
                let hl = rtp::write_header(out, &h, Some(wall_us()));
                out[hl..hl + 4].copy_from_slice(&media::dtmf::payload(event, k >= 5, 10, duration));
                if k == 5 {
                    self.dtmf_sent.extend(media::dtmf::event_char(event));
                }
                hl + 4
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        self.send(&out[..n], peer);
    }

    /// Read one datagram and account for it.
    fn receive(&mut self, buf: &mut [u8], now: Instant, collector: &Collector) {
        let Ok((mut n, src)) = self.sock.recv_from(buf) else {
            return;
        };
        if let Some(leg) = self.webrtc.as_deref_mut() {
            let inbound = leg.on_datagram(now, src, &buf[..n]);
            while let Some((to, p)) = leg.poll_transmit() {
                let _ = self.sock.send_to(&p, to);
            }
            match inbound {
                Inbound::Rtp(plain) if plain.len() <= buf.len() => {
                    buf[..plain.len()].copy_from_slice(&plain);
                    n = plain.len();
                }
                _ => return,
            }
        }
        let Some(p) = rtp::parse(&buf[..n]) else {
            return;
        };
        let arrival = now.duration_since(self.started).as_micros() as u64;
        self.first_rx.get_or_insert(now);
        self.last_rx = Some(now);
        if p.header.payload_type == DTMF_PT {
            self.stats.on_event_packet(p.header.sequence);
            if let Some(c) = self.dtmf_rx.on_payload(
                p.header.timestamp,
                &buf[p.payload_offset..p.payload_offset + p.payload_len],
            ) {
                self.dtmf_received.push(c);
            }
        } else {
            self.stats
                .on_packet(p.header.sequence, p.header.timestamp, arrival);
        }
        if let Some(t) = p.send_time_us {
            let d = wall_us().saturating_sub(t).max(1);
            let _ = self.delays.record(d);
            self.delay_sum += d as u128;
            self.delay_n += 1;
        }
        if self.tone.is_none() {
            self.peer.get_or_insert(src);
            self.send(&buf[..n], src);
        }
        if now >= self.next_second {
            self.publish_second(now, collector);
            self.next_second += Duration::from_secs(1);
        }
    }

    fn publish_second(&mut self, now: Instant, collector: &Collector) {
        let (e, l) = (self.stats.expected(), self.stats.lost());
        if e > self.sec_expected {
            collector.rtp_second(
                now,
                e - self.sec_expected,
                l.saturating_sub(self.sec_lost),
                self.stats.jitter_ms(),
            );
        }
        self.sec_expected = e;
        self.sec_lost = l;
    }

    fn finish(mut self, now: Instant, collector: &Collector) {
        self.publish_second(now, collector);
        let result = StreamResult {
            sent: self.sent,
            received: self.stats.received,
            expected: self.stats.expected(),
            lost: self.stats.lost(),
            duplicates: self.stats.duplicates,
            reordered: self.stats.reordered,
            jitter_ms: self.stats.jitter_ms(),
            delay_ms: (self.delay_n > 0)
                .then(|| self.delay_sum as f64 / self.delay_n as f64 / 1000.0),
            dtmf_sent: self.dtmf_sent,
            dtmf_received: self.dtmf_received,
            first_rx_us: self
                .first_rx
                .map(|t| t.saturating_duration_since(self.started).as_micros() as u64),
            quiet_at_end_us: self
                .last_rx
                .map(|t| now.saturating_duration_since(t).as_micros() as u64),
        };
        collector.stream_finished(result, &self.delays);
    }
}

/// The RTP workers of a run.
pub struct Engine {
    workers: Workers<Cmd>,
}

/// The longest a worker sleeps with no packet due.
const MAX_WAIT: Duration = Duration::from_millis(100);

impl Engine {
    /// Start `threads` workers (at least one).
    pub fn start(threads: usize, collector: Arc<Collector>) -> std::io::Result<Engine> {
        let workers = Workers::start(threads, "rtp", MAX_WAIT, |_| StreamWorker {
            streams: HashMap::new(),
            due: BinaryHeap::new(),
            buf: [0u8; 2048],
            out: [0u8; 256],
            collector: collector.clone(),
        })?;
        Ok(Engine { workers })
    }

    fn send(&self, worker: usize, cmd: Cmd) {
        self.workers.send(worker, cmd);
    }

    fn worker_of(&self, id: u64) -> usize {
        (id % self.workers.len() as u64) as usize
    }

    /// Start stream `id` on `sock` (non-blocking), towards `remote` (None: learn it
    /// from the first packet, for echo).
    pub fn start_stream(
        &self,
        id: u64,
        sock: UdpSocket,
        remote: Option<SocketAddr>,
        cfg: StreamConfig,
        ssrc: u32,
    ) {
        self.start_webrtc_stream(id, sock, remote, cfg, ssrc, None);
    }

    /// As [`Engine::start_stream`], the stream wrapped in `webrtc` (ICE, DTLS,
    /// SRTP: a browser's stream).
    pub fn start_webrtc_stream(
        &self,
        id: u64,
        sock: UdpSocket,
        remote: Option<SocketAddr>,
        cfg: StreamConfig,
        ssrc: u32,
        webrtc: Option<Box<Leg>>,
    ) {
        self.send(
            self.worker_of(id),
            Cmd::Start {
                id,
                sock,
                remote,
                cfg,
                ssrc,
                webrtc,
            },
        );
    }

    /// Stop stream `id`; its figures go to the collector.
    pub fn stop_stream(&self, id: u64) {
        self.send(self.worker_of(id), Cmd::Stop { id });
    }

    /// Stop every stream and wait for the workers to report them.
    pub fn shutdown(&self) {
        for i in 0..self.workers.len() {
            self.send(i, Cmd::Shutdown);
        }
        self.workers.join();
    }
}

/// One worker's streams (event token = stream id) and the heap of due sends.
struct StreamWorker {
    streams: HashMap<u64, Stream>,
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    buf: [u8; 2048],
    out: [u8; 256],
    collector: Arc<Collector>,
}

impl Handler for StreamWorker {
    type Command = Cmd;

    fn on_readable(&mut self, _: &Poller, id: u64, now: Instant) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.receive(&mut self.buf, now, &self.collector);
        }
    }

    fn on_command(&mut self, poller: &Poller, cmd: Cmd, now: Instant) -> Flow {
        match cmd {
            Cmd::Start {
                id,
                sock,
                remote,
                cfg,
                ssrc,
                webrtc,
            } => {
                if poller.add(&sock, id).is_ok() {
                    let mut s = Stream::new(sock, remote, cfg, ssrc, now);
                    s.webrtc = webrtc;
                    // The browser's checks start at once.
                    s.webrtc_timers(now);
                    // A WebRTC stream ticks even when it only echoes: its timers.
                    if s.tone.is_some() || s.webrtc.is_some() {
                        self.due.push(Reverse((now, id)));
                    }
                    self.streams.insert(id, s);
                }
            }
            Cmd::Stop { id } => {
                if let Some(s) = self.streams.remove(&id) {
                    poller.delete(&s.sock);
                    s.finish(now, &self.collector);
                }
            }
            Cmd::Shutdown => {
                for (_, s) in self.streams.drain() {
                    poller.delete(&s.sock);
                    s.finish(now, &self.collector);
                }
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Send every packet that is due, keeping each stream on its 20 ms grid.
    fn on_wake(&mut self, _: &Poller, now: Instant) {
        while let Some(Reverse((t, id))) = self.due.peek().copied() {
            if t > now {
                break;
            }
            self.due.pop();
            if let Some(s) = self.streams.get_mut(&id) {
                s.send_slot(&mut self.out, now);
                self.due.push(Reverse((t + PTIME, id)));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }
}
