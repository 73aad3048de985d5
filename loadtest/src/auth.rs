//! Digest authentication for `--auth user:pass`: answer a 401/407 challenge (MD5,
//! RFC 2617; SHA-256, RFC 8760) with an Authorization / Proxy-Authorization
//! value. The digest itself is the edge's own (`sip::digest`).

pub use sip::digest::Challenge;
use sip::digest::{response, Algorithm};

/// Parse `Digest realm="x", nonce="y", qop="auth", ...`. `None` if it is not
/// Digest or names an algorithm other than MD5 and SHA-256.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    Challenge::parse(value)
}

/// Of several challenges (one per algorithm), the strongest one we speak.
pub fn best_challenge<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    values
        .filter_map(parse_challenge)
        .max_by_key(|c| c.algorithm == Algorithm::Sha256)
}

/// The credentials value for `method uri`.
pub fn authorization(
    c: &Challenge,
    user: &str,
    pass: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let alg = c.algorithm.name();
    let nc = "00000001";
    let qop = c.qop_auth.then_some((nc, cnonce));
    let r = response(
        c.algorithm,
        user,
        &c.realm,
        pass,
        method,
        uri,
        &c.nonce,
        qop,
    );
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{r}\", algorithm={alg}",
        c.realm, c.nonce
    );
    if qop.is_some() {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
