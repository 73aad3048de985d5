//! Cluster mode (`[cluster]`): this node's link to the NATS servers that hold the
//! cluster's shared state. Without a `[cluster]` table none of this runs.
//!
//! - **Membership**: every node publishes a heartbeat ([`NodeInfo`]) on
//!   [`BEAT_SUBJECT`] (core NATS: it keeps flowing while JetStream elects a new
//!   leader) and follows everyone's; [`Members`] keeps the nodes heard from within
//!   `node_lease`. A node that stops on purpose says so on [`LEFT_SUBJECT`]; one
//!   that dies falls out after the lease.
//! - **Gate**: each heartbeat is also written into the JetStream key-value bucket
//!   [`NODES_BUCKET`] (replicated `replicas` times, entries expiring after the
//!   lease; what an operator lists with any NATS client). A write that succeeds
//!   proves this node reaches a JetStream quorum. When NATS is unreachable for
//!   `nats_grace`, or writes fail for [`gate::QUORUM_GRACE`] (too few NATS servers
//!   for a quorum), the node holds new work ([`Gate`]; OPTIONS, new INVITEs and
//!   REGISTERs get 503, so Kamailio's dispatcher sends new calls to other nodes)
//!   rather than diverge from the cluster. It starts held and joins at its first
//!   successful write.
//! - **One API**: every node answers requests of the other nodes on
//!   `edge.api.<node>` (NATS request/reply; `api::cluster` serves them), so any
//!   node lists the whole cluster's calls, chats and registrations and forwards a
//!   command to the node that owns the call or chat.
//!
//! The decisions are sans-IO ([`gate`], [`members`]); this module only moves them
//! over NATS and the clock.

pub mod chat;
pub mod claims;
pub mod gate;
#[cfg(test)]
mod gate_tests;
pub mod ledger;
pub mod members;
#[cfg(test)]
mod members_tests;
pub mod regs;

use crate::core::{CoreMsg, CoreTx};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use gate::{Failure, Gate};
use members::Members;
pub use members::NodeInfo;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The JetStream key-value bucket of node heartbeats (key: the node's name).
pub const NODES_BUCKET: &str = "edge_nodes";
/// Core NATS subject of the heartbeats ([`NodeInfo`] as JSON).
pub const BEAT_SUBJECT: &str = "edge.nodes.beat";
/// Core NATS subject on which a stopping node says it left (its name).
pub const LEFT_SUBJECT: &str = "edge.nodes.left";

/// How long a node waits for another node's answer to an API request.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The subject on which `node` answers the other nodes' API requests.
pub fn api_subject(node: &str) -> String {
    format!("edge.api.{node}")
}

/// How the edge signs in to NATS, from the servers' URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// `nats://user:password@host:port`.
    UserPassword(String, String),
    /// `nats://token@host:port`.
    Token(String),
}

/// A NATS server URL split into the URL without its credentials (what the
/// client connects to, and what may be logged) and the credentials
/// (percent-decoded). The NATS client ignores credentials in URLs; they are
/// given to it as its sign-in instead.
pub fn split_credentials(url: &str) -> (String, NatsAuth) {
    let (bare, Some(userinfo)) = control::values::nats_url_parts(url) else {
        return (url.to_string(), NatsAuth::None);
    };
    // Text that is not valid percent-encoding was not encoded: taken as written.
    let decoded = |s: &str| sip::message::percent_decode(s).unwrap_or_else(|| s.to_string());
    let auth = match userinfo.split_once(':') {
        Some((u, p)) => NatsAuth::UserPassword(decoded(u), decoded(p)),
        None => NatsAuth::Token(decoded(userinfo)),
    };
    (bare, auth)
}

/// How the node signs in to NATS, and the servers' URLs without credentials.
pub struct SignIn {
    options: async_nats::ConnectOptions,
    servers: Vec<String>,
}

/// How the node signs in to NATS ([`SignIn`]): the credentials of the URLs,
/// or the NKey seed or credentials file the configuration names (read now).
/// The error names the file and what is wrong, never its contents.
pub fn sign_in(cfg: &control::ClusterConfig) -> Result<SignIn, String> {
    // Credentials leave the URLs (the client would ignore them, and logs server
    // addresses at debug level); the configuration checked that all URLs carry
    // the same, and that there is one way of signing in.
    let mut servers = Vec::new();
    let mut auth = NatsAuth::None;
    for u in &cfg.nats {
        let (bare, a) = split_credentials(u);
        servers.push(bare);
        if a != NatsAuth::None {
            auth = a;
        }
    }
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| format!("[cluster] {key} {}: {e}", path.display()))
    };
    let options = match auth {
        NatsAuth::UserPassword(u, p) => async_nats::ConnectOptions::with_user_and_password(u, p),
        NatsAuth::Token(t) => async_nats::ConnectOptions::with_token(t),
        NatsAuth::None => match (&cfg.nats_nkey, &cfg.nats_creds) {
            (Some(path), _) => {
                let seed = read("nats_nkey", path)?;
                let seed = seed.trim();
                let user = nkeys::KeyPair::from_seed(seed)
                    .ok()
                    .filter(|k| k.public_key().starts_with('U'));
                if user.is_none() {
                    return Err(format!(
                        "[cluster] nats_nkey {}: not an NKey user seed (one line, SU…)",
                        path.display()
                    ));
                }
                async_nats::ConnectOptions::with_nkey(seed.to_string())
            }
            (None, Some(path)) => {
                let creds = read("nats_creds", path)?;
                async_nats::ConnectOptions::with_credentials(&creds).map_err(|_| {
                    format!(
                        "[cluster] nats_creds {}: not a NATS credentials file (a user JWT and its NKey seed, as nsc writes them)",
                        path.display()
                    )
                })?
            }
            (None, None) => async_nats::ConnectOptions::new(),
        },
    };
    Ok(SignIn { options, servers })
}

pub struct Cluster {
    pub node: String,
    pub client: async_nats::Client,
    members: Mutex<Members>,
    /// Heartbeats written / failed since start.
    beats_ok: AtomicU64,
    beats_failed: AtomicU64,
    /// Claims this node wrote that the claims ledger found void (a create that
    /// went through although another node's came first).
    pub claims_voided: AtomicU64,
    /// The agents' claims bucket answered (its watch is open): until then the
    /// node does not join — every queue call would wait for a claim that cannot
    /// be made (a fresh NATS cluster takes seconds before JetStream answers).
    pub claims_ready: std::sync::atomic::AtomicBool,
    /// The bucket, once created or found.
    kv: tokio::sync::OnceCell<kv::Store>,
    /// Chat on JetStream, once started.
    pub chat: std::sync::OnceLock<Arc<chat::ChatLog>>,
    /// Checks the certificates of nodes that serve chat relays over HTTPS
    /// (`[tls] ca`, else the system's trust store); `None` without `[tls]`.
    pub relay_tls: Option<tokio_rustls::TlsConnector>,
}

/// The TLS client settings of cluster mode (from `[tls]`).
pub struct ClusterTls {
    /// For chat relays to nodes serving HTTPS.
    pub relays: Arc<rustls::ClientConfig>,
    /// For `tls://` NATS servers (a refused certificate is logged: the NATS
    /// client only says "IO error").
    pub nats: Arc<rustls::ClientConfig>,
}

/// How other nodes reach this node's HTTP listeners (see [`NodeInfo`]).
#[derive(Debug, Clone)]
pub struct Advertised {
    pub http: String,
    pub https: Option<String>,
}

/// The answer of the other live nodes to one request.
pub struct Gathered {
    /// (node, its answer), in node order.
    pub answers: Vec<(String, serde_json::Value)>,
    /// Live nodes that did not answer in [`ASK_TIMEOUT`].
    pub unreachable: Vec<String>,
}

impl Cluster {
    /// Connect (in the background: an unreachable NATS does not stop the edge from
    /// starting; it starts held) and start the heartbeat and the membership watch.
    pub async fn start(
        cfg: &control::ClusterConfig,
        sign_in: SignIn,
        http: Advertised,
        tls: Option<ClusterTls>,
        core: CoreTx,
    ) -> Result<Arc<Cluster>, async_nats::ConnectError> {
        let SignIn {
            mut options,
            servers,
        } = sign_in;
        if let Some(t) = &tls {
            // `tls://` servers: their certificates are checked against `[tls] ca`
            // (plain `nats://` servers that do not ask for TLS are unaffected).
            options = options.tls_client_config(t.nats.as_ref().clone());
        }
        let client = options
            .name(format!("edge {}", cfg.node))
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(2))
            .max_reconnects(None)
            .event_callback(|e| async move {
                match e {
                    async_nats::Event::Connected => info!("NATS connected"),
                    async_nats::Event::Disconnected => warn!("NATS disconnected"),
                    // Why a connection attempt failed (refused, TLS, auth): the
                    // operator's only clue while the node is held. Each attempt
                    // reports it; each distinct one is said once a minute.
                    e @ (async_nats::Event::ClientError(_) | async_nats::Event::ServerError(_)) => {
                        let text = e.to_string();
                        if crate::throttle::warn_now(&format!("NATS connection: {text}")) {
                            warn!(error = %text, "NATS connection");
                        }
                    }
                    other => debug!(event = %other, "NATS event"),
                }
            })
            .connect(servers.clone())
            .await?;
        let cluster = Arc::new(Cluster {
            node: cfg.node.clone(),
            client,
            members: Mutex::new(Members::new(cfg.node_lease)),
            beats_ok: AtomicU64::new(0),
            beats_failed: AtomicU64::new(0),
            claims_voided: AtomicU64::new(0),
            claims_ready: std::sync::atomic::AtomicBool::new(false),
            kv: tokio::sync::OnceCell::new(),
            chat: std::sync::OnceLock::new(),
            relay_tls: tls.map(|t| tokio_rustls::TlsConnector::from(t.relays)),
        });
        info!(node = %cfg.node, nats = ?servers, "cluster mode: joining");
        let claims = claims::start(cluster.clone(), cfg, core.clone());
        if core.send(CoreMsg::AttachClaims(claims)).await.is_err() {
            return Err(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::Io,
                std::io::Error::other("the SIP core stopped"),
            ));
        }
        let regs = regs::start(cluster.clone(), cfg, core.clone());
        if core.send(CoreMsg::AttachRegs(regs)).await.is_err() {
            return Err(async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::Io,
                std::io::Error::other("the SIP core stopped"),
            ));
        }
        tokio::spawn(heartbeat(cluster.clone(), cfg.clone(), http, core));
        let beats = cluster
            .client
            .subscribe("edge.nodes.*")
            .await
            .map_err(|e| {
                async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e)
            })?;
        tokio::spawn(follow_members(cluster.clone(), beats));
        Ok(cluster)
    }

    async fn bucket(&self, cfg: &control::ClusterConfig) -> Result<&kv::Store, String> {
        self.kv
            .get_or_try_init(|| async {
                let js = jetstream::new(self.client.clone());
                key_value(
                    &js,
                    NODES_BUCKET,
                    "edge cluster: node heartbeats",
                    cfg.node_lease,
                    cfg.replicas,
                )
                .await
                .map_err(|e| format!("bucket {NODES_BUCKET}: {e}"))
            })
            .await
    }

    /// The live nodes (this one included once its heartbeat was read back).
    pub fn live(&self) -> Vec<NodeInfo> {
        self.members.lock().live(Instant::now())
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Ask one node; `None` when it does not answer in time.
    pub async fn ask(&self, node: &str, req: &serde_json::Value) -> Option<serde_json::Value> {
        let body = serde_json::to_vec(req).ok()?;
        let asked = self.client.request(api_subject(node), body.into());
        match tokio::time::timeout(ASK_TIMEOUT, asked).await {
            Ok(Ok(m)) => serde_json::from_slice(&m.payload).ok(),
            Ok(Err(e)) => {
                debug!(%node, error = %e, "cluster request failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Ask every other live node at once.
    pub async fn ask_others(&self, req: &serde_json::Value) -> Gathered {
        let others: Vec<String> = self
            .live()
            .into_iter()
            .map(|i| i.node)
            .filter(|n| *n != self.node)
            .collect();
        let answers = futures_util::future::join_all(others.iter().map(|n| self.ask(n, req))).await;
        let mut g = Gathered {
            answers: Vec::new(),
            unreachable: Vec::new(),
        };
        for (node, a) in others.into_iter().zip(answers) {
            match a {
                Some(v) => g.answers.push((node, v)),
                None => g.unreachable.push(node),
            }
        }
        g
    }

    /// Leave on purpose (a stop): the other nodes drop this one at once.
    pub async fn leave(&self) {
        let _ = self
            .client
            .publish(LEFT_SUBJECT, self.node.clone().into())
            .await;
        if let Some(kv) = self.kv.get() {
            let left = tokio::time::timeout(Duration::from_secs(2), kv.delete(&self.node)).await;
            match left {
                Ok(Ok(())) => info!(node = %self.node, "left the cluster"),
                _ => {
                    warn!(node = %self.node, "could not leave the cluster cleanly: the others drop this node after node_lease")
                }
            }
        }
        // Not forever: NATS may be gone (a flush waits for a reconnection).
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
    }

    /// Prometheus lines of the cluster gauges and counters.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let live = self.live();
        let refusing = live.iter().filter(|i| i.refusing).count();
        let _ = write!(
            out,
            "# HELP edge_cluster_nodes Live nodes of the cluster as this node sees them.\n\
             # TYPE edge_cluster_nodes gauge\nedge_cluster_nodes {}\n\
             # HELP edge_cluster_nodes_refusing Live nodes that take no new work (draining or held).\n\
             # TYPE edge_cluster_nodes_refusing gauge\nedge_cluster_nodes_refusing {}\n\
             # HELP edge_cluster_calls Calls up on all live nodes at their last heartbeat.\n\
             # TYPE edge_cluster_calls gauge\nedge_cluster_calls {}\n\
             # HELP edge_cluster_nats_connected 1 while this node is connected to a NATS server.\n\
             # TYPE edge_cluster_nats_connected gauge\nedge_cluster_nats_connected {}\n\
             # HELP edge_cluster_heartbeats_total Heartbeats this node wrote, by outcome.\n\
             # TYPE edge_cluster_heartbeats_total counter\n\
             edge_cluster_heartbeats_total{{outcome=\"ok\"}} {}\n\
             edge_cluster_heartbeats_total{{outcome=\"failed\"}} {}\n\
             # HELP edge_cluster_claims_voided_total Agent claims this node wrote that came second in a server-side race (treated as taken).\n\
             # TYPE edge_cluster_claims_voided_total counter\nedge_cluster_claims_voided_total {}\n",
            live.len(),
            refusing,
            live.iter().map(|i| i.calls).sum::<usize>(),
            self.connected() as u8,
            self.beats_ok.load(Ordering::Relaxed),
            self.beats_failed.load(Ordering::Relaxed),
            self.claims_voided.load(Ordering::Relaxed),
        );
        if let Some(chat) = self.chat.get() {
            chat.render_metrics(out);
            crate::ws::relay::render_metrics(out);
        }
    }
}

/// A JetStream key-value bucket (one value per key, in memory), made if missing.
///
/// The stream is made here with the key-value conventions rather than by
/// `create_key_value`, which first reads the account's info and cannot parse
/// nats-server 2.9's answer (it lacks the `reserved_*` fields 2.10 added).
///
/// Without direct gets: a direct get may be answered by a replica that has not
/// applied the last write yet, and a claim (`create`) of an agent just released
/// reads the key after its first attempt fails — it must see the release. Reads
/// go to the stream's leader instead.
pub(crate) async fn key_value(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, String> {
    key_value_on(
        js,
        bucket,
        description,
        max_age,
        replicas,
        jetstream::stream::StorageType::Memory,
    )
    .await
}

/// [`key_value`] on the given storage (chat records are kept on file).
pub(crate) async fn key_value_on(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
    storage: jetstream::stream::StorageType,
) -> Result<kv::Store, String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: false,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(bucket).await.map_err(|e| e.to_string())
}

/// Write this node's heartbeat every `tick`, feed the gate, and hold or release
/// the SIP core when the gate says so.
async fn heartbeat(c: Arc<Cluster>, cfg: control::ClusterConfig, http: Advertised, core: CoreTx) {
    let tick = (cfg.node_lease / 4)
        .min(cfg.nats_grace / 2)
        .max(Duration::from_millis(100));
    let write_timeout = cfg
        .nats_grace
        .clamp(Duration::from_millis(500), Duration::from_secs(2));
    let mut gate = Gate::new(cfg.nats_grace);
    let mut last_error = String::new();
    let mut server = String::new();
    let mut joined = false;
    let mut rank = (0, 1);
    let mut remote_heads = std::collections::HashMap::new();
    let mut nodes: Vec<(String, std::net::SocketAddr)> = Vec::new();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(stats) = core.ask(CoreMsg::Stats).await else {
            return; // the core stopped: so does the edge
        };
        let Some(local_heads) = core.ask(CoreMsg::QueueHeads).await else {
            return;
        };
        let info = NodeInfo {
            node: c.node.clone(),
            sip: cfg.advertise_sip.to_string(),
            http: http.http.clone(),
            https: http.https.clone(),
            calls: stats.active_calls,
            refusing: stats.draining || stats.held,
            heads: local_heads
                .into_iter()
                .map(|(q, call, waited)| (q, (call, waited.as_millis() as u64)))
                .collect(),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        let outcome = if !c.connected() {
            Err((
                Failure::Unreachable,
                "not connected to any NATS server".to_string(),
            ))
        } else {
            let on = c.client.server_info();
            if on.server_name != server {
                info!(server = %on.server_name, port = on.port, "cluster: on NATS server");
                server = on.server_name;
            }
            if let Err(e) = c.client.publish(BEAT_SUBJECT, body.clone().into()).await {
                debug!(error = %e, "heartbeat not published");
            }
            let write = async {
                let kv = c.bucket(&cfg).await?;
                kv.put(&c.node, body.into())
                    .await
                    .map_err(|e| format!("heartbeat: {e}"))
            };
            match tokio::time::timeout(write_timeout, write).await {
                Ok(r) => r.map(|_| ()).map_err(|e| (Failure::NoQuorum, e)),
                Err(_) => Err((
                    Failure::NoQuorum,
                    "heartbeat not acknowledged in time".to_string(),
                )),
            }
        };
        let now = Instant::now();
        match outcome {
            Ok(()) => {
                c.beats_ok.fetch_add(1, Ordering::Relaxed);
                if joined || c.claims_ready.load(Ordering::Relaxed) {
                    gate.ok(now);
                }
                last_error.clear();
            }
            Err((why, e)) => {
                c.beats_failed.fetch_add(1, Ordering::Relaxed);
                if e != last_error {
                    warn!(error = %e, "cluster heartbeat failed");
                    last_error = e;
                }
                gate.failed(now, why);
            }
        }
        // The other nodes' oldest waiting calls: this node's younger ones let
        // them go first.
        let heads = c.members.lock().heads(now, &c.node, &remote_heads);
        if heads != remote_heads {
            remote_heads = heads.clone();
            if core.send(CoreMsg::RemoteHeads(heads)).await.is_err() {
                return;
            }
        }
        // This node's place among the live nodes: the agents it offers first.
        let live = c.live();
        let r = (
            live.iter().position(|i| i.node == c.node).unwrap_or(0),
            live.len().max(1),
        );
        if r != rank {
            rank = r;
            debug!(rank = r.0, nodes = r.1, "cluster: offer rank");
            if core.send(CoreMsg::ClaimRank(r.0, r.1)).await.is_err() {
                return;
            }
        }
        // The live nodes' SIP addresses, for the node hop.
        let addrs: Vec<(String, std::net::SocketAddr)> = live
            .iter()
            .filter_map(|i| Some((i.node.clone(), i.sip.parse().ok()?)))
            .collect();
        if addrs != nodes {
            nodes = addrs.clone();
            let msg = CoreMsg::ClusterNodes {
                me: cfg.advertise_sip,
                nodes: addrs,
            };
            if core.send(msg).await.is_err() {
                return;
            }
        }
        if let Some(held) = gate.poll(now) {
            if held && !joined {
                info!(node = %c.node, "cluster: new work refused until this node's first heartbeat reaches NATS and its claims bucket answers");
            } else if held {
                warn!(node = %c.node, error = %last_error, "cluster: NATS unreachable, holding new work (OPTIONS 503)");
            } else {
                joined = true;
                info!(node = %c.node, "cluster: joined, taking new work");
            }
            if core.send(CoreMsg::HoldNewWork(held)).await.is_err() {
                return;
            }
        }
    }
}

/// Follow the heartbeats and leavings into [`Members`] (the client subscribes
/// again by itself after a reconnect).
async fn follow_members(c: Arc<Cluster>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        if m.subject.as_str() == BEAT_SUBJECT {
            match serde_json::from_slice::<NodeInfo>(&m.payload) {
                Ok(info) => c.members.lock().seen(Instant::now(), info),
                Err(_) => warn!("cluster: unreadable heartbeat ignored"),
            }
        } else if m.subject.as_str() == LEFT_SUBJECT {
            let node = String::from_utf8_lossy(&m.payload).into_owned();
            info!(%node, "cluster: node left");
            c.members.lock().left(&node);
        }
    }
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
