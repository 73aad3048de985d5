//! Unit tests of `call.rs`: one call's media driven with virtual time (microseconds
//! passed in), no sockets.

use super::*;
use crate::rtp::RtpHeader;
use crate::{g711, mixer::FRAME};

const A_RTP: Socket = Socket {
    side: Side::A,
    rtcp: false,
};
const B_RTP: Socket = Socket {
    side: Side::B,
    rtcp: false,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12 + payload.len()];
    let h = RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc,
    };
    rtp::write_header(&mut b, &h, None);
    b[12..].copy_from_slice(payload);
    b
}

fn voice(seq: u16) -> Vec<u8> {
    packet(
        0,
        seq,
        seq as u32 * 160,
        7,
        &[g711::linear_to_ulaw(0); FRAME],
    )
}

fn connected() -> CallMedia {
    let mut m = CallMedia::new(1, 0);
    m.apply(&Command::Remote {
        side: Side::A,
        addr: Some(addr("10.0.0.1:4000")),
    });
    m.apply(&Command::Remote {
        side: Side::B,
        addr: Some(addr("10.0.0.2:5000")),
    });
    m
}

#[test]
fn a_party_is_relayed_to_the_other_sides_address_once_it_has_one() {
    let mut m = CallMedia::new(1, 0);
    let mut p = voice(1);
    assert_eq!(
        m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 0),
        (Party::Refused, None),
        "B has no address yet"
    );
    let announce = Command::Remote {
        side: Side::B,
        addr: Some(addr("10.0.0.2:5000")),
    };
    assert!(!m.apply(&announce), "an address does not make the call mix");
    let mut p = voice(2);
    assert_eq!(
        m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 20_000),
        (Party::Forward(addr("10.0.0.2:5000")), None)
    );
    // The first source latched; another source on A's socket is refused.
    let mut p = voice(3);
    assert_eq!(
        m.on_party(A_RTP, addr("10.9.9.9:4000"), &mut p, 40_000).0,
        Party::Refused
    );
}

#[test]
fn a_completed_rfc4733_event_is_reported_once() {
    let mut m = connected();
    let ts = 8000;
    let mut got = Vec::new();
    for (i, end) in [false, false, true, true, true].into_iter().enumerate() {
        let ev = dtmf::payload(
            dtmf::event_code('7').unwrap(),
            end,
            10,
            160 * (i as u16 + 1),
        );
        let mut p = packet(101, 100 + i as u16, ts, 9, &ev);
        let (verdict, digit) = m.on_party(B_RTP, addr("10.0.0.2:5000"), &mut p, 0);
        assert_eq!(verdict, Party::Forward(addr("10.0.0.1:4000")));
        got.extend(digit);
    }
    assert_eq!(got, ['7'], "three end packets of one event: one digit");
}

#[test]
fn a_supervisor_latches_on_its_first_source_and_hears_the_call_there() {
    let mut m = connected();
    let sup = MonitorId(9);
    m.add_monitor(sup, MonitorMode::Listen);
    let announced = Command::MonitorRemote {
        monitor: sup,
        addr: addr("10.0.0.3:6000"),
    };
    assert!(!m.apply(&announced), "an address does not change mixing");
    let mut sent: Vec<(Out, Option<SocketAddr>)> = Vec::new();
    let mut now = 0;
    let mut tick = |m: &mut CallMedia, sent: &mut Vec<(Out, Option<SocketAddr>)>| {
        now += 20_000;
        m.tick(now, |out, to, _| sent.push((out, to)), |_, _| {})
    };
    assert!(tick(&mut m, &mut sent), "a supervisor makes the call mix");
    assert!(
        sent.contains(&(Out::Monitor(sup), Some(addr("10.0.0.3:6000")))),
        "before any RTP from the phone: its SDP address"
    );
    // The phone's RTP comes from elsewhere (NAT): latch there, ignore a third party.
    let silence = voice(1);
    assert_eq!(m.on_monitor(sup, addr("192.0.2.7:7000"), &silence), None);
    assert_eq!(m.on_monitor(sup, addr("192.0.2.8:7000"), &silence), None);
    sent.clear();
    tick(&mut m, &mut sent);
    let to_sup: Vec<_> = sent
        .iter()
        .filter(|(o, _)| *o == Out::Monitor(sup))
        .collect();
    assert_eq!(to_sup, [&(Out::Monitor(sup), Some(addr("192.0.2.7:7000")))]);
    // A new SDP address unlatches.
    m.apply(&Command::MonitorRemote {
        monitor: sup,
        addr: addr("10.0.0.4:6000"),
    });
    sent.clear();
    tick(&mut m, &mut sent);
    assert!(sent.contains(&(Out::Monitor(sup), Some(addr("10.0.0.4:6000")))));
    // Gone: no more packets for it, and the call stops mixing.
    assert!(m.remove_monitor(sup));
    assert!(!m.remove_monitor(sup), "removed once");
    assert_eq!(m.monitors().count(), 0);
    sent.clear();
    assert!(!tick(&mut m, &mut sent), "nothing left to mix");
    assert!(sent.iter().all(|(o, _)| *o != Out::Monitor(sup)));
}

#[test]
fn generated_dtmf_goes_to_the_party_and_is_lost_without_an_address() {
    let mut m = CallMedia::new(1, 0);
    m.apply(&Command::Remote {
        side: Side::B,
        addr: Some(addr("10.0.0.2:5000")),
    });
    let mut sent = Vec::new();
    for side in [Side::B, Side::A] {
        let send = Command::SendDtmf {
            side,
            events: vec![dtmf::event_code('1').unwrap()],
            pt: 101,
        };
        assert!(m.apply(&send), "generating digits needs ticks");
    }
    let mut now = 0;
    while m.tick(
        now,
        |out, to, pkt| sent.push((out, to, pkt[1] & 0x7F)),
        |_, _| {},
    ) {
        now += 20_000;
        assert!(now < 10_000_000, "the digits end");
    }
    let events = |sock: Socket| {
        sent.iter()
            .filter(|s| s.0 == Out::Party(sock) && s.2 == 101)
            .map(|s| s.1)
            .collect::<Vec<_>>()
    };
    let to_b = events(B_RTP);
    assert!(!to_b.is_empty());
    assert!(to_b.iter().all(|to| *to == Some(addr("10.0.0.2:5000"))));
    let to_a = events(A_RTP);
    assert!(!to_a.is_empty());
    assert!(to_a.iter().all(Option::is_none), "A has no address: lost");
}

#[test]
fn an_announcement_is_reported_done_once() {
    let mut m = connected();
    m.announce(Side::B, Arc::from(vec![0i16; 800]), 0);
    let mut now = 0;
    let mut done = 0;
    for _ in 0..50 {
        now += 20_000;
        m.tick(now, |_, _, _| {}, |_, _| {});
        done += m.take_announcement_done() as u32;
    }
    assert_eq!(done, 1, "100 ms of audio ends once");
}

#[test]
fn silence_counts_only_the_parties_own_datagrams() {
    let mut m = connected();
    assert_eq!(
        m.silent_for_us(5_000_000),
        5_000_000,
        "nothing heard since the start"
    );
    let mut p = voice(1);
    m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 6_000_000);
    assert_eq!(m.silent_for_us(7_000_000), 1_000_000);
    // A stranger on the latched socket, and garbage, are not the party.
    let mut p = voice(2);
    m.on_party(A_RTP, addr("10.6.6.6:4000"), &mut p, 8_000_000);
    m.on_party(B_RTP, addr("10.0.0.2:5000"), &mut [0u8; 3], 8_000_000);
    assert_eq!(m.silent_for_us(9_000_000), 3_000_000);
    // B's first packet latches and counts, even with no address for it yet.
    let mut lone = CallMedia::new(2, 0);
    let mut p = voice(1);
    assert_eq!(
        lone.on_party(B_RTP, addr("10.0.0.2:5000"), &mut p, 4_000_000)
            .0,
        Party::Refused
    );
    assert_eq!(lone.silent_for_us(4_000_000), 0);
    m.reset_silence(10_000_000);
    assert_eq!(m.silent_for_us(10_500_000), 500_000);
    assert!(!m.on_hold());
    m.hold(Side::A, true, None);
    assert!(m.on_hold());
}

#[test]
fn a_caller_with_no_other_side_still_reaches_the_session_and_its_digits_are_reported() {
    // After hours the edge answers the caller itself: only A has an address.
    let mut m = CallMedia::new(1, 0);
    m.apply(&Command::Remote {
        side: Side::A,
        addr: Some(addr("10.0.0.1:4000")),
    });
    // Without a session, nowhere to go: refused as before.
    let mut p = voice(1);
    assert_eq!(
        m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 0),
        (Party::Refused, None)
    );
    m.announce(Side::A, Arc::from(vec![0i16; 160]), 0);
    m.tick(20_000, |_, _, _| {}, |_, _| {});
    m.tick(40_000, |_, _, _| {}, |_, _| {});
    assert!(m.take_announcement_done());
    // With the session (announcing, then recording), the caller's audio is taken
    // and its `#` reported.
    let mut p = voice(2);
    assert_eq!(
        m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 60_000),
        (Party::Consumed, None)
    );
    let mut got = Vec::new();
    for (i, end) in [false, true].into_iter().enumerate() {
        let ev = dtmf::payload(
            dtmf::event_code('#').unwrap(),
            end,
            10,
            160 * (i as u16 + 1),
        );
        let mut p = packet(101, 3 + i as u16, 8000, 7, &ev);
        let (verdict, digit) = m.on_party(A_RTP, addr("10.0.0.1:4000"), &mut p, 80_000);
        assert_eq!(verdict, Party::Consumed);
        got.extend(digit);
    }
    assert_eq!(got, ['#']);
    // A stranger on the caller's socket is still refused, its digits ignored.
    let ev = dtmf::payload(dtmf::event_code('1').unwrap(), true, 10, 160);
    let mut p = packet(101, 9, 16000, 8, &ev);
    assert_eq!(
        m.on_party(A_RTP, addr("10.9.9.9:4000"), &mut p, 100_000),
        (Party::Refused, None)
    );
}

#[test]
fn a_stream_relayed_before_the_session_existed_goes_on_whoever_sends_next() {
    // A transfer: Alice's audio is relayed to the customer (A) without a session;
    // the customer is put on ringback (the session starts), and the new agent's
    // first packet arrives before another of Alice's.
    let mut m = connected();
    let mut to_customer: Vec<RtpHeader> = Vec::new();
    let mut now = 0;
    for seq in 100..110u16 {
        let mut p = packet(0, seq, seq as u32 * 160, 0xA1, &[0xFF; FRAME]);
        let (verdict, _) = m.on_party(B_RTP, addr("10.0.0.2:5000"), &mut p, now);
        assert_eq!(verdict, Party::Forward(addr("10.0.0.1:4000")));
        to_customer.push(rtp::parse(&p).unwrap().header);
        now += 20_000;
    }
    assert_eq!(to_customer[0].ssrc, 0xA1, "relayed as it is");
    assert!(m.hold(Side::A, true, Some(Arc::from(vec![100i16; 8000]))));
    m.apply(&Command::Remote {
        side: Side::B,
        addr: Some(addr("10.0.0.3:6000")),
    });
    let mut bob_seq = 7000u16;
    let mut bob = |m: &mut CallMedia, now: u64, to: &mut Vec<RtpHeader>| {
        let mut p = packet(0, bob_seq, bob_seq as u32 * 160 + 5, 0xB0B, &[0xFF; FRAME]);
        bob_seq += 1;
        if let (Party::Forward(_), _) = m.on_party(B_RTP, addr("10.0.0.3:6000"), &mut p, now) {
            to.push(rtp::parse(&p).unwrap().header);
        }
    };
    for _ in 0..10 {
        bob(&mut m, now + 1_000, &mut to_customer);
        m.tick(
            now,
            |out, _, pkt| {
                if out == Out::Party(A_RTP) {
                    to_customer.push(rtp::parse(pkt).unwrap().header);
                }
            },
            |_, _| {},
        );
        now += 20_000;
    }
    assert!(!m.hold(Side::A, false, None));
    for _ in 0..10 {
        bob(&mut m, now, &mut to_customer);
        now += 20_000;
    }
    assert_eq!(to_customer.len(), 30, "relayed, ringback, relayed");
    assert!(
        to_customer.iter().all(|h| h.ssrc == 0xA1),
        "one SSRC: {to_customer:?}"
    );
    for w in to_customer.windows(2) {
        assert_eq!(
            w[1].sequence,
            w[0].sequence.wrapping_add(1),
            "{to_customer:?}"
        );
        let step = w[1].timestamp.wrapping_sub(w[0].timestamp);
        assert!((160..=320).contains(&step), "{to_customer:?}");
    }
}

#[test]
fn rtp_for_a_browser_leg_not_ready_is_held_not_counted_lost_and_rtcp_is_not() {
    let mut m = CallMedia::new(1, 0);
    let leg = crate::webrtc::Leg::new(
        Arc::new(crate::webrtc::Identity::generate().unwrap()),
        crate::webrtc::IceCredentials {
            ufrag: "edgeufrag".into(),
            pwd: "edgepassword0123456789ab".into(),
        },
        crate::webrtc::HANDSHAKE_LIMIT,
    );
    m.set_webrtc(Side::B, Some(Box::new(leg)));
    let dst = addr("127.0.0.1:50000");
    // The browser has not checked yet: the packet waits in its leg.
    assert!(m.outbound(B_RTP, &voice(1), dst).is_none());
    assert!(m.holds_out(B_RTP));
    assert!(
        m.held_out(B_RTP).is_none(),
        "nothing leaves before the leg is ready"
    );
    // RTCP never goes to a browser, and is not held either.
    let b_rtcp = Socket {
        side: Side::B,
        rtcp: true,
    };
    assert!(m.outbound(b_rtcp, &[0x80, 200, 0, 6], dst).is_none());
    assert!(!m.holds_out(b_rtcp));
    assert!(m.held_out(b_rtcp).is_none());
    // A plain side holds nothing.
    assert!(!m.holds_out(A_RTP));
}
