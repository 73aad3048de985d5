use super::*;

#[test]
fn rfc_7616_worked_example_sha256_and_md5() {
    // RFC 7616 §3.9.1.
    let args = (
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
    );
    let (u, r, p, m, uri, n, q) = args;
    assert_eq!(
        response(Algorithm::Sha256, u, r, p, m, uri, n, q),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert_eq!(
        response(Algorithm::Md5, u, r, p, m, uri, n, q),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
}

#[test]
fn challenges_and_credentials_round_trip() {
    let c = Challenge {
        realm: "edge".into(),
        nonce: "abc.def".into(),
        opaque: None,
        algorithm: Algorithm::Sha256,
        qop_auth: true,
        stale: true,
    };
    let v = c.to_header_value();
    assert_eq!(
        v,
        "Digest realm=\"edge\", nonce=\"abc.def\", algorithm=SHA-256, qop=\"auth\", stale=true"
    );
    assert_eq!(Challenge::parse(&v), Some(c));
    assert_eq!(Challenge::parse("Basic realm=\"x\""), None);
    assert_eq!(
        Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512"),
        None
    );
    let creds = Credentials::parse(
        "Digest username=\"1001\",realm=\"edge\",nonce=\"n.1\",uri=\"sip:edge\",\
response=\"AB\",algorithm=MD5,cnonce=\"c\\\"q\",qop=auth,nc=0000000a",
    )
    .unwrap();
    assert_eq!(creds.username, "1001");
    assert_eq!(creds.cnonce.as_deref(), Some("c\"q"));
    assert_eq!(creds.nonce_count(), Some(10));
    assert_eq!(creds.algorithm(), Some(Algorithm::Md5));
    assert_eq!(
        Credentials::parse("Digest username=\"1001\", nonce=\"unterminated"),
        None
    );
    assert_eq!(
        Credentials::parse("Digest username=\"1001\""),
        None,
        "no response"
    );
}

fn creds(
    v: &Verifier,
    now: SystemTime,
    alg: Algorithm,
    pass: &str,
    nc: Option<&str>,
) -> Credentials {
    let nonce = v.nonce(now);
    let qop = nc.map(|nc| (nc, "cn"));
    Credentials {
        username: "1001".into(),
        realm: "edge".into(),
        nonce: nonce.clone(),
        uri: "sip:127.0.0.1".into(),
        response: response(
            alg,
            "1001",
            "edge",
            pass,
            "REGISTER",
            "sip:127.0.0.1",
            &nonce,
            qop,
        ),
        algorithm: Some(alg.name().into()),
        cnonce: nc.map(|_| "cn".into()),
        qop: nc.map(|_| "auth".into()),
        nc: nc.map(str::to_string),
        opaque: None,
    }
}

#[test]
fn the_verifier_accepts_the_password_and_refuses_stale_replayed_and_forged() {
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut v = Verifier::new([7; 32], Duration::from_secs(300));
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let c = creds(&v, t0, alg, "secret", Some("00000001"));
        assert_eq!(v.verify(t0, &c, "edge", "REGISTER", "secret"), Verdict::Ok);
        // The same nonce-count again is a replay; the next one is fine.
        assert_eq!(
            v.verify(t0, &c, "edge", "REGISTER", "secret"),
            Verdict::Replayed
        );
        let mut next = c.clone();
        next.nc = Some("00000002".into());
        next.response = response(
            alg,
            "1001",
            "edge",
            "secret",
            "REGISTER",
            "sip:127.0.0.1",
            &c.nonce,
            Some(("00000002", "cn")),
        );
        assert_eq!(
            v.verify(t0, &next, "edge", "REGISTER", "secret"),
            Verdict::Ok
        );
        // Wrong password.
        let bad = creds(&v, t0, alg, "guess", Some("00000001"));
        assert_eq!(
            v.verify(t0, &bad, "edge", "REGISTER", "secret"),
            Verdict::Wrong
        );
    }
    // Without qop a nonce authenticates once.
    let once = creds(&v, t0, Algorithm::Md5, "secret", None);
    assert_eq!(
        v.verify(t0, &once, "edge", "REGISTER", "secret"),
        Verdict::Ok
    );
    assert_eq!(
        v.verify(t0, &once, "edge", "REGISTER", "secret"),
        Verdict::Replayed
    );
    assert_eq!(v.tracked(), 3, "one entry per nonce that authenticated");
    // Expired: stale (only when the response is right; a guess is just wrong).
    let old = creds(&v, t0, Algorithm::Md5, "secret", Some("00000001"));
    let later = t0 + Duration::from_secs(301);
    assert_eq!(
        v.verify(later, &old, "edge", "REGISTER", "secret"),
        Verdict::Stale
    );
    // A nonce we did not mint, or minted with another secret.
    let other = Verifier::new([8; 32], Duration::from_secs(300));
    let forged = creds(&other, t0, Algorithm::Md5, "secret", Some("00000001"));
    assert_eq!(
        v.verify(t0, &forged, "edge", "REGISTER", "secret"),
        Verdict::UnknownNonce
    );
    // Used nonces are forgotten when they expire.
    assert_eq!(v.tracked(), 0);
}
