//! Unit tests of `testing.rs`.

use super::*;

#[test]
fn the_clock_fires_each_timer_at_its_instant_and_the_wire_queues_per_address() {
    let mut clock = Clock::new();
    let t0 = clock.now;
    let mut ep = Endpoint::new("edge", 1);
    let req = Request::try_from(
        "OPTIONS sip:b@127.0.0.1:5070 SIP/2.0\r\nFrom: <sip:e@127.0.0.1>;tag=e1\r\n\
To: <sip:b@127.0.0.1>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
    )
    .unwrap();
    ep.send_request(t0, req, flow("127.0.0.1:5060", "127.0.0.1:5070"));
    let mut wire = Wire::new();
    let mut fired = Vec::new();
    let sent = drain_transmits(|| ep.poll_transmit());
    sent.iter().for_each(|t| wire.deliver(t));
    // Timer E retransmits at T1 (500 ms) and 2·T1 later on UDP.
    clock.advance(&mut ep, Duration::from_millis(1600), |ep| {
        for t in drain_transmits(|| ep.poll_transmit()) {
            fired.push(t.data.len());
            wire.deliver(&t);
        }
    });
    assert_eq!(fired.len(), 2, "retransmissions at 0.5 s and 1.5 s");
    let (first, _) = wire.expect_request("127.0.0.1:5070", Method::Options);
    let (again, _) = wire.expect_request("127.0.0.1:5070", Method::Options);
    let (third, _) = wire.expect_request("127.0.0.1:5070", Method::Options);
    assert_eq!(first.to_string(), again.to_string());
    assert_eq!(first.to_string(), third.to_string());
    assert!(wire.quiet("127.0.0.1:5070"), "nothing else was sent");
    assert_eq!(clock.now, t0 + Duration::from_millis(1600));
}

#[test]
fn a_lossy_wire_loses_every_nth_message_and_keeps_the_bytes_of_the_rest() {
    let mut ep = Endpoint::new("edge", 1);
    let now = Instant::now();
    let to = flow("127.0.0.1:5060", "127.0.0.1:5070");
    for i in 0..6 {
        let req = Request::try_from(format!(
            "OPTIONS sip:b@127.0.0.1:5070 SIP/2.0\r\nFrom: <sip:e@127.0.0.1>;tag=e1\r\n\
To: <sip:b@127.0.0.1>\r\nCall-ID: lossy{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
        ))
        .unwrap();
        ep.send_request(now, req, to);
    }
    let sent = drain_transmits(|| ep.poll_transmit());
    let mut wire = Wire::lossy(3);
    sent.iter().for_each(|t| wire.deliver(t));
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| wire.recv_bytes(to.remote)).collect();
    let kept: Vec<Vec<u8>> = [0, 1, 3, 4]
        .iter()
        .map(|&i| sent[i].data.to_vec())
        .collect();
    assert_eq!(
        got, kept,
        "the 3rd and 6th are lost, the rest arrive byte for byte"
    );
}
