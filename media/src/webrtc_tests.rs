//! The leg against a browser stand-in built from the same webrtc-rs crates: an ICE
//! controlling agent's checks (rtc-stun), a DTLS client or server (rtc-dtls) with its
//! own certificate, and SRTP from its side of the handshake. Virtual clock: a base
//! `Instant` plus offsets.

use super::*;
use rtc_stun::attributes::ATTR_ICE_CONTROLLING;
use rtc_stun::textattrs::TextAttribute;
use std::time::Duration;

fn browser_addr() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn edge_addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn local() -> IceCredentials {
    IceCredentials {
        ufrag: "edgeufrag".into(),
        pwd: "edgepassword0123456789ab".into(),
    }
}

fn new_leg() -> Leg {
    Leg::new(
        Arc::new(Identity::generate().unwrap()),
        local(),
        HANDSHAKE_LIMIT,
    )
}

struct Browser {
    provider: Arc<dyn RTCCryptoProvider>,
    /// Its certificate's, as its SDP would say.
    fingerprint: String,
    ep: Endpoint,
    srtp: Option<(Context, Context)>,
}

impl Browser {
    fn new(client: bool) -> Browser {
        let provider = crypto::default_provider().unwrap();
        let certificate =
            Certificate::generate_self_signed(vec!["browser".to_string()], provider.crypto())
                .unwrap();
        let fingerprint = fingerprint_of(&*provider, &certificate.certificate[0]).unwrap();
        let config = Arc::new(
            ConfigBuilder::default()
                .with_crypto_provider(provider.clone())
                .with_certificates(vec![certificate])
                .with_srtp_protection_profiles(vec![
                    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                ])
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                .with_insecure_skip_verify(true)
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .build(client, None)
                .unwrap(),
        );
        let ep = Endpoint::new(
            browser_addr(),
            rtc_shared::TransportProtocol::UDP,
            (!client).then(|| config.clone()),
        );
        let mut b = Browser {
            provider,
            fingerprint,
            ep,
            srtp: None,
        };
        if client {
            b.ep.connect(Instant::now(), edge_addr(), config, None)
                .unwrap();
        }
        b
    }

    fn remote(&self, setup: Setup) -> RemoteParams {
        RemoteParams {
            ufrag: "brow".into(),
            pwd: "browserpassword0123456789".into(),
            fingerprint: self.fingerprint.to_lowercase(),
            setup,
        }
    }

    fn check(&self, user: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
        let mut m = Message::new();
        m.new_transaction_id().unwrap();
        m.write_header();
        let crypto = self.provider.crypto();
        let username = TextAttribute::new(ATTR_USERNAME, user.into());
        let integrity =
            MessageIntegrity::new_short_term_integrity_with_provider(pwd.into(), crypto);
        let mut setters: Vec<&dyn Setter> = vec![&BINDING_REQUEST, &username];
        let controlling = Raw(ATTR_ICE_CONTROLLING, 7u64.to_be_bytes().to_vec());
        let nominate = Raw(ATTR_USE_CANDIDATE, Vec::new());
        setters.push(&controlling);
        if use_candidate {
            setters.push(&nominate);
        }
        setters.push(&integrity);
        setters.push(&FINGERPRINT);
        for s in setters {
            s.add_to(&mut m).unwrap();
        }
        m.raw
    }

    fn keys(&mut self) {
        let state = self.ep.get_connection_state(edge_addr()).unwrap();
        self.srtp = Some(srtp_contexts(state, &*self.provider).unwrap());
    }
}

/// Datagrams both ways until quiet; returns whether the browser saw the handshake end.
fn pump(leg: &mut Leg, b: &mut Browser, now: Instant) -> bool {
    let mut done = false;
    for _ in 0..20 {
        let mut moved = false;
        while let Some(t) = b.ep.poll_transmit() {
            moved = true;
            leg.on_datagram(now, browser_addr(), &t.message);
        }
        while let Some((to, pkt)) = leg.poll_transmit() {
            assert_eq!(to, browser_addr());
            moved = true;
            if pkt[0] >= 20 && pkt[0] <= 63 {
                let events =
                    b.ep.read(now, edge_addr(), None, BytesMut::from(&pkt[..]))
                        .unwrap();
                done |= events
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            }
        }
        if !moved {
            break;
        }
    }
    done
}

/// A leg and a browser (DTLS client) whose first check it answered.
fn checked(now: Instant) -> (Leg, Browser) {
    let mut leg = new_leg();
    let b = Browser::new(true);
    leg.on_datagram(
        now,
        browser_addr(),
        &b.check("edgeufrag:brow", &local().pwd, true),
    );
    (leg, b)
}

/// The browser's parameters with another certificate's fingerprint.
fn naming_another_certificate(b: &Browser) -> RemoteParams {
    let mut remote = b.remote(Setup::Active);
    remote.fingerprint = Identity::generate().unwrap().fingerprint().to_string();
    remote
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![
        0x80,
        0,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
        160,
        1,
        2,
        3,
        4,
    ];
    p.extend(std::iter::repeat_n(0xFF, 160));
    p
}

fn connected(setup: Setup) -> (Leg, Browser, Instant) {
    let now = Instant::now();
    let mut leg = new_leg();
    let mut b = Browser::new(setup == Setup::Active);
    // Checks may come before the browser's SIP answer: answered all the same.
    let check = b.check("edgeufrag:brow", &local().pwd, true);
    assert_eq!(
        leg.on_datagram(now, browser_addr(), &check),
        Inbound::Consumed
    );
    let (to, answer) = leg.poll_transmit().expect("binding success");
    assert_eq!(to, browser_addr());
    let mut m = Message::new();
    m.unmarshal_binary(&answer).unwrap();
    assert_eq!(m.typ, BINDING_SUCCESS);
    MessageIntegrity::check(&mut m, local().pwd.as_bytes(), b.provider.crypto()).unwrap();
    let mut mapped = XorMappedAddress::default();
    mapped
        .get_from_as(&m, rtc_stun::attributes::ATTR_XORMAPPED_ADDRESS)
        .unwrap();
    assert_eq!(SocketAddr::new(mapped.ip, mapped.port), browser_addr());
    assert_eq!(leg.peer(), Some(browser_addr()));
    leg.set_remote(now, b.remote(setup));
    assert!(pump(&mut leg, &mut b, now) || setup == Setup::Passive);
    if setup == Setup::Passive {
        // The browser is the server: its completion shows in its state.
        assert!(b.ep.get_connection_state(edge_addr()).is_some());
    }
    b.keys();
    (leg, b, now)
}

#[test]
fn browser_as_dtls_client_media_both_ways() {
    let (mut leg, mut b, now) = connected(Setup::Active);
    assert_eq!(leg.state(), DtlsState::Connected);
    assert!(leg.ready());
    let (b_out, b_in) = b.srtp.as_mut().unwrap();
    let plain = rtp(1);
    let sealed = b_out.encrypt_rtp(&plain).unwrap();
    assert_ne!(&sealed[..], &plain[..]);
    match leg.on_datagram(now, browser_addr(), &sealed) {
        Inbound::Rtp(p) => assert_eq!(&p[..], &plain[..]),
        other => panic!("{other:?}"),
    }
    let out = leg.protect(&rtp(9)).unwrap();
    assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(9)[..]);
    assert_eq!(leg.stats.srtp_refused, 0);
}

#[test]
fn edge_as_dtls_client_when_remote_is_passive() {
    let (mut leg, mut b, now) = connected(Setup::Passive);
    assert_eq!(leg.state(), DtlsState::Connected);
    let (b_out, b_in) = b.srtp.as_mut().unwrap();
    let sealed = b_out.encrypt_rtp(&rtp(5)).unwrap();
    assert!(matches!(
        leg.on_datagram(now, browser_addr(), &sealed),
        Inbound::Rtp(_)
    ));
    let out = leg.protect(&rtp(6)).unwrap();
    assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(6)[..]);
}

#[test]
fn tampered_and_replayed_srtp_is_dropped_and_counted() {
    let (mut leg, mut b, now) = connected(Setup::Active);
    let (b_out, _) = b.srtp.as_mut().unwrap();
    let sealed = b_out.encrypt_rtp(&rtp(1)).unwrap();
    let mut bad = sealed.to_vec();
    bad[20] ^= 1;
    assert_eq!(leg.on_datagram(now, browser_addr(), &bad), Inbound::Dropped);
    assert_eq!(leg.stats.srtp_refused, 1);
    assert!(matches!(
        leg.on_datagram(now, browser_addr(), &sealed),
        Inbound::Rtp(_)
    ));
    // The same packet again is a replay.
    assert_eq!(
        leg.on_datagram(now, browser_addr(), &sealed),
        Inbound::Dropped
    );
    assert_eq!(leg.stats.srtp_refused, 2);
    // Media from another address than the checked one is refused too.
    let sealed = b_out.encrypt_rtp(&rtp(2)).unwrap();
    let stranger: SocketAddr = "127.0.0.9:50000".parse().unwrap();
    assert_eq!(leg.on_datagram(now, stranger, &sealed), Inbound::Dropped);
}

#[test]
fn wrong_fingerprint_fails_and_passes_no_media() {
    let now = Instant::now();
    let (mut leg, mut b) = checked(now);
    leg.set_remote(now, naming_another_certificate(&b));
    pump(&mut leg, &mut b, now);
    assert_eq!(leg.state(), DtlsState::Failed);
    assert!(!leg.ready());
    assert_eq!(leg.protect(&rtp(1)), None);
}

/// A browser (DTLS client) that checked and finished its handshake with the
/// leg, with its keys, before the leg had its SDP.
fn handshaken_before_the_sdp() -> (Leg, Browser, Instant) {
    let now = Instant::now();
    let (mut leg, mut b) = checked(now);
    leg.poll_transmit();
    assert!(pump(&mut leg, &mut b, now), "the browser is done");
    b.keys();
    (leg, b, now)
}

#[test]
fn fingerprint_checked_when_sdp_comes_after_the_handshake() {
    let (mut leg, b, now) = handshaken_before_the_sdp();
    // Keys are ready but the SDP has not said whose certificate to expect.
    assert_eq!(leg.state(), DtlsState::Handshaking);
    assert_eq!(leg.protect(&rtp(1)), None);
    leg.set_remote(now, b.remote(Setup::Active));
    assert_eq!(leg.state(), DtlsState::Connected);
}

#[test]
fn srtp_sent_before_the_leg_knows_the_fingerprint_is_held_then_delivered_in_order() {
    let (mut leg, mut b, now) = handshaken_before_the_sdp();
    // The browser sends at once; the edge has not had its SDP (fingerprint).
    let (b_out, _) = b.srtp.as_mut().unwrap();
    let sealed: Vec<_> = (1..=20)
        .map(|seq| b_out.encrypt_rtp(&rtp(seq)).unwrap())
        .collect();
    for p in &sealed {
        assert_eq!(leg.on_datagram(now, browser_addr(), p), Inbound::Consumed);
    }
    // Nothing leaves before the certificate is checked.
    assert_eq!(leg.poll_early(), None);
    // From an address no check validated: refused, not held.
    let stranger: SocketAddr = "127.0.0.9:50000".parse().unwrap();
    let extra = b_out.encrypt_rtp(&rtp(99)).unwrap();
    assert_eq!(leg.on_datagram(now, stranger, &extra), Inbound::Dropped);
    leg.set_remote(now, b.remote(Setup::Active));
    assert_eq!(leg.state(), DtlsState::Connected);
    // The latest EARLY_MAX, in order; the four before them were dropped.
    let mut seqs = Vec::new();
    while let Some(i) = leg.poll_early() {
        let Inbound::Rtp(p) = i else { panic!("{i:?}") };
        seqs.push(u16::from_be_bytes([p[2], p[3]]));
    }
    let want: Vec<u16> = (21 - EARLY_MAX as u16..=20).collect();
    assert_eq!(seqs, want);
    assert_eq!(leg.stats.not_ready, 4 + 1);
    // A wrong fingerprint would have failed the leg: held media dropped with it.
    let (mut leg2, mut b2, _) = handshaken_before_the_sdp();
    let p = b2.srtp.as_mut().unwrap().0.encrypt_rtp(&rtp(1)).unwrap();
    assert_eq!(leg2.on_datagram(now, browser_addr(), &p), Inbound::Consumed);
    let mut wrong = b2.remote(Setup::Active);
    wrong.fingerprint = b.fingerprint.to_lowercase();
    leg2.set_remote(now, wrong);
    assert_eq!(leg2.state(), DtlsState::Failed);
    assert_eq!(leg2.poll_early(), None);
    assert_eq!(leg2.stats.not_ready, 1);
}

#[test]
fn bad_checks_are_refused_without_an_answer() {
    let now = Instant::now();
    let mut leg = new_leg();
    let b = Browser::new(true);
    leg.set_remote(now, b.remote(Setup::Active));
    for check in [
        b.check("other:brow", &local().pwd, true),
        b.check("edgeufrag:someoneelse", &local().pwd, true),
        b.check("edgeufrag:brow", "wrong-password-wrong-password", true),
        vec![0x01, 0x01, 0, 0],
        vec![0xFF; 40],
    ] {
        assert_eq!(
            leg.on_datagram(now, browser_addr(), &check),
            Inbound::Dropped
        );
    }
    assert_eq!(leg.stats.stun_refused, 5);
    assert!(leg.poll_transmit().is_none());
    assert_eq!(leg.peer(), None);
    // DTLS from an address no check validated is refused too.
    let mut client = Browser::new(true);
    let hello = client.ep.poll_transmit().unwrap();
    assert_eq!(
        leg.on_datagram(now, browser_addr(), &hello.message),
        Inbound::Dropped
    );
    assert_eq!(leg.state(), DtlsState::Waiting);
    let _ = &mut client;
}

#[test]
fn nomination_moves_the_peer_and_later_plain_checks_do_not() {
    let now = Instant::now();
    let mut leg = new_leg();
    let b = Browser::new(true);
    let other: SocketAddr = "127.0.0.2:50001".parse().unwrap();
    leg.on_datagram(now, other, &b.check("edgeufrag:brow", &local().pwd, false));
    assert_eq!(leg.peer(), Some(other));
    leg.on_datagram(
        now,
        browser_addr(),
        &b.check("edgeufrag:brow", &local().pwd, true),
    );
    assert_eq!(leg.peer(), Some(browser_addr()));
    leg.on_datagram(now, other, &b.check("edgeufrag:brow", &local().pwd, false));
    assert_eq!(leg.peer(), Some(browser_addr()));
    assert_eq!(leg.stats.stun_answered, 3);
}

#[test]
fn a_handshake_that_never_completes_fails_by_timeout() {
    let start = Instant::now();
    let (mut leg, mut b) = checked(start);
    leg.set_remote(start, b.remote(Setup::Active));
    // Only the ClientHello arrives; the browser then goes silent.
    let hello = b.ep.poll_transmit().unwrap();
    leg.on_datagram(start, browser_addr(), &hello.message);
    assert_eq!(leg.state(), DtlsState::Handshaking);
    let mut now = start;
    for _ in 0..200 {
        match leg.poll_timeout() {
            Some(t) => {
                now = t.max(now);
                leg.handle_timeout(now);
                while leg.poll_transmit().is_some() {}
            }
            None => break,
        }
    }
    assert_eq!(leg.state(), DtlsState::Failed, "after {:?}", now - start);
    assert!(now - start <= HANDSHAKE_LIMIT);
    assert_eq!(leg.poll_timeout(), None);
}

#[test]
fn a_browser_that_never_checks_fails_after_the_limit() {
    let start = Instant::now();
    let mut leg = Leg::new(
        Arc::new(Identity::generate().unwrap()),
        local(),
        Duration::from_secs(3),
    );
    assert_eq!(leg.poll_timeout(), None, "no clock before the SDP");
    leg.set_remote(start, Browser::new(true).remote(Setup::Active));
    assert_eq!(leg.poll_timeout(), Some(start + Duration::from_secs(3)));
    leg.handle_timeout(start + Duration::from_secs(2));
    assert_eq!(leg.state(), DtlsState::Waiting);
    leg.handle_timeout(start + Duration::from_secs(3));
    assert_eq!(leg.state(), DtlsState::Failed);
    assert_eq!(leg.take_stats().failed, 1);
    assert_eq!(leg.poll_timeout(), None);
}

#[test]
fn a_controlling_leg_connects_to_a_lite_leg_and_media_flows_both_ways() {
    let start = Instant::now();
    let edge_id = Arc::new(Identity::generate().unwrap());
    let browser_id = Arc::new(Identity::generate().unwrap());
    let mut lite = Leg::new(edge_id.clone(), local(), HANDSHAKE_LIMIT);
    let browser_creds = IceCredentials {
        ufrag: "brow".into(),
        pwd: "browserpassword0123456789".into(),
    };
    // The browser answered `active`: the lite side (the edge) is passive.
    let mut ctl = Leg::controlling(
        browser_id.clone(),
        browser_creds.clone(),
        RemoteParams {
            ufrag: local().ufrag,
            pwd: local().pwd,
            fingerprint: edge_id.fingerprint().into(),
            setup: Setup::Passive,
        },
        edge_addr(),
        start,
        HANDSHAKE_LIMIT,
    );
    lite.set_remote(
        start,
        RemoteParams {
            ufrag: browser_creds.ufrag.clone(),
            pwd: browser_creds.pwd.clone(),
            fingerprint: browser_id.fingerprint().into(),
            setup: Setup::Active,
        },
    );
    let mut now = start;
    for _ in 0..50 {
        if let Some(t) = ctl.poll_timeout().filter(|t| *t <= now) {
            ctl.handle_timeout(t);
        }
        while let Some((to, p)) = ctl.poll_transmit() {
            assert_eq!(to, edge_addr());
            lite.on_datagram(now, browser_addr(), &p);
        }
        while let Some((to, p)) = lite.poll_transmit() {
            assert_eq!(to, browser_addr());
            ctl.on_datagram(now, edge_addr(), &p);
        }
        if ctl.ready() && lite.ready() {
            break;
        }
        now += Duration::from_millis(10);
    }
    assert!(ctl.ready() && lite.ready(), "{ctl:?} {lite:?}");
    assert_eq!(ctl.peer(), Some(edge_addr()));
    assert_eq!(lite.peer(), Some(browser_addr()));
    let sealed = ctl.protect(&rtp(3)).unwrap();
    match lite.on_datagram(now, browser_addr(), &sealed) {
        Inbound::Rtp(p) => assert_eq!(&p[..], &rtp(3)[..]),
        other => panic!("{other:?}"),
    }
    let sealed = lite.protect(&rtp(4)).unwrap();
    assert!(matches!(
        ctl.on_datagram(now, edge_addr(), &sealed),
        Inbound::Rtp(_)
    ));
    // Nothing was refused on the way.
    assert_eq!(ctl.stats.stun_refused, 0);
}

#[test]
fn rtp_for_the_browser_before_the_leg_is_ready_is_held_then_sent_in_order() {
    let now = Instant::now();
    let mut leg = new_leg();
    let mut b = Browser::new(true);
    // The caller speaks while ICE has not started: held, nothing counted lost.
    for seq in 1..=3 {
        assert_eq!(leg.protect(&rtp(seq)), None);
    }
    assert!(leg.holds_out());
    assert_eq!(
        leg.poll_held_out(),
        None,
        "nothing leaves before the leg is ready"
    );
    leg.on_datagram(
        now,
        browser_addr(),
        &b.check("edgeufrag:brow", &local().pwd, true),
    );
    leg.poll_transmit();
    leg.set_remote(now, b.remote(Setup::Active));
    // During the handshake too; only the latest EARLY_MAX are kept.
    for seq in 4..=20 {
        assert_eq!(leg.protect(&rtp(seq)), None);
    }
    assert_eq!(leg.stats.not_ready, 20 - EARLY_MAX as u64);
    assert!(pump(&mut leg, &mut b, now));
    b.keys();
    assert!(leg.ready());
    // A packet after the handshake waits behind those held, so the order holds.
    assert_eq!(leg.protect(&rtp(21)), None);
    let (_, b_in) = b.srtp.as_mut().unwrap();
    let mut seqs = Vec::new();
    while let Some((sealed, to)) = leg.poll_held_out() {
        assert_eq!(to, browser_addr());
        let plain = b_in.decrypt_rtp(&sealed).unwrap();
        seqs.push(u16::from_be_bytes([plain[2], plain[3]]));
    }
    let want: Vec<u16> = (22 - EARLY_MAX as u16..=21).collect();
    assert_eq!(seqs, want);
    assert!(!leg.holds_out());
    // Then straight through.
    let out = leg.protect(&rtp(22)).unwrap();
    assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(22)[..]);
    assert_eq!(leg.stats.srtp_refused, 0);
}

#[test]
fn rtp_held_for_a_leg_that_fails_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut leg, mut b) = checked(now);
    leg.set_remote(now, naming_another_certificate(&b));
    for seq in 1..=5 {
        assert_eq!(leg.protect(&rtp(seq)), None);
    }
    pump(&mut leg, &mut b, now);
    assert_eq!(leg.state(), DtlsState::Failed);
    assert!(!leg.holds_out());
    assert_eq!(leg.poll_held_out(), None);
    assert_eq!(leg.protect(&rtp(6)), None);
    assert!(!leg.holds_out());
    assert_eq!(leg.stats.not_ready, 6);
}
