//! An RTP endpoint for audio tests: sends a G.711 µ-law tone in real-time 20 ms
//! packets to where the edge wants it, can inject RFC 4733 digits, and keeps what it
//! receives (decoded samples and each packet's SSRC / sequence / timestamp) so a test
//! can check with a Goertzel detector who hears whom.

use media::rtp::{self, RtpHeader};
use media::tone::{detect, Tone};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Received {
    pub samples: Vec<i16>,
    /// (ssrc, sequence, timestamp) per packet, in arrival order.
    pub headers: Vec<(u32, u16, u32)>,
    /// RFC 4733 events received (event code, end bit).
    pub events: Vec<(u8, bool)>,
}

pub struct TonePeer {
    pub received: Arc<Mutex<Received>>,
    digits: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl TonePeer {
    /// Send `hz` from `sock` to `to` and record what arrives on `sock`.
    pub fn start(sock: UdpSocket, to: SocketAddr, hz: f64, ssrc: u32) -> TonePeer {
        let received = Arc::new(Mutex::new(Received::default()));
        let digits: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rx = sock.try_clone().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, _)) = rx.recv_from(&mut buf) else {
                    continue;
                };
                let Some(p) = rtp::parse(&buf[..n]) else {
                    continue;
                };
                let payload = &buf[p.payload_offset..p.payload_offset + p.payload_len];
                let mut g = r.lock().unwrap();
                let h = p.header;
                match h.payload_type {
                    0 => g
                        .samples
                        .extend(payload.iter().map(|b| media::g711::ulaw_to_linear(*b))),
                    8 => g
                        .samples
                        .extend(payload.iter().map(|b| media::g711::alaw_to_linear(*b))),
                    _ if payload.len() >= 4 => g.events.push((payload[0], payload[1] & 0x80 != 0)),
                    _ => continue,
                }
                g.headers.push((h.ssrc, h.sequence, h.timestamp));
            }
        });
        let (d, s) = (digits.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut tone = Tone::new(hz, 8000);
            let (mut seq, mut ts) = (100u16, 1000u32);
            let mut next = Instant::now();
            let mut pkt = [0u8; 12 + 160];
            while !s.load(Ordering::Relaxed) {
                let digit = d.lock().unwrap().pop();
                if let Some(code) = digit {
                    // One event: 3 packets during, 3 end packets (same timestamp).
                    for i in 0..6u16 {
                        let end = i >= 3;
                        let mut e = [0u8; 16];
                        let h = RtpHeader {
                            marker: i == 0,
                            payload_type: 101,
                            sequence: seq,
                            timestamp: ts,
                            ssrc,
                        };
                        rtp::write_header(&mut e, &h, None);
                        e[12..16].copy_from_slice(&media::dtmf::payload(
                            code,
                            end,
                            10,
                            160 * (i.min(3) + 1),
                        ));
                        let _ = sock.send_to(&e, to);
                        seq = seq.wrapping_add(1);
                        next += Duration::from_millis(20);
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    ts = ts.wrapping_add(160 * 6);
                    continue;
                }
                let h = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: ts,
                    ssrc,
                };
                rtp::write_header(&mut pkt, &h, None);
                tone.fill_g711(&mut pkt[12..], false);
                let _ = sock.send_to(&pkt, to);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                next += Duration::from_millis(20);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        TonePeer {
            received,
            digits,
            stop,
        }
    }

    /// Send one RFC 4733 digit (0-9, *, #) in the stream.
    pub fn send_digit(&self, d: char) {
        let code = media::dtmf::event_code(d).expect("a DTMF digit");
        self.digits.lock().unwrap().insert(0, code);
    }

    /// Forget what was received so far (start of a new phase).
    pub fn clear(&self) {
        let mut g = self.received.lock().unwrap();
        g.samples.clear();
        g.headers.clear();
    }

    /// Whether the last `ms` of received audio carries `hz`.
    pub fn hears(&self, hz: f64, ms: usize) -> bool {
        let g = self.received.lock().unwrap();
        last(&g.samples, ms).is_some_and(|tail| detect(tail, hz, 8000))
    }

    /// Whether the last `ms` of received audio carries `hz` beside a louder tone
    /// `louder` that is there too: `hz`'s Goertzel power is at least 0.1 % of
    /// `louder`'s (30 dB under it; a tone that is absent measures ~1e-7 of it:
    /// leakage and G.711 noise), where [`TonePeer::hears`] wants 10 % of all the
    /// signal's power. For a browser's tone in a mix: Chromium's automatic gain
    /// control turns its fake microphone down from full scale to ~-30 dBFS peak
    /// within seconds, 20 dB under the tone peers.
    pub fn hears_beside(&self, hz: f64, louder: f64, ms: usize) -> bool {
        let g = self.received.lock().unwrap();
        let Some(tail) = last(&g.samples, ms) else {
            return false;
        };
        let (p, q) = (
            media::tone::goertzel(tail, hz, 8000),
            media::tone::goertzel(tail, louder, 8000),
        );
        media::tone::detect(tail, louder, 8000) && p > 1000.0 && p > 0.001 * q
    }

    /// Whether any `ms` window (stepping by half of it) of everything received since
    /// the last `clear` carries `hz`: for short sounds such as a beep.
    pub fn heard_anywhere(&self, hz: f64, ms: usize) -> bool {
        let g = self.received.lock().unwrap();
        let n = ms * 8;
        (0..g.samples.len().saturating_sub(n))
            .step_by((n / 2).max(1))
            .any(|i| detect(&g.samples[i..i + n], hz, 8000))
    }

    /// Whether an RFC 4733 event `code` arrived with its end bit.
    pub fn got_event(&self, code: u8) -> bool {
        self.received
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|(e, end)| *e == code && *end)
    }

    pub fn packets(&self) -> usize {
        self.received.lock().unwrap().headers.len()
    }
}

/// The last `ms` of `samples` (8 kHz), if that much came.
fn last(samples: &[i16], ms: usize) -> Option<&[i16]> {
    samples
        .len()
        .checked_sub(ms * 8)
        .map(|from| &samples[from..])
}

impl Drop for TonePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
