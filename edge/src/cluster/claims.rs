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
use tracing::{debug, info, warn};

/// The JetStream key-value bucket of agents' claims.
pub const CLAIMS_BUCKET: &str = "edge_claims";

/// How long a claim, refresh or release may take before it counts as failed.
const ASK: Duration = Duration::from_secs(2);

/// What the SIP core asks of the cluster.
#[derive(Debug)]
pub enum ClaimReq {
    Claim { call: CallId, agent: String },
    Release { agent: String },
}

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
    let bucket = Arc::new(tokio::sync::OnceCell::new());
    tokio::spawn(serve(
        c.clone(),
        cfg.replicas,
        bucket.clone(),
        core.clone(),
        rx,
    ));
    tokio::spawn(watch(c, cfg.replicas, bucket, core));
    tx
}

type Bucket = Arc<tokio::sync::OnceCell<kv::Store>>;

async fn store(c: &Cluster, replicas: usize, b: &Bucket) -> Result<kv::Store, String> {
    b.get_or_try_init(|| async {
        let js = async_nats::jetstream::new(c.client.clone());
        super::key_value(
            &js,
            CLAIMS_BUCKET,
            "edge cluster: which node holds each agent",
            CLAIM_LEASE,
            replicas,
        )
        .await
    })
    .await
    .cloned()
}

async fn serve(
    c: Arc<Cluster>,
    replicas: usize,
    bucket: Bucket,
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
                        let kv = store(&c, replicas, &bucket).await.map_err(|e| (false, e))?;
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
                        let kv = store(&c, replicas, &bucket).await?;
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
            },
            _ = refresh.tick() => {
                let Ok(kv) = store(&c, replicas, &bucket).await else { continue };
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

/// Follow the other nodes' claims. A watch with no event for a third of the lease
/// is made again: after a NATS server change it may be stale, and a fresh one
/// delivers the current claims again (harmless: they only extend the skips).
async fn watch(c: Arc<Cluster>, replicas: usize, bucket: Bucket, core: CoreTx) {
    loop {
        let w = match store(&c, replicas, &bucket).await {
            Ok(kv) => kv.watch_all().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut w = match w {
            Ok(w) => w,
            Err(e) => {
                debug!(error = %e, "claims watch not ready");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
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
                    info!(%agent, "agent released by another node");
                    CoreMsg::ClaimGone { agent }
                }
            };
            if core.send(msg).await.is_err() {
                return;
            }
        }
    }
}
