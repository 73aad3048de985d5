//! One call's media as a sans-IO object: the relay (symmetric RTP latching), the RFC
//! 4733 receivers of both parties, the supervisors' legs (announced and latched
//! addresses) and the mix session, created when something first needs mixing. It
//! obeys [`Command`]s and decides for every datagram what happens to it; the driver
//! owns the sockets, reads and sends, and reports digits and the announcement's end.

use crate::mixer::{Frame, MonitorMode};
use crate::relay::{Relay, Side, Socket};
use crate::session::{Dest, Session, Verdict};
use crate::{dtmf, rtp, Command, MonitorId};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;

/// What becomes of a party's datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// Send it on to this address, out of the peer socket ([`Socket::peer`]).
    Forward(SocketAddr),
    /// The relay refuses it (an unlatched source, no destination yet): count it lost.
    Refused,
    /// The mix consumed it (a whispered-to or held party's media is regenerated).
    Consumed,
}

/// Out of which socket a generated packet leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// A party's RTP socket.
    Party(Socket),
    /// A supervisor's RTP socket.
    Monitor(MonitorId),
}

/// A generated packet for a browser (a party or a supervisor): SRTP to the
/// address its checks came from, after what the leg held before it was ready;
/// held itself while the leg is not; nowhere (counted by the driver) when the leg
/// failed.
fn to_browser(
    leg: &mut crate::webrtc::Leg,
    out: Out,
    pkt: &[u8],
    send: &mut impl FnMut(Out, Option<SocketAddr>, &[u8]),
) {
    match (leg.protect(pkt), leg.peer()) {
        (Some(sealed), Some(peer)) => send(out, Some(peer), &sealed),
        _ if leg.holds_out() => {}
        _ => send(out, None, pkt),
    }
    while let Some((sealed, peer)) = leg.poll_held_out() {
        send(out, Some(peer), &sealed);
    }
}

#[derive(Debug)]
struct MonitorLeg {
    id: MonitorId,
    /// The address in the supervisor phone's SDP.
    announced: Option<SocketAddr>,
    /// The first source its RTP came from (symmetric RTP); wins over `announced`.
    latched: Option<SocketAddr>,
    /// The supervisor is in a browser: its port runs ICE-lite and DTLS-SRTP.
    webrtc: Option<Box<crate::webrtc::Leg>>,
}

#[derive(Debug)]
pub struct CallMedia {
    relay: Relay,
    dtmf: [dtmf::Receiver; 2],
    session: Option<Box<Session>>,
    monitors: Vec<MonitorLeg>,
    seed: u64,
    /// A side that is a browser: its port carries ICE, DTLS and SRTP (index `Side`).
    webrtc: [Option<Box<crate::webrtc::Leg>>; 2],
    /// When the last datagram from a party arrived (or the silence clock was reset).
    last_heard_us: u64,
    /// The last RTP packet relayed towards each party before the session existed
    /// (its header's bytes 2..12: sequence, timestamp, SSRC; and when): the
    /// session's stream to it goes on from there, whoever sends next.
    relayed: [Option<([u8; 10], u64)>; 2],
}

impl CallMedia {
    /// `seed` makes the session's SSRCs and sequence numbers (one per call); the
    /// silence clock starts at `now_us`.
    pub fn new(seed: u64, now_us: u64) -> CallMedia {
        CallMedia {
            relay: Relay::new(),
            dtmf: Default::default(),
            session: None,
            monitors: Vec::new(),
            seed,
            webrtc: [None, None],
            last_heard_us: now_us,
            relayed: [None, None],
        }
    }

    /// How long no datagram has come from either party (RTP or RTCP from the source
    /// the relay accepts; a stranger's packets or garbage do not count).
    pub fn silent_for_us(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.last_heard_us)
    }

    /// Start the silence clock again (after it was reported).
    pub fn reset_silence(&mut self, now_us: u64) {
        self.last_heard_us = now_us;
    }

    /// Make `side` a browser leg (or plain RTP again with `None`).
    pub fn set_webrtc(&mut self, side: Side, leg: Option<Box<crate::webrtc::Leg>>) {
        self.webrtc[side as usize] = leg;
    }

    /// The browser leg of `side`, if it is one.
    pub fn webrtc(&mut self, side: Side) -> Option<&mut crate::webrtc::Leg> {
        self.webrtc[side as usize].as_deref_mut()
    }

    /// What to send towards `to` for a relayed datagram `pkt` bound for `dst`: the
    /// datagram itself, or for a browser its SRTP at the address ICE validated.
    /// `None`: nothing may go now (RTCP is not passed to a browser, which reports
    /// on its own; its leg is not ready yet, and the packet is held — see
    /// [`CallMedia::holds_out`] — or failed). After it, send what
    /// [`CallMedia::held_out`] gives.
    pub fn outbound<'p>(
        &mut self,
        to: Socket,
        pkt: &'p [u8],
        dst: SocketAddr,
    ) -> Option<(std::borrow::Cow<'p, [u8]>, SocketAddr)> {
        match self.webrtc[to.side as usize].as_deref_mut() {
            None => Some((std::borrow::Cow::Borrowed(pkt), dst)),
            Some(_) if to.rtcp => None,
            Some(leg) => {
                let sealed = leg.protect(pkt)?;
                Some((std::borrow::Cow::Owned(sealed.into()), leg.peer()?))
            }
        }
    }

    /// A browser leg towards `to` holds RTP that came before it was ready (RTCP
    /// is never held: it does not go to a browser).
    pub fn holds_out(&self, to: Socket) -> bool {
        !to.rtcp
            && self.webrtc[to.side as usize]
                .as_deref()
                .is_some_and(|l| l.holds_out())
    }

    /// The next packet a browser leg towards `to` held before it was ready, now
    /// protected, with where it goes (see [`crate::webrtc::Leg::poll_held_out`]).
    pub fn held_out(&mut self, to: Socket) -> Option<(BytesMut, SocketAddr)> {
        if to.rtcp {
            return None;
        }
        self.webrtc[to.side as usize]
            .as_deref_mut()?
            .poll_held_out()
    }

    /// Where the relay sends `to`'s datagrams now (latched, else announced).
    pub fn destination(&self, to: Socket) -> Option<SocketAddr> {
        self.relay.destination(to)
    }

    /// Make supervisor `id`'s leg a browser one.
    pub fn set_monitor_webrtc(&mut self, id: MonitorId, leg: Box<crate::webrtc::Leg>) {
        if let Some(m) = self.monitors.iter_mut().find(|m| m.id == id) {
            m.webrtc = Some(leg);
        }
    }

    /// Supervisor `id`'s browser leg, if it is one.
    pub fn monitor_webrtc(&mut self, id: MonitorId) -> Option<&mut crate::webrtc::Leg> {
        self.monitors
            .iter_mut()
            .find(|m| m.id == id)
            .and_then(|m| m.webrtc.as_deref_mut())
    }

    /// Every browser leg of the call (parties' and supervisors'), with the socket
    /// its packets leave from (for timers and counters).
    pub fn webrtc_legs(&mut self) -> impl Iterator<Item = (Out, &mut crate::webrtc::Leg)> {
        let [a, b] = &mut self.webrtc;
        let parties = [(Side::A, a), (Side::B, b)]
            .into_iter()
            .filter_map(|(s, l)| {
                let out = Out::Party(Socket {
                    side: s,
                    rtcp: false,
                });
                l.as_deref_mut().map(|l| (out, l))
            });
        let monitors = self.monitors.iter_mut().filter_map(|m| {
            let out = Out::Monitor(m.id);
            m.webrtc.as_deref_mut().map(|l| (out, l))
        });
        parties.chain(monitors)
    }

    /// A party is on hold (its phone may legitimately send nothing).
    pub fn on_hold(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.held(Side::A) || s.held(Side::B))
    }

    fn session(&mut self) -> &mut Session {
        let (seed, relayed) = (self.seed, self.relayed);
        self.session.get_or_insert_with(|| {
            let mut s = Box::new(Session::new(seed));
            for (to, last) in [Side::A, Side::B].into_iter().zip(relayed) {
                if let Some((h, at_us)) = last {
                    let seq = u16::from_be_bytes([h[0], h[1]]);
                    let ts = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
                    let ssrc = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
                    s.continue_stream(to, ssrc, seq, ts, at_us);
                }
            }
            s
        })
    }

    /// A datagram from a party arrived on `on` from `src`. `pkt` may be rewritten in
    /// place (continuity of sequence numbers and timestamps); the digit is a completed
    /// RFC 4733 event from that party.
    pub fn on_party(
        &mut self,
        on: Socket,
        src: SocketAddr,
        pkt: &mut [u8],
        now_us: u64,
    ) -> (Party, Option<char>) {
        let (foreign, malformed) = (self.relay.stats.foreign, self.relay.stats.malformed);
        let dst = self.relay.on_datagram(on, src, pkt);
        if self.relay.stats.foreign != foreign || self.relay.stats.malformed != malformed {
            return (Party::Refused, None);
        }
        // The party itself: forwarded, or with no other side to forward to (not yet
        // known, or none at all: a call the edge answers itself, after hours). Its
        // digits and audio still reach the session (recording a voicemail, `#`).
        self.last_heard_us = now_us;
        let mut digit = None;
        if !on.rtcp {
            if pkt.len() >= 16 && pkt[1] & 0x7F >= 96 {
                digit = self.party_digit(on.side, pkt);
            }
            if let Some(s) = self.session.as_mut() {
                if s.on_party_rtp(on.side, pkt, now_us) == Verdict::Drop {
                    return (Party::Consumed, digit);
                }
            } else if dst.is_some() && pkt.len() >= 12 {
                // Sequence, timestamp and SSRC as they are (read if a session starts).
                let mut h = [0u8; 10];
                h.copy_from_slice(&pkt[2..12]);
                self.relayed[on.side.other() as usize] = Some((h, now_us));
            }
        }
        match dst {
            Some(dst) => (Party::Forward(dst), digit),
            None if on.rtcp || self.session.is_none() => (Party::Refused, digit),
            // Taken by the session (recorded, listened to) with nowhere to relay it.
            None => (Party::Consumed, digit),
        }
    }

    fn party_digit(&mut self, side: Side, pkt: &[u8]) -> Option<char> {
        let p = rtp::parse(pkt)?;
        let payload = &pkt[p.payload_offset..p.payload_offset + p.payload_len];
        if payload.len() != 4 {
            return None;
        }
        self.dtmf[side as usize].on_payload(p.header.timestamp, payload)
    }

    /// RTP from supervisor `id`'s phone (RTCP is the driver's to drop). The first
    /// source is the phone; others are ignored. Returns a digit the supervisor sent.
    pub fn on_monitor(&mut self, id: MonitorId, src: SocketAddr, pkt: &[u8]) -> Option<char> {
        let m = self.monitors.iter_mut().find(|m| m.id == id)?;
        match m.latched {
            // A browser's source is the one ICE validated (the leg drops others),
            // and it moves when the browser nominates another pair.
            _ if m.webrtc.is_some() => m.latched = Some(src),
            None => m.latched = Some(src),
            Some(l) if l != src => return None,
            Some(_) => {}
        }
        self.session.as_mut()?.on_monitor_rtp(id, pkt)
    }

    /// One 20 ms tick of the mix: `send(out, to, packet)` for each packet generated
    /// (`to` is `None` when that party or supervisor has no address yet: the packet
    /// is lost), `record(left, right)` when recording. Whether ticks must go on.
    pub fn tick(
        &mut self,
        now_us: u64,
        mut send: impl FnMut(Out, Option<SocketAddr>, &[u8]),
        record: impl FnMut(&Frame, &Frame),
    ) -> bool {
        let Some(s) = self.session.as_mut().filter(|s| s.active()) else {
            return false;
        };
        let (relay, monitors, webrtc) = (&self.relay, &mut self.monitors, &mut self.webrtc);
        s.tick(
            now_us,
            |dest, pkt| match dest {
                Dest::Party(side) => {
                    let sock = Socket { side, rtcp: false };
                    match webrtc[side as usize].as_deref_mut() {
                        Some(leg) => to_browser(leg, Out::Party(sock), pkt, &mut send),
                        None => send(Out::Party(sock), relay.destination(sock), pkt),
                    }
                }
                Dest::Monitor(id) => match monitors.iter_mut().find(|m| m.id == id) {
                    Some(MonitorLeg {
                        webrtc: Some(leg), ..
                    }) => to_browser(leg, Out::Monitor(id), pkt, &mut send),
                    m => {
                        let to = m.and_then(|m| m.latched.or(m.announced));
                        send(Out::Monitor(id), to, pkt)
                    }
                },
            },
            record,
        );
        s.active()
    }

    /// The announcement has played to its end (once).
    pub fn take_announcement_done(&mut self) -> bool {
        self.session
            .as_mut()
            .is_some_and(|s| s.take_announcement_done())
    }

    /// Carry out a command that needs nothing from the driver; whether the call now
    /// mixes (ticks must run). The commands naming sockets or audio (Open, Close,
    /// MonitorOpen, Announce, Hold) and the WebRTC ones (which need the driver's
    /// certificate and clock: [`CallMedia::set_webrtc`], [`CallMedia::webrtc`]) are
    /// the driver's, and return `false` here.
    pub fn apply(&mut self, cmd: &Command) -> bool {
        match cmd {
            Command::Remote { side, addr } => {
                self.relay.set_remote(*side, *addr);
                false
            }
            Command::MonitorRemote { monitor, addr } => {
                if let Some(m) = self.monitors.iter_mut().find(|m| m.id == *monitor) {
                    m.announced = Some(*addr);
                    m.latched = None;
                }
                false
            }
            Command::MonitorMode { monitor, mode } => {
                if let Some(s) = self.session.as_mut() {
                    s.set_mode(*monitor, *mode);
                }
                false
            }
            Command::MonitorClose { monitor } => {
                self.remove_monitor(*monitor);
                false
            }
            Command::SendDtmf { side, events, pt } => {
                self.session().send_digits(*side, events, *pt);
                true
            }
            Command::MemberDtmf {
                monitor,
                events,
                pt,
            } => {
                self.session().send_digits_to_member(*monitor, events, *pt);
                true
            }
            Command::RecordPause { paused } => {
                if let Some(s) = self.session.as_mut() {
                    s.set_recording_paused(*paused);
                }
                false
            }
            Command::AnnounceStop => {
                if let Some(s) = self.session.as_mut() {
                    s.stop_announcement();
                }
                false
            }
            Command::Beep => {
                self.session().beep();
                true
            }
            Command::PartyFlags { side, muted, deaf } => {
                self.session().set_party_flags(*side, *muted, *deaf);
                true
            }
            Command::MemberFlags {
                monitor,
                muted,
                deaf,
                held,
            } => {
                if let Some(s) = self.session.as_mut() {
                    s.set_member_flags(*monitor, *muted, *deaf, *held);
                }
                false
            }
            Command::Open { .. }
            | Command::Close
            | Command::MonitorOpen { .. }
            | Command::Announce { .. }
            | Command::Hold { .. }
            | Command::WebRtc { .. }
            | Command::WebRtcRemote { .. }
            | Command::MonitorWebRtc { .. }
            | Command::MonitorWebRtcRemote { .. } => false,
        }
    }

    /// A supervisor joins in `mode` (the driver bound its sockets). The call mixes.
    pub fn add_monitor(&mut self, id: MonitorId, mode: MonitorMode) {
        self.session().add_monitor(id, mode);
        self.monitors.push(MonitorLeg {
            id,
            announced: None,
            latched: None,
            webrtc: None,
        });
    }

    /// Supervisor `id` leaves; whether it was there.
    pub fn remove_monitor(&mut self, id: MonitorId) -> bool {
        let Some(i) = self.monitors.iter().position(|m| m.id == id) else {
            return false;
        };
        self.monitors.remove(i);
        if let Some(s) = self.session.as_mut() {
            s.remove_monitor(id);
        }
        true
    }

    /// The supervisors, in the order they joined.
    pub fn monitors(&self) -> impl Iterator<Item = MonitorId> + '_ {
        self.monitors.iter().map(|m| m.id)
    }

    /// Start recording (the driver holds the file). The call mixes.
    pub fn record(&mut self) {
        self.session().set_recording(true);
    }

    /// Play decoded `samples` to the caller (payload type `pt`). The call mixes.
    pub fn announce(&mut self, to: Side, samples: Arc<[i16]>, pt: u8) {
        self.session().announce(to, samples, pt);
    }

    /// Hold or resume `side`; `audio` is what a held party hears. Whether it mixes.
    pub fn hold(&mut self, side: Side, held: bool, audio: Option<Arc<[i16]>>) -> bool {
        let s = self.session();
        // (Audio with `held: false` only loads it: a conference member's hold.)
        if held || audio.is_some() {
            s.set_hold_audio(audio);
        }
        s.set_held(side, held);
        held
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
