//! Registrations shared across the cluster: each node writes the bindings it
//! holds into the JetStream key-value bucket [`REGS_BUCKET`] (file-backed,
//! R`replicas`), one key per agent and node (`{agent in hex}.{node in hex}`), and
//! follows the other nodes' keys. A binding that came through a proxy carries its
//! Path (RFC 3327): any node calls it through that proxy, so a queue call on node
//! A reaches an agent whose phone registered through Kamailio to node B. A binding
//! without a Path lives on its node's flow (a TCP connection, a NAT's UDP mapping)
//! and is called only by that node.
//!
//! Writes are coalesced per agent (the latest set wins) and retried every second
//! until stored. At attach the node writes every binding it holds and deletes its
//! keys for agents it no longer holds (bindings that expired while it was down).
//! Readers ignore expired bindings; a dead node's bindings with a Path stay
//! callable until they expire or the phone registers again elsewhere.

use super::Cluster;
use crate::core::{binding_from_row, binding_row, CoreMsg, CoreTx};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The JetStream key-value bucket of agents' registrations.
pub const REGS_BUCKET: &str = "edge_registrations";

/// How long one write may take before it is retried.
const WRITE: Duration = Duration::from_secs(2);
/// Writes in flight at once.
const IN_FLIGHT: usize = 64;

/// What the SIP core hands over.
#[derive(Debug)]
pub enum Update {
    /// Everything this node holds (first, at attach): this node's keys of other
    /// agents are left over from before and go.
    All(Vec<(String, Vec<b2bua::Binding>)>),
    /// `agent`'s bindings on this node now (none: it has none).
    Set(String, Vec<b2bua::Binding>),
}

fn key(agent: &str, node: &str) -> String {
    format!("{}.{}", hex::encode(agent), hex::encode(node))
}

/// (agent, node) of a key.
fn parse_key(key: &str) -> Option<(String, String)> {
    let (a, n) = key.split_once('.')?;
    let text = |h: &str| String::from_utf8(hex::decode(h).ok()?).ok();
    Some((text(a)?, text(n)?))
}

fn millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(0)
}

/// A node's bindings of one agent as stored. A binding on this node's own flow
/// (no Path) gets one naming this node (`advertise`): other nodes call the phone
/// through it (the node hop). A browser's (a SIP WebSocket) too: the calling
/// node offers it WebRTC media of its own, and only the signalling goes through
/// this node.
pub fn encode(node: &str, advertise: SocketAddr, bindings: &[b2bua::Binding]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = bindings
        .iter()
        .map(|b| {
            let mut r = binding_row(b);
            if r.path.is_empty() {
                r.path = vec![b2bua::hop_path(advertise, &b.agent, b.flow)];
            }
            serde_json::json!({
                "contact": r.contact,
                "transport": r.transport,
                "local": r.local,
                "remote": r.remote,
                "expires_ms": millis(r.expires),
                "call_id": r.call_id,
                "cseq": r.cseq,
                "user_agent": r.user_agent,
                "path": r.path,
            })
        })
        .collect();
    serde_json::json!({ "node": node, "bindings": list })
}

/// The bindings of a stored value (unreadable ones are skipped).
pub fn decode(agent: &str, v: &serde_json::Value) -> Vec<b2bua::Binding> {
    let Some(list) = v["bindings"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|b| {
            let s = |k: &str| b[k].as_str().map(str::to_string);
            let row = storage::registrations::Row {
                agent: agent.to_string(),
                contact: s("contact")?,
                transport: s("transport")?,
                local: s("local")?,
                remote: s("remote")?,
                expires: UNIX_EPOCH + Duration::from_millis(b["expires_ms"].as_u64()?),
                call_id: s("call_id")?,
                cseq: u32::try_from(b["cseq"].as_u64()?).ok()?,
                user_agent: s("user_agent"),
                path: b["path"]
                    .as_array()
                    .map(|p| {
                        p.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            binding_from_row(row)
        })
        .collect()
}

/// Start sharing; the core sends [`Update::All`] and then every change of its
/// bindings on the returned channel.
pub fn start(
    c: Arc<Cluster>,
    cfg: &control::ClusterConfig,
    core: CoreTx,
) -> mpsc::UnboundedSender<Update> {
    let (tx, rx) = mpsc::unbounded_channel();
    let store: Arc<tokio::sync::OnceCell<kv::Store>> = Arc::default();
    let replicas = cfg.replicas;
    tokio::spawn(write(c.clone(), store.clone(), cfg.clone(), rx));
    tokio::spawn(watch(c, store, replicas, core));
    tx
}

async fn bucket(
    c: &Cluster,
    cell: &tokio::sync::OnceCell<kv::Store>,
    replicas: usize,
) -> Result<kv::Store, String> {
    cell.get_or_try_init(|| async {
        let js = jetstream::new(c.client.clone());
        super::key_value_on(
            &js,
            REGS_BUCKET,
            "edge cluster: agents' registrations, per node",
            Duration::ZERO,
            replicas,
            jetstream::stream::StorageType::File,
        )
        .await
    })
    .await
    .cloned()
}

/// Write one agent's bindings (none: delete the key).
async fn put(
    kv: &kv::Store,
    node: &str,
    advertise: SocketAddr,
    agent: &str,
    bindings: &[b2bua::Binding],
) -> bool {
    let k = key(agent, node);
    let value = encode(node, advertise, bindings);
    let empty = value["bindings"].as_array().is_none_or(|l| l.is_empty());
    let done = async {
        if empty {
            kv.delete(&k).await.map_err(|e| e.to_string())
        } else {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            kv.put(&k, body.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    match tokio::time::timeout(WRITE, done).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            debug!(%agent, error = %e, "registration not shared yet");
            false
        }
        Err(_) => false,
    }
}

async fn write(
    c: Arc<Cluster>,
    cell: Arc<tokio::sync::OnceCell<kv::Store>>,
    cfg: control::ClusterConfig,
    mut rx: mpsc::UnboundedReceiver<Update>,
) {
    let (node, replicas, advertise) = (c.node.clone(), cfg.replicas, cfg.advertise_sip);
    let mut pending: HashMap<String, Vec<b2bua::Binding>> = HashMap::new();
    // Set by `All`: this node's keys of agents it does not hold are to go.
    let mut sweep = false;
    let mut failing = false;
    let take = |u: Update, pending: &mut HashMap<_, _>, sweep: &mut bool| match u {
        Update::All(all) => {
            pending.extend(all);
            *sweep = true;
        }
        Update::Set(agent, b) => {
            pending.insert(agent, b);
        }
    };
    loop {
        if failing {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(u)) => take(u, &mut pending, &mut sweep),
                Ok(None) => return,
                Err(_) => {}
            }
        } else if pending.is_empty() && !sweep {
            match rx.recv().await {
                Some(u) => take(u, &mut pending, &mut sweep),
                None => return,
            }
        }
        while let Ok(u) = rx.try_recv() {
            take(u, &mut pending, &mut sweep);
        }
        let kv = match bucket(&c, &cell, replicas).await {
            Ok(kv) => kv,
            Err(e) => {
                debug!(error = %e, "registrations bucket not ready");
                failing = true;
                continue;
            }
        };
        if sweep {
            match own_keys(&kv, &node).await {
                Ok(keys) => {
                    let gone = keys.iter().filter(|a| !pending.contains_key(*a)).count();
                    if gone > 0 {
                        info!(
                            gone,
                            "cluster: removing registrations this node no longer holds"
                        );
                    }
                    for agent in keys {
                        pending.entry(agent).or_default();
                    }
                    sweep = false;
                }
                Err(e) => {
                    debug!(error = %e, "registrations bucket not listed yet");
                    failing = true;
                    continue;
                }
            }
        }
        let batch: Vec<(String, Vec<b2bua::Binding>)> = pending.drain().collect();
        let n = batch.len();
        let results: Vec<(String, Vec<b2bua::Binding>, bool)> = futures_util::stream::iter(batch)
            .map(|(agent, b)| {
                let (kv, node) = (&kv, &node);
                async move {
                    let ok = put(kv, node, advertise, &agent, &b).await;
                    (agent, b, ok)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut failed = 0;
        for (agent, b, ok) in results {
            if !ok {
                failed += 1;
                // A newer set that arrived meanwhile wins.
                pending.entry(agent).or_insert(b);
            }
        }
        if failed > 0 {
            warn!(
                failed,
                of = n,
                "registrations not shared with the cluster yet: retrying"
            );
        }
        failing = failed > 0;
    }
}

/// The agents this node has keys for.
async fn own_keys(kv: &kv::Store, node: &str) -> Result<Vec<String>, String> {
    let suffix = format!(".{}", hex::encode(node));
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| e.to_string())?;
        if k.ends_with(&suffix) {
            if let Some((agent, _)) = parse_key(&k) {
                out.push(agent);
            }
        }
    }
    Ok(out)
}

/// Follow the other nodes' keys. A fresh watch (at start, after a reconnect)
/// delivers every current value, so a node that starts late learns them all.
async fn watch(
    c: Arc<Cluster>,
    cell: Arc<tokio::sync::OnceCell<kv::Store>>,
    replicas: usize,
    core: CoreTx,
) {
    let mut first = true;
    loop {
        let w = match bucket(&c, &cell, replicas).await {
            Ok(kv) => kv.watch_with_history(">").await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut w = match w {
            Ok(w) => w,
            Err(e) => {
                debug!(error = %e, "registrations watch not ready");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if first {
            info!("cluster: following the other nodes' registrations");
            first = false;
        }
        loop {
            // Quiet for a minute: made again (after a NATS server change a watch
            // may be stale; a new one delivers the current values again).
            let e = match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
                Ok(Some(Ok(e))) => e,
                _ => break,
            };
            let Some((agent, node)) = parse_key(&e.key) else {
                continue;
            };
            if node == c.node {
                continue;
            }
            let bindings = match e.operation {
                kv::Operation::Put => match serde_json::from_slice(&e.value) {
                    Ok(v) => decode(&agent, &v),
                    Err(_) => {
                        warn!(%agent, %node, "unreadable shared registration ignored");
                        continue;
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => Vec::new(),
            };
            let msg = CoreMsg::RemoteBindings {
                node,
                agent,
                bindings,
            };
            if core.send(msg).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::{Flow, Transport};

    #[test]
    fn keys_and_values_round_trip() {
        let k = key("agent 7/ü", "edge-a");
        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        assert_eq!(
            parse_key(&k),
            Some(("agent 7/ü".to_string(), "edge-a".to_string()))
        );
        assert_eq!(parse_key("zz.00"), None);
        let b = b2bua::Binding {
            agent: "2001".into(),
            contact: "sip:2001@192.0.2.8:5062".into(),
            flow: Flow {
                transport: Transport::Udp,
                local: "127.0.0.2:5060".parse().unwrap(),
                remote: "127.0.0.9:5060".parse().unwrap(),
            },
            expires: UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
            call_id: "reg-1".into(),
            cseq: 4,
            user_agent: Some("phone".into()),
            path: vec!["<sip:127.0.0.9:5060;lr;received=sip:192.0.2.8:5062>".into()],
        };
        let me: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let v = encode("edge-a", me, std::slice::from_ref(&b));
        assert_eq!(v["node"], "edge-a");
        assert_eq!(decode("2001", &v), vec![b.clone()]);
        // A binding on this node's own flow is shared with a Path naming this
        // node and the flow; a browser's too, as a WebSocket binding.
        let mut own = b.clone();
        own.path.clear();
        let mut browser = own.clone();
        browser.flow.transport = Transport::Ws;
        let v = encode("edge-a", me, &[own.clone(), browser]);
        let got = decode("2001", &v);
        assert_eq!(got.len(), 2, "{v}");
        for g in &got {
            assert!(b2bua::is_hop(&g.path[0]), "{:?}", g.path);
            assert!(g.path[0].starts_with("<sip:127.0.0.2:5060;lr;edge-hop="));
        }
        assert_eq!(got[1].flow.transport, Transport::Ws);
        let v = encode("edge-a", me, &[]);
        assert_eq!(v["bindings"], serde_json::json!([]));
        // A binding this version cannot read is skipped, not guessed.
        let bad = serde_json::json!({"bindings": [{"contact": "sip:x@y"}]});
        assert!(decode("2001", &bad).is_empty());
    }
}
