//! Unit tests of `continuity.rs`.

use super::*;

fn packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut b = vec![0u8; 172];
    crate::rtp::write_header(
        &mut b,
        &RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        },
        None,
    );
    b
}

#[test]
fn relay_mix_relay_keeps_ssrc_sequence_and_timestamps_continuous() {
    let mut out = OutStream::new(0xABCD, 5000, 80_000);
    let mut got: Vec<(u16, u32, u32)> = Vec::new();
    let mut t = 0u64;
    let mut in_seq = 100u16;
    let mut in_ts = 1_000u32;
    let emit_relay =
        |out: &mut OutStream, t: u64, seq: u16, ts: u32, got: &mut Vec<(u16, u32, u32)>| {
            let mut p = packet(seq, ts, 0x1111);
            assert!(out.relay(&mut p, t));
            let h = crate::rtp::parse(&p).unwrap().header;
            got.push((h.sequence, h.timestamp, h.ssrc));
        };
    for _ in 0..10 {
        emit_relay(&mut out, t, in_seq, in_ts, &mut got);
        t += 20_000;
        in_seq += 1;
        in_ts += 160;
    }
    // A supervisor joins: the mixer produces the stream for 10 frames while the
    // input carries on (its packets are not forwarded).
    for _ in 0..10 {
        let h = out.generate(0, t);
        got.push((h.sequence, h.timestamp, h.ssrc));
        t += 20_000;
        in_seq += 1;
        in_ts += 160;
    }
    // Back to relaying the same input.
    for _ in 0..10 {
        emit_relay(&mut out, t, in_seq, in_ts, &mut got);
        t += 20_000;
        in_seq += 1;
        in_ts += 160;
    }
    assert_eq!(got[0].0, 5000);
    for w in got.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0.wrapping_add(1),
            "sequence without jumps: {w:?}"
        );
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(160),
            "timestamps follow the clock: {w:?}"
        );
        assert_eq!(w[1].2, 0xABCD, "SSRC constant");
    }
}

#[test]
fn a_new_input_stream_continues_the_output_too() {
    let mut out = OutStream::new(7, 1, 0);
    let mut a = packet(40_000, 9_999, 1);
    out.relay(&mut a, 0);
    // The far end changed (transfer, new SSRC) after a 60 ms gap.
    let mut b = packet(3, 77, 2);
    out.relay(&mut b, 60_000);
    let (ha, hb) = (
        crate::rtp::parse(&a).unwrap().header,
        crate::rtp::parse(&b).unwrap().header,
    );
    assert_eq!(hb.sequence, ha.sequence.wrapping_add(1));
    assert_eq!(hb.timestamp, ha.timestamp.wrapping_add(3 * 160));
    assert_eq!(hb.ssrc, 7);
}

#[test]
fn a_continuing_stream_passes_its_own_source_unchanged_and_continues_others() {
    // Relayed as it was (SSRC 9, sequence 500) before the stream object existed.
    let mut out = OutStream::continuing(9, 500, 80_000, 0);
    let mut same = packet(501, 80_160, 9);
    assert!(out.relay(&mut same, 31_000));
    let h = crate::rtp::parse(&same).unwrap().header;
    assert_eq!(
        (h.sequence, h.timestamp, h.ssrc),
        (501, 80_160, 9),
        "untouched"
    );
    // Another source (a transfer's new party) continues the stream.
    let mut other = packet(12, 3, 0xB0B);
    assert!(out.relay(&mut other, 51_000));
    let h = crate::rtp::parse(&other).unwrap().header;
    assert_eq!((h.sequence, h.timestamp, h.ssrc), (502, 80_320, 9));
    // A generated frame goes on from there too.
    let g = out.generate(0, 71_000);
    assert_eq!((g.sequence, g.timestamp, g.ssrc), (503, 80_480, 9));
}
