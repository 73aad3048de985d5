//! The cluster's live nodes as this node sees them. Sans-IO: the driver reports
//! every heartbeat it reads from the shared bucket ([`Members::seen`]) and every
//! node that left on purpose ([`Members::left`]); [`Members::live`] answers with
//! the nodes heard from within the lease. The lease is measured on this node's
//! clock from when the heartbeat was read, so nodes' clocks need not agree.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a node publishes about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node: String,
    /// How other nodes and the proxy reach its SIP.
    pub sip: String,
    /// Its HTTP listener (for operators; the API between nodes goes over NATS).
    pub http: String,
    /// Calls up on it at the heartbeat.
    pub calls: usize,
    /// Draining or held: it takes no new work.
    pub refusing: bool,
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

    /// Nodes heard from within the lease, by name; forgets the others.
    pub fn live(&mut self, now: Instant) -> Vec<NodeInfo> {
        let lease = self.lease;
        self.nodes
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < lease);
        self.nodes.values().map(|(_, i)| i.clone()).collect()
    }
}
