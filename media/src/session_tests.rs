//! The mix session driven like the edge drives it: RTP packets in (G.711, tones:
//! customer 440 Hz, agent 1100 Hz, supervisor 1700 Hz), packets out, a Goertzel
//! detector on what each party receives and on the recording; continuity of each
//! party's incoming stream across relay → mix → relay.

use crate::g711;
use crate::mixer::{MonitorMode, FRAME};
use crate::rtp::{self, RtpHeader};
use crate::session::{Dest, Session, Verdict};
use crate::tone::{goertzel, Tone};
use crate::{MonitorId, Side};
use std::collections::HashMap;

struct Sender {
    tone: Tone,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Sender {
    fn new(hz: f64, ssrc: u32) -> Sender {
        Sender {
            tone: Tone::new(hz, 8000),
            ssrc,
            seq: 1000,
            ts: 5000,
        }
    }
    fn packet(&mut self) -> Vec<u8> {
        let mut b = vec![0u8; 12 + FRAME];
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
        };
        rtp::write_header(&mut b, &h, None);
        self.tone.fill_g711(&mut b[12..], false);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        b
    }
}

#[derive(Default)]
struct Heard {
    samples: HashMap<&'static str, Vec<i16>>,
    /// (ssrc, seq) of every packet each party received, in order.
    headers: HashMap<&'static str, Vec<(u32, u16, u32)>>,
    raw: HashMap<&'static str, Vec<Vec<u8>>>,
}

impl Heard {
    fn take(&mut self, who: &'static str, pkt: &[u8]) {
        let p = rtp::parse(pkt).unwrap();
        self.raw.entry(who).or_default().push(pkt.to_vec());
        if p.header.payload_type > 8 {
            self.headers.entry(who).or_default().push((
                p.header.ssrc,
                p.header.sequence,
                p.header.timestamp,
            ));
            return;
        }
        self.headers.entry(who).or_default().push((
            p.header.ssrc,
            p.header.sequence,
            p.header.timestamp,
        ));
        let s = self.samples.entry(who).or_default();
        s.extend(
            pkt[p.payload_offset..]
                .iter()
                .map(|b| g711::ulaw_to_linear(*b)),
        );
    }
    fn has(&self, who: &'static str, hz: f64) -> bool {
        let s = &self.samples[who];
        // Skip the jitter buffer's start-up; look at the last 40 ms... of what arrived.
        let tail = &s[s.len().saturating_sub(8 * FRAME)..];
        goertzel(tail, hz, 8000) > 1000.0
    }
}

struct Scene {
    s: Session,
    c: Sender,
    a: Sender,
    sup: Sender,
    now: u64,
    heard: Heard,
    left: Vec<i16>,
    right: Vec<i16>,
}

impl Scene {
    fn new() -> Scene {
        Scene {
            s: Session::new(42),
            c: Sender::new(440.0, 0xC),
            a: Sender::new(1100.0, 0xA),
            sup: Sender::new(1700.0, 0x5),
            now: 0,
            heard: Heard::default(),
            left: Vec::new(),
            right: Vec::new(),
        }
    }

    /// Run `ticks` 20 ms ticks; a fresh `Heard` for each phase.
    fn run(&mut self, ticks: usize) {
        self.heard.samples.clear();
        self.left.clear();
        self.right.clear();
        for _ in 0..ticks {
            self.now += 20_000;
            for (from, to) in [(Side::A, "agent"), (Side::B, "customer")] {
                let mut p = match from {
                    Side::A => self.c.packet(),
                    Side::B => self.a.packet(),
                };
                if self.s.on_party_rtp(from, &mut p, self.now) == Verdict::Relay {
                    self.heard.take(to, &p);
                }
            }
            let p = self.sup.packet();
            assert_eq!(self.s.on_monitor_rtp(MonitorId(1), &p), None);
            let (heard, left, right) = (&mut self.heard, &mut self.left, &mut self.right);
            self.s.tick(
                self.now,
                |d, pkt| {
                    let who = match d {
                        Dest::Party(Side::A) => "customer",
                        Dest::Party(Side::B) => "agent",
                        Dest::Monitor(_) => "supervisor",
                    };
                    heard.take(who, pkt);
                },
                |l, r| {
                    left.extend_from_slice(l);
                    right.extend_from_slice(r);
                },
            );
        }
    }
}

fn tone_in(s: &[i16], hz: f64) -> bool {
    goertzel(&s[s.len().saturating_sub(8 * FRAME)..], hz, 8000) > 1000.0
}

#[test]
fn listen_whisper_barge_by_tone_with_recording() {
    let mut sc = Scene::new();
    sc.run(10);
    assert!(!sc.s.active(), "relay only: no decoding");
    assert!(sc.heard.has("agent", 440.0) && sc.heard.has("customer", 1100.0));
    sc.s.set_recording(true);
    sc.s.add_monitor(MonitorId(1), MonitorMode::Listen);

    sc.run(20);
    let h = &sc.heard;
    assert!(h.has("supervisor", 440.0) && h.has("supervisor", 1100.0));
    assert!(!h.has("supervisor", 1700.0), "never yourself");
    assert!(!h.has("agent", 1700.0) && !h.has("customer", 1700.0));
    assert!(!sc.s.generating(Side::A) && !sc.s.generating(Side::B));
    assert!(tone_in(&sc.left, 440.0) && !tone_in(&sc.left, 1100.0));
    assert!(tone_in(&sc.right, 1100.0) && !tone_in(&sc.right, 440.0));
    assert!(!tone_in(&sc.left, 1700.0) && !tone_in(&sc.right, 1700.0));

    sc.s.set_mode(MonitorId(1), MonitorMode::Whisper);
    sc.run(20);
    let h = &sc.heard;
    assert!(
        h.has("agent", 440.0) && h.has("agent", 1700.0),
        "agent hears customer + whisper"
    );
    assert!(
        h.has("customer", 1100.0) && !h.has("customer", 1700.0),
        "customer never hears a whisper"
    );
    assert!(
        !tone_in(&sc.left, 1700.0) && !tone_in(&sc.right, 1700.0),
        "whisper never recorded"
    );

    sc.s.set_mode(MonitorId(1), MonitorMode::Barge);
    sc.run(20);
    let h = &sc.heard;
    assert!(h.has("agent", 440.0) && h.has("agent", 1700.0));
    assert!(h.has("customer", 1100.0) && h.has("customer", 1700.0));
    assert!(h.has("supervisor", 440.0) && h.has("supervisor", 1100.0));
    assert!(
        tone_in(&sc.right, 1700.0) && !tone_in(&sc.left, 1700.0),
        "barge on the agent channel"
    );

    sc.s.set_recording_paused(true);
    sc.run(10);
    assert!(
        sc.left.iter().chain(sc.right.iter()).all(|x| *x == 0),
        "paused = silence"
    );
    sc.s.set_recording_paused(false);

    sc.s.remove_monitor(MonitorId(1));
    sc.run(10);
    assert!(sc.heard.has("agent", 440.0) && !sc.heard.has("agent", 1700.0));
    assert!(!sc.heard.samples.contains_key("supervisor"));
}

#[test]
fn each_partys_stream_is_continuous_across_relay_mix_relay() {
    let mut sc = Scene::new();
    sc.run(5);
    sc.s.add_monitor(MonitorId(1), MonitorMode::Listen);
    sc.run(5);
    sc.s.set_mode(MonitorId(1), MonitorMode::Barge);
    sc.run(10);
    sc.s.set_mode(MonitorId(1), MonitorMode::Listen);
    sc.run(5);
    sc.s.remove_monitor(MonitorId(1));
    sc.run(5);
    for who in ["agent", "customer"] {
        let hs = &sc.heard.headers[who];
        assert!(hs.len() >= 25, "{who}: {}", hs.len());
        let ssrc = hs[0].0;
        // Relayed packets before any switch keep the sender's own numbering.
        let original = if who == "agent" { 0xC } else { 0xA };
        assert_eq!(ssrc, original, "{who}: transparent before mixing");
        for w in hs.windows(2) {
            assert_eq!(w[1].0, ssrc, "{who}: SSRC constant");
            assert_eq!(
                w[1].1,
                w[0].1.wrapping_add(1),
                "{who}: sequence without jumps"
            );
            assert_eq!(
                w[1].2,
                w[0].2.wrapping_add(160),
                "{who}: timestamps follow 20 ms"
            );
        }
    }
}

#[test]
fn two_supervisors_and_dtmf_from_a_phone() {
    let mut s = Session::new(7);
    s.add_monitor(MonitorId(1), MonitorMode::Whisper);
    s.add_monitor(MonitorId(2), MonitorMode::Listen);
    assert!(s.generating(Side::B) && !s.generating(Side::A));
    s.remove_monitor(MonitorId(1));
    assert!(
        !s.generating(Side::B),
        "a listener alone changes nothing for the agent"
    );
    // RFC 4733 end packet for '6' from supervisor 2.
    let mut b = vec![0u8; 16];
    let h = RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: 1,
        timestamp: 800,
        ssrc: 9,
    };
    rtp::write_header(&mut b, &h, None);
    b[12..16].copy_from_slice(&crate::dtmf::payload(6, true, 10, 800));
    assert_eq!(s.on_monitor_rtp(MonitorId(2), &b), Some('6'));
    assert_eq!(
        s.on_monitor_rtp(MonitorId(2), &b),
        None,
        "end retransmissions count once"
    );
    assert_eq!(s.on_monitor_rtp(MonitorId(9), &b), None, "unknown monitor");
    assert_eq!(s.monitor_count(), 1);
}

#[test]
fn whisper_from_the_first_tick_continues_the_relayed_stream_and_passes_events() {
    let mut sc = Scene::new();
    sc.s.add_monitor(MonitorId(1), MonitorMode::Whisper);
    sc.run(10);
    // An RFC 4733 event from the customer while the agent is sent the mix.
    let mut ev = vec![0u8; 16];
    let h = RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: sc.c.seq,
        timestamp: sc.c.ts,
        ssrc: 0xC,
    };
    rtp::write_header(&mut ev, &h, None);
    ev[12..16].copy_from_slice(&crate::dtmf::payload(11, true, 10, 800));
    assert_eq!(sc.s.on_party_rtp(Side::A, &mut ev, sc.now), Verdict::Relay);
    let e = rtp::parse(&ev).unwrap().header;
    sc.c.seq = sc.c.seq.wrapping_add(1);
    sc.run(5);
    let hs = &sc.heard.headers["agent"];
    assert!(
        hs.iter().all(|h| h.0 == 0xC),
        "the customer's SSRC throughout"
    );
    assert_eq!(e.ssrc, 0xC);
    assert!(
        hs.iter().any(|h| h.1 == e.sequence.wrapping_sub(1))
            && hs.iter().any(|h| h.1 == e.sequence.wrapping_add(1)),
        "the event takes its place in the sequence"
    );
    assert!(sc.heard.has("agent", 1700.0));
}

#[test]
fn digits_sent_into_a_relayed_call_keep_the_stream_continuous() {
    let mut sc = Scene::new();
    sc.run(5);
    assert!(!sc.s.active());
    sc.s.send_digits(Side::A, &[1, 11], 101);
    assert!(sc.s.active());
    sc.run(25);
    assert!(!sc.s.active(), "back to relaying once the digits are out");
    sc.run(5);
    let hs = &sc.heard.headers["customer"];
    assert!(hs.iter().all(|h| h.0 == 0xA), "the agent's SSRC throughout");
    for w in hs.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence without jumps");
    }
    // Decode what the customer got: two events, each with 3 end packets, one timestamp each.
    let mut rx = crate::dtmf::Receiver::default();
    let events: Vec<char> = sc.heard.raw["customer"]
        .iter()
        .filter_map(|p| {
            let h = rtp::parse(p).unwrap();
            (h.header.payload_type == 101).then(|| rx.on_payload(h.header.timestamp, &p[12..16]))?
        })
        .collect();
    assert_eq!(events, ['1', '#']);
}

fn tone_samples(hz: f64, secs: f64) -> std::sync::Arc<[i16]> {
    let mut t = Tone::new(hz, 8000);
    (0..(8000.0 * secs) as usize)
        .map(|_| t.next_sample())
        .collect::<Vec<_>>()
        .into()
}

fn assert_continuous(hs: &[(u32, u16, u32)], who: &str) {
    let ssrc = hs[0].0;
    for w in hs.windows(2) {
        assert_eq!(w[1].0, ssrc, "{who}: SSRC constant");
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "{who}: sequence without jumps"
        );
    }
}

#[test]
fn announcement_reaches_the_agent_only_then_the_call_connects() {
    let mut sc = Scene::new();
    // 2300 Hz announcement of 0.5 s (25 frames), in PCMU.
    sc.s.announce(Side::B, tone_samples(2300.0, 0.5), 0);
    assert!(sc.s.active() && sc.s.announcing());
    sc.run(10);
    let h = &sc.heard;
    assert!(h.has("agent", 2300.0), "the agent hears the announcement");
    assert!(!h.has("agent", 440.0), "not the customer yet");
    assert!(
        !h.samples.contains_key("customer"),
        "the customer hears nothing from the agent's side"
    );
    assert!(!sc.s.take_announcement_done());
    sc.run(20);
    assert!(!sc.s.announcing());
    assert!(sc.s.take_announcement_done(), "reported once");
    assert!(!sc.s.take_announcement_done());
    assert!(!sc.s.active(), "back to relaying");
    sc.run(10);
    assert!(sc.heard.has("agent", 440.0) && !sc.heard.has("agent", 2300.0));
    assert!(sc.heard.has("customer", 1100.0));
    // The agent's stream: generated, then the customer's packets continue it.
    let hs = &sc.heard.headers["agent"];
    assert!(hs.len() >= 30, "{}", hs.len());
    assert_continuous(hs, "agent");
}

#[test]
fn an_announcement_to_the_caller_reaches_the_caller_only() {
    let mut sc = Scene::new();
    // After hours: the caller (side A) hears 0.3 s of 2300 Hz, the other side nothing.
    sc.s.announce(Side::A, tone_samples(2300.0, 0.3), 0);
    sc.run(10);
    assert!(sc.heard.has("customer", 2300.0), "the caller hears it");
    assert!(!sc.heard.has("customer", 1100.0));
    assert!(
        !sc.heard.samples.contains_key("agent"),
        "nothing of the caller passes"
    );
    sc.run(10);
    assert!(sc.s.take_announcement_done());
    assert_continuous(&sc.heard.headers["customer"], "customer");
}

#[test]
fn stopped_announcement_is_not_reported_done() {
    let mut sc = Scene::new();
    sc.s.announce(Side::B, tone_samples(2300.0, 0.2), 8);
    sc.run(3);
    let raw = &sc.heard.raw["agent"];
    assert_eq!(
        rtp::parse(&raw[0]).unwrap().header.payload_type,
        8,
        "PCMA as asked"
    );
    sc.s.stop_announcement();
    sc.run(20);
    assert!(!sc.s.take_announcement_done());
}

#[test]
fn hold_plays_hold_audio_to_the_held_party_and_silence_to_the_other() {
    let mut sc = Scene::new();
    sc.run(5);
    sc.s.set_recording(true);
    sc.s.set_hold_audio(Some(tone_samples(2300.0, 0.3)));
    sc.s.set_held(Side::A, true);
    // 2 s: the 0.3 s hold audio loops several times.
    sc.run(100);
    let h = &sc.heard;
    assert!(h.has("customer", 2300.0), "held customer hears hold audio");
    assert!(!h.has("customer", 1100.0), "not the agent");
    assert!(
        h.samples["agent"][800..].iter().all(|s| s.abs() < 64),
        "the agent hears silence, not the held customer"
    );
    assert!(
        sc.left.iter().all(|s| *s == 0),
        "a held party is not recorded"
    );
    assert!(!tone_in(&sc.right, 2300.0), "hold audio is never recorded");
    sc.s.set_held(Side::A, false);
    sc.s.set_recording(false);
    sc.run(10);
    assert!(!sc.s.active());
    assert!(sc.heard.has("customer", 1100.0) && sc.heard.has("agent", 440.0));
    for who in ["agent", "customer"] {
        assert_continuous(&sc.heard.headers[who], who);
    }

    // Without hold audio: silence.
    let mut sc = Scene::new();
    sc.s.set_held(Side::B, true);
    sc.run(20);
    assert!(sc.heard.samples["agent"][800..]
        .iter()
        .all(|s| s.abs() < 64));
    assert!(!sc.heard.has("customer", 1100.0));
}

#[test]
fn beep_reaches_both_parties_then_relay_resumes() {
    let mut sc = Scene::new();
    sc.run(5);
    sc.s.add_monitor(MonitorId(1), MonitorMode::Listen);
    sc.s.beep();
    assert!(sc.s.generating(Side::A) && sc.s.generating(Side::B));
    sc.run(10);
    assert!(sc.heard.has("agent", crate::session::BEEP_HZ));
    assert!(sc.heard.has("customer", crate::session::BEEP_HZ));
    assert!(!sc.heard.has("supervisor", crate::session::BEEP_HZ));
    assert!(!sc.s.generating(Side::A) && !sc.s.generating(Side::B));
    sc.run(10);
    assert!(!sc.heard.has("agent", crate::session::BEEP_HZ));
    for who in ["agent", "customer"] {
        assert_continuous(&sc.heard.headers[who], who);
    }
}

#[test]
fn a_conference_member_and_every_flag_by_tone() {
    let mut sc = Scene::new();
    sc.run(5);
    sc.s.set_recording(true);
    sc.s.set_hold_audio(Some(tone_samples(2300.0, 1.0)));
    // The third party (1700 Hz) is a member: everyone hears everyone.
    sc.s.add_monitor(MonitorId(1), MonitorMode::Member);
    sc.run(20);
    let h = &sc.heard;
    assert!(h.has("customer", 1100.0) && h.has("customer", 1700.0));
    assert!(h.has("agent", 440.0) && h.has("agent", 1700.0));
    assert!(h.has("supervisor", 440.0) && h.has("supervisor", 1100.0));
    assert!(tone_in(&sc.left, 440.0) && !tone_in(&sc.left, 1700.0));
    assert!(
        tone_in(&sc.right, 1100.0) && tone_in(&sc.right, 1700.0),
        "members on the right"
    );

    sc.s.set_member_flags(MonitorId(1), true, false, false);
    sc.run(20);
    let h = &sc.heard;
    assert!(
        !h.has("customer", 1700.0) && !h.has("agent", 1700.0),
        "muted: heard by nobody"
    );
    assert!(h.has("supervisor", 440.0), "a muted member still hears");
    assert!(!tone_in(&sc.right, 1700.0), "nor recorded");

    sc.s.set_member_flags(MonitorId(1), false, true, false);
    sc.run(20);
    let h = &sc.heard;
    assert!(
        !h.has("supervisor", 440.0) && !h.has("supervisor", 1100.0),
        "deaf: hears nothing"
    );
    assert!(h.has("customer", 1700.0), "a deaf member is heard");

    sc.s.set_member_flags(MonitorId(1), false, false, true);
    sc.run(20);
    let h = &sc.heard;
    assert!(h.has("supervisor", 2300.0), "held: hears the hold audio");
    assert!(!h.has("supervisor", 440.0));
    assert!(
        !h.has("customer", 1700.0) && !h.has("agent", 1700.0),
        "held: heard by nobody"
    );
    assert!(!tone_in(&sc.right, 2300.0), "hold audio never recorded");

    sc.s.set_member_flags(MonitorId(1), false, false, false);
    sc.s.set_party_flags(Side::A, true, false);
    sc.run(20);
    let h = &sc.heard;
    assert!(
        !h.has("agent", 440.0) && !h.has("supervisor", 440.0),
        "a muted customer"
    );
    assert!(h.has("agent", 1700.0) && h.has("customer", 1100.0));
    assert!(!tone_in(&sc.left, 440.0));

    sc.s.set_party_flags(Side::A, false, false);
    sc.s.set_party_flags(Side::B, false, true);
    sc.run(20);
    let h = &sc.heard;
    assert!(
        !h.has("agent", 440.0) && !h.has("agent", 1700.0),
        "a deaf agent"
    );
    assert!(
        h.has("customer", 1100.0) && h.has("supervisor", 1100.0),
        "is still heard"
    );

    sc.s.set_party_flags(Side::B, false, false);
    sc.s.remove_monitor(MonitorId(1));
    sc.run(20);
    assert!(sc.heard.has("agent", 440.0) && sc.heard.has("customer", 1100.0));
    assert!(
        !sc.s.generating(Side::A) && !sc.s.generating(Side::B),
        "back to relaying"
    );
}

#[test]
fn digits_reach_a_conference_member_on_its_continuous_stream() {
    let mut sc = Scene::new();
    sc.s.add_monitor(MonitorId(1), MonitorMode::Member);
    sc.run(10);
    sc.heard.headers.clear();
    sc.heard.raw.clear();
    sc.s.send_digits_to_member(MonitorId(1), &[1, 11], 101);
    sc.run(30);
    let events: Vec<(u8, bool)> = sc.heard.raw["supervisor"]
        .iter()
        .filter_map(|p| {
            let r = rtp::parse(p).unwrap();
            (r.header.payload_type == 101)
                .then(|| (p[r.payload_offset], p[r.payload_offset + 1] & 0x80 != 0))
        })
        .collect();
    assert!(
        events.contains(&(1, true)) && events.contains(&(11, true)),
        "{events:?}"
    );
    assert!(
        !sc.heard.raw["customer"].iter().any(|p| p[1] & 0x7F == 101),
        "only the member"
    );
    assert_continuous(&sc.heard.headers["supervisor"], "member");
    assert!(
        sc.heard.has("supervisor", 440.0),
        "the mix goes on after the digits"
    );
}
