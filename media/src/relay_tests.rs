//! Unit tests of `relay.rs`.

use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
const RTP: [u8; 12] = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
const A_RTP: Socket = Socket {
    side: Side::A,
    rtcp: false,
};
const B_RTP: Socket = Socket {
    side: Side::B,
    rtcp: false,
};
const A_RTCP: Socket = Socket {
    side: Side::A,
    rtcp: true,
};

#[test]
fn forwards_to_announced_then_latched_address() {
    let mut r = Relay::new();
    r.set_remote(Side::A, Some(a("10.0.0.1:4000")));
    r.set_remote(Side::B, Some(a("10.0.0.2:6000")));
    // Caller sends: goes to B's announced address.
    assert_eq!(
        r.on_datagram(A_RTP, a("10.0.0.1:4000"), &RTP),
        Some(a("10.0.0.2:6000"))
    );
    // B actually sends from a NATed port: latched, and A's traffic now goes there.
    assert_eq!(
        r.on_datagram(B_RTP, a("192.0.2.9:7777"), &RTP),
        Some(a("10.0.0.1:4000"))
    );
    assert_eq!(
        r.on_datagram(A_RTP, a("10.0.0.1:4000"), &RTP),
        Some(a("192.0.2.9:7777"))
    );
    // RTCP goes to announced RTP port + 1 until latched.
    assert_eq!(
        r.destination(Socket {
            side: Side::B,
            rtcp: true
        }),
        Some(a("10.0.0.2:6001"))
    );
    assert_eq!(r.stats.forwarded_packets, 3);
}

#[test]
fn drops_foreign_malformed_and_undeliverable() {
    let mut r = Relay::new();
    r.set_remote(Side::A, Some(a("10.0.0.1:4000")));
    // B unknown yet (no answer): nowhere to send.
    assert_eq!(r.on_datagram(A_RTP, a("10.0.0.1:4000"), &RTP), None);
    assert_eq!(r.stats.no_destination, 1);
    r.set_remote(Side::B, Some(a("10.0.0.2:6000")));
    // A is latched to 10.0.0.1:4000; an injected stream from elsewhere is dropped.
    assert_eq!(r.on_datagram(A_RTP, a("203.0.113.5:1234"), &RTP), None);
    assert_eq!(r.stats.foreign, 1);
    assert_eq!(r.on_datagram(A_RTCP, a("10.0.0.1:4001"), &[0u8; 4]), None);
    assert_eq!(r.stats.malformed, 1);
}

#[test]
fn new_sdp_unlatches_and_hold_stops_sending() {
    let mut r = Relay::new();
    r.set_remote(Side::A, Some(a("10.0.0.1:4000")));
    r.set_remote(Side::B, Some(a("10.0.0.2:6000")));
    r.on_datagram(B_RTP, a("10.0.0.2:6000"), &RTP);
    // B moves (re-INVITE with a new address): the first packet from there latches.
    r.set_remote(Side::B, Some(a("10.0.0.3:6100")));
    assert_eq!(r.destination(B_RTP), Some(a("10.0.0.3:6100")));
    assert_eq!(
        r.on_datagram(B_RTP, a("10.0.0.3:6100"), &RTP),
        Some(a("10.0.0.1:4000"))
    );
    // A goes on hold with c=0.0.0.0: nothing is sent to A.
    r.set_remote(Side::A, None);
    assert_eq!(r.on_datagram(B_RTP, a("10.0.0.3:6100"), &RTP), None);
}

#[test]
fn the_announced_party_takes_the_latch_from_a_previous_party_still_sending() {
    let mut r = Relay::new();
    r.set_remote(Side::A, Some(a("10.0.0.1:4000")));
    r.set_remote(Side::B, Some(a("10.0.0.2:6000")));
    r.on_datagram(B_RTP, a("10.0.0.2:6000"), &RTP);
    // A transfer: B is now another phone; the old one still sends a moment and
    // latches first.
    r.set_remote(Side::B, Some(a("10.0.0.3:6100")));
    assert!(r.on_datagram(B_RTP, a("10.0.0.2:6000"), &RTP).is_some());
    // The new party's first packet takes the latch; the old one is foreign now.
    assert!(r.on_datagram(B_RTP, a("10.0.0.3:6100"), &RTP).is_some());
    assert_eq!(r.on_datagram(B_RTP, a("10.0.0.2:6000"), &RTP), None);
    assert_eq!(r.stats.foreign, 1);
    assert_eq!(
        r.on_datagram(A_RTP, a("10.0.0.1:4000"), &RTP),
        Some(a("10.0.0.3:6100"))
    );
    // A third source (not announced) still cannot take it.
    assert_eq!(r.on_datagram(B_RTP, a("10.0.0.9:1"), &RTP), None);
}
