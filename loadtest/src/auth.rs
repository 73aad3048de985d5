//! Digest authentication (RFC 2617 / RFC 8760 with MD5) for `--auth user:pass`:
//! answer a 401/407 challenge with an Authorization / Proxy-Authorization value.

use hex::encode as hex;
use md5::{Digest, Md5};

fn md5(s: &str) -> String {
    hex(Md5::digest(s.as_bytes()))
}

/// Parameters of a `Digest` challenge.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub qop_auth: bool,
    pub algorithm: Option<String>,
}

/// Parse `Digest realm="x", nonce="y", qop="auth", ...`. `None` if not Digest/MD5.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let rest = value.trim().strip_prefix("Digest")?.trim();
    let mut c = Challenge::default();
    for part in split_params(rest) {
        let (k, v) = part.split_once('=')?;
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "opaque" => c.opaque = Some(v),
            "qop" => c.qop_auth = v.split(',').any(|q| q.trim() == "auth"),
            "algorithm" => c.algorithm = Some(v),
            _ => {}
        }
    }
    if c.nonce.is_empty()
        || c.algorithm
            .as_deref()
            .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
    {
        return None;
    }
    Some(c)
}

fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, ch) in s.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|p| !p.is_empty()).collect()
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
    let ha1 = md5(&format!("{user}:{}:{pass}", c.realm));
    let ha2 = md5(&format!("{method}:{uri}"));
    let mut v = if c.qop_auth {
        let nc = "00000001";
        let response = md5(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce));
        format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            c.realm, c.nonce
        )
    } else {
        let response = md5(&format!("{ha1}:{}:{ha2}", c.nonce));
        format!("Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5", c.realm, c.nonce)
    };
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
