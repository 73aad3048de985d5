//! RTP relay workers: one thread per core, each polling (epoll, level-triggered) the
//! sockets of the calls assigned to it. Each readiness event reads one datagram (no
//! extra read to find the queue empty) into the worker's one buffer, the call's
//! [`media::Relay`] core decides where it goes, and it is sent from the peer socket;
//! nothing is decoded or allocated per packet. Calls are spread round-robin; a
//! [`RelayHandle`] updates a call's peers and closes it when dropped.
//!
//! A call that gets a supervisor or a recording also gets a [`media::session::Session`]
//! (in the same worker, with the supervisor's sockets): the worker hands it each
//! party packet before relaying, and ticks every mixing call of the worker together
//! every 20 ms (the epoll timeout is the time to the next tick). RFC 4733 digits seen
//! in any call are reported to the SIP core.

use crate::metrics::Metrics;
use crate::recorder::{Finisher, Recorder};
use b2bua::DigitFrom;
use media::call::{Out, Party};
use media::mixer::MonitorMode;
use media::webrtc::{Identity, Inbound, Leg};
use media::{CallId, CallMedia, Command, MonitorId, Side, Socket};
use rtp_io::{Flow, Handler, Poller, Workers};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker is told: the commands that carry what the driver made for them
/// (bound sockets, a recording file, decoded audio), and every other media command
/// as the call model gave it.
enum Cmd {
    Open {
        slot: usize,
        call: CallId,
        sockets: [UdpSocket; 4],
    },
    MonitorOpen {
        slot: usize,
        /// The monitor's own event slot.
        mslot: usize,
        id: MonitorId,
        mode: MonitorMode,
        sockets: [UdpSocket; 2],
    },
    Record {
        slot: usize,
        recorder: Box<Recorder>,
    },
    Announce {
        slot: usize,
        side: Side,
        samples: Arc<[i16]>,
        pt: u8,
    },
    Hold {
        slot: usize,
        side: Side,
        held: bool,
        audio: Option<Arc<[i16]>>,
    },
    Media {
        slot: usize,
        cmd: Command,
    },
    Close {
        slot: usize,
    },
}

/// The relay workers of the process.
pub struct Relays {
    workers: Workers<Cmd>,
    next: AtomicUsize,
    slots: AtomicUsize,
    metrics: Arc<Metrics>,
    reserved: Reserved,
}

/// RTP/RTCP port pairs bound ahead of use: the B2BUA's port probe binds a pair
/// when it allocates it (a pair another program holds is then skipped, not failed
/// on later), and the relay takes the bound sockets when the call's media opens.
/// Nothing is bound twice and no port is released between the check and its use.
///
/// Binding four sockets per call (socket, bind, buffer size) cost the SIP core
/// thread ~9 % of its time at 2500 calls/s (perf), so the pairs the pool will
/// hand out next are bound ahead by an `rtp-binder` thread ([`PortProbe::ahead`]);
/// a pair it has not reached yet is still bound inline.
///
/// [`PortProbe::ahead`]: media::PortProbe::ahead
#[derive(Clone)]
pub struct Reserved {
    ip: IpAddr,
    pairs: Arc<parking_lot::Mutex<HashMap<u16, [UdpSocket; 2]>>>,
    binder: Arc<std::sync::OnceLock<Option<std::sync::mpsc::Sender<Vec<u16>>>>>,
}

/// Most pairs held bound ahead of use (fds: twice this).
const MAX_AHEAD: usize = 4 * b2bua::PORTS_AHEAD;

impl Reserved {
    pub fn new(ip: IpAddr) -> Reserved {
        Reserved {
            ip,
            pairs: Arc::default(),
            binder: Arc::default(),
        }
    }

    /// The binder thread's queue (started on first use; `None` if it could not be).
    fn binder(&self) -> Option<&std::sync::mpsc::Sender<Vec<u16>>> {
        self.binder
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel::<Vec<u16>>();
                let (ip, pairs) = (self.ip, self.pairs.clone());
                let spawned = std::thread::Builder::new()
                    .name("rtp-binder".into())
                    .spawn(move || {
                        while let Ok(ports) = rx.recv() {
                            for port in ports {
                                // Bound under the lock: `reserve` then either finds
                                // the pair or binds it itself, never both.
                                let mut pairs = pairs.lock();
                                if pairs.contains_key(&port) || pairs.len() >= MAX_AHEAD {
                                    continue;
                                }
                                if let (Ok(rtp), Ok(rtcp)) = (bind(ip, port), bind(ip, port + 1))
                                {
                                    pairs.insert(port, [rtp, rtcp]);
                                }
                            }
                        }
                    });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the RTP port binder: ports are bound as calls need them");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The pair's sockets: reserved ones, or bound now (no probe in use).
    fn take(&self, ip: IpAddr, port: u16) -> io::Result<[UdpSocket; 2]> {
        match self.pairs.lock().remove(&port) {
            Some(pair) if ip == self.ip => Ok(pair),
            _ => Ok([bind(ip, port)?, bind(ip, port + 1)?]),
        }
    }
}

impl media::PortProbe for Reserved {
    fn reserve(&mut self, port: u16) -> bool {
        if self.pairs.lock().contains_key(&port) {
            return true;
        }
        match (bind(self.ip, port), bind(self.ip, port + 1)) {
            (Ok(rtp), Ok(rtcp)) => {
                self.pairs.lock().insert(port, [rtp, rtcp]);
                true
            }
            _ => false,
        }
    }

    fn release(&mut self, port: u16) {
        self.pairs.lock().remove(&port);
    }

    fn ahead(&mut self, ports: &[u16]) {
        if let Some(tx) = self.binder() {
            let _ = tx.send(ports.to_vec());
        }
    }
}

/// Handle to one call's relay; dropping it closes the relay and its sockets.
pub struct RelayHandle {
    worker: usize,
    slot: usize,
    relays: Arc<Relays>,
}

impl RelayHandle {
    /// A media command that needs nothing bound or decoded by the driver (remote
    /// addresses, monitor mode/remote/close, recording pause, DTMF, announcement
    /// stop, beep).
    pub fn apply(&self, cmd: Command) {
        let slot = self.slot;
        self.relays.send(self.worker, Cmd::Media { slot, cmd });
    }

    /// Bind a supervisor's RTP/RTCP pair at `port` and mix for it.
    pub fn monitor_open(
        &self,
        ip: IpAddr,
        port: u16,
        id: MonitorId,
        mode: MonitorMode,
    ) -> io::Result<()> {
        let sockets = self.relays.reserved.take(ip, port)?;
        let mslot = self.relays.slots.fetch_add(1, Relaxed);
        self.relays.send(
            self.worker,
            Cmd::MonitorOpen {
                slot: self.slot,
                mslot,
                id,
                mode,
                sockets,
            },
        );
        Ok(())
    }

    pub fn record(&self, recorder: Recorder) {
        let slot = self.slot;
        self.relays.send(
            self.worker,
            Cmd::Record {
                slot,
                recorder: Box::new(recorder),
            },
        );
    }

    /// Play an announcement to `side`; the worker reports when it is over.
    pub fn announce(&self, side: Side, samples: Arc<[i16]>, pt: u8) {
        let slot = self.slot;
        self.relays.send(
            self.worker,
            Cmd::Announce {
                slot,
                side,
                samples,
                pt,
            },
        );
    }

    pub fn hold(&self, side: Side, held: bool, audio: Option<Arc<[i16]>>) {
        let slot = self.slot;
        self.relays.send(
            self.worker,
            Cmd::Hold {
                slot,
                side,
                held,
                audio,
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
    // Non-blocking from the start: no fcntl round trips.
    let s = socket2::Socket::new(
        domain,
        socket2::Type::DGRAM.nonblocking(),
        Some(socket2::Protocol::UDP),
    )?;
    // Room for bursts: packets of thousands of calls arrive together.
    let _ = s.set_recv_buffer_size(256 * 1024);
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(s.into())
}

/// What the relay workers are started with.
pub struct RelaySetup {
    pub threads: usize,
    pub metrics: Arc<Metrics>,
    /// Digits, played announcements, silence and failed browser legs go here.
    pub events: MediaEvents,
    /// Finished recordings go here.
    pub finisher: Finisher,
    /// Varies the mix sessions' SSRCs.
    pub seed: u64,
    pub silence: SilenceLimits,
    pub reserved: Reserved,
    /// The DTLS certificate of browser legs.
    pub identity: Arc<Identity>,
    /// How long a browser leg's ICE and DTLS may take (`[media] webrtc_timeout`).
    pub webrtc_timeout: Duration,
}

impl Relays {
    /// Start the workers (at least one).
    pub fn start(setup: RelaySetup) -> io::Result<Arc<Relays>> {
        let RelaySetup {
            threads,
            metrics,
            events,
            finisher,
            seed,
            silence,
            reserved,
            identity,
            webrtc_timeout,
        } = setup;
        let m = metrics.clone();
        let workers = Workers::start(threads, "rtp-relay", MAX_WAIT, |i| RelayWorker {
            calls: HashMap::new(),
            monitor_slots: HashMap::new(),
            buf: [0u8; 2048],
            c: Counters::default(),
            last_flush: Instant::now(),
            epoch: Instant::now(),
            next_tick: None,
            last_sweep: Instant::now(),
            webrtc_slots: HashSet::new(),
            next_webrtc: None,
            ctx: Ctx {
                metrics: m.clone(),
                events: events.clone(),
                finisher: finisher.clone(),
                seed: seed ^ (i as u64) << 56,
                silence,
                identity: identity.clone(),
                webrtc_timeout,
            },
        })?;
        Ok(Arc::new(Relays {
            workers,
            next: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            metrics,
            reserved,
        }))
    }

    fn send(&self, worker: usize, cmd: Cmd) {
        self.workers.send(worker, cmd);
    }

    /// Bind the four sockets (A RTP/RTCP at `a_port`, B at `b_port`) and relay them.
    pub fn open(
        self: &Arc<Self>,
        call: CallId,
        ip: IpAddr,
        a_port: u16,
        b_port: u16,
    ) -> io::Result<RelayHandle> {
        let [a_rtp, a_rtcp] = self.reserved.take(ip, a_port)?;
        let [b_rtp, b_rtcp] = self.reserved.take(ip, b_port)?;
        let sockets = [a_rtp, a_rtcp, b_rtp, b_rtcp];
        let worker = self.next.fetch_add(1, Relaxed) % self.workers.len();
        let slot = self.slots.fetch_add(1, Relaxed);
        self.metrics.relays_active.fetch_add(1, Relaxed);
        self.send(
            worker,
            Cmd::Open {
                slot,
                call,
                sockets,
            },
        );
        Ok(RelayHandle {
            worker,
            slot,
            relays: self.clone(),
        })
    }
}

/// A supervisor's sockets (its media state is in the call's `CallMedia`).
struct Monitor {
    id: MonitorId,
    mslot: usize,
    sockets: [UdpSocket; 2],
}

/// One call on a worker: its sockets and recording file around the sans-IO media.
struct Call {
    call: CallId,
    sockets: [UdpSocket; 4],
    media: CallMedia,
    monitors: Vec<Monitor>,
    recorder: Option<Box<Recorder>>,
}

/// What the relay workers report; the receiver (the SIP core) decides what it means.
#[derive(Debug)]
pub enum MediaEvent {
    /// A call's announcement was played to its end.
    AnnouncementDone { call: CallId },
    /// No datagram from either party of a call for its silence limit (reported
    /// again after each further limit while it lasts).
    Silent { call: CallId },
    /// A browser leg of the call failed (DTLS handshake, its timeout, or a
    /// certificate that is not the SDP's): it will carry no media.
    WebRtcFailed { call: CallId },
    /// An RFC 4733 digit decoded in a call's media (a party's or a supervisor's).
    Digit {
        call: CallId,
        from: DigitFrom,
        digit: char,
    },
}

/// Where relay workers send their events (never blocking: a full queue drops).
pub type MediaEvents = tokio::sync::mpsc::Sender<MediaEvent>;

/// How long a call may go without a datagram from its parties (`Duration::ZERO`:
/// no limit); `hold` while a party is held.
#[derive(Debug, Clone, Copy)]
pub struct SilenceLimits {
    pub normal: Duration,
    pub hold: Duration,
}

/// What a worker shares with the rest of the process.
struct Ctx {
    metrics: Arc<Metrics>,
    events: MediaEvents,
    finisher: Finisher,
    seed: u64,
    silence: SilenceLimits,
    /// The DTLS certificate of browser legs.
    identity: Arc<Identity>,
    /// How long a browser leg's ICE and DTLS may take.
    webrtc_timeout: Duration,
}

/// A party's RTP (plain, or a browser's decrypted) on socket `on` from `src`:
/// relayed to the other party, or taken by the call's session; its digit reported.
fn party_datagram(
    call: &mut Call,
    on: Socket,
    src: SocketAddr,
    pkt: &mut [u8],
    c: &mut Counters,
    ctx: &Ctx,
    now_us: u64,
) {
    let (verdict, digit) = call.media.on_party(on, src, pkt, now_us);
    if let Some(d) = digit {
        let _ = ctx.events.try_send(MediaEvent::Digit {
            call: call.call,
            from: DigitFrom::Party(on.side),
            digit: d,
        });
    }
    match verdict {
        Party::Forward(dst) => {
            let to = on.peer();
            match call.media.outbound(to, pkt, dst) {
                Some((out, dst)) => send_counted(&call.sockets[to.index()], &out, dst, c),
                // Held for a browser leg not ready yet: sent below once it is.
                None if call.media.holds_out(to) => {}
                None => c.dropped += 1,
            }
            while let Some((out, dst)) = call.media.held_out(to) {
                send_counted(&call.sockets[to.index()], &out, dst, c);
            }
        }
        Party::Refused => c.dropped += 1,
        Party::Consumed => {}
    }
}

/// Send a datagram of a party's, counted.
fn send_counted(sock: &UdpSocket, pkt: &[u8], dst: SocketAddr, c: &mut Counters) {
    match sock.send_to(pkt, dst) {
        Ok(_) => {
            c.packets += 1;
            c.bytes += pkt.len() as u64;
        }
        Err(_) => c.dropped += 1,
    }
}

/// The SRTP a browser leg on `side` held during its handshake, once the leg is
/// connected: decrypted and handled as if it came now, in the order it came; and
/// the RTP held for it meanwhile, sent.
fn held_srtp(call: &mut Call, side: Side, c: &mut Counters, ctx: &Ctx, now_us: u64) {
    let on = Socket { side, rtcp: false };
    while let Some((out, dst)) = call.media.held_out(on) {
        send_counted(&call.sockets[on.index()], &out, dst, c);
    }
    loop {
        let Some(leg) = call.media.webrtc(side) else {
            return;
        };
        let peer = leg.peer();
        let mut plain = match leg.poll_early() {
            None => return,
            Some(Inbound::Rtp(p)) => p,
            // The browser's own reports are not relayed (see `on_readable`).
            Some(_) => continue,
        };
        let Some(src) = peer else {
            c.dropped += 1;
            continue;
        };
        party_datagram(call, on, src, &mut plain, c, ctx, now_us);
    }
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

const TICK: Duration = Duration::from_millis(20);

/// The longest a worker sleeps with no tick due (counters are flushed then).
const MAX_WAIT: Duration = Duration::from_millis(500);

/// One relay worker. Event tokens: slot × 4 + socket index. Slots are process-unique
/// (calls and monitors share the counter); calls live in a map keyed by slot,
/// monitors in a map from their slot to the call's (a closed slot's late events find
/// nothing).
struct RelayWorker {
    calls: HashMap<usize, Call>,
    monitor_slots: HashMap<usize, (usize, MonitorId)>,
    buf: [u8; 2048],
    c: Counters,
    last_flush: Instant,
    epoch: Instant,
    next_tick: Option<Instant>,
    /// When calls were last checked for silence (once a second).
    last_sweep: Instant,
    /// Calls with a browser (WebRTC) leg: their DTLS timers and counters are looked
    /// at by `on_wake`, no later than `next_webrtc`.
    webrtc_slots: HashSet<usize>,
    next_webrtc: Option<Instant>,
    ctx: Ctx,
}

impl Handler for RelayWorker {
    type Command = Cmd;

    fn on_readable(&mut self, _: &Poller, token: u64, now: Instant) {
        let now_us = now.duration_since(self.epoch).as_micros() as u64;
        let (slot, i) = ((token / 4) as usize, (token % 4) as usize);
        let (buf, c, ctx) = (&mut self.buf, &mut self.c, &self.ctx);
        if let Some(&(call_slot, id)) = self.monitor_slots.get(&slot) {
            if let Some(call) = self.calls.get_mut(&call_slot) {
                on_monitor_datagram(call, id, i, buf, ctx, now);
            }
            return;
        }
        let Some(call) = self.calls.get_mut(&slot) else {
            return;
        };
        let on = Socket::ALL[i];
        // One datagram per readiness; if more are queued, the next wait reports the
        // socket again. WouldBlock (spurious) or ICMP errors: nothing to do.
        let Ok((mut len, mut src)) = call.sockets[i].recv_from(buf) else {
            return;
        };
        if let Some(leg) = call.media.webrtc(on.side) {
            // A browser: STUN, DTLS and SRTP share the RTP port (rtcp-mux); the
            // RTCP port carries nothing of it.
            if on.rtcp {
                c.dropped += 1;
                return;
            }
            let inbound = leg.on_datagram(now, src, &buf[..len]);
            send_transmits(leg, Some(&call.sockets[i]));
            if let Some(t) = leg.poll_timeout() {
                self.next_webrtc = Some(self.next_webrtc.map_or(t, |n| n.min(t)));
            }
            let peer = leg.peer();
            match inbound {
                Inbound::Rtp(plain) if plain.len() <= buf.len() => {
                    buf[..plain.len()].copy_from_slice(&plain);
                    len = plain.len();
                    // The leg took it from a pair ICE validated; to the relay the
                    // browser is one source, its current peer.
                    src = peer.unwrap_or(src);
                }
                // The browser's own reports: not relayed (the trunk gets the edge's
                // plain RTP stream, and reports on it itself).
                Inbound::Rtcp(_) => return,
                Inbound::Consumed => {
                    // The first valid check: media to the browser goes there.
                    let rtp = Socket {
                        side: on.side,
                        rtcp: false,
                    };
                    if peer.is_some() && call.media.destination(rtp) != peer {
                        call.media.apply(&Command::Remote {
                            side: on.side,
                            addr: peer,
                        });
                    }
                    // The handshake may have just ended: SRTP held meanwhile goes on.
                    held_srtp(call, on.side, c, ctx, now_us);
                    return;
                }
                Inbound::Rtp(_) | Inbound::Dropped => {
                    c.dropped += 1;
                    return;
                }
            }
        }
        party_datagram(call, on, src, &mut buf[..len], c, ctx, now_us);
    }

    fn on_command(&mut self, poller: &Poller, cmd: Cmd, now: Instant) -> Flow {
        let cmd = match cmd {
            Cmd::Media {
                slot,
                cmd:
                    cmd @ (Command::WebRtc { .. }
                    | Command::WebRtcRemote { .. }
                    | Command::MonitorWebRtc { .. }
                    | Command::MonitorWebRtcRemote { .. }),
            } => {
                self.on_webrtc(slot, cmd, now);
                return Flow::Continue;
            }
            cmd => cmd,
        };
        let now_us = now.duration_since(self.epoch).as_micros() as u64;
        let mixes = apply(
            poller,
            &mut self.calls,
            &mut self.monitor_slots,
            cmd,
            &mut self.ctx,
            now_us,
        );
        // Start the tick grid when a command made a call mix; the ticks stop it once
        // no call mixes (no scan of every call per command).
        if mixes && self.next_tick.is_none() {
            self.next_tick = Some(now + TICK);
        }
        Flow::Continue
    }

    fn on_wake(&mut self, _: &Poller, now: Instant) {
        if let Some(t) = self.next_tick.filter(|t| now >= *t) {
            let now_us = now.duration_since(self.epoch).as_micros() as u64;
            let mut any = false;
            for call in self.calls.values_mut() {
                any |= tick(call, now_us, &mut self.c, &self.ctx);
            }
            // Keep the 20 ms grid while a call mixes; after a stall, restart it rather
            // than burst. No call mixing: the grid stops until a command starts one.
            let next = t + TICK;
            self.next_tick = any.then_some(if next + 5 * TICK < now {
                now + TICK
            } else {
                next
            });
        }
        if self.next_webrtc.is_some_and(|t| now >= t) {
            self.webrtc_timers(now);
        }
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            let now_us = now.duration_since(self.epoch).as_micros() as u64;
            for call in self.calls.values_mut() {
                report_silence(call, now_us, &self.ctx);
            }
        }
        if now.duration_since(self.last_flush) >= Duration::from_secs(1)
            || self.c.packets >= 1 << 16
        {
            self.c.flush(&self.ctx.metrics);
            self.last_flush = now;
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tick, self.next_webrtc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// How often a worker with browser legs looks at them when no DTLS timer is due
/// sooner (their counters reach the metrics then).
const WEBRTC_SWEEP: Duration = Duration::from_secs(1);

impl RelayWorker {
    /// A call's side becomes a browser leg (or plain again), or learns the
    /// browser's parameters.
    fn on_webrtc(&mut self, slot: usize, cmd: Command, now: Instant) {
        let Some(call) = self.calls.get_mut(&slot) else {
            return;
        };
        match cmd {
            Command::WebRtc { side, local } => {
                if let Some(mut old) = call.media.webrtc(side).map(|l| l.take_stats()) {
                    flush_webrtc(&mut old, call.call, &self.ctx);
                }
                let leg = local.map(|l| {
                    Box::new(Leg::new(
                        self.ctx.identity.clone(),
                        l,
                        self.ctx.webrtc_timeout,
                    ))
                });
                call.media.set_webrtc(side, leg);
                self.webrtc_slots.insert(slot);
                self.next_webrtc.get_or_insert(now + WEBRTC_SWEEP);
            }
            Command::WebRtcRemote { side, remote } => {
                if let Some(leg) = call.media.webrtc(side) {
                    leg.set_remote(now, remote);
                    let i = Socket { side, rtcp: false }.index();
                    send_transmits(leg, Some(&call.sockets[i]));
                    // Connected now that the fingerprint is known: SRTP the
                    // browser sent after its handshake goes on.
                    let now_us = now.duration_since(self.epoch).as_micros() as u64;
                    held_srtp(call, side, &mut self.c, &self.ctx, now_us);
                } else {
                    tracing::debug!(call = %call.call, ?side, "browser parameters for a plain leg: ignored");
                }
            }
            Command::MonitorWebRtc { monitor, local } => {
                let leg = Box::new(Leg::new(
                    self.ctx.identity.clone(),
                    local,
                    self.ctx.webrtc_timeout,
                ));
                call.media.set_monitor_webrtc(monitor, leg);
                self.webrtc_slots.insert(slot);
                self.next_webrtc.get_or_insert(now + WEBRTC_SWEEP);
            }
            Command::MonitorWebRtcRemote { monitor, remote } => {
                let sock = call.monitors.iter().find(|m| m.id == monitor);
                if let (Some(leg), Some(m)) = (call.media.monitor_webrtc(monitor), sock) {
                    leg.set_remote(now, remote);
                    send_transmits(leg, Some(&m.sockets[0]));
                }
            }
            _ => {}
        }
    }

    /// DTLS retransmissions and give-ups of browser legs; their counters.
    fn webrtc_timers(&mut self, now: Instant) {
        let mut next = now + WEBRTC_SWEEP;
        let ctx = &self.ctx;
        self.webrtc_slots.retain(|slot| {
            let Some(call) = self.calls.get_mut(slot) else {
                return false;
            };
            let id = call.call;
            let mut any = false;
            let (sockets, monitors) = (&call.sockets, &call.monitors);
            for (out, leg) in call.media.webrtc_legs() {
                any = true;
                if leg.poll_timeout().is_some_and(|t| now >= t) {
                    leg.handle_timeout(now);
                    let sock = match out {
                        Out::Party(s) => Some(&sockets[s.index()]),
                        Out::Monitor(m) => {
                            monitors.iter().find(|x| x.id == m).map(|x| &x.sockets[0])
                        }
                    };
                    send_transmits(leg, sock);
                }
                if let Some(t) = leg.poll_timeout() {
                    next = next.min(t);
                }
                flush_webrtc(&mut leg.take_stats(), id, ctx);
            }
            any
        });
        self.next_webrtc = (!self.webrtc_slots.is_empty()).then_some(next);
    }
}

/// Send what a browser leg has to send (STUN answers, DTLS records) out of its
/// socket; with no socket (its supervisor left) it is dropped.
fn send_transmits(leg: &mut Leg, sock: Option<&UdpSocket>) {
    while let Some((to, pkt)) = leg.poll_transmit() {
        if let Some(sock) = sock {
            let _ = sock.send_to(&pkt, to);
        }
    }
}

/// Add a browser leg's counters to the metrics; say when it connected, and tell
/// the core when it failed (the call cannot carry media: it ends).
fn flush_webrtc(s: &mut media::webrtc::LegStats, call: CallId, ctx: &Ctx) {
    let m = &ctx.metrics;
    if s.connected > 0 {
        tracing::debug!(%call, "WebRTC leg ready (DTLS-SRTP, fingerprint matched)");
    }
    if s.failed > 0 {
        tracing::warn!(%call, "WebRTC leg failed: DTLS handshake did not complete or the certificate is not the one in the SDP");
        if ctx
            .events
            .try_send(MediaEvent::WebRtcFailed { call })
            .is_err()
        {
            tracing::warn!(%call, "core busy: failed WebRTC leg not reported (the silence limit ends the call)");
        }
    }
    m.webrtc_connected.fetch_add(s.connected, Relaxed);
    m.webrtc_failed.fetch_add(s.failed, Relaxed);
    m.webrtc_stun_refused.fetch_add(s.stun_refused, Relaxed);
    m.webrtc_srtp_refused.fetch_add(s.srtp_refused, Relaxed);
    m.webrtc_not_ready.fetch_add(s.not_ready, Relaxed);
}

fn on_monitor_datagram(
    call: &mut Call,
    id: MonitorId,
    i: usize,
    buf: &mut [u8],
    ctx: &Ctx,
    now: Instant,
) {
    let Some(m) = call.monitors.iter().find(|m| m.id == id) else {
        return;
    };
    let Ok((mut len, src)) = m.sockets[i.min(1)].recv_from(buf) else {
        return;
    };
    if i != 0 {
        return; // the supervisor's RTCP: read and dropped
    }
    if let Some(leg) = call.media.monitor_webrtc(id) {
        // A supervisor in a browser: STUN, DTLS and SRTP on the one port.
        let inbound = leg.on_datagram(now, src, &buf[..len]);
        send_transmits(leg, Some(&m.sockets[0]));
        match inbound {
            Inbound::Rtp(plain) if plain.len() <= buf.len() => {
                buf[..plain.len()].copy_from_slice(&plain);
                len = plain.len();
            }
            _ => return,
        }
    }
    if let Some(d) = call.media.on_monitor(id, src, &buf[..len]) {
        let _ = ctx.events.try_send(MediaEvent::Digit {
            call: call.call,
            from: DigitFrom::Monitor(id),
            digit: d,
        });
    }
}

/// Tell the core about a call silent past its limit (the core decides: only an
/// answered call is ended), and restart its silence clock.
fn report_silence(call: &mut Call, now_us: u64, ctx: &Ctx) {
    let limit = if call.media.on_hold() {
        ctx.silence.hold
    } else {
        ctx.silence.normal
    };
    if limit.is_zero() || call.media.silent_for_us(now_us) < limit.as_micros() as u64 {
        return;
    }
    call.media.reset_silence(now_us);
    if ctx
        .events
        .try_send(MediaEvent::Silent { call: call.call })
        .is_err()
    {
        tracing::warn!(call = %call.call, "core busy: RTP silence not reported");
    }
}

/// Tick one call's mix; whether it still needs ticks.
fn tick(call: &mut Call, now_us: u64, c: &mut Counters, ctx: &Ctx) -> bool {
    let (sockets, monitors, recorder) = (&call.sockets, &call.monitors, &mut call.recorder);
    let active = call.media.tick(
        now_us,
        |out, to, pkt| {
            let sock = match out {
                Out::Party(s) => Some(&sockets[s.index()]),
                Out::Monitor(id) => monitors.iter().find(|m| m.id == id).map(|m| &m.sockets[0]),
            };
            match (sock, to) {
                (Some(sock), Some(to)) if sock.send_to(pkt, to).is_ok() => {
                    c.packets += 1;
                    c.bytes += pkt.len() as u64;
                }
                _ => c.dropped += 1,
            }
        },
        |l, r| {
            if let Some(rec) = recorder.as_mut() {
                rec.write(l, r);
            }
        },
    );
    if call.media.take_announcement_done() {
        // If the core's queue is full, its safety timer connects the caller.
        if ctx
            .events
            .try_send(MediaEvent::AnnouncementDone { call: call.call })
            .is_err()
        {
            tracing::warn!(call = %call.call, "core busy: announcement end not reported");
        }
    }
    active
}

/// Apply a command; whether it made a call's session mix (so ticks must run).
fn apply(
    poll: &Poller,
    calls: &mut HashMap<usize, Call>,
    monitor_slots: &mut HashMap<usize, (usize, MonitorId)>,
    cmd: Cmd,
    ctx: &mut Ctx,
    now_us: u64,
) -> bool {
    let metrics = &ctx.metrics;
    let mut mixes = false;
    match cmd {
        Cmd::Open {
            slot,
            call,
            sockets,
        } => {
            if poll.add_all(&sockets, slot as u64 * 4).is_ok() {
                ctx.seed = ctx.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                calls.insert(
                    slot,
                    Call {
                        call,
                        sockets,
                        media: CallMedia::new(ctx.seed, now_us),
                        monitors: Vec::new(),
                        recorder: None,
                    },
                );
            } else {
                tracing::error!(slot, "cannot register RTP sockets");
                metrics.relays_active.fetch_sub(1, Relaxed);
            }
        }
        Cmd::MonitorOpen {
            slot,
            mslot,
            id,
            mode,
            sockets,
        } => {
            let Some(call) = calls.get_mut(&slot) else {
                return false; // the call ended meanwhile: the sockets close here
            };
            if poll.add_all(&sockets, mslot as u64 * 4).is_err() {
                tracing::error!(slot, "cannot register a supervisor's RTP sockets");
                return false;
            }
            monitor_slots.insert(mslot, (slot, id));
            call.media.add_monitor(id, mode);
            mixes = true;
            call.monitors.push(Monitor { id, mslot, sockets });
            metrics.monitors_active.fetch_add(1, Relaxed);
        }
        Cmd::Record { slot, recorder } => match calls.get_mut(&slot) {
            Some(call) => {
                call.media.record();
                mixes = true;
                call.recorder = Some(recorder);
                metrics.recordings_active.fetch_add(1, Relaxed);
            }
            None => ctx.finisher.finish(*recorder),
        },
        Cmd::Announce {
            slot,
            side,
            samples,
            pt,
        } => {
            if let Some(call) = calls.get_mut(&slot) {
                call.media.announce(side, samples, pt);
                mixes = true;
            }
        }
        Cmd::Hold {
            slot,
            side,
            held,
            audio,
        } => {
            if let Some(call) = calls.get_mut(&slot) {
                mixes = call.media.hold(side, held, audio);
            }
        }
        Cmd::Media { slot, cmd } => {
            mixes = apply_media(poll, calls, monitor_slots, slot, cmd, ctx);
        }
        Cmd::Close { slot } => {
            if let Some(mut call) = calls.remove(&slot) {
                for (_, leg) in call.media.webrtc_legs() {
                    flush_webrtc(&mut leg.take_stats(), call.call, ctx);
                }
                for s in &call.sockets {
                    poll.delete(s);
                }
                let ids: Vec<MonitorId> = call.monitors.iter().map(|m| m.id).collect();
                for id in ids {
                    close_monitor(poll, &mut call, monitor_slots, id, ctx);
                }
                if let Some(r) = call.recorder.take() {
                    metrics.recordings_active.fetch_sub(1, Relaxed);
                    ctx.finisher.finish(*r);
                }
                metrics.relays_active.fetch_sub(1, Relaxed);
            }
        }
    }
    mixes
}

/// A media command as the call model gave it; whether it made the call mix.
fn apply_media(
    poll: &Poller,
    calls: &mut HashMap<usize, Call>,
    monitor_slots: &mut HashMap<usize, (usize, MonitorId)>,
    slot: usize,
    cmd: Command,
    ctx: &mut Ctx,
) -> bool {
    let Some(call) = calls.get_mut(&slot) else {
        return false;
    };
    match cmd {
        Command::MonitorClose { monitor } => {
            close_monitor(poll, call, monitor_slots, monitor, ctx);
            false
        }
        Command::RecordPause { paused } => {
            if let Some(r) = call.recorder.as_mut() {
                r.set_paused(paused);
            }
            call.media.apply(&cmd)
        }
        // The driver binds and decodes for these and sends their own commands.
        Command::Open { .. }
        | Command::Close
        | Command::MonitorOpen { .. }
        | Command::Announce { .. }
        | Command::Hold { .. } => {
            tracing::debug!(
                slot,
                ?cmd,
                "media command needs the driver's resources: ignored"
            );
            false
        }
        cmd => call.media.apply(&cmd),
    }
}

fn close_monitor(
    poll: &Poller,
    call: &mut Call,
    monitor_slots: &mut HashMap<usize, (usize, MonitorId)>,
    id: MonitorId,
    ctx: &Ctx,
) {
    let metrics = &ctx.metrics;
    let Some(i) = call.monitors.iter().position(|m| m.id == id) else {
        return;
    };
    let m = call.monitors.remove(i);
    for s in &m.sockets {
        poll.delete(s);
    }
    if let Some(leg) = call.media.monitor_webrtc(id) {
        flush_webrtc(&mut leg.take_stats(), call.call, ctx);
    }
    monitor_slots.remove(&m.mslot);
    call.media.remove_monitor(id);
    metrics.monitors_active.fetch_sub(1, Relaxed);
}
