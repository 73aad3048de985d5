//! One RTP stream of a call: sends G.711 µ-law packets of a tone every 20 ms (with
//! the send-time header extension for one-way delay), or echoes what it receives,
//! sends RFC 4733 DTMF when asked, and measures what arrives.

use crate::collector::{Collector, StreamResult};
use hdrhistogram::Histogram;
use media::rtp::{self, RtpHeader};
use media::stats::RecvStats;
use media::tone::ToneTable;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Telephone-event payload type offered in our SDP.
pub const DTMF_PT: u8 = 101;

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
    let mut m = TABLES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    m.entry(hz.to_bits()).or_insert_with(|| Arc::new(ToneTable::new(hz, 8000, false))).clone()
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What to send in the next 20 ms slot.
enum Slot {
    Audio,
    Dtmf {
        event: u8,
        start_ts: u32,
        duration: u16,
        end: bool,
        first: bool,
        record: bool,
    },
}

/// Plans DTMF: each digit is 5 packets of 20 ms (100 ms), then 3 end packets, then
/// 60 ms of audio before the next digit.
fn dtmf_plan(digits: &str) -> Vec<Option<(u8, usize)>> {
    let mut plan = Vec::new();
    for c in digits.chars() {
        if let Some(e) = media::dtmf::event_code(c) {
            for k in 0..8 {
                plan.push(Some((e, k)));
            }
            plan.extend([None, None, None]);
        }
    }
    plan
}

/// Run one stream until `stop`. The socket is registered with the runtime that
/// runs this future (the media runtime), not the SIP loop's.
pub async fn run(
    sock: std::net::UdpSocket,
    remote: Option<SocketAddr>,
    cfg: StreamConfig,
    mut stop: oneshot::Receiver<()>,
    collector: Arc<Collector>,
    ssrc: u32,
) {
    let Ok(sock) = UdpSocket::from_std(sock) else { return };
    let tone = match cfg.mode {
        Mode::Tone(hz) => Some(table(hz)),
        Mode::Echo => None,
    };
    let mut tone_pos = 0usize;
    let mut stats = RecvStats::new(8000);
    let mut delays = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut delay_sum = 0u128;
    let mut delay_n = 0u64;
    let mut dtmf_rx = media::dtmf::Receiver::default();
    let mut dtmf_received = String::new();
    let mut dtmf_sent = String::new();
    let plan = cfg.dtmf.as_deref().map(dtmf_plan).unwrap_or_default();
    let dtmf_from = (cfg.dtmf_after.as_millis() / 20) as usize;
    let (mut seq, mut ts, mut sent) = ((ssrc >> 16) as u16, ssrc.rotate_left(7), 0u64);
    let mut slot_n = 0usize;
    let mut event_ts = 0u32;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 256];
    let (mut sec_expected, mut sec_lost, mut next_second) =
        (0u64, 0u64, started + Duration::from_secs(1));
    let mut peer = remote;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick(), if tone.is_some() && peer.is_some() => {
                let slot = match slot_n.checked_sub(dtmf_from).and_then(|i| plan.get(i)) {
                    Some(Some((event, k))) => {
                        if *k == 0 { event_ts = ts; }
                        Slot::Dtmf { event: *event, start_ts: event_ts, duration: (((*k).min(4) as u16) + 1) * 160, end: *k >= 5, first: *k == 0, record: *k == 5 }
                    }
                    _ => Slot::Audio,
                };
                slot_n += 1;
                let n = match slot {
                    Slot::Audio => {
                        let h = RtpHeader { marker: false, payload_type: 0, sequence: seq, timestamp: ts, ssrc };
                        let hl = rtp::write_header(&mut out, &h, Some(wall_us()));
                        tone_pos = tone.as_ref().expect("tone mode").fill(&mut out[hl..hl + 160], tone_pos);
                        hl + 160
                    }
                    Slot::Dtmf { event, start_ts, duration, end, first, record } => {
                        let h = RtpHeader { marker: first, payload_type: DTMF_PT, sequence: seq, timestamp: start_ts, ssrc };
                        let hl = rtp::write_header(&mut out, &h, Some(wall_us()));
                        out[hl..hl + 4].copy_from_slice(&media::dtmf::payload(event, end, 10, duration));
                        if record {
                            dtmf_sent.extend(media::dtmf::event_char(event));
                        }
                        hl + 4
                    }
                };
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                if let Some(p) = peer {
                    if sock.send_to(&out[..n], p).await.is_ok() { sent += 1; }
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let Some(p) = rtp::parse(&buf[..n]) else { continue };
                let now = Instant::now();
                let arrival = now.duration_since(started).as_micros() as u64;
                if p.header.payload_type == DTMF_PT {
                    stats.on_event_packet(p.header.sequence);
                    if let Some(c) = dtmf_rx.on_payload(p.header.timestamp, &buf[p.payload_offset..p.payload_offset + p.payload_len]) {
                        dtmf_received.push(c);
                    }
                } else {
                    stats.on_packet(p.header.sequence, p.header.timestamp, arrival);
                }
                if let Some(t) = p.send_time_us {
                    let d = wall_us().saturating_sub(t).max(1);
                    let _ = delays.record(d);
                    delay_sum += d as u128;
                    delay_n += 1;
                }
                if tone.is_none() {
                    // Echo (symmetric: to where it came from).
                    peer.get_or_insert(src);
                    if sock.send_to(&buf[..n], src).await.is_ok() { sent += 1; }
                }
                if now >= next_second {
                    let (e, l) = (stats.expected(), stats.lost());
                    collector.rtp_second(now, e - sec_expected, l.saturating_sub(sec_lost), stats.jitter_ms());
                    sec_expected = e;
                    sec_lost = l;
                    next_second += Duration::from_secs(1);
                }
            }
        }
    }
    let now = Instant::now();
    let (e, l) = (stats.expected(), stats.lost());
    if e > sec_expected {
        collector.rtp_second(
            now,
            e - sec_expected,
            l.saturating_sub(sec_lost),
            stats.jitter_ms(),
        );
    }
    let result = StreamResult {
        sent,
        received: stats.received,
        expected: e,
        lost: l,
        duplicates: stats.duplicates,
        reordered: stats.reordered,
        jitter_ms: stats.jitter_ms(),
        delay_ms: (delay_n > 0).then(|| delay_sum as f64 / delay_n as f64 / 1000.0),
        dtmf_sent,
        dtmf_received,
    };
    collector.stream_finished(result, &delays);
}
