//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616 with
//! RFC 8760's SHA-256 for SIP), sans-IO: challenges and credentials as header
//! values, the response computation, and nonces that expire.
//!
//! Nonces are stateless: `TIMESTAMP-SERIAL.HMAC(secret, TIMESTAMP-SERIAL)` (the
//! serial makes each one unique, so two phones never share a nonce-count), so a flood of
//! unauthenticated requests costs no memory. What a nonce has been used for
//! (the highest nonce-count seen, RFC 7616 §3.4.5) is kept only for nonces that
//! authenticated a request, until they expire.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A digest algorithm the edge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `MD5` / `SHA-256` (case-insensitive); the `-sess` variants are not spoken.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "SHA-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Lower-case hex digest of `s`.
    pub fn hash(self, s: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
        };
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// `name=value` / `name="quoted"` parameters of a Digest header value (after the
/// scheme), names lower-cased, quotes and backslash escapes removed. `None` when a
/// quoted string is not closed or a parameter has no `=`.
pub fn params(value: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => v.push(c),
                }
            }
            let end = end?;
            value = v;
            rest = q[end + 1..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

fn scheme_rest(value: &str) -> Option<&str> {
    let v = value.trim();
    let (scheme, rest) = v.split_at(v.find(char::is_whitespace).unwrap_or(v.len()));
    scheme.eq_ignore_ascii_case("Digest").then_some(rest)
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    /// Parse a challenge. `None` when it is not Digest, or names an algorithm the
    /// edge does not speak.
    pub fn parse(value: &str) -> Option<Challenge> {
        let mut c = Challenge {
            realm: String::new(),
            nonce: String::new(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: false,
            stale: false,
        };
        for (k, v) in params(scheme_rest(value)?)? {
            match k.as_str() {
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "opaque" => c.opaque = Some(v),
                "qop" => c.qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
                "algorithm" => c.algorithm = Algorithm::parse(&v)?,
                "stale" => c.stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        (!c.nonce.is_empty()).then_some(c)
    }

    /// The header value.
    pub fn to_header_value(&self) -> String {
        let mut v = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}",
            self.realm,
            self.nonce,
            self.algorithm.name()
        );
        if self.qop_auth {
            v.push_str(", qop=\"auth\"");
        }
        if let Some(o) = &self.opaque {
            let _ = write!(v, ", opaque=\"{o}\"");
        }
        if self.stale {
            v.push_str(", stale=true");
        }
        v
    }
}

/// An `Authorization` / `Proxy-Authorization` Digest value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `None`: MD5 (the RFC 2617 default).
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parse credentials; `None` when not Digest or a mandatory field is missing.
    pub fn parse(value: &str) -> Option<Credentials> {
        let mut c = Credentials::default();
        for (k, v) in params(scheme_rest(value)?)? {
            match k.as_str() {
                "username" => c.username = v,
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "uri" => c.uri = v,
                "response" => c.response = v,
                "algorithm" => c.algorithm = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                "opaque" => c.opaque = Some(v),
                _ => {}
            }
        }
        let complete = !c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty();
        complete.then_some(c)
    }

    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
            .as_deref()
            .map_or(Some(Algorithm::Md5), Algorithm::parse)
    }

    /// The nonce-count, when `qop` is used.
    pub fn nonce_count(&self) -> Option<u32> {
        u32::from_str_radix(self.nc.as_deref()?, 16).ok()
    }
}

/// The digest `response` (RFC 7616 §3.4.1; without qop, RFC 2069's form).
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = alg.hash(&format!("{username}:{realm}:{password}"));
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => alg.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => alg.hash(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// Constant-time comparison of two response strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
        }) == 0
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The nonce is not one of ours, or for another realm: challenge afresh.
    UnknownNonce,
    /// The nonce was ours but has expired: challenge with `stale=true`.
    Stale,
    /// A nonce-count already used with this nonce (a replay): challenge afresh.
    Replayed,
    /// The response does not match the password (or the request is malformed for
    /// its qop): a failed authentication.
    Wrong,
}

/// The server side: mints nonces and checks credentials against them.
pub struct Verifier {
    secret: [u8; 32],
    lifetime: Duration,
    serial: std::sync::atomic::AtomicU64,
    /// Highest nonce-count seen per nonce that authenticated something, and when
    /// that nonce expires (entries are dropped then). A nonce is known by the
    /// first 64 bits of its tag (an HMAC of its stamp: distinct nonces differ
    /// there but by a 2^-64 chance, whose cost is one more challenge), not by its
    /// text: every registered phone's nonce is tracked for its lifetime (5 min),
    /// and two copies of a 50-byte string each were a third of what a registered
    /// agent cost.
    used: HashMap<u64, (u32, u64)>,
    /// The entries of `used` in the order they were added, with their expiry:
    /// expired ones are dropped from the front (nonces are used soon after they
    /// are minted, so the order is nearly by expiry).
    expiry: std::collections::VecDeque<(u64, u64)>,
}

type HmacSha256 = Hmac<Sha256>;

/// A nonce secret derived from a process's random seed.
/// 64 hex digits keyed by `secret` and numbered `n` (ICE credentials: unguessable
/// from the Call-IDs and tags, which come from the seed's plain generator).
pub fn keyed_hex(secret: &[u8; 32], n: u64) -> String {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(n.to_le_bytes());
    hex::encode(h.finalize())
}

/// 24 hex digits of HMAC-SHA256 keyed by `secret` over `parts` (each ended by
/// a NUL, so parts cannot be shifted into each other): a tag a node puts in a
/// header it alone must be able to have written.
pub fn mac_hex(secret: &[u8; 32], parts: &[&str]) -> String {
    let mut m = HmacSha256::new_from_slice(secret).expect("any key length");
    for p in parts {
        m.update(p.as_bytes());
        m.update(&[0]);
    }
    hex::encode(&m.finalize().into_bytes()[..12])
}

pub fn secret_from_seed(seed: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"edge digest nonces");
    h.update(seed.to_le_bytes());
    h.finalize().into()
}

impl Verifier {
    /// `secret` keys the nonces (random per process: nonces do not survive a
    /// restart, phones re-register on the 401); `lifetime` is how long one is good.
    pub fn new(secret: [u8; 32], lifetime: Duration) -> Verifier {
        Verifier {
            secret,
            lifetime,
            serial: std::sync::atomic::AtomicU64::new(0),
            used: HashMap::new(),
            expiry: std::collections::VecDeque::new(),
        }
    }

    fn mac(&self, stamp: &str) -> String {
        let mut m = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        m.update(stamp.as_bytes());
        let tag = m.finalize().into_bytes();
        let mut out = String::with_capacity(32);
        for b in &tag[..16] {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// A fresh nonce for `now` (seconds since the epoch).
    pub fn nonce(&self, now: SystemTime) -> String {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = format!("{secs:x}-{serial:x}");
        format!("{stamp}.{}", self.mac(&stamp))
    }

    /// When `nonce` was minted, and the key it is tracked by, if it is ours.
    fn minted(&self, nonce: &str) -> Option<(u64, u64)> {
        let (stamp, tag) = nonce.split_once('.')?;
        if !same(tag, &self.mac(stamp)) {
            return None;
        }
        let key = u64::from_str_radix(tag.get(..16)?, 16).ok()?;
        Some((u64::from_str_radix(stamp.split('-').next()?, 16).ok()?, key))
    }

    /// Check `c` for a request `method` against `password` in `realm`.
    pub fn verify(
        &mut self,
        now: SystemTime,
        c: &Credentials,
        realm: &str,
        method: &str,
        password: &str,
    ) -> Verdict {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // Forget expired nonces: O(expired), not a scan of every tracked one
        // (a scan per REGISTER cost ~400 µs with 100 000 phones registering).
        while let Some((until, _)) = self.expiry.front() {
            if *until > secs {
                break;
            }
            let (_, key) = self.expiry.pop_front().expect("front exists");
            if self.used.get(&key).is_some_and(|(_, u)| *u <= secs) {
                self.used.remove(&key);
            }
        }
        let Some((minted, key)) = self.minted(&c.nonce) else {
            return Verdict::UnknownNonce;
        };
        if c.realm != realm {
            return Verdict::UnknownNonce;
        }
        let Some(alg) = c.algorithm() else {
            return Verdict::Wrong;
        };
        let qop = match (c.qop.as_deref(), c.nc.as_deref(), c.cnonce.as_deref()) {
            (None, _, _) => None,
            (Some(q), Some(nc), Some(cn)) if q.eq_ignore_ascii_case("auth") => Some((nc, cn)),
            _ => return Verdict::Wrong,
        };
        let expected = response(
            alg,
            &c.username,
            realm,
            password,
            method,
            &c.uri,
            &c.nonce,
            qop,
        );
        if !same(&c.response, &expected) {
            return Verdict::Wrong;
        }
        let until = minted + self.lifetime.as_secs();
        if secs >= until {
            return Verdict::Stale;
        }
        // A nonce-count must grow with each use of the nonce; without qop, a nonce
        // authenticates once.
        let nc = if qop.is_some() {
            match c.nonce_count() {
                Some(n) => n,
                None => return Verdict::Wrong,
            }
        } else {
            1
        };
        match self.used.get_mut(&key) {
            Some((last, _)) if nc <= *last => Verdict::Replayed,
            Some((last, _)) => {
                *last = nc;
                Verdict::Ok
            }
            None => {
                self.used.insert(key, (nc, until));
                self.expiry.push_back((until, key));
                Verdict::Ok
            }
        }
    }

    /// Nonces being tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
