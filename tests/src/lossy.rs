//! A lossy, delaying path between a SIP caller and callee for tests: SIP passes
//! through unharmed (SDP rewritten so RTP comes through the proxy), RTP loses every
//! `drop_every`-th packet in each direction and is held back by `delay`.

use sip::message;
use sip::sdp::Sdp;
use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct LossyProxy {
    /// Where callers send their SIP.
    pub sip: SocketAddr,
    pub rtp_forwarded: Arc<AtomicU64>,
    pub rtp_dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

struct Shared {
    stop: Arc<AtomicBool>,
    drop_every: u64,
    delay: Duration,
    forwarded: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

/// Relay RTP arriving on `sock` to `to`, dropping and delaying.
fn spawn_rtp_relay(sock: UdpSocket, to: SocketAddr, s: Arc<Shared>) {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while !s.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while queue.front().is_some_and(|(t, _)| *t <= now) {
                let (_, p) = queue.pop_front().unwrap();
                let _ = sock.send_to(&p, to);
            }
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                n += 1;
                if s.drop_every > 0 && n.is_multiple_of(s.drop_every) {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                s.forwarded.fetch_add(1, Ordering::Relaxed);
                queue.push_back((Instant::now() + s.delay, buf[..len].to_vec()));
            }
        }
    });
}

/// Point the SDP of a SIP message at a new relay socket that forwards to the
/// original address; other messages pass unchanged.
fn rewrite(data: &[u8], s: &Arc<Shared>) -> Vec<u8> {
    let Ok((mut msg, _)) = message::parse(data) else {
        return data.to_vec();
    };
    let Ok(sdp) = Sdp::parse(msg.body()) else {
        return data.to_vec();
    };
    let Ok(Some(orig)) = sdp.audio_target() else {
        return data.to_vec();
    };
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = relay.local_addr().unwrap().port();
    spawn_rtp_relay(relay, orig, s.clone());
    let body = sdp.rewrite("127.0.0.1".parse().unwrap(), port);
    use rsip::message::HasHeaders;
    let new_body = message::set_body(msg.headers_mut(), body.as_bytes(), Some("application/sdp"));
    *msg.body_mut() = new_body;
    msg.to_string().into_bytes()
}

impl LossyProxy {
    pub fn start(target: SocketAddr, drop_every: u64, delay: Duration) -> LossyProxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sip = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            stop: stop.clone(),
            drop_every,
            delay,
            forwarded: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        });
        let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        for (from, to, towards_callee) in [
            (front.try_clone().unwrap(), back.try_clone().unwrap(), true),
            (back, front, false),
        ] {
            let (s, caller) = (shared.clone(), caller.clone());
            std::thread::spawn(move || {
                from.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut buf = [0u8; 65536];
                while !s.stop.load(Ordering::Relaxed) {
                    let Ok((n, src)) = from.recv_from(&mut buf) else {
                        continue;
                    };
                    let out = rewrite(&buf[..n], &s);
                    let dst = if towards_callee {
                        *caller.lock().unwrap() = Some(src);
                        target
                    } else {
                        match *caller.lock().unwrap() {
                            Some(c) => c,
                            None => continue,
                        }
                    };
                    let _ = to.send_to(&out, dst);
                }
            });
        }
        LossyProxy {
            sip,
            rtp_forwarded: shared.forwarded.clone(),
            rtp_dropped: shared.dropped.clone(),
            stop,
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
