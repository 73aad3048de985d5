//! criterion micro-benchmarks: SIP parse/serialise, transaction processing, SDP
//! rewrite, the RTP relay decision per packet, receiver statistics per packet.
//!
//!     cargo bench -p bench

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use media::{Relay, Side, Socket};
use sip::endpoint::Endpoint;
use sip::sdp::Sdp;
use sip::{Flow, Transport};
use std::hint::black_box;
use std::time::Instant;

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";

fn invite(branch: u64) -> String {
    format!(
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{branch};rport\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag={branch}SIPpTag00\r\nTo: service <sip:service@127.0.0.1:5060>\r\nCall-ID: {branch}-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn sip(c: &mut Criterion) {
    let msg = invite(1);
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite", |b| {
        b.iter(|| sip::message::parse(black_box(msg.as_bytes())).unwrap())
    });
    let (parsed, _) = sip::message::parse(msg.as_bytes()).unwrap();
    g.bench_function("serialize_invite", |b| {
        b.iter(|| sip::message::to_bytes(black_box(&parsed)))
    });
    let flow = Flow {
        transport: Transport::Udp,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: "127.0.0.1:5061".parse().unwrap(),
    };
    // A new INVITE server transaction: parse, match, create, 100 Trying out.
    g.bench_function("invite_server_transaction", |b| {
        let mut ep = Endpoint::new("edge", 1);
        let mut n = 0u64;
        let now = Instant::now();
        b.iter_batched(
            || {
                n += 1;
                invite(n)
            },
            |m| {
                ep.handle_datagram(now, flow, m.as_bytes());
                while ep.poll_transmit().is_some() {}
                while ep.poll_event().is_some() {}
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn sdp(c: &mut Criterion) {
    let mut g = c.benchmark_group("sdp");
    g.bench_function("parse_and_rewrite", |b| {
        b.iter(|| {
            let s = Sdp::parse(black_box(SDP.as_bytes())).unwrap();
            s.rewrite("127.0.0.1".parse().unwrap(), 20000)
        })
    });
    g.finish();
}

fn rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    let mut relay = Relay::new();
    relay.set_remote(Side::A, Some("127.0.0.1:4000".parse().unwrap()));
    relay.set_remote(Side::B, Some("127.0.0.1:6000".parse().unwrap()));
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    let src = "127.0.0.1:4000".parse().unwrap();
    let on = Socket {
        side: Side::A,
        rtcp: false,
    };
    g.bench_function("relay_decision", |b| {
        b.iter(|| relay.on_datagram(on, black_box(src), black_box(&pkt)))
    });
    // The whole per-packet decision of a plain call (relay, digits, continuity).
    let mut call = media::CallMedia::new(1, 0);
    for (side, port) in [(Side::A, 4000), (Side::B, 6000)] {
        call.apply(&media::Command::Remote {
            side,
            addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        });
    }
    let mut now = 0u64;
    g.bench_function("call_media_on_party", |b| {
        b.iter(|| {
            now += 20_000;
            call.on_party(on, black_box(src), black_box(&mut pkt), now)
        })
    });
    let mut stats = media::stats::RecvStats::new(8000);
    let mut seq = 0u16;
    g.bench_function("receiver_stats", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            stats.on_packet(seq, seq as u32 * 160, seq as u64 * 20_000);
        })
    });
    let mut tone = media::tone::Tone::new(440.0, 8000);
    let mut payload = [0u8; 160];
    g.bench_function("tone_160_samples_ulaw", |b| {
        b.iter(|| tone.fill_g711(black_box(&mut payload), false))
    });
    g.finish();
}

fn mixer(c: &mut Criterion) {
    use media::mixer::{Mixer, MonitorMode, Role, FRAME};
    let mut g = c.benchmark_group("mixer");
    // A monitored, recorded call: customer, agent, one whispering supervisor.
    let mut m = Mixer::new();
    let ids = [
        m.add(Role::Customer),
        m.add(Role::Agent),
        m.add(Role::Supervisor(MonitorMode::Whisper)),
    ];
    let frames: Vec<[i16; FRAME]> = (0..3)
        .map(|k| std::array::from_fn(|i| ((i * (k + 3)) % 2000) as i16 - 1000))
        .collect();
    g.throughput(Throughput::Elements(3));
    g.bench_function("three_party_tick_with_recording", |b| {
        b.iter(|| {
            for (id, f) in ids.iter().zip(&frames) {
                m.put(*id, f);
            }
            let mut sum = 0i64;
            m.mix(|_, f| sum += f[0] as i64);
            let (l, r) = m.record();
            m.end_tick();
            black_box((sum, l[0], r[0]))
        })
    });
    let mut enc = [0u8; FRAME];
    let frame = frames[0];
    g.throughput(Throughput::Elements(1));
    g.bench_function("ulaw_encode_frame", |b| {
        b.iter(|| {
            for (o, s) in enc.iter_mut().zip(black_box(&frame)) {
                *o = media::g711::linear_to_ulaw(*s);
            }
        })
    });
    // The whole media path of one monitored (whisper) + recorded call per 20 ms tick,
    // as the edge runs it: two party packets in (decode into jitter buffers, one
    // relayed), one supervisor packet in, then mix, encode and send two generated
    // packets (agent, supervisor), and the recording's stereo frame.
    let mut s = media::session::Session::new(1);
    s.set_recording(true);
    s.add_monitor(media::MonitorId(1), MonitorMode::Whisper);
    let pkt = |ssrc: u32, seq: u16| {
        let mut p = vec![0u8; 12 + FRAME];
        let h = media::rtp::RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: seq as u32 * 160,
            ssrc,
        };
        media::rtp::write_header(&mut p, &h, None);
        media::tone::Tone::new(440.0 + ssrc as f64, 8000).fill_g711(&mut p[12..], false);
        p
    };
    let (mut a, mut bb, mut sup) = (pkt(1, 0), pkt(2, 0), pkt(3, 0));
    let mut seq = 0u16;
    let mut now = 0u64;
    g.throughput(Throughput::Elements(3));
    g.bench_function("session_tick_whisper_recorded_3_party", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            now += 20_000;
            for p in [&mut a, &mut bb, &mut sup] {
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
            }
            s.on_party_rtp(media::Side::A, &mut a, now);
            s.on_party_rtp(media::Side::B, &mut bb, now);
            s.on_monitor_rtp(media::MonitorId(1), &sup);
            let mut sent = 0usize;
            let mut rec = 0i64;
            s.tick(
                now,
                |_, p| sent += p.len(),
                |l, r| rec += (l[0] as i64) + (r[0] as i64),
            );
            black_box((sent, rec))
        })
    });
    // A recorded five-party conference per 20 ms tick: customer, agent and three
    // members, each sending a packet (decoded into its jitter buffer); the mix
    // for all five ears, five packets encoded, the stereo frame.
    let mut s = media::session::Session::new(2);
    s.set_recording(true);
    for id in 1..=3 {
        s.add_monitor(media::MonitorId(id), MonitorMode::Member);
    }
    let mut parts: Vec<Vec<u8>> = (1..=5).map(|k| pkt(k, 0)).collect();
    g.throughput(Throughput::Elements(5));
    g.bench_function("session_tick_conference_recorded_5_party", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            now += 20_000;
            for p in parts.iter_mut() {
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
            }
            let (ab, members) = parts.split_at_mut(2);
            s.on_party_rtp(media::Side::A, &mut ab[0], now);
            s.on_party_rtp(media::Side::B, &mut ab[1], now);
            for (i, p) in members.iter().enumerate() {
                s.on_monitor_rtp(media::MonitorId(i as u64 + 1), p);
            }
            let mut sent = 0usize;
            let mut rec = 0i64;
            s.tick(
                now,
                |_, p| sent += p.len(),
                |l, r| rec += (l[0] as i64) + (r[0] as i64),
            );
            black_box((sent, rec))
        })
    });
    g.finish();
}

/// The queue's pick: the ready agent idle the longest among a queue's 600, half
/// of them busy, as `dispatch_queues` asks for every call (`allowed` passes all).
fn acd(c: &mut Criterion) {
    use b2bua::acd::Acd;
    let now = std::time::Instant::now();
    let ids: Vec<String> = (1..=600).map(|i| format!("agent-{i}")).collect();
    let mut acd = Acd::new();
    acd.sync(ids.iter().map(String::as_str), now);
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            acd.seize(id);
        } else {
            acd.adopt_idle_since(id, now + std::time::Duration::from_millis(600 - i as u64));
        }
    }
    assert_eq!(acd.pick_where(&ids, |_| true), Some("agent-600"));
    c.bench_function("acd/pick_of_600", |b| {
        b.iter(|| black_box(acd.pick_where(black_box(&ids), |_| true)))
    });
}

criterion_group!(benches, sip, sdp, rtp, mixer, acd);
criterion_main!(benches);
