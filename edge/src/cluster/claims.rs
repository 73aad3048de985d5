//! The driver of agents' claims (the decisions are the B2BUA's, `b2bua::claims`):
//! a claim is a key of the JetStream key-value bucket [`CLAIMS_BUCKET`], one per
//! agent (its id in hex, so any id is a valid key), whose value names the node.
//!
//! - **claim**: `create` — a compare-and-set on the key's revision that succeeds
//!   only when no node holds the agent (no key, or a deleted one). Exists: taken.
//!   No answer in [`ASK`]: failed (the call waits for the next queue retry).
//! - **refresh**: every third of [`CLAIM_LEASE`], `update` with the revision this
//!   node wrote last; the bucket drops a key not written for a lease, so a node
//!   that dies loses its claims after at most one lease. A refresh refused for a
//!   wrong revision means another node took the agent (ours had lapsed).
//! - **release**: `delete` expecting this node's revision.
//! - **watch**: other nodes' claims and releases reach the B2BUA
//!   (`claim_elsewhere`, `claim_released_elsewhere`).
//!
//! - **shared states**: what each agent chose (ready, not ready with its reason,
//!   signed out) and since when it is idle live in the bucket [`AGENTS_BUCKET`]
//!   (key: the agent's id in hex); a node writes a value that differs from what
//!   the bucket has, and every other node applies it (`agent_shared`), so an agent
//!   is one person in the cluster and "longest idle" is the cluster's.
//!
//! Requests are carried out one at a time, in the order the core sent them, so a
//! release and a new claim of the same agent cannot cross.

use super::Cluster;
use crate::core::{CoreMsg, CoreTx};
use async_nats::jetstream::kv;
use b2bua::{CallId, ClaimResult, CLAIM_LEASE};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// The JetStream key-value bucket of agents' claims.
pub const CLAIMS_BUCKET: &str = "edge_claims";
/// The JetStream key-value bucket of agents' chosen states and idle times.
pub const AGENTS_BUCKET: &str = "edge_agents";

/// How long a claim, refresh or release may take before it counts as failed.
const ASK: Duration = Duration::from_secs(2);

/// What the SIP core asks of the cluster.
#[derive(Debug)]
pub enum ClaimReq {
    Claim {
        call: CallId,
        agent: String,
    },
    Release {
        agent: String,
    },
    Share {
        agent: String,
        choice: b2bua::Choice,
        idle_since_ms: u64,
    },
}

/// An agent's shared state as JSON (without the writing node).
fn state_json(choice: &b2bua::Choice, idle_since_ms: u64) -> serde_json::Value {
    let (state, reason) = match choice {
        b2bua::Choice::Ready => ("ready", None),
        b2bua::Choice::NotReady(r) => ("not_ready", Some(r.as_str())),
        b2bua::Choice::SignedOut => ("logged_out", None),
    };
    serde_json::json!({ "state": state, "reason": reason, "idle_since_ms": idle_since_ms })
}

fn state_of(v: &serde_json::Value) -> Option<(b2bua::Choice, u64)> {
    let choice = b2bua::parse_choice(v["state"].as_str()?, v["reason"].as_str()).ok()?;
    Some((choice, v["idle_since_ms"].as_u64()?))
}

/// What this node last wrote or read per agent (so it writes only changes).
type Known = Arc<parking_lot::Mutex<HashMap<String, serde_json::Value>>>;

fn key(agent: &str) -> String {
    hex::encode(agent.as_bytes())
}

fn agent_of(key: &str) -> Option<String> {
    String::from_utf8(hex::decode(key).ok()?).ok()
}

/// Start the claims driver; the core sends its requests on the returned channel.
pub fn start(
    c: Arc<Cluster>,
    cfg: &control::ClusterConfig,
    core: CoreTx,
) -> mpsc::UnboundedSender<ClaimReq> {
    let (tx, rx) = mpsc::unbounded_channel();
    let claims = Bucket::new(CLAIMS_BUCKET, cfg.replicas);
    let agents = Bucket::new(AGENTS_BUCKET, cfg.replicas);
    let known = Known::default();
    tokio::spawn(serve(
        c.clone(),
        claims.clone(),
        agents.clone(),
        known.clone(),
        core.clone(),
        rx,
    ));
    tokio::spawn(watch(c.clone(), claims, core.clone()));
    tokio::spawn(watch_states(c, agents, known, core));
    tx
}

/// A bucket made (or found) on first use.
#[derive(Clone)]
struct Bucket {
    name: &'static str,
    replicas: usize,
    cell: Arc<tokio::sync::OnceCell<kv::Store>>,
}

impl Bucket {
    fn new(name: &'static str, replicas: usize) -> Bucket {
        Bucket {
            name,
            replicas,
            cell: Arc::default(),
        }
    }

    async fn store(&self, c: &Cluster) -> Result<kv::Store, String> {
        self.cell
            .get_or_try_init(|| async {
                let js = async_nats::jetstream::new(c.client.clone());
                // Claims lapse a lease after their last write; states stay.
                let (what, max_age) = if self.name == CLAIMS_BUCKET {
                    ("edge cluster: which node holds each agent", CLAIM_LEASE)
                } else {
                    (
                        "edge cluster: agents' chosen states and idle times",
                        Duration::ZERO,
                    )
                };
                super::key_value(&js, self.name, what, max_age, self.replicas).await
            })
            .await
            .cloned()
    }
}

async fn serve(
    c: Arc<Cluster>,
    bucket: Bucket,
    agents: Bucket,
    known: Known,
    core: CoreTx,
    mut rx: mpsc::UnboundedReceiver<ClaimReq>,
) {
    // Agent → the revision this node wrote last.
    let mut held: HashMap<String, u64> = HashMap::new();
    let value: bytes::Bytes = serde_json::to_vec(&serde_json::json!({ "node": c.node }))
        .unwrap_or_default()
        .into();
    let mut refresh = tokio::time::interval(CLAIM_LEASE / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            req = rx.recv() => match req {
                None => return,
                Some(ClaimReq::Claim { call, agent }) => {
                    let attempt = async {
                        let kv = bucket.store(&c).await.map_err(|e| (false, e))?;
                        kv.create(key(&agent), value.clone()).await.map_err(|e| {
                            (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())
                        })
                    };
                    let result = match tokio::time::timeout(ASK, attempt).await {
                        Ok(Ok(rev)) => {
                            held.insert(agent.clone(), rev);
                            debug!(%agent, rev, "agent claimed");
                            ClaimResult::Granted
                        }
                        Ok(Err((true, _))) => ClaimResult::Taken,
                        Ok(Err((false, e))) => {
                            warn!(%agent, error = %e, "agent claim failed");
                            ClaimResult::Failed
                        }
                        Err(_) => {
                            warn!(%agent, "agent claim not answered in time");
                            ClaimResult::Failed
                        }
                    };
                    if core.send(CoreMsg::ClaimResult { call, agent, result }).await.is_err() {
                        return;
                    }
                }
                Some(ClaimReq::Release { agent }) => {
                    let Some(rev) = held.remove(&agent) else { continue };
                    let release = async {
                        let kv = bucket.store(&c).await?;
                        kv.delete_expect_revision(key(&agent), Some(rev))
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match tokio::time::timeout(ASK, release).await {
                        Ok(Ok(())) => debug!(%agent, "agent released"),
                        Ok(Err(e)) => warn!(%agent, error = %e, "agent release failed: it lapses after the lease"),
                        Err(_) => warn!(%agent, "agent release not answered: it lapses after the lease"),
                    }
                }
                Some(ClaimReq::Share { agent, choice, idle_since_ms }) => {
                    let v = state_json(&choice, idle_since_ms);
                    if known.lock().get(&agent) == Some(&v) {
                        continue;
                    }
                    known.lock().insert(agent.clone(), v.clone());
                    let mut body = v;
                    body["node"] = serde_json::Value::from(c.node.clone());
                    let write = async {
                        let kv = agents.store(&c).await?;
                        kv.put(key(&agent), serde_json::to_vec(&body).unwrap_or_default().into())
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match tokio::time::timeout(ASK, write).await {
                        Ok(Ok(_)) => debug!(%agent, "agent state shared"),
                        Ok(Err(e)) => {
                            known.lock().remove(&agent);
                            warn!(%agent, error = %e, "agent state not shared");
                        }
                        Err(_) => {
                            known.lock().remove(&agent);
                            warn!(%agent, "agent state not shared in time");
                        }
                    }
                }
            },
            _ = refresh.tick() => {
                let Ok(kv) = bucket.store(&c).await else { continue };
                let agents: Vec<(String, u64)> = held.iter().map(|(a, r)| (a.clone(), *r)).collect();
                for (agent, rev) in agents {
                    let update = kv.update(key(&agent), value.clone(), rev);
                    match tokio::time::timeout(ASK, update).await {
                        Ok(Ok(new)) => {
                            held.insert(agent, new);
                        }
                        Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            warn!(%agent, "claim lost: another node holds the agent now");
                            held.remove(&agent);
                            let _ = core.send(CoreMsg::ClaimSeen { agent }).await;
                        }
                        Ok(Err(e)) => warn!(%agent, error = %e, "claim refresh failed"),
                        Err(_) => warn!(%agent, "claim refresh not answered in time"),
                    }
                }
            }
        }
    }
}

/// A watch of every key of `bucket` that first delivers each key's current value
/// (`watch_all` would deliver only changes made after it), retried until NATS
/// gives one.
async fn open_watch(c: &Cluster, bucket: &Bucket) -> kv::Watch {
    loop {
        let w = match bucket.store(c).await {
            Ok(kv) => kv.watch_with_history(">").await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match w {
            Ok(w) => return w,
            Err(e) => {
                debug!(bucket = bucket.name, error = %e, "watch not ready");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Follow the other nodes' claims. A watch with no event for a third of the lease
/// is made again: after a NATS server change it may be stale, and a fresh one
/// delivers the current claims again (harmless: they only extend the skips).
async fn watch(c: Arc<Cluster>, bucket: Bucket, core: CoreTx) {
    loop {
        let mut w = open_watch(&c, &bucket).await;
        loop {
            let e = match tokio::time::timeout(CLAIM_LEASE / 3, w.next()).await {
                Ok(Some(Ok(e))) => e,
                _ => break,
            };
            let Some(agent) = agent_of(&e.key) else {
                continue;
            };
            let msg = match e.operation {
                kv::Operation::Put => {
                    let node = serde_json::from_slice::<serde_json::Value>(&e.value)
                        .ok()
                        .and_then(|v| v["node"].as_str().map(str::to_string));
                    if node.as_deref() == Some(c.node.as_str()) {
                        continue;
                    }
                    CoreMsg::ClaimSeen { agent }
                }
                kv::Operation::Delete | kv::Operation::Purge => {
                    // (This node's own releases come here too: a delete marker
                    // names no node. The B2BUA ignores agents it does not skip.)
                    debug!(%agent, "agent released");
                    CoreMsg::ClaimGone { agent }
                }
            };
            if core.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// Follow the agents' shared states: another node's change reaches the B2BUA. A
/// fresh watch (at start, after a reconnect) delivers every agent's current state,
/// so a node that starts late learns them.
async fn watch_states(c: Arc<Cluster>, bucket: Bucket, known: Known, core: CoreTx) {
    loop {
        let mut w = open_watch(&c, &bucket).await;
        loop {
            let e = match tokio::time::timeout(CLAIM_LEASE, w.next()).await {
                Ok(Some(Ok(e))) => e,
                _ => break,
            };
            if e.operation != kv::Operation::Put {
                continue;
            }
            let (Some(agent), Ok(mut v)) = (
                agent_of(&e.key),
                serde_json::from_slice::<serde_json::Value>(&e.value),
            ) else {
                continue;
            };
            let node = v
                .as_object_mut()
                .and_then(|o| o.remove("node"))
                .and_then(|n| n.as_str().map(str::to_string));
            {
                let mut k = known.lock();
                if k.get(&agent) == Some(&v) {
                    continue;
                }
                k.insert(agent.clone(), v.clone());
            }
            if node.as_deref() == Some(c.node.as_str()) {
                continue;
            }
            let Some((choice, idle_since_ms)) = state_of(&v) else {
                warn!(%agent, "unreadable shared agent state ignored");
                continue;
            };
            let msg = CoreMsg::AgentShared {
                agent,
                choice,
                idle_since_ms,
            };
            if core.send(msg).await.is_err() {
                return;
            }
        }
    }
}
