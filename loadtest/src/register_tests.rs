//! The registerer against a small digest registrar (sip's Endpoint + Verifier)
//! on the in-memory wire, with a virtual clock and a lossy network.

use super::*;
use sip::digest::{Algorithm, Challenge, Credentials, Verdict, Verifier};
use sip::testing::{self, Wire};
use std::time::SystemTime;

/// Challenges every REGISTER without credentials (SHA-256 then MD5, like an edge
/// configured `["SHA-256", "MD5"]`); 200 for the password `pw-{user}`, else 403.
struct Registrar {
    ep: Endpoint,
    verifier: Verifier,
}

impl Registrar {
    fn on_bytes(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.ep.handle_datagram(now, flow, data);
        while let Some(ev) = self.ep.poll_event() {
            let Event::Request { tx, request, .. } = ev else {
                continue;
            };
            let creds = request.headers.iter().find_map(|h| match h {
                Header::Authorization(a) => Credentials::parse(a.value()),
                _ => None,
            });
            let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
            let mut resp;
            match creds {
                None => {
                    resp = sip::message::response(&request, 401, Some("reg"), "reg");
                    let chals = [Algorithm::Sha256, Algorithm::Md5].map(|a| {
                        let c = Challenge {
                            realm: "edge".into(),
                            nonce: self.verifier.nonce(wall),
                            opaque: None,
                            algorithm: a,
                            qop_auth: true,
                            stale: false,
                        };
                        Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(
                            c.to_header_value(),
                        ))
                    });
                    sip::message::add_headers(&mut resp, chals.to_vec());
                }
                Some(c) => {
                    let pass = format!("pw-{}", c.username);
                    let ok = c.algorithm() == Some(Algorithm::Sha256)
                        && self.verifier.verify(wall, &c, "edge", "REGISTER", &pass) == Verdict::Ok;
                    resp = sip::message::response(
                        &request,
                        if ok { 200 } else { 403 },
                        Some("reg"),
                        "reg",
                    );
                }
            }
            self.ep.respond(now, tx, resp);
        }
    }
}

fn run(password: &str, n: u64, drop_nth: usize) -> Tally {
    let to_reg = testing::flow("127.0.0.1:5070", "127.0.0.1:5060");
    let to_lt = testing::flow("127.0.0.1:5060", "127.0.0.1:5070");
    let mut lt = Registerer::new(
        RegisterConfig {
            flow: to_reg,
            first: 1000,
            password: password.into(),
            expires: 600,
            user_agent: "loadtest".into(),
        },
        1,
    );
    let mut reg = Registrar {
        ep: Endpoint::new("reg", 2),
        verifier: Verifier::new([3; 32], Duration::from_secs(300)),
    };
    let mut wire = Wire::lossy(drop_nth);
    let mut now = Instant::now();
    for _ in 0..n {
        lt.start(now);
    }
    let mut tally = Tally::default();
    let end = now + Duration::from_secs(60);
    while now < end && tally.finished() < n {
        while let Some(t) = lt.poll_transmit() {
            wire.deliver(&t);
        }
        while let Some(data) = wire.recv_bytes(to_reg.remote) {
            reg.on_bytes(now, to_lt, &data);
        }
        while let Some(t) = reg.ep.poll_transmit() {
            wire.deliver(&t);
        }
        while let Some(data) = wire.recv_bytes(to_lt.remote) {
            lt.handle_datagram(now, to_reg, &data);
        }
        for f in lt.take_finished() {
            tally.add(f);
        }
        now += Duration::from_millis(50);
        lt.handle_timeout(now);
        reg.ep.handle_timeout(now);
    }
    tally
}

#[test]
fn users_sign_in_with_the_strongest_challenge_even_on_a_lossy_network() {
    let t = run("pw-{user}", 20, 0);
    assert_eq!(t.by_status.get(&200), Some(&20), "{:?}", t.by_status);
    // Every 7th datagram lost: retransmissions carry every registration through.
    let t = run("pw-{user}", 20, 7);
    assert_eq!(t.ok(), 20, "{:?}", t.by_status);
    assert_eq!(t.took_us.len(), 20);
}

#[test]
fn a_wrong_password_is_a_failed_registration() {
    let t = run("nope", 5, 0);
    assert_eq!(t.by_status.get(&403), Some(&5), "{:?}", t.by_status);
    assert_eq!(t.ok(), 0);
}
