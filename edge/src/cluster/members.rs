//! The cluster's live nodes as this node sees them. Sans-IO: the driver reports
//! every heartbeat it reads from the shared bucket ([`Members::seen`]) and every
//! node that left on purpose ([`Members::left`]); [`Members::live`] answers with
//! the nodes heard from within the lease. The lease is measured on this node's
//! clock from when the heartbeat was read, so nodes' clocks need not agree.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a node publishes about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    /// How other nodes and the proxy reach its SIP.
    pub sip: String,
    /// Its plain HTTP listener as other nodes reach it (chat relays; the API
    /// between nodes goes over NATS).
    pub http: String,
    /// Its HTTPS listener as other nodes reach it, when it has one: chat relays
    /// then go there over `wss:`, never to `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// Calls up on it at the heartbeat.
    pub calls: usize,
    /// Draining or held: it takes no new work.
    pub refusing: bool,
    /// Its oldest waiting call per queue: queue → (call id, ms waited at the
    /// heartbeat). Absent from an older node's heartbeat.
    #[serde(default)]
    pub heads: BTreeMap<String, (String, u64)>,
}

#[derive(Debug)]
pub struct Members {
    lease: Duration,
    nodes: BTreeMap<String, (Instant, NodeInfo)>,
}

impl Members {
    pub fn new(lease: Duration) -> Members {
        Members {
            lease,
            nodes: BTreeMap::new(),
        }
    }

    /// A heartbeat of `info.node`, read at `now`.
    pub fn seen(&mut self, now: Instant, info: NodeInfo) {
        self.nodes.insert(info.node.clone(), (now, info));
    }

    /// The node left the cluster (it deleted its key when it stopped).
    pub fn left(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// The other live nodes' oldest waiting call per queue (the oldest over the
    /// nodes): its id and when it started to wait, on this node's clock (the
    /// time waited subtracted from when its heartbeat was read). `last`: the
    /// previous answer — a call already known keeps its start, so the answer
    /// changes only when a head does.
    pub fn heads(
        &mut self,
        now: Instant,
        me: &str,
        last: &HashMap<String, (String, Instant)>,
    ) -> HashMap<String, (String, Instant)> {
        let mut out: HashMap<String, (String, Instant)> = HashMap::new();
        for info in self.live(now).into_iter().filter(|i| i.node != me) {
            let read = self.nodes.get(&info.node).map(|(at, _)| *at).unwrap_or(now);
            for (queue, (call, waited_ms)) in info.heads {
                let since = match last.get(&queue) {
                    Some((id, t)) if *id == call => *t,
                    _ => read
                        .checked_sub(Duration::from_millis(waited_ms))
                        .unwrap_or(read),
                };
                match out.get(&queue) {
                    Some((_, t)) if *t <= since => {}
                    _ => {
                        out.insert(queue, (call, since));
                    }
                }
            }
        }
        out
    }

    /// Nodes heard from within the lease, by name; forgets the others.
    pub fn live(&mut self, now: Instant) -> Vec<NodeInfo> {
        let lease = self.lease;
        self.nodes
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < lease);
        self.nodes.values().map(|(_, i)| i.clone()).collect()
    }
}
