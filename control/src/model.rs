//! The configuration model as written in TOML. Every table rejects unknown fields.

use crate::values::{duration_str, ListenAddr, PortRange, SipTarget};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub chat: ChatConfig,
    #[serde(default)]
    pub trunks: Vec<Trunk>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub queues: Vec<Queue>,
    #[serde(default)]
    pub agents: Vec<Agent>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub reserved_data: Vec<ReservedData>,
    #[serde(default)]
    pub hours: Vec<HoursConfig>,
    /// Certificate and key for `tls:` listen entries.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Several nodes sharing state through NATS JetStream. Absent: the edge runs
    /// alone (the default).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: this node's name, the NATS servers holding the cluster's shared
/// state, and how other nodes reach this node's SIP. Read at start only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique per node: letters, digits, `-` and `_` (it is part of NATS subjects).
    pub node: String,
    /// NATS server URLs (`nats://host:port`); the client connects to any and fails
    /// over to the others.
    pub nats: Vec<String>,
    /// How other nodes (and the proxy) reach this node's SIP: `IP:PORT`.
    pub advertise_sip: std::net::SocketAddr,
    /// How other nodes reach this node's plain HTTP listener (`IP:PORT`): a chat
    /// customer or a console connected to another node is relayed here over a
    /// WebSocket. Unset: the `[http] listen` address, its IP replaced by
    /// `advertise_sip`'s when it is unspecified (`0.0.0.0`).
    #[serde(default)]
    pub advertise_http: Option<std::net::SocketAddr>,
    /// How other nodes reach this node's HTTPS listener (`IP:PORT`). Unset: the
    /// `[http] tls_listen` address (its IP replaced by `advertise_sip`'s when it
    /// is unspecified); no `tls_listen`: none. A node with an HTTPS address is
    /// relayed to over `wss:` only — never its plain HTTP — and its certificate
    /// must chain to the relaying node's `[tls] ca` (or, unset, the system's
    /// trust store) and name this IP address.
    #[serde(default)]
    pub advertise_https: Option<std::net::SocketAddr>,
    /// A client certificate chain and its key (PEM) the edge presents to
    /// `tls://` NATS servers that verify clients (`verify: true`). Both or
    /// neither; they need `[tls]` (whose `ca` checks the servers). Read at start.
    #[serde(default)]
    pub nats_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub nats_key: Option<std::path::PathBuf>,
    /// Sign in to NATS with an NKey: a file holding the user's seed (`SU…`, as
    /// `nk -gen user` writes it); the servers list the public key (`U…`) under
    /// `authorization { users }`. Read at start; never logged.
    #[serde(default)]
    pub nats_nkey: Option<std::path::PathBuf>,
    /// Sign in to NATS servers in operator (JWT) mode: a credentials file
    /// (`.creds`: the user's JWT and NKey seed, as `nsc` writes it). Read at
    /// start; never logged. One way of signing in: URL credentials, `nats_nkey`
    /// or `nats_creds`.
    #[serde(default)]
    pub nats_creds: Option<std::path::PathBuf>,
    /// Replicas of the shared state's JetStream buckets: 3 on a three-server NATS
    /// cluster (survives one server), 1 on a single server.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// A node whose heartbeat is older than this is gone: it leaves the member list
    /// and the cluster-wide API stops asking it.
    #[serde(default = "default_node_lease", with = "duration_str")]
    pub node_lease: Duration,
    /// NATS unreachable (or refusing writes) for this long: this node stops taking
    /// new work (OPTIONS, new INVITEs and REGISTERs get 503) until NATS is back,
    /// rather than diverging from the cluster.
    #[serde(default = "default_nats_grace", with = "duration_str")]
    pub nats_grace: Duration,
}

fn default_replicas() -> usize {
    3
}
fn default_node_lease() -> Duration {
    Duration::from_secs(5)
}
fn default_nats_grace() -> Duration {
    // Longer than a JetStream leader election after one NATS server of three dies
    // (seen at 1-3 s here), so losing one server never holds the node.
    Duration::from_secs(5)
}

/// `[tls]`: PEM files, read at start only (a reload does not change them; paths
/// relative to the working directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1). Never logged.
    pub key: std::path::PathBuf,
    /// PEM certificates the edge trusts when it opens TLS connections (`sips:` and
    /// `;transport=tls` targets). Unset: the system's trust store.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
}

/// Named opening hours a queue can follow (`hours = "office"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    pub name: String,
    /// A tz database name (`Europe/Paris`, `UTC`).
    pub timezone: String,
    /// Weekly open spans: `mon-fri 08:00-18:00`, `sat 09:00-12:00`,
    /// `mon,wed 10:00-12:00`, `daily 00:00-24:00`, `fri 22:00-02:00` (overnight).
    #[serde(default)]
    pub open: Vec<String>,
    /// Whole local days closed (`2026-12-25`).
    #[serde(default)]
    pub closed: Vec<String>,
}

/// What a queue does with a call or chat while its hours are closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterHours {
    /// Calls: play `after_hours_announcement`, then hang up. Chats: the customer
    /// gets `after_hours_message` and the chat ends.
    Announce,
    /// Calls: the announcement, then the caller's message is recorded (mono WAV,
    /// up to `voicemail_max`, `#` or hang-up ends it) and uploaded like a recording
    /// with `"voicemail": true`. Chats: as `announce`.
    Voicemail,
    /// Send it to another queue (of the same channel).
    Queue(String),
    /// Calls: a second leg to this target (as a static route).
    Forward(SipTarget),
}

impl AfterHours {
    /// The action's name in metrics and the API: announce, voicemail, queue, forward.
    pub fn kind(&self) -> &'static str {
        match self {
            AfterHours::Announce => "announce",
            AfterHours::Voicemail => "voicemail",
            AfterHours::Queue(_) => "queue",
            AfterHours::Forward(_) => "forward",
        }
    }
}

impl std::str::FromStr for AfterHours {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "announce" => Ok(AfterHours::Announce),
            "voicemail" => Ok(AfterHours::Voicemail),
            _ => {
                if let Some(q) = s.strip_prefix("queue:") {
                    return Ok(AfterHours::Queue(q.to_string()));
                }
                if let Some(t) = s.strip_prefix("forward:") {
                    return t.parse().map(AfterHours::Forward);
                }
                Err(format!(
                    "`{s}`: expected announce, voicemail, queue:NAME or forward:SIP-URI"
                ))
            }
        }
    }
}

impl<'de> Deserialize<'de> for AfterHours {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A header of the trunk's INVITE carried as a named field of the call (CCAI
/// Platform's reserved data): shown in the API, passed to the agent's leg as
/// `X-Edge-{Field}`, sent to the agent's console, written into the recording's
/// metadata. A chat's pre-chat field of the same name is checked the same way.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservedData {
    /// `verified_customer`, `bad_actor`, `repeat_customer`, or any name (letters,
    /// digits, `_`, `-`; up to 64).
    pub field: String,
    /// The header it comes from (`X-Verified-Customer`).
    pub header: String,
    /// Longest value accepted (characters); longer ones are dropped, not cut.
    #[serde(default = "default_reserved_max")]
    pub max_length: usize,
}

fn default_reserved_max() -> usize {
    256
}

/// Why a reserved data value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservedValueError {
    #[error("longer than {0} characters")]
    TooLong(usize),
    #[error("contains a control character (CR, LF, NUL, …)")]
    Control,
    #[error("empty")]
    Empty,
}

impl ReservedData {
    /// The value, trimmed, if it is one this field accepts: not empty, at most
    /// `max_length` characters, no control characters — so it cannot break out of
    /// the header line or the JSON it is written into.
    pub fn check<'a>(&self, value: &'a str) -> Result<&'a str, ReservedValueError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(ReservedValueError::Empty);
        }
        if v.chars().count() > self.max_length {
            return Err(ReservedValueError::TooLong(self.max_length));
        }
        if v.chars().any(char::is_control) {
            return Err(ReservedValueError::Control);
        }
        Ok(v)
    }

    /// The header the agent's leg carries it in: `X-Edge-` and the field with `_`
    /// as `-`, each part capitalised (`verified_customer` → `X-Edge-Verified-Customer`).
    pub fn agent_header(&self) -> String {
        let parts: Vec<String> = self
            .field
            .split(['_', '-'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("X-Edge-{}", parts.join("-"))
    }
}

/// Attachment types the edge can recognise by content.
pub const ATTACHMENT_TYPES: [&str; 4] = ["png", "jpg", "pdf", "mp4"];

/// Web chat settings shared by all chat queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest attachment (`10MB`; B, KB, MB, GB, KiB, MiB, GiB).
    #[serde(default = "default_attachment_max", with = "crate::values::size_str")]
    pub attachment_max_size: u64,
    /// Allowed attachment types by extension: png, jpg, pdf, mp4 (the content must
    /// match the extension).
    #[serde(default = "default_attachment_types")]
    pub attachment_types: Vec<String>,
    /// How long an attachment link works.
    #[serde(default = "default_link_ttl", with = "duration_str")]
    pub attachment_link_ttl: Duration,
    /// Canned responses offered in the agent console.
    #[serde(default)]
    pub canned_responses: Vec<String>,
}

fn default_attachment_max() -> u64 {
    10_000_000
}
fn default_attachment_types() -> Vec<String> {
    ["png", "jpg", "pdf", "mp4"].map(String::from).to_vec()
}
fn default_link_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            attachment_max_size: default_attachment_max(),
            attachment_types: default_attachment_types(),
            attachment_link_ttl: default_link_ttl(),
            canned_responses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Listen addresses, `udp:IP:PORT` / `tcp:IP:PORT`.
    #[serde(default = "default_listen")]
    pub listen: Vec<ListenAddr>,
    /// Calls up at once before new INVITEs get 503 with Retry-After.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Most parties of one call's conference (customer and agent included).
    #[serde(default = "default_max_participants")]
    pub max_participants: usize,
    /// How long an agent's phone rings before the queue skips to the next agent.
    #[serde(default = "default_ring_timeout", with = "duration_str")]
    pub agent_ring_timeout: Duration,
    /// Value of the User-Agent / Server header.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// What an INVITE from a source that is no trunk gets, before any transaction
    /// exists: `refuse` (one 403 per request) or `drop` (nothing).
    #[serde(default)]
    pub strangers: Strangers,
    /// SIP messages per second one source that is no trunk may send; past that it
    /// is ignored for `rate_limit_block`. 0: no limit.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    #[serde(default = "default_rate_limit_block", with = "duration_str")]
    pub rate_limit_block: Duration,
    /// A SIP TCP connection with nothing arriving this long is closed (keep-alive
    /// pings count).
    #[serde(default = "default_tcp_idle", with = "duration_str")]
    pub tcp_idle_timeout: Duration,
    /// A message begun on a SIP TCP connection must be complete this long after its
    /// first byte, or the connection is closed.
    #[serde(default = "default_tcp_message", with = "duration_str")]
    pub tcp_message_timeout: Duration,
    /// An answered call is ended (BYE both legs) after this long. `0s`: no limit.
    #[serde(default = "default_max_call_duration", with = "duration_str")]
    pub max_call_duration: Duration,
    /// How long a draining edge (SIGTERM, `POST /api/v1/drain`) waits for its calls
    /// to end before it stops anyway.
    #[serde(default = "default_drain_timeout", with = "duration_str")]
    pub drain_timeout: Duration,
    /// Session timer interval (RFC 4028) asked of and granted to each leg of a
    /// call: a leg not refreshed within it is ended (BYE both legs). `0s`: the edge
    /// neither asks for nor grants session timers.
    #[serde(default = "default_session_expires", with = "duration_str")]
    pub session_expires: Duration,
    /// The shortest session interval the edge accepts (`Min-SE`; 422 below it).
    /// At least 90s (RFC 4028 §4).
    #[serde(default = "default_min_se", with = "duration_str")]
    pub min_se: Duration,
    /// Realm of the registrar's digest challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Digest challenges sent to a REGISTER without credentials, one
    /// WWW-Authenticate per algorithm in this order (an agent's `digest` overrides).
    #[serde(default = "default_digest")]
    pub digest: Vec<DigestAlgorithm>,
    /// Registrations shorter than this get 423 Interval Too Brief.
    #[serde(default = "default_register_min", with = "duration_str")]
    pub register_min_expires: Duration,
    /// Longer registrations are granted this long.
    #[serde(default = "default_register_max", with = "duration_str")]
    pub register_max_expires: Duration,
    /// Failed digest authentications one source may make within `auth_block`
    /// before its REGISTERs get 403 unchecked for `auth_block`. 0: no limit.
    #[serde(default = "default_auth_failures")]
    pub auth_max_failures: u32,
    #[serde(default = "default_auth_block", with = "duration_str")]
    pub auth_block: Duration,
    /// Inbound SIP TCP connections one source address may hold.
    #[serde(default = "default_tcp_per_source")]
    pub tcp_max_per_source: u32,
    /// SIP TCP connections in all (lowered at start so descriptors stay for the
    /// HTTP API and RTP).
    #[serde(default = "default_tcp_max")]
    pub tcp_max_connections: u32,
}

fn default_tcp_idle() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_tcp_message() -> Duration {
    Duration::from_secs(10)
}
fn default_max_call_duration() -> Duration {
    Duration::ZERO
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_realm() -> String {
    "edge".into()
}
fn default_digest() -> Vec<DigestAlgorithm> {
    vec![DigestAlgorithm::Md5]
}
fn default_register_min() -> Duration {
    Duration::from_secs(60)
}
fn default_register_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_auth_failures() -> u32 {
    5
}
fn default_auth_block() -> Duration {
    Duration::from_secs(60)
}
fn default_session_expires() -> Duration {
    Duration::from_secs(1800)
}
fn default_min_se() -> Duration {
    Duration::from_secs(90)
}
fn default_tcp_per_source() -> u32 {
    128
}
fn default_tcp_max() -> u32 {
    10_000
}

/// See [`SipConfig::strangers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strangers {
    #[default]
    Refuse,
    Drop,
}

fn default_rate_limit() -> u32 {
    100
}
fn default_rate_limit_block() -> Duration {
    Duration::from_secs(30)
}

fn default_listen() -> Vec<ListenAddr> {
    vec![
        "udp:127.0.0.1:5060".parse().unwrap(),
        "tcp:127.0.0.1:5060".parse().unwrap(),
    ]
}
fn default_max_calls() -> usize {
    20_000
}
fn default_max_participants() -> usize {
    10
}
fn default_ring_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_user_agent() -> String {
    "edge".to_string()
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: default_listen(),
            max_calls: default_max_calls(),
            max_participants: default_max_participants(),
            agent_ring_timeout: default_ring_timeout(),
            user_agent: default_user_agent(),
            strangers: Strangers::default(),
            rate_limit: default_rate_limit(),
            rate_limit_block: default_rate_limit_block(),
            tcp_idle_timeout: default_tcp_idle(),
            tcp_message_timeout: default_tcp_message(),
            max_call_duration: default_max_call_duration(),
            drain_timeout: default_drain_timeout(),
            session_expires: default_session_expires(),
            min_se: default_min_se(),
            realm: default_realm(),
            digest: default_digest(),
            register_min_expires: default_register_min(),
            register_max_expires: default_register_max(),
            auth_max_failures: default_auth_failures(),
            auth_block: default_auth_block(),
            tcp_max_per_source: default_tcp_per_source(),
            tcp_max_connections: default_tcp_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Address put in SDP `c=` lines and bound for RTP.
    #[serde(default = "default_media_address")]
    pub address: IpAddr,
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: PortRange,
    /// An answered call from whose parties no RTP or RTCP arrives this long is
    /// ended (BYE both legs). `0s`: never.
    #[serde(default = "default_rtp_timeout", with = "duration_str")]
    pub rtp_timeout: Duration,
    /// The same while a party is on hold (a holding phone may send nothing).
    #[serde(default = "default_rtp_hold_timeout", with = "duration_str")]
    pub rtp_hold_timeout: Duration,
    /// A browser (WebRTC) leg whose ICE and DTLS are not done this long after its
    /// SDP (or its first DTLS record) fails, and its call ends.
    #[serde(default = "default_webrtc_timeout", with = "duration_str")]
    pub webrtc_timeout: Duration,
}

fn default_webrtc_timeout() -> Duration {
    Duration::from_secs(20)
}

fn default_rtp_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_rtp_hold_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_media_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}
fn default_rtp_ports() -> PortRange {
    PortRange {
        first: 20000,
        last: 29999,
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            address: default_media_address(),
            rtp_ports: default_rtp_ports(),
            rtp_timeout: default_rtp_timeout(),
            rtp_hold_timeout: default_rtp_hold_timeout(),
            webrtc_timeout: default_webrtc_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// HTTPS (and `wss:` for /ws/sip and the chat sockets) on this address, with
    /// the `[tls]` certificate; unset: plain HTTP only.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// A request's headers must have arrived this long after the client started
    /// sending them, and a kept-alive connection is closed after this long without
    /// a new request.
    #[serde(default = "default_http_header_timeout", with = "duration_str")]
    pub header_timeout: Duration,
    /// HTTP connections (WebSockets included) open at once; more are closed at once.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: u32,
    /// Attachment uploads in progress at once; more get 503.
    #[serde(default = "default_http_uploads")]
    pub max_uploads: u32,
}

fn default_http_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}
fn default_http_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_http_max_connections() -> u32 {
    20_000
}
fn default_http_uploads() -> u32 {
    16
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            tls_listen: None,
            header_timeout: default_http_header_timeout(),
            max_connections: default_http_max_connections(),
            max_uploads: default_http_uploads(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Hard bound on how long a recording stays on local disk, uploaded or not.
    #[serde(default = "default_retention", with = "duration_str")]
    pub retention: Duration,
    /// Largest upload chunk (`50MB`; B, KB, MB, GB, KiB, MiB, GiB).
    #[serde(default = "default_chunk_size", with = "crate::values::size_str")]
    pub chunk_size: u64,
    #[serde(default)]
    pub upload: UploadConfig,
}

fn default_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_chunk_size() -> u64 {
    50_000_000
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: default_dir(),
            retention: default_retention(),
            chunk_size: default_chunk_size(),
            upload: UploadConfig::default(),
        }
    }
}

/// Where finished recordings are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadTarget {
    /// Copy into a directory (`dir`, default `{storage.dir}/archive`).
    Fs,
    /// PUT chunks to a CRM webhook (`url`).
    Http,
    /// S3-compatible object storage (`bucket`, `endpoint`, credentials).
    S3,
}

/// How the s3 target stores a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum S3Mode {
    /// One object, one multipart part per chunk.
    #[default]
    Multipart,
    /// One object per chunk (`{prefix}{id}/00000`, …), for CRMs that attach files separately.
    Split,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    #[serde(default = "default_target")]
    pub target: UploadTarget,
    /// Base URL of the http target.
    pub url: Option<String>,
    /// Bearer token for the http target; never logged.
    pub token: Option<String>,
    /// Directory of the fs target (default `{storage.dir}/archive`).
    pub dir: Option<PathBuf>,
    #[serde(default = "default_backoff_base", with = "duration_str")]
    pub backoff_base: Duration,
    #[serde(default = "default_backoff_max", with = "duration_str")]
    pub backoff_max: Duration,
    /// Attempts per upload before it is marked failed (default: unlimited within
    /// retention).
    pub max_attempts: Option<u32>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout.
    #[serde(default = "default_request_timeout", with = "duration_str")]
    pub request_timeout: Duration,
    /// s3 target: bucket, endpoint (S3-compatible servers), region, credentials
    /// (the secret is never logged), key prefix and mode.
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub mode: S3Mode,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_prefix() -> String {
    "recordings/".into()
}

fn default_target() -> UploadTarget {
    UploadTarget::Fs
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            target: default_target(),
            url: None,
            token: None,
            dir: None,
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            max_attempts: None,
            concurrency: default_concurrency(),
            request_timeout: default_request_timeout(),
            bucket: None,
            endpoint: None,
            region: default_region(),
            access_key_id: None,
            secret_access_key: None,
            prefix: default_prefix(),
            mode: S3Mode::default(),
        }
    }
}

impl std::fmt::Debug for UploadConfig {
    // The token never appears in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadConfig")
            .field("target", &self.target)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("dir", &self.dir)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_attempts", &self.max_attempts)
            .field("concurrency", &self.concurrency)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("mode", &self.mode)
            .finish()
    }
}

/// A carrier or SIP trunk allowed to send INVITEs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    /// Source networks; INVITEs from other sources get 403.
    pub sources: Vec<ipnet::IpNet>,
}

/// A static route: request-URI user part (exact, or a prefix ending in `*`) → SIP URI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub number: String,
    pub target: SipTarget,
    /// Record every call of this route (stereo WAV handed to the upload spool).
    #[serde(default)]
    pub record: bool,
    /// Played to the callee only after it answers, before the caller is connected.
    #[serde(default)]
    pub announcement: Option<PathBuf>,
    /// Played (looped) to a held party; silence when unset.
    #[serde(default)]
    pub hold_audio: Option<PathBuf>,
    /// A short beep tells the parties that a supervisor joined.
    #[serde(default)]
    pub beep_on_monitor: bool,
    /// A conference ends when its agent leaves (instead of going on with a
    /// member in the agent's place).
    #[serde(default)]
    pub conference_ends_without_agent: bool,
    /// A conference ends when its customer leaves (instead of going on while
    /// two or more parties remain).
    #[serde(default)]
    pub conference_ends_without_customer: bool,
}

/// A queue of agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub name: String,
    #[serde(default)]
    pub numbers: Vec<String>,
    pub agents: Vec<String>,
    /// How long a caller waits for an agent before 480.
    #[serde(default = "default_max_wait", with = "duration_str")]
    pub max_wait: Duration,
    /// Record every call of this queue (stereo WAV handed to the upload spool).
    #[serde(default)]
    pub record: bool,
    /// Whisper announcement: played to the agent only after it answers, before the
    /// customer is connected.
    #[serde(default)]
    pub announcement: Option<PathBuf>,
    /// Played (looped) to a held party; silence when unset.
    #[serde(default)]
    pub hold_audio: Option<PathBuf>,
    /// A short beep tells the parties that a supervisor joined.
    #[serde(default)]
    pub beep_on_monitor: bool,
    /// A conference ends when its agent leaves (instead of going on with a
    /// member in the agent's place).
    #[serde(default)]
    pub conference_ends_without_agent: bool,
    /// A conference ends when its customer leaves (instead of going on while
    /// two or more parties remain).
    #[serde(default)]
    pub conference_ends_without_customer: bool,
    /// `voice` (calls, default) or `chat` (web chats; `agents` are user names).
    #[serde(default)]
    pub channel: Channel,
    /// Chat: a customer gone this long (closed page, lost network) ends the chat.
    #[serde(default = "default_abandon_after", with = "duration_str")]
    pub abandon_after: Duration,
    /// Chat: what a returning customer (chat token from the page) gets.
    #[serde(default)]
    pub restore: RestoreMode,
    /// Chat: system message when the customer or the agent leaves.
    #[serde(default = "default_left_message")]
    pub left_message: String,
    /// Chat: system message when an agent joins (`{agent}` is replaced).
    #[serde(default = "default_joined_message")]
    pub joined_message: String,
    /// Voice: an agent that lets this many offers in a row ring out is put
    /// `not_ready` with reason `no_answer`. 0: never.
    #[serde(default = "default_max_no_answer")]
    pub max_no_answer: u32,
    /// The `[[hours]]` the queue keeps; outside them `after_hours` applies.
    #[serde(default)]
    pub hours: Option<String>,
    /// What a call or chat gets while the queue is closed (default `announce`).
    #[serde(default)]
    pub after_hours: Option<AfterHours>,
    /// Voice: played to the caller while closed (announce, voicemail).
    #[serde(default)]
    pub after_hours_announcement: Option<PathBuf>,
    /// Voice: longest voicemail message.
    #[serde(default = "default_voicemail_max", with = "duration_str")]
    pub voicemail_max: Duration,
    /// Chat: what the customer reads while closed (announce, voicemail).
    #[serde(default = "default_after_hours_message")]
    pub after_hours_message: String,
    /// Chat: whether agents may transfer a chat into this queue while it is closed.
    #[serde(default)]
    pub transfer_when_closed: bool,
}

fn default_voicemail_max() -> Duration {
    Duration::from_secs(120)
}

fn default_after_hours_message() -> String {
    "We are closed now. Please come back during our opening hours.".into()
}

fn default_max_no_answer() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Voice,
    Chat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// Always continue the chat.
    #[default]
    Restore,
    /// Continue, unless the new start differs (queue or fields): then ask.
    Prompt,
    /// End the old chat and start a new one.
    New,
}

fn default_abandon_after() -> Duration {
    Duration::from_secs(120)
}

fn default_left_message() -> String {
    "The other participant has left the conversation".into()
}

fn default_joined_message() -> String {
    "{agent} joined the conversation".into()
}

fn default_max_wait() -> Duration {
    Duration::from_secs(60)
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// A phone that does not register: where the edge calls this agent when no
    /// registration is live.
    #[serde(default)]
    pub contact: Option<SipTarget>,
    /// The digest password the agent's phones REGISTER `sip:{id}@…` with.
    #[serde(default)]
    pub password: Option<String>,
    /// Digest algorithms challenged for this agent, in order (overrides `[sip] digest`).
    #[serde(default)]
    pub digest: Option<Vec<DigestAlgorithm>>,
    /// The `[[users]]` entry that signs in to the console as this agent: one person
    /// for calls and chats (the agent's state governs chat offers too).
    #[serde(default)]
    pub user: Option<String>,
    /// After each answered call the agent is in `wrap_up` this long (no offers),
    /// then `ready` again unless it chose `not_ready`. `0s`: no wrap-up.
    #[serde(default, with = "duration_str")]
    pub wrap_up: Duration,
}

impl std::fmt::Debug for Agent {
    // The password never appears in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("contact", &self.contact)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("digest", &self.digest)
            .field("user", &self.user)
            .field("wrap_up", &self.wrap_up)
            .finish()
    }
}

/// A digest algorithm the registrar challenges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub token: String,
    /// Where the edge calls this user's phone (supervisor monitoring).
    #[serde(default)]
    pub contact: Option<SipTarget>,
    /// Chats an agent handles at once (chat queues).
    #[serde(default = "default_max_chats")]
    pub max_chats: u32,
}

fn default_max_chats() -> u32 {
    3
}

impl std::fmt::Debug for User {
    // The token never appears in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .field("contact", &self.contact)
            .finish()
    }
}
