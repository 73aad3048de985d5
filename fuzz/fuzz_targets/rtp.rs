//! RTP/RTCP datagrams through one call's media (relay decision, latching, RFC 4733,
//! the mix session's continuity rewrite) and the bare RTP header parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::call::CallMedia;
use media::{Command, Side, Socket};

fuzz_target!(|data: &[u8]| {
    let _ = media::rtp::parse(data);
    let mut m = CallMedia::new(1, 0);
    for (side, port) in [(Side::A, 4000), (Side::B, 5000)] {
        m.apply(&Command::Remote {
            side,
            addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        });
    }
    m.apply(&Command::Beep); // a mix session exists: packets go through it too
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], 4000));
    for (i, chunk) in data.chunks(172).enumerate() {
        let mut pkt = chunk.to_vec();
        let on = Socket::ALL[i % 4];
        let _ = m.on_party(on, from, &mut pkt, i as u64 * 20_000);
        let _ = m.tick(i as u64 * 20_000, |_, _, _| {}, |_, _| {});
    }
});
