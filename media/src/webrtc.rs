//! One WebRTC media leg as a sans-IO object: ICE-lite (RFC 8445 §2.5: answer the
//! browser's connectivity checks, never send any), DTLS-SRTP (RFC 5763/5764) and
//! SRTP/SRTCP (RFC 3711, AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM), all on the
//! one RTP port (`rtcp-mux`, BUNDLE of the one audio stream). The DTLS, SRTP and STUN
//! codecs are webrtc-rs's (`rtc-dtls`, `rtc-srtp`, `rtc-stun`); this type only
//! demultiplexes (RFC 7983 by the first byte) and holds the leg's state.
//!
//! The driver feeds every datagram of the leg's port to [`Leg::on_datagram`]: STUN
//! and DTLS are consumed (their answers queue for [`Leg::poll_transmit`]), SRTP comes
//! back decrypted as plain RTP for the relay. Outbound RTP goes through
//! [`Leg::protect`] and leaves for [`Leg::peer`]. Drain order after each input:
//! `on_datagram`'s result, then `poll_transmit` until empty; a timer due at
//! [`Leg::poll_timeout`] is handled with [`Leg::handle_timeout`] (DTLS retransmission).
//!
//! The peer's certificate is checked against the SDP fingerprint when both are known
//! (a browser may finish DTLS before its SIP answer reaches the edge): until then, and
//! forever if they differ, no media passes.

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::{self as crypto, HashAlgorithm, RTCCryptoProvider};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_dtls::state::State;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use rtc_stun::attributes::{ATTR_USERNAME, ATTR_USE_CANDIDATE};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::xoraddr::XorMappedAddress;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long ICE and DTLS may take by default (see [`Leg::new`]).
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(20);

/// Why the edge's WebRTC identity could not be made.
#[derive(Debug, thiserror::Error)]
#[error("WebRTC certificate: {0}")]
pub struct IdentityError(String);

/// The edge's DTLS certificate (self-signed ECDSA P-256, made at start-up, as every
/// WebRTC endpoint does), its SHA-256 fingerprint for SDP, and the DTLS handshake
/// configurations built on it once for every leg (client and server role).
pub struct Identity {
    provider: Arc<dyn RTCCryptoProvider>,
    fingerprint: String,
    client: Arc<HandshakeConfig>,
    server: Arc<HandshakeConfig>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn generate() -> Result<Identity, IdentityError> {
        let provider = crypto::default_provider().map_err(|e| IdentityError(e.to_string()))?;
        let certificate =
            Certificate::generate_self_signed(vec!["edge".to_string()], provider.crypto())
                .map_err(|e| IdentityError(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| IdentityError("no certificate generated".into()))?;
        let fingerprint =
            fingerprint_of(&*provider, der).map_err(|e| IdentityError(e.to_string()))?;
        let config = |client: bool| {
            ConfigBuilder::default()
                .with_crypto_provider(provider.clone())
                .with_certificates(vec![certificate.clone()])
                .with_srtp_protection_profiles(vec![
                    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                ])
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                // Self-signed on both sides: the SDP fingerprint is the trust
                // (checked in `Leg::verify` once the handshake is done).
                .with_insecure_skip_verify(true)
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .build(client, None)
                .map(Arc::new)
                .map_err(|e| IdentityError(e.to_string()))
        };
        let (client, server) = (config(true)?, config(false)?);
        Ok(Identity {
            provider,
            fingerprint,
            client,
            server,
        })
    }

    /// `AB:CD:…` (upper-case hex, as browsers write it), for `a=fingerprint:sha-256`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn fingerprint_of(provider: &dyn RTCCryptoProvider, der: &[u8]) -> Result<String, String> {
    let hash = provider
        .crypto()
        .hash(HashAlgorithm::Sha256, der)
        .map_err(|e| e.to_string())?;
    Ok(hash
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Which side starts DTLS (RFC 4145 `a=setup`, as the remote wrote it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The remote is the DTLS client; the edge waits for its ClientHello.
    Active,
    /// The remote waits; the edge connects as DTLS client once ICE found it.
    Passive,
    /// The remote offered either role; the edge answers `passive` (server).
    ActPass,
}

impl Setup {
    pub fn parse(s: &str) -> Option<Setup> {
        match s.trim() {
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            "actpass" => Some(Setup::ActPass),
            _ => None,
        }
    }
}

/// The edge's ICE credentials for one leg (RFC 8445 §5.3: ufrag ≥ 4, pwd ≥ 22 chars).
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password signs the connectivity checks: never in logs.
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

/// What the remote's SDP says about its WebRTC transport.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteParams {
    pub ufrag: String,
    pub pwd: String,
    /// `sha-256` fingerprint, hex bytes with colons (any case).
    pub fingerprint: String,
    pub setup: Setup,
}

impl fmt::Debug for RemoteParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteParams")
            .field("ufrag", &self.ufrag)
            .field("fingerprint", &self.fingerprint)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// Counters of one leg (the driver adds them to the process metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LegStats {
    /// Connectivity checks answered.
    pub stun_answered: u64,
    /// STUN that failed the checks (wrong user, integrity, fingerprint) or was not a
    /// binding request: dropped.
    pub stun_refused: u64,
    /// DTLS records that the handshake refused.
    pub dtls_errors: u64,
    /// SRTP/SRTCP packets that failed authentication or replay checks: dropped.
    pub srtp_refused: u64,
    /// Media that arrived (or was to leave) before the keys were ready: dropped.
    pub not_ready: u64,
    /// The leg became ready (handshake done, fingerprint matched): 0 or 1.
    pub connected: u64,
    /// The leg failed (handshake, timeout or fingerprint): 0 or 1.
    pub failed: u64,
}

/// What became of an inbound datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Decrypted RTP for the relay.
    Rtp(BytesMut),
    /// Decrypted RTCP (muxed on the RTP port).
    Rtcp(BytesMut),
    /// STUN or DTLS, consumed (answers wait in [`Leg::poll_transmit`]).
    Consumed,
    /// Refused (counted in [`LegStats`]).
    Dropped,
}

/// Where the DTLS handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    Waiting,
    Handshaking,
    /// Keys are ready and the peer's certificate matched the SDP fingerprint.
    Connected,
    /// The handshake failed, or the certificate did not match: no media passes.
    Failed,
}

/// One WebRTC leg: see the module documentation.
pub struct Leg {
    identity: Arc<Identity>,
    local: IceCredentials,
    remote: Option<RemoteParams>,
    /// The address the last valid check came from (nominated, or the first valid).
    peer: Option<SocketAddr>,
    /// Every address a valid check came from (a few): media and DTLS are taken
    /// from any of them, as the browser may move between pairs (RFC 8445 §7.3),
    /// and sent to `peer`.
    validated: Vec<SocketAddr>,
    nominated: bool,
    dtls: Option<(Endpoint, SocketAddr)>,
    /// SHA-256 of the peer's certificate once the handshake completed.
    peer_fingerprint: Option<String>,
    /// (outbound, inbound) contexts, once the handshake completed.
    srtp: Option<Box<(Context, Context)>>,
    state: DtlsState,
    /// When a handshake in progress (or one that never starts) is given up.
    deadline: Option<Instant>,
    limit: Duration,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    /// SRTP from a validated address that came during the handshake — the peer
    /// finished its side first, or its SDP (with the fingerprint the leg must
    /// check) has not reached the edge yet: held (at most [`EARLY_MAX`], the
    /// latest kept) and decrypted once the leg is connected ([`Leg::poll_early`]),
    /// never before the certificate is checked.
    early: VecDeque<Vec<u8>>,
    /// RTP for the browser that came before the leg was ready (the caller's first
    /// words while ICE and DTLS finish): held the same way (at most
    /// [`EARLY_MAX`], the latest kept) and protected once it is
    /// ([`Leg::poll_held_out`]), so the agent hears them late rather than never.
    early_out: VecDeque<Vec<u8>>,
    /// The controlling side's connectivity check in progress (see
    /// [`Leg::controlling`]).
    checking: Option<Check>,
    pub stats: LegStats,
}

/// A connectivity check the controlling side repeats until it is answered.
#[derive(Debug, Clone, Copy)]
struct Check {
    to: SocketAddr,
    tx: [u8; 12],
    next: Instant,
}

/// SRTP packets held during the handshake, at most (320 ms of 20 ms audio).
pub const EARLY_MAX: usize = 16;

/// How often an unanswered check is sent again (RFC 8445 §14.3 Ta is 50 ms; one
/// pair only, so no pacing across pairs is needed).
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl fmt::Debug for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leg")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// RFC 7983 §7: what the first byte of a datagram on a muxed port says it is.
fn kind(first: u8) -> Option<Kind> {
    match first {
        0..=3 => Some(Kind::Stun),
        20..=63 => Some(Kind::Dtls),
        128..=191 => Some(Kind::Rtp),
        _ => None,
    }
}

enum Kind {
    Stun,
    Dtls,
    Rtp,
}

/// RTCP packet types 192–223 in the second byte (RFC 5761 §4).
fn is_rtcp(pkt: &[u8]) -> bool {
    pkt.len() >= 2 && (192..=223).contains(&pkt[1])
}

impl Leg {
    /// `limit`: how long ICE and DTLS may take from the remote's SDP or from the
    /// first DTLS record, whichever comes first (a browser that never checks, or
    /// stops half way, must not hold the call: a DTLS server has no timer of its
    /// own while it waits for the client).
    pub fn new(identity: Arc<Identity>, local: IceCredentials, limit: Duration) -> Leg {
        Leg {
            identity,
            local,
            remote: None,
            peer: None,
            validated: Vec::new(),
            nominated: false,
            dtls: None,
            peer_fingerprint: None,
            srtp: None,
            state: DtlsState::Waiting,
            deadline: None,
            limit,
            transmits: VecDeque::new(),
            early: VecDeque::new(),
            early_out: VecDeque::new(),
            checking: None,
            stats: LegStats::default(),
        }
    }

    /// The other end of a WebRTC call (what a load generator plays instead of a
    /// browser): ICE *controlling* — it checks `to` (the lite side's one
    /// candidate), nominating it (USE-CANDIDATE), until a valid response comes —
    /// and DTLS in the role `remote.setup` leaves it. The checks start at `now`.
    pub fn controlling(
        identity: Arc<Identity>,
        local: IceCredentials,
        remote: RemoteParams,
        to: SocketAddr,
        now: Instant,
        limit: Duration,
    ) -> Leg {
        let mut leg = Leg::new(identity, local, limit);
        leg.set_remote(now, remote);
        leg.checking = Some(Check {
            to,
            tx: [0; 12],
            next: now,
        });
        leg
    }

    /// Send the controlling side's check (USERNAME `remote:local`, PRIORITY,
    /// ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY with the remote's
    /// password, FINGERPRINT).
    fn send_check(&mut self, now: Instant) {
        let (Some(c), Some(r)) = (self.checking.as_mut(), self.remote.as_ref()) else {
            return;
        };
        let mut m = Message::new();
        if m.new_transaction_id().is_err() {
            return;
        }
        m.write_header();
        c.tx = m.transaction_id.0;
        c.next = now + CHECK_INTERVAL;
        let to = c.to;
        let crypto = self.identity.provider.crypto();
        let user = rtc_stun::textattrs::TextAttribute::new(
            ATTR_USERNAME,
            format!("{}:{}", r.ufrag, self.local.ufrag),
        );
        let tie = Raw(
            rtc_stun::attributes::ATTR_ICE_CONTROLLING,
            c.tx[..8].to_vec(),
        );
        let priority = Raw(
            rtc_stun::attributes::ATTR_PRIORITY,
            2_130_706_431u32.to_be_bytes().to_vec(),
        );
        let nominate = Raw(ATTR_USE_CANDIDATE, Vec::new());
        let integrity =
            MessageIntegrity::new_short_term_integrity_with_provider(r.pwd.clone(), crypto);
        let setters: [&dyn Setter; 7] = [
            &BINDING_REQUEST,
            &user,
            &priority,
            &tie,
            &nominate,
            &integrity,
            &FINGERPRINT,
        ];
        if setters.iter().all(|s| s.add_to(&mut m).is_ok()) {
            self.transmits.push_back((to, m.raw));
        }
    }

    /// A response to the controlling side's check: valid (transaction, integrity
    /// with the remote's password) makes its source the peer.
    fn on_check_response(&mut self, now: Instant, src: SocketAddr, m: &mut Message) -> Inbound {
        let (Some(c), Some(r)) = (self.checking, self.remote.as_ref()) else {
            self.stats.stun_refused += 1;
            return Inbound::Dropped;
        };
        let crypto = self.identity.provider.crypto();
        let valid = m.transaction_id.0 == c.tx
            && src == c.to
            && FINGERPRINT.check(m).is_ok()
            && MessageIntegrity::check(m, r.pwd.as_bytes(), crypto).is_ok();
        if !valid {
            self.stats.stun_refused += 1;
            return Inbound::Dropped;
        }
        self.checking = None;
        self.peer = Some(src);
        self.validate(src);
        self.nominated = true;
        self.maybe_connect(now);
        Inbound::Consumed
    }

    /// Remember an address a valid check came from (at most 8, the oldest goes).
    fn validate(&mut self, src: SocketAddr) {
        if !self.validated.contains(&src) {
            if self.validated.len() == 8 {
                self.validated.remove(0);
            }
            self.validated.push(src);
        }
    }

    /// The remote's SDP arrived (its answer, or its offer).
    pub fn set_remote(&mut self, now: Instant, remote: RemoteParams) {
        self.remote = Some(remote);
        if self.state == DtlsState::Waiting && self.deadline.is_none() {
            self.deadline = Some(now + self.limit);
        }
        self.verify();
        self.maybe_connect(now);
    }

    /// Where media for the browser goes: the source of its valid connectivity checks.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// Media may flow (keys ready, fingerprint matched, peer known).
    pub fn ready(&self) -> bool {
        self.state == DtlsState::Connected && self.peer.is_some()
    }

    pub fn local(&self) -> &IceCredentials {
        &self.local
    }

    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, pkt: &[u8]) -> Inbound {
        match pkt.first().copied().and_then(kind) {
            Some(Kind::Stun) => self.on_stun(now, src, pkt),
            Some(Kind::Dtls) => self.on_dtls(now, src, pkt),
            Some(Kind::Rtp) => self.on_srtp(src, pkt),
            None => {
                self.stats.stun_refused += 1;
                Inbound::Dropped
            }
        }
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, pkt: &[u8]) -> Inbound {
        if self.checking.is_some() {
            let mut m = Message::new();
            if m.unmarshal_binary(pkt).is_ok() && m.typ == BINDING_SUCCESS {
                return self.on_check_response(now, src, &mut m);
            }
        }
        match self.answer_check(src, pkt) {
            Ok((response, use_candidate)) => {
                self.stats.stun_answered += 1;
                self.transmits.push_back((src, response));
                // ICE-lite: the controlling browser nominates; until it does, the
                // latest valid source is the best guess (RFC 8445 §7.3.1.5).
                if use_candidate || !self.nominated {
                    self.nominated |= use_candidate;
                    self.peer = Some(src);
                }
                self.validate(src);
                self.maybe_connect(now);
                Inbound::Consumed
            }
            Err(()) => {
                self.stats.stun_refused += 1;
                Inbound::Dropped
            }
        }
    }

    /// Checks a binding request (USERNAME `local:remote`, MESSAGE-INTEGRITY with the
    /// local password, FINGERPRINT) and builds the success response.
    fn answer_check(&self, src: SocketAddr, pkt: &[u8]) -> Result<(Vec<u8>, bool), ()> {
        let mut m = Message::new();
        m.unmarshal_binary(pkt).map_err(|_| ())?;
        if m.typ != BINDING_REQUEST {
            return Err(());
        }
        let user = m.get(ATTR_USERNAME).map_err(|_| ())?;
        let ours = self.local.ufrag.as_bytes();
        if user.len() <= ours.len() || &user[..ours.len()] != ours || user[ours.len()] != b':' {
            return Err(());
        }
        if let Some(r) = &self.remote {
            if user[ours.len() + 1..] != *r.ufrag.as_bytes() {
                return Err(());
            }
        }
        let crypto = self.identity.provider.crypto();
        FINGERPRINT.check(&m).map_err(|_| ())?;
        MessageIntegrity::check(&mut m, self.local.pwd.as_bytes(), crypto).map_err(|_| ())?;
        let use_candidate = m.contains(ATTR_USE_CANDIDATE);
        let mut out = Message::new();
        out.write_header();
        let setters: [&dyn Setter; 5] = [
            &m,
            &BINDING_SUCCESS,
            &XorMappedAddress {
                ip: src.ip(),
                port: src.port(),
            },
            &MessageIntegrity::new_short_term_integrity_with_provider(
                self.local.pwd.clone(),
                crypto,
            ),
            &FINGERPRINT,
        ];
        for s in setters {
            s.add_to(&mut out).map_err(|_| ())?;
        }
        Ok((out.raw, use_candidate))
    }

    /// The edge is the DTLS client when the remote said `passive`: connect once the
    /// remote's parameters and its address are known.
    fn maybe_connect(&mut self, now: Instant) {
        let (Some(r), Some(peer)) = (&self.remote, self.peer) else {
            return;
        };
        if r.setup != Setup::Passive || self.dtls.is_some() {
            return;
        }
        let config = self.identity.client.clone();
        let local = SocketAddr::new(peer.ip(), 0);
        let mut ep = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
        if ep.connect(now, peer, config, None).is_err() {
            self.fail();
            return;
        }
        self.state = DtlsState::Handshaking;
        self.deadline.get_or_insert(now + self.limit);
        self.dtls = Some((ep, peer));
        self.drain_dtls();
    }

    fn fail(&mut self) {
        self.stats.dtls_errors += 1;
        if self.state != DtlsState::Failed {
            self.stats.failed += 1;
        }
        self.state = DtlsState::Failed;
        self.srtp = None;
        self.stats.not_ready += (self.early.len() + self.early_out.len()) as u64;
        self.early.clear();
        self.early_out.clear();
    }

    fn on_dtls(&mut self, now: Instant, src: SocketAddr, pkt: &[u8]) -> Inbound {
        if self.state == DtlsState::Failed {
            self.stats.dtls_errors += 1;
            return Inbound::Dropped;
        }
        // Only from the address ICE validated (RFC 8445 §7.3: no media before checks).
        if !self.validated.contains(&src) {
            self.stats.dtls_errors += 1;
            return Inbound::Dropped;
        }
        if self.dtls.is_none() {
            // The remote is the client (it said `active`, or has not answered yet:
            // the edge offers `actpass`, and browsers take `active`).
            if self
                .remote
                .as_ref()
                .is_some_and(|r| r.setup == Setup::Passive)
            {
                self.stats.dtls_errors += 1;
                return Inbound::Dropped;
            }
            let config = self.identity.server.clone();
            let local = SocketAddr::new(src.ip(), 0);
            let ep = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, Some(config));
            self.state = DtlsState::Handshaking;
            self.deadline.get_or_insert(now + self.limit);
            self.dtls = Some((ep, src));
        }
        let (ep, remote) = self.dtls.as_mut().expect("set above");
        // One association, whichever validated pair its records take.
        let key = *remote;
        match ep.read(now, key, None, BytesMut::from(pkt)) {
            Ok(events) => {
                let done = events
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
                self.drain_dtls();
                if done {
                    self.on_handshake_complete();
                }
                Inbound::Consumed
            }
            Err(_) => {
                self.drain_dtls();
                // A record the association refuses (garbage, a replay) is not fatal
                // once connected; during the handshake it is.
                if self.state == DtlsState::Handshaking {
                    self.fail();
                } else {
                    self.stats.dtls_errors += 1;
                }
                Inbound::Dropped
            }
        }
    }

    /// DTLS records go to the current peer (the association is keyed by the
    /// address it started on).
    fn drain_dtls(&mut self) {
        if let Some((ep, _)) = self.dtls.as_mut() {
            while let Some(t) = ep.poll_transmit() {
                let to = self.peer.unwrap_or(t.transport.peer_addr);
                self.transmits.push_back((to, t.message.to_vec()));
            }
        }
    }

    fn on_handshake_complete(&mut self) {
        let Some((ep, remote)) = self.dtls.as_ref() else {
            return;
        };
        let Some(state) = ep.get_connection_state(*remote) else {
            return self.fail();
        };
        let Some(der) = state.peer_certificates.first() else {
            return self.fail();
        };
        let Ok(fp) = fingerprint_of(&*self.identity.provider, der) else {
            return self.fail();
        };
        match srtp_contexts(state, &*self.identity.provider) {
            Ok(ctx) => self.srtp = Some(Box::new(ctx)),
            Err(_) => return self.fail(),
        }
        self.peer_fingerprint = Some(fp);
        self.verify();
    }

    /// Media flows once the certificate the peer used is the one its SDP named.
    fn verify(&mut self) {
        if self.state != DtlsState::Handshaking {
            return;
        }
        let (Some(r), Some(fp)) = (&self.remote, &self.peer_fingerprint) else {
            return;
        };
        if r.fingerprint.eq_ignore_ascii_case(fp) {
            self.state = DtlsState::Connected;
            self.stats.connected += 1;
        } else {
            self.fail();
        }
    }

    fn on_srtp(&mut self, src: SocketAddr, pkt: &[u8]) -> Inbound {
        if self.state == DtlsState::Handshaking && self.validated.contains(&src) {
            if self.early.len() == EARLY_MAX {
                self.early.pop_front();
                self.stats.not_ready += 1;
            }
            self.early.push_back(pkt.to_vec());
            return Inbound::Consumed;
        }
        if self.state != DtlsState::Connected || !self.validated.contains(&src) {
            self.stats.not_ready += 1;
            return Inbound::Dropped;
        }
        self.decrypt(pkt)
    }

    /// SRTP or SRTCP from the peer, decrypted (the leg is connected); one that
    /// fails authentication or replay checks is dropped and counted.
    fn decrypt(&mut self, pkt: &[u8]) -> Inbound {
        let (_, inbound) = &mut **self.srtp.as_mut().expect("connected");
        let result = if is_rtcp(pkt) {
            inbound.decrypt_rtcp(pkt).map(Inbound::Rtcp)
        } else {
            inbound.decrypt_rtp(pkt).map(Inbound::Rtp)
        };
        result.unwrap_or_else(|_| {
            self.stats.srtp_refused += 1;
            Inbound::Dropped
        })
    }

    /// The SRTP held during the handshake, decrypted one by one in the order it
    /// came, once the leg is connected (the driver asks after each datagram and
    /// after the remote parameters; nothing before). A held packet that fails
    /// authentication is counted and skipped.
    pub fn poll_early(&mut self) -> Option<Inbound> {
        if self.state != DtlsState::Connected {
            return None;
        }
        while let Some(pkt) = self.early.pop_front() {
            match self.decrypt(&pkt) {
                Inbound::Dropped => {}
                i => return Some(i),
            }
        }
        None
    }

    /// Encrypt an outbound RTP packet for the browser. `None` when the packet
    /// cannot be protected (counted), or is held: while the leg is not ready yet
    /// (ICE or DTLS in progress; a failed leg drops it, counted), and behind
    /// packets still held — ask [`Leg::poll_held_out`] after every call, which
    /// gives them in the order they came.
    pub fn protect(&mut self, rtp: &[u8]) -> Option<BytesMut> {
        if !self.ready() || !self.early_out.is_empty() {
            if self.state == DtlsState::Failed {
                self.stats.not_ready += 1;
                return None;
            }
            if self.early_out.len() == EARLY_MAX {
                self.early_out.pop_front();
                self.stats.not_ready += 1;
            }
            self.early_out.push_back(rtp.to_vec());
            return None;
        }
        self.seal(rtp)
    }

    /// Whether RTP for the browser is held (see [`Leg::protect`]).
    pub fn holds_out(&self) -> bool {
        !self.early_out.is_empty()
    }

    /// The RTP held for the browser before the leg was ready, protected, with
    /// where it goes, one by one in the order it came; `None` while the leg is
    /// not ready or nothing is held.
    pub fn poll_held_out(&mut self) -> Option<(BytesMut, SocketAddr)> {
        if !self.ready() {
            return None;
        }
        let peer = self.peer?;
        while let Some(rtp) = self.early_out.pop_front() {
            if let Some(sealed) = self.seal(&rtp) {
                return Some((sealed, peer));
            }
        }
        None
    }

    fn seal(&mut self, rtp: &[u8]) -> Option<BytesMut> {
        let (outbound, _) = &mut **self.srtp.as_mut().expect("connected");
        match outbound.encrypt_rtp(rtp) {
            Ok(p) => Some(p),
            Err(_) => {
                self.stats.srtp_refused += 1;
                None
            }
        }
    }

    /// The counters since the last call (the driver adds them to its metrics).
    pub fn take_stats(&mut self) -> LegStats {
        std::mem::take(&mut self.stats)
    }

    /// A STUN answer or DTLS record to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When DTLS next needs [`Leg::handle_timeout`] (handshake retransmission).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.state, DtlsState::Handshaking | DtlsState::Waiting) {
            return None;
        }
        let dtls = self.dtls.as_ref().and_then(|(ep, r)| ep.poll_timeout(r));
        [dtls, self.deadline, self.checking.map(|c| c.next)]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.state, DtlsState::Handshaking | DtlsState::Waiting) {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.checking = None;
            return self.fail();
        }
        if self.checking.is_some_and(|c| now >= c.next) {
            self.send_check(now);
        }
        let Some((ep, remote)) = self.dtls.as_mut() else {
            return;
        };
        let failed = ep.handle_timeout(*remote, now).is_err();
        self.drain_dtls();
        if failed {
            self.fail();
        }
    }
}

/// An attribute written as given (ICE-CONTROLLING's tie-breaker, PRIORITY,
/// USE-CANDIDATE), which rtc-stun has no setter for.
struct Raw(rtc_stun::attributes::AttrType, Vec<u8>);

impl Setter for Raw {
    fn add_to(&self, m: &mut Message) -> rtc_shared::error::Result<()> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// The SRTP contexts (outbound, inbound) from a completed handshake (RFC 5764 §4.2).
fn srtp_contexts(
    state: &State,
    provider: &dyn RTCCryptoProvider,
) -> Result<(Context, Context), String> {
    let profile = match state.srtp_protection_profile() {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
            ProtectionProfile::Aes128CmHmacSha1_80
        }
        other => return Err(format!("SRTP profile {other:?} was not offered")),
    };
    let mut config = rtc_srtp::config::Config {
        profile,
        ..Default::default()
    };
    let material = state
        .export_keying_material(
            rtc_srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
            &[],
            config.keying_material_len(),
        )
        .map_err(|e| e.to_string())?;
    config
        .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
        .map_err(|e| e.to_string())?;
    let k = &config.keys;
    let outbound = Context::new(
        &k.local_master_key,
        &k.local_master_salt,
        profile,
        None,
        None,
        provider.crypto(),
    )
    .map_err(|e| e.to_string())?;
    let inbound = Context::new(
        &k.remote_master_key,
        &k.remote_master_salt,
        profile,
        Some(rtc_srtp::option::srtp_replay_protection(64)),
        Some(rtc_srtp::option::srtcp_replay_protection(64)),
        provider.crypto(),
    )
    .map_err(|e| e.to_string())?;
    Ok((outbound, inbound))
}

#[cfg(test)]
#[path = "webrtc_tests.rs"]
mod tests;
