//! A call's media session once it needs more than relaying: supervisors, recording.
//! Sans-IO: the driver hands in each RTP packet of the call's two parties (before it
//! relays it), each packet from a supervisor's phone, and calls [`Session::tick`]
//! every 20 ms; the session says what to send where and gives the recording's
//! stereo frames.
//!
//! Design (DESIGN.md "media fast path first"):
//! - While nobody needs to hear something new, customer ↔ agent packets are still
//!   relayed as they are; the session only decodes copies into jitter buffers for the
//!   supervisors and the recording. In listen mode the parties receive exactly the
//!   packets they would without a supervisor.
//! - A party whose ear needs the mix (the agent while a supervisor whispers or
//!   barges; the customer while one barges) is sent generated frames instead: the
//!   mixer output encoded in the codec that party sends. Its outgoing stream keeps
//!   SSRC, sequence and timestamp continuous across relay → mix → relay
//!   ([`OutStream`]); the other direction keeps being relayed.
//! - Only G.711 (PT 0, 8) is decoded; other payloads are relayed but not mixed.
//!
//! Order per tick: [`Session::tick`] pops one frame per input, mixes, calls `send` for
//! each generated packet and `record` with the stereo frame when recording.

use crate::audio::Player;
use crate::continuity::OutStream;
use crate::jitter::{decode_g711, JitterBuffer};
use crate::mixer::{Frame, Mixer, MonitorMode, ParticipantId, Role, FRAME, SILENCE};
use crate::{dtmf, g711, rtp, tone, MonitorId, Side};
use std::sync::Arc;

/// The beep parties hear when a supervisor joins (`beep_on_monitor`).
pub const BEEP_HZ: f64 = 1400.0;
const BEEP_TICKS: u8 = 10; // 200 ms

/// Where a generated packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Party(Side),
    Monitor(MonitorId),
}

#[derive(Debug)]
struct Input {
    pid: ParticipantId,
    jb: JitterBuffer,
    ssrc: Option<u32>,
    /// The audio payload type this sender uses (what it is sent back in).
    pt: u8,
}

impl Input {
    fn new(pid: ParticipantId) -> Self {
        Input {
            pid,
            jb: JitterBuffer::new(),
            ssrc: None,
            pt: 0,
        }
    }

    /// Decode a G.711 packet into the jitter buffer. Returns false for other payloads.
    fn push(&mut self, p: &rtp::RtpPacket, pkt: &[u8]) -> bool {
        let pt = p.header.payload_type;
        if pt != 0 && pt != 8 {
            return false;
        }
        let payload = &pkt[p.payload_offset..p.payload_offset + p.payload_len];
        let mut f = SILENCE;
        if !decode_g711(payload, pt == 8, &mut f) {
            return false;
        }
        if self.ssrc != Some(p.header.ssrc) {
            // A new sender (or a restarted one): its numbering starts afresh.
            self.jb = JitterBuffer::new();
            self.ssrc = Some(p.header.ssrc);
        }
        self.pt = pt;
        self.jb.push(p.header.sequence, &f);
        true
    }
}

#[derive(Debug)]
struct MonitorLeg {
    id: MonitorId,
    mode: MonitorMode,
    input: Input,
    out: OutStream,
    dtmf: dtmf::Receiver,
    /// RFC 4733 events queued towards this leg (a conference member), their
    /// payload type, and the event being sent.
    dtmf_out: std::collections::VecDeque<u8>,
    dtmf_pt: u8,
    dtmf_now: Option<(u8, u8, u32)>,
    /// This tick's packet to it was an event: its mixed frame waits.
    sent_event: bool,
}

/// What the driver does with a party's packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it (its header may have been rewritten onto the outgoing stream).
    Relay,
    /// Do not relay: the receiver gets generated frames now.
    Drop,
}

#[derive(Debug)]
pub struct Session {
    mixer: Mixer,
    parties: [Input; 2],
    monitors: Vec<MonitorLeg>,
    /// The outgoing stream towards each party, created at the first packet the session
    /// sees for it (with that packet's own numbering, so relaying stays transparent).
    out: [Option<OutStream>; 2],
    generating: [bool; 2],
    /// Ticks a party has waited for a packet to continue its stream from.
    waited: [u8; 2],
    /// RFC 4733 events queued towards each party (API), with its payload type.
    dtmf_out: [std::collections::VecDeque<u8>; 2],
    dtmf_pt: [u8; 2],
    /// The event being sent: (code, tick within the event, event timestamp).
    dtmf_now: [Option<(u8, u8, u32)>; 2],
    recording: bool,
    /// The announcement the agent hears before the customer is connected.
    announce: Option<Player>,
    /// Payload type the announcement is sent in, and who hears it.
    announce_pt: u8,
    announce_to: Side,
    announce_done: bool,
    /// Parties on hold (index: `Side as usize`) and what they hear.
    held: [bool; 2],
    /// Parties muted or deaf (a conference's flags).
    flagged: [bool; 2],
    /// Conference members on hold.
    members_held: usize,
    hold_audio: Option<Player>,
    /// Ticks of beep left, and the tone it is cut from.
    beep: u8,
    beep_tone: tone::Tone,
    /// Seeds for streams the session starts itself (SSRC, sequence, timestamp).
    seed: u64,
    buf: [u8; 12 + FRAME],
}

fn next_seed(seed: &mut u64) -> u64 {
    // splitmix64: distinct SSRCs / initial numbers per stream from one seed.
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn new_stream(seed: &mut u64) -> OutStream {
    let r = next_seed(seed);
    OutStream::new(r as u32, (r >> 32) as u16, (r >> 16) as u32)
}

impl Session {
    /// `seed` comes from the driver's entropy; it picks SSRCs and initial numbers.
    pub fn new(seed: u64) -> Self {
        let mut mixer = Mixer::new();
        let customer = mixer.add(Role::Customer);
        let agent = mixer.add(Role::Agent);
        Session {
            mixer,
            parties: [Input::new(customer), Input::new(agent)],
            monitors: Vec::new(),
            out: [None, None],
            generating: [false, false],
            waited: [0, 0],
            dtmf_out: Default::default(),
            dtmf_pt: [101, 101],
            dtmf_now: [None, None],
            recording: false,
            announce: None,
            announce_pt: 0,
            announce_to: Side::B,
            announce_done: false,
            held: [false, false],
            flagged: [false, false],
            members_held: 0,
            hold_audio: None,
            beep: 0,
            beep_tone: tone::Tone::new(BEEP_HZ, 8000),
            seed,
            buf: [0; 12 + FRAME],
        }
    }

    /// The stream towards `to` goes on from the last packet relayed to it before
    /// the session existed (`ssrc`, `seq`, `ts`, sent at `at_us`), so that whichever
    /// packet comes next (another source's, a generated frame) continues it rather
    /// than starting a stream of its own.
    pub fn continue_stream(&mut self, to: Side, ssrc: u32, seq: u16, ts: u32, at_us: u64) {
        let out = &mut self.out[to as usize];
        if out.is_none() {
            *out = Some(OutStream::continuing(ssrc, seq, ts, at_us));
        }
    }

    /// Whether the session ticks at all (a supervisor, a recording, an announcement,
    /// hold, a beep or digits to send).
    pub fn active(&self) -> bool {
        self.recording
            || !self.monitors.is_empty()
            || self.announce.is_some()
            || self.held != [false, false]
            || self.flagged != [false, false]
            || self.beep > 0
            || self.sending_dtmf(Side::A)
            || self.sending_dtmf(Side::B)
            || self.monitors.iter().any(Self::member_busy)
    }

    /// Whether member `m` is being sent digits (its mixed audio waits).
    fn member_busy(m: &MonitorLeg) -> bool {
        m.dtmf_now.is_some() || !m.dtmf_out.is_empty()
    }

    fn sending_dtmf(&self, to: Side) -> bool {
        self.dtmf_now[to as usize].is_some() || !self.dtmf_out[to as usize].is_empty()
    }

    /// Whether `to` is sent from the session (mix or digits) instead of relayed audio.
    fn feeding(&self, to: usize) -> bool {
        self.generating[to]
            || self.dtmf_now[to].is_some()
            || !self.dtmf_out[to].is_empty()
            || (to == self.announce_to as usize && self.announce.is_some())
    }

    /// Play `samples` (8 kHz) to `to` only, in payload type `pt` (0 or 8): the agent
    /// (whisper announcement) or the caller (after hours). Until it ends the parties
    /// do not hear each other (the customer is not connected yet); then
    /// [`Session::take_announcement_done`] says so once.
    pub fn announce(&mut self, to: Side, samples: Arc<[i16]>, pt: u8) {
        self.activating();
        self.announce = Some(Player::new(samples, false));
        self.announce_to = to;
        // Nothing of the other party reaches `to` meanwhile, not even a first packet.
        if self.out[to as usize].is_none() {
            self.out[to as usize] = Some(new_stream(&mut self.seed));
        }
        self.announce_pt = if pt == 8 { 8 } else { 0 };
        self.announce_done = false;
    }

    /// Stop an announcement (the agent left); not reported as done.
    pub fn stop_announcement(&mut self) {
        self.announce = None;
    }

    pub fn announcing(&self) -> bool {
        self.announce.is_some()
    }

    /// True once after an announcement played to its end.
    pub fn take_announcement_done(&mut self) -> bool {
        std::mem::take(&mut self.announce_done)
    }

    /// Put `side` on hold or take it off: a held party hears the hold audio (or
    /// silence), nobody hears it and it is not recorded; the other party hears
    /// silence (and any barging supervisor).
    pub fn set_held(&mut self, side: Side, on: bool) {
        if on {
            self.activating();
        }
        self.held[side as usize] = on;
        self.mixer.set_held(self.parties[side as usize].pid, on);
        self.update_generating();
    }

    pub fn held(&self, side: Side) -> bool {
        self.held[side as usize]
    }

    /// A conference's flags for party `side`: muted (nobody hears it), deaf (it
    /// hears nothing). Either makes the session feed both parties' ears.
    pub fn set_party_flags(&mut self, side: Side, muted: bool, deaf: bool) {
        if muted || deaf {
            self.activating();
        }
        let pid = self.parties[side as usize].pid;
        self.mixer.set_muted(pid, muted);
        self.mixer.set_deaf(pid, deaf);
        self.flagged[side as usize] = muted || deaf;
        self.update_generating();
    }

    /// A conference member's flags: muted, deaf, held (it hears the hold audio,
    /// nobody hears it).
    pub fn set_member_flags(&mut self, id: MonitorId, muted: bool, deaf: bool, held: bool) {
        let Some(pid) = self
            .monitors
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.input.pid)
        else {
            return;
        };
        self.mixer.set_muted(pid, muted);
        self.mixer.set_deaf(pid, deaf);
        self.mixer.set_held(pid, held);
        self.members_held = self
            .monitors
            .iter()
            .filter(|m| self.mixer.is_held(m.input.pid))
            .count();
    }

    /// The audio held parties hear, looped (`None`: silence).
    pub fn set_hold_audio(&mut self, samples: Option<Arc<[i16]>>) {
        self.hold_audio = samples.map(|s| Player::new(s, true));
    }

    /// Both parties hear a short beep (a supervisor joined and the queue says so).
    pub fn beep(&mut self) {
        self.activating();
        self.beep = BEEP_TICKS;
        self.update_generating();
    }

    /// Queue RFC 4733 events (codes 0–15) towards `to` in payload type `pt`: each is
    /// 100 ms of event packets, three end packets, then 40 ms of pause. Relayed audio
    /// to that party pauses meanwhile; its stream stays continuous.
    pub fn send_digits(&mut self, to: Side, events: &[u8], pt: u8) {
        self.activating();
        self.dtmf_pt[to as usize] = pt;
        self.dtmf_out[to as usize].extend(events.iter().copied().filter(|e| *e <= 15));
    }

    pub fn generating(&self, to: Side) -> bool {
        self.generating[to as usize]
    }

    pub fn monitor_count(&self) -> usize {
        self.monitors.len()
    }

    fn activating(&mut self) {
        if !self.active() {
            // Stale frames from an earlier active span must not play.
            for p in &mut self.parties {
                p.jb = JitterBuffer::new();
                p.ssrc = None;
            }
        }
    }

    pub fn set_recording(&mut self, on: bool) {
        if on {
            self.activating();
        }
        self.recording = on;
    }

    /// Recording paused: both channels are silence until resumed.
    pub fn set_recording_paused(&mut self, paused: bool) {
        self.mixer.recording_paused = paused;
    }

    pub fn add_monitor(&mut self, id: MonitorId, mode: MonitorMode) {
        if self.monitors.iter().any(|m| m.id == id) {
            return self.set_mode(id, mode);
        }
        self.activating();
        let role = match mode {
            MonitorMode::Member => Role::Member,
            m => Role::Supervisor(m),
        };
        let pid = self.mixer.add(role);
        let out = new_stream(&mut self.seed);
        self.monitors.push(MonitorLeg {
            id,
            mode,
            input: Input::new(pid),
            out,
            dtmf: dtmf::Receiver::default(),
            dtmf_out: Default::default(),
            dtmf_pt: 101,
            dtmf_now: None,
            sent_event: false,
        });
        self.update_generating();
    }

    pub fn set_mode(&mut self, id: MonitorId, mode: MonitorMode) {
        if let Some(m) = self.monitors.iter_mut().find(|m| m.id == id) {
            m.mode = mode;
            self.mixer.set_mode(m.input.pid, mode);
        }
        self.update_generating();
    }

    pub fn remove_monitor(&mut self, id: MonitorId) {
        if let Some(i) = self.monitors.iter().position(|m| m.id == id) {
            let m = self.monitors.remove(i);
            if self.mixer.is_held(m.input.pid) {
                self.members_held -= 1;
            }
            self.mixer.remove(m.input.pid);
        }
        self.update_generating();
    }

    fn update_generating(&mut self) {
        let any = |f: fn(MonitorMode) -> bool| self.monitors.iter().any(|m| f(m.mode));
        // Hold, beep and a muted or deaf party need both ears fed from the
        // session.
        let both = self.held != [false, false] || self.beep > 0 || self.flagged != [false, false];
        let agent = both || any(|m| m != MonitorMode::Listen);
        let customer = both || any(|m| matches!(m, MonitorMode::Barge | MonitorMode::Member));
        self.generating = [customer, agent];
        // A party without an outgoing stream yet continues the one it is relayed
        // (the next packet seeds it); see `on_party_rtp` and `tick`.
        self.waited = [0, 0];
    }

    /// A packet from party `from` on its way to the other party. The session keeps a
    /// decoded copy (when active) and may rewrite the header in place.
    pub fn on_party_rtp(&mut self, from: Side, pkt: &mut [u8], now_us: u64) -> Verdict {
        let Some(p) = rtp::parse(pkt) else {
            return Verdict::Relay;
        };
        if self.active() {
            self.parties[from as usize].push(&p, pkt);
        }
        let to = from.other() as usize;
        if from == self.announce_to && self.announce.is_some() {
            // The parties are not connected until the announcement is over.
            return Verdict::Drop;
        }
        let h = p.header;
        let feeding = self.feeding(to);
        match self.out[to].as_mut() {
            Some(out) if feeding => {
                // Audio comes from the mix now; RFC 4733 events still go through.
                let pt = h.payload_type;
                if pt >= 96 && p.payload_len >= 4 && out.event(pkt) {
                    Verdict::Relay
                } else {
                    Verdict::Drop
                }
            }
            Some(out) => {
                out.relay(pkt, now_us);
                Verdict::Relay
            }
            None => {
                // The first packet the session sees for this party: the stream goes on
                // with the sender's own numbering (transparent), mixing or not.
                let mut out = OutStream::new(h.ssrc, h.sequence, h.timestamp);
                out.relay(pkt, now_us);
                self.out[to] = Some(out);
                Verdict::Relay
            }
        }
    }

    /// One tick of an RFC 4733 event towards `to`, if one is being sent.
    fn dtmf_tick(&mut self, to: Side, now_us: u64, send: &mut impl FnMut(Dest, &[u8])) {
        let i = to as usize;
        if self.dtmf_now[i].is_none() && self.dtmf_out[i].is_empty() {
            return;
        }
        let out = self.out[i].get_or_insert_with(|| new_stream(&mut self.seed));
        let audio_pt = self.parties[i].pt;
        let step = dtmf_step(
            &mut self.dtmf_out[i],
            &mut self.dtmf_now[i],
            self.dtmf_pt[i],
            audio_pt,
            out,
            now_us,
            &mut self.buf,
        );
        if let Some(n) = step {
            send(Dest::Party(to), &self.buf[..n]);
        }
    }

    /// Queue RFC 4733 events (codes 0–15) towards conference member `id` in
    /// payload type `pt`; its mixed audio pauses meanwhile (its stream stays
    /// continuous).
    pub fn send_digits_to_member(&mut self, id: MonitorId, events: &[u8], pt: u8) {
        if let Some(m) = self.monitors.iter_mut().find(|m| m.id == id) {
            m.dtmf_pt = pt;
            m.dtmf_out
                .extend(events.iter().copied().filter(|e| *e <= 15));
        }
    }

    /// One frame of the announcement to the agent; its end is noted for the driver.
    fn announce_tick(&mut self, now_us: u64, send: &mut impl FnMut(Dest, &[u8])) {
        let Some(p) = self.announce.as_mut() else {
            return;
        };
        let Some(f) = p.next_frame() else {
            self.announce = None;
            self.announce_done = true;
            return;
        };
        let i = self.announce_to as usize;
        let out = self.out[i].get_or_insert_with(|| new_stream(&mut self.seed));
        let h = out.generate(self.announce_pt, now_us);
        let n = write_frame(&mut self.buf, &h, &f);
        send(Dest::Party(self.announce_to), &self.buf[..n]);
    }

    /// A packet from supervisor `id`'s phone. Returns a DTMF digit it completes.
    pub fn on_monitor_rtp(&mut self, id: MonitorId, pkt: &[u8]) -> Option<char> {
        let p = rtp::parse(pkt)?;
        let m = self.monitors.iter_mut().find(|m| m.id == id)?;
        if m.input.push(&p, pkt) {
            return None;
        }
        if p.header.payload_type >= 96 {
            let payload = &pkt[p.payload_offset..p.payload_offset + p.payload_len];
            return m.dtmf.on_payload(p.header.timestamp, payload);
        }
        None
    }

    /// One 20 ms tick: `send(dest, packet)` for each generated packet, `record(left,
    /// right)` when recording.
    pub fn tick(
        &mut self,
        now_us: u64,
        mut send: impl FnMut(Dest, &[u8]),
        mut record: impl FnMut(&Frame, &Frame),
    ) {
        if !self.active() {
            return;
        }
        for p in &mut self.parties {
            let f = p.jb.pop();
            self.mixer.put(p.pid, &f);
        }
        for m in &mut self.monitors {
            let f = m.input.jb.pop();
            self.mixer.put(m.input.pid, &f);
        }
        for side in [Side::A, Side::B] {
            self.dtmf_tick(side, now_us, &mut send);
        }
        for m in self.monitors.iter_mut().filter(|m| Self::member_busy(m)) {
            let step = dtmf_step(
                &mut m.dtmf_out,
                &mut m.dtmf_now,
                m.dtmf_pt,
                m.input.pt,
                &mut m.out,
                now_us,
                &mut self.buf,
            );
            if let Some(n) = step {
                m.sent_event = true;
                send(Dest::Monitor(m.id), &self.buf[..n]);
            }
        }
        if self.held != [false, false] || self.members_held > 0 {
            let f = self.hold_audio.as_mut().and_then(Player::next_frame);
            self.mixer.set_hold_audio(f);
        }
        self.announce_tick(now_us, &mut send);
        let beep = (self.beep > 0).then(|| {
            let mut f = SILENCE;
            f.iter_mut()
                .for_each(|s| *s = (self.beep_tone.next_sample() as i32 * 7 / 10) as i16);
            f
        });
        let announcing = self.announce.is_some();
        let to = self.announce_to as usize;
        let busy = [
            self.dtmf_now[0].is_some() || (announcing && to == 0),
            self.dtmf_now[1].is_some() || (announcing && to == 1),
        ];
        let (parties, monitors, out, generating, buf, waited, seed) = (
            &self.parties,
            &mut self.monitors,
            &mut self.out,
            &self.generating,
            &mut self.buf,
            &mut self.waited,
            &mut self.seed,
        );
        self.mixer.mix(|pid, frame| {
            let (dest, pt, stream) = if let Some(s) = [Side::A, Side::B]
                .into_iter()
                .find(|s| parties[*s as usize].pid == pid)
            {
                let i = s as usize;
                if !generating[i] || busy[i] {
                    return;
                }
                if out[i].is_none() {
                    // Wait up to 100 ms for a relayed packet to continue from; a silent
                    // sender gets a stream of its own.
                    waited[i] = waited[i].saturating_add(1);
                    if waited[i] < 5 {
                        return;
                    }
                    out[i] = Some(new_stream(seed));
                }
                let o = out[i].as_mut().expect("set above");
                if let Some(b) = &beep {
                    let mut mixed = *frame;
                    for (m, x) in mixed.iter_mut().zip(b.iter()) {
                        *m = m.saturating_add(*x);
                    }
                    let h = o.generate(parties[i].pt, now_us);
                    let n = write_frame(buf, &h, &mixed);
                    return send(Dest::Party(s), &buf[..n]);
                }
                (Dest::Party(s), parties[s as usize].pt, o)
            } else if let Some(m) = monitors.iter_mut().find(|m| m.input.pid == pid) {
                if std::mem::take(&mut m.sent_event) {
                    return;
                }
                (Dest::Monitor(m.id), m.input.pt, &mut m.out)
            } else {
                return;
            };
            let h = stream.generate(pt, now_us);
            let n = write_frame(buf, &h, frame);
            send(dest, &buf[..n]);
        });
        if self.beep > 0 {
            self.beep -= 1;
            if self.beep == 0 {
                self.update_generating();
            }
        }
        if self.recording {
            let (l, r) = self.mixer.record();
            record(&l, &r);
        }
        self.mixer.end_tick();
    }
}

/// One tick of RFC 4733 events on stream `out`: 100 ms of event packets per
/// digit, three end packets, then 40 ms of silence (in `audio_pt`); the length
/// of the packet written to `buf`, if any.
fn dtmf_step(
    queue: &mut std::collections::VecDeque<u8>,
    current: &mut Option<(u8, u8, u32)>,
    event_pt: u8,
    audio_pt: u8,
    out: &mut OutStream,
    now_us: u64,
    buf: &mut [u8; 12 + FRAME],
) -> Option<usize> {
    const PACKETS: u8 = 5; // 100 ms
    const ENDS: u8 = 3;
    const GAP: u8 = 2; // 40 ms between digits
    if current.is_none() {
        *current = Some((queue.pop_front()?, 0, 0));
    }
    let (code, k, ts) = current.expect("set above");
    if k >= PACKETS + ENDS + GAP {
        *current = None;
        return None;
    }
    if k < PACKETS + ENDS {
        // Each packet takes a sequence number and moves the stream's clock on;
        // every packet of the event carries the event's start timestamp.
        let mut h = out.generate(event_pt, now_us);
        let start = if k == 0 { h.timestamp } else { ts };
        h.timestamp = start;
        h.marker = k == 0;
        let end = k >= PACKETS;
        let dur = 160 * (k.min(PACKETS - 1) as u16 + 1);
        let n = rtp::write_header(buf, &h, None);
        buf[n..n + 4].copy_from_slice(&dtmf::payload(code, end, 10, dur));
        *current = Some((code, k + 1, start));
        Some(n + 4)
    } else {
        // The pause between digits: silence keeps the stream's clock with time.
        let h = out.generate(audio_pt, now_us);
        let n = rtp::write_header(buf, &h, None);
        let silence = if audio_pt == 8 { 0xD5 } else { 0xFF };
        buf[n..n + FRAME].fill(silence);
        *current = Some((code, k + 1, ts));
        Some(n + FRAME)
    }
}

/// Write an RTP packet of one G.711 frame (the codec of the header's payload type).
fn write_frame(buf: &mut [u8; 12 + FRAME], h: &rtp::RtpHeader, frame: &Frame) -> usize {
    let n = rtp::write_header(buf, h, None);
    let alaw = h.payload_type == 8;
    for (b, s) in buf[n..n + FRAME].iter_mut().zip(frame.iter()) {
        *b = if alaw {
            g711::linear_to_alaw(*s)
        } else {
            g711::linear_to_ulaw(*s)
        };
    }
    n + FRAME
}
