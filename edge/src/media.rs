//! RTP relay workers: one thread per core, each polling (epoll, level-triggered) the
//! sockets of the calls assigned to it. Each readiness event reads one datagram (no
//! extra read to find the queue empty) into the worker's one buffer, the call's [`media::Relay`] core decides where it goes, and it is sent from
//! the peer socket; nothing is decoded or allocated per packet. Calls are spread
//! round-robin; a [`RelayHandle`] updates a call's peers and closes it when dropped.

use crate::metrics::Metrics;
use media::{Relay, Side, Socket};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io;
use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKER: u64 = u64::MAX;

enum Cmd {
    Open {
        slot: usize,
        sockets: [UdpSocket; 4],
    },
    Remote {
        slot: usize,
        side: Side,
        addr: Option<SocketAddr>,
    },
    Close {
        slot: usize,
    },
}

struct Worker {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<EventFd>,
}

/// The relay workers of the process.
pub struct Relays {
    workers: Vec<Worker>,
    next: AtomicUsize,
    slots: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// Handle to one call's relay; dropping it closes the relay and its sockets.
pub struct RelayHandle {
    worker: usize,
    slot: usize,
    relays: Arc<Relays>,
}

impl RelayHandle {
    pub fn set_remote(&self, side: Side, addr: Option<SocketAddr>) {
        self.relays.send(
            self.worker,
            Cmd::Remote {
                slot: self.slot,
                side,
                addr,
            },
        );
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.relays
            .send(self.worker, Cmd::Close { slot: self.slot });
    }
}

fn bind(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Room for bursts: packets of thousands of calls arrive together.
    let _ = s.set_recv_buffer_size(256 * 1024);
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(s.into())
}

impl Relays {
    /// Start `threads` workers (at least one).
    pub fn start(threads: usize, metrics: Arc<Metrics>) -> io::Result<Arc<Relays>> {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let poll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let waker = Arc::new(EventFd::from_value_and_flags(
                0,
                EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
            )?);
            poll.add(waker.as_ref(), EpollEvent::new(EpollFlags::EPOLLIN, WAKER))?;
            let (tx, rx) = mpsc::channel();
            let (m, w) = (metrics.clone(), waker.clone());
            std::thread::Builder::new()
                .name(format!("rtp-relay-{i}"))
                .spawn(move || run(poll, w, rx, m))?;
            workers.push(Worker { tx, waker });
        }
        Ok(Arc::new(Relays {
            workers,
            next: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            metrics,
        }))
    }

    fn send(&self, worker: usize, cmd: Cmd) {
        let w = &self.workers[worker];
        if w.tx.send(cmd).is_ok() {
            let _ = w.waker.write(1);
        }
    }

    /// Bind the four sockets (A RTP/RTCP at `a_port`, B at `b_port`) and relay them.
    pub fn open(self: &Arc<Self>, ip: IpAddr, a_port: u16, b_port: u16) -> io::Result<RelayHandle> {
        let sockets = [
            bind(ip, a_port)?,
            bind(ip, a_port + 1)?,
            bind(ip, b_port)?,
            bind(ip, b_port + 1)?,
        ];
        let worker = self.next.fetch_add(1, Relaxed) % self.workers.len();
        let slot = self.slots.fetch_add(1, Relaxed);
        self.metrics.relays_active.fetch_add(1, Relaxed);
        self.send(worker, Cmd::Open { slot, sockets });
        Ok(RelayHandle {
            worker,
            slot,
            relays: self.clone(),
        })
    }
}

struct Call {
    sockets: [UdpSocket; 4],
    relay: Relay,
}

#[derive(Default)]
struct Counters {
    packets: u64,
    bytes: u64,
    dropped: u64,
}

impl Counters {
    fn flush(&mut self, m: &Metrics) {
        m.rtp_packets.fetch_add(self.packets, Relaxed);
        m.rtp_bytes.fetch_add(self.bytes, Relaxed);
        m.rtp_dropped.fetch_add(self.dropped, Relaxed);
        *self = Counters::default();
    }
}

/// Event data: call slot × 4 + socket index. Slots are process-unique; calls live in
/// a map keyed by slot (a closed slot's late events find nothing).
fn run(poll: Epoll, waker: Arc<EventFd>, rx: mpsc::Receiver<Cmd>, metrics: Arc<Metrics>) {
    let mut calls: std::collections::HashMap<usize, Call> = std::collections::HashMap::new();
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut buf = [0u8; 2048];
    let mut c = Counters::default();
    let mut last_flush = Instant::now();
    loop {
        let n = match poll.wait(&mut events, EpollTimeout::from(500u16)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => {
                tracing::error!(error = %e, "RTP relay poll failed");
                return;
            }
        };
        let mut commands = false;
        for ev in &events[..n] {
            let data = ev.data();
            if data == WAKER {
                let _ = waker.read();
                commands = true;
                continue;
            }
            let (slot, i) = ((data / 4) as usize, (data % 4) as usize);
            let Some(call) = calls.get_mut(&slot) else {
                continue;
            };
            let on = Socket::ALL[i];
            // Level-triggered: one datagram per event; if more are queued, the next
            // wait reports the socket again.
            // WouldBlock (spurious) or ICMP errors reported on the socket: nothing to do.
            if let Ok((len, src)) = call.sockets[i].recv_from(&mut buf) {
                match call.relay.on_datagram(on, src, &buf[..len]) {
                    Some(dst) => match call.sockets[on.peer().index()].send_to(&buf[..len], dst) {
                        Ok(_) => {
                            c.packets += 1;
                            c.bytes += len as u64;
                        }
                        Err(_) => c.dropped += 1,
                    },
                    None => c.dropped += 1,
                }
            }
        }
        if commands {
            while let Ok(cmd) = rx.try_recv() {
                apply(&poll, &mut calls, cmd, &metrics);
            }
        }
        if last_flush.elapsed() >= Duration::from_secs(1) || c.packets >= 1 << 16 {
            c.flush(&metrics);
            last_flush = Instant::now();
        }
    }
}

fn apply(
    poll: &Epoll,
    calls: &mut std::collections::HashMap<usize, Call>,
    cmd: Cmd,
    metrics: &Metrics,
) {
    match cmd {
        Cmd::Open { slot, sockets } => {
            let ok = sockets.iter().enumerate().all(|(i, s)| {
                poll.add(
                    s,
                    EpollEvent::new(EpollFlags::EPOLLIN, (slot * 4 + i) as u64),
                )
                .is_ok()
            });
            if ok {
                calls.insert(
                    slot,
                    Call {
                        sockets,
                        relay: Relay::new(),
                    },
                );
            } else {
                tracing::error!(slot, "cannot register RTP sockets");
                for s in &sockets {
                    let _ = poll.delete(s);
                }
                metrics.relays_active.fetch_sub(1, Relaxed);
            }
        }
        Cmd::Remote { slot, side, addr } => {
            if let Some(call) = calls.get_mut(&slot) {
                call.relay.set_remote(side, addr);
            }
        }
        Cmd::Close { slot } => {
            if let Some(call) = calls.remove(&slot) {
                for s in &call.sockets {
                    let _ = poll.delete(s);
                }
                metrics.relays_active.fetch_sub(1, Relaxed);
            }
        }
    }
}
