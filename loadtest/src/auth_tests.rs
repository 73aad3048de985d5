//! Unit tests of `auth.rs`.

use super::*;

#[test]
fn rfc2617_example_response() {
    // RFC 2617 §3.5 (HTTP), same computation.
    let c = parse_challenge("Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"").unwrap();
    let v = authorization(
        &c,
        "Mufasa",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "0a4f113b",
    );
    assert!(
        v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
        "{v}"
    );
    assert!(v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
}

#[test]
fn non_digest_or_other_algorithms_are_refused() {
    assert!(parse_challenge("Basic realm=\"x\"").is_none());
    assert!(parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512").is_none());
    // SHA-256 (RFC 8760) is spoken, and preferred when offered beside MD5.
    let both = [
        "Digest realm=\"x\", nonce=\"a\", algorithm=MD5",
        "Digest realm=\"x\", nonce=\"b\", algorithm=SHA-256",
    ];
    let c = best_challenge(both.into_iter()).unwrap();
    assert_eq!(c.nonce, "b");
    assert!(authorization(&c, "u", "p", "INVITE", "sip:x", "cn").contains("algorithm=SHA-256"));
}
