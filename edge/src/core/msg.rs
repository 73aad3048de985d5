//! The SIP core's inbox: what sockets, relay workers and the API send it.

use crate::audio::AudioCache;
use crate::metrics::CoreStats;
use crate::rtp::MediaEvent;
use b2bua::{CallCommand, CallInfo, CommandError, Reply};
use bytes::Bytes;
use control::Snapshot;
use sip::Flow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub enum CoreMsg {
    Inbound {
        flow: Flow,
        data: Bytes,
        /// When the reader queued it (the core sheds new calls when behind).
        at: Instant,
    },
    /// A stream connection is up (TCP, TLS, or a SIP WebSocket): what is sent to
    /// `(transport, remote)` goes to `tx`.
    TcpUp {
        transport: control::Transport,
        remote: SocketAddr,
        tx: mpsc::Sender<Bytes>,
    },
    /// A SIP WebSocket was opened with `user`'s API token (`/ws/sip?token=`).
    WsSignedIn {
        flow: Flow,
        user: String,
    },
    TcpDown {
        transport: control::Transport,
        remote: SocketAddr,
        local: SocketAddr,
        failed: bool,
    },
    ListCalls(oneshot::Sender<Vec<CallInfo>>),
    ListRegistrations(oneshot::Sender<Vec<b2bua::BindingInfo>>),
    ListAgents(oneshot::Sender<Vec<b2bua::AgentInfo>>),
    /// The API sets an agent's state.
    SetAgentState {
        agent: String,
        choice: b2bua::Choice,
        reply: oneshot::Sender<Result<b2bua::AgentInfo, b2bua::AgentError>>,
    },
    Stats(oneshot::Sender<CoreStats>),
    /// Start draining (idempotent); the answer is the calls still up.
    Drain(oneshot::Sender<usize>),
    /// Hold (`true`) or release new work: a cluster node that cannot reach NATS.
    HoldNewWork(bool),
    /// Cluster mode: this node's place among the live nodes, and their number.
    ClaimRank(usize, usize),
    /// Cluster mode: this node's oldest waiting call per queue (queue, call id,
    /// waited), for the heartbeat.
    QueueHeads(oneshot::Sender<Vec<(String, String, std::time::Duration)>>),
    /// Cluster mode: the other live nodes' oldest waiting call per queue (call
    /// id, when it started to wait here on this node's clock).
    RemoteHeads(std::collections::HashMap<String, (String, std::time::Instant)>),
    /// Cluster mode: where agents' claims are sent.
    AttachClaims(tokio::sync::mpsc::UnboundedSender<crate::cluster::claims::ClaimReq>),
    /// Cluster mode: this node's SIP address and the live nodes' (for the hop).
    ClusterNodes {
        me: std::net::SocketAddr,
        nodes: Vec<(String, std::net::SocketAddr)>,
    },
    /// Cluster mode: where this node's bindings are shared.
    AttachRegs(tokio::sync::mpsc::UnboundedSender<crate::cluster::regs::Update>),
    /// Another node's bindings of an agent (none: it holds none now).
    RemoteBindings {
        node: String,
        agent: String,
        bindings: Vec<b2bua::Binding>,
    },
    /// The cluster's answer to a claim.
    ClaimResult {
        call: b2bua::CallId,
        agent: String,
        result: b2bua::ClaimResult,
    },
    /// Another node claimed (or refreshed its claim of) an agent.
    ClaimSeen {
        agent: String,
    },
    /// Another node released an agent.
    ClaimGone {
        agent: String,
    },
    /// Another node changed what an agent chose, its idle time, its counters or
    /// its wrap-up.
    AgentShared {
        agent: String,
        share: b2bua::AgentShare,
    },
    /// Several messages the cluster's watches gathered (one wake of the core
    /// for all of them), handled in order.
    Batch(Vec<CoreMsg>),
    /// A new configuration with its decoded audio files.
    Reload(Arc<Snapshot>, Arc<AudioCache>),
    /// A command on a live call from the API (hangup, supervision, recording,
    /// DTMF, hold).
    Command(CallCommand, oneshot::Sender<Result<Reply, CommandError>>),
    /// What the relay workers report (digits, announcements played).
    Media(MediaEvent),
}

/// The core's inbox, in two lanes: SIP traffic (and the TCP connection events
/// that must stay in order with it) and control (the API, reloads, media events).
/// The core serves control first, so the API answers while SIP traffic queues up
/// under overload.
#[derive(Clone)]
pub struct CoreTx {
    sip: mpsc::Sender<CoreMsg>,
    control: mpsc::Sender<CoreMsg>,
}

/// A message the core's inbox did not take (full, or the core has stopped).
#[derive(Debug)]
pub struct NotSent;

/// The receiving side of [`CoreTx`].
pub struct CoreRx {
    pub(super) sip: mpsc::Receiver<CoreMsg>,
    pub(super) control: mpsc::Receiver<CoreMsg>,
}

/// An inbox with room for `sip` SIP messages and `control` control messages.
pub fn inbox(sip: usize, control: usize) -> (CoreTx, CoreRx) {
    let (sip_tx, sip_rx) = mpsc::channel(sip);
    let (control_tx, control_rx) = mpsc::channel(control);
    (
        CoreTx {
            sip: sip_tx,
            control: control_tx,
        },
        CoreRx {
            sip: sip_rx,
            control: control_rx,
        },
    )
}

#[cfg(test)]
impl CoreRx {
    /// A message waiting in either lane, control first.
    pub fn try_next(&mut self) -> Option<CoreMsg> {
        self.control
            .try_recv()
            .ok()
            .or_else(|| self.sip.try_recv().ok())
    }
}

impl CoreMsg {
    fn is_sip(&self) -> bool {
        matches!(
            self,
            CoreMsg::Inbound { .. }
                | CoreMsg::TcpUp { .. }
                | CoreMsg::TcpDown { .. }
                | CoreMsg::WsSignedIn { .. }
        )
    }
}

impl CoreTx {
    fn lane(&self, msg: &CoreMsg) -> &mpsc::Sender<CoreMsg> {
        if msg.is_sip() {
            &self.sip
        } else {
            &self.control
        }
    }

    /// Queue `msg`, waiting for room; `Err` when the core has stopped.
    pub async fn send(&self, msg: CoreMsg) -> Result<(), NotSent> {
        self.lane(&msg).send(msg).await.map_err(|_| NotSent)
    }

    /// Ask the core a question and wait for its answer, however long it takes;
    /// `None` when the core has stopped (or dropped the question).
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Queue `msg` if there is room; `Err` when its lane is full or the core stopped.
    pub fn try_send(&self, msg: CoreMsg) -> Result<(), NotSent> {
        self.lane(&msg).try_send(msg).map_err(|_| NotSent)
    }
}
