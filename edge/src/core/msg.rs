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
use tokio::sync::{mpsc, oneshot};

pub enum CoreMsg {
    Inbound {
        flow: Flow,
        data: Bytes,
    },
    TcpUp {
        remote: SocketAddr,
        tx: mpsc::Sender<Bytes>,
    },
    TcpDown {
        remote: SocketAddr,
        local: SocketAddr,
        failed: bool,
    },
    ListCalls(oneshot::Sender<Vec<CallInfo>>),
    Stats(oneshot::Sender<CoreStats>),
    /// A new configuration with its decoded audio files.
    Reload(Arc<Snapshot>, Arc<AudioCache>),
    /// A command on a live call from the API (hangup, supervision, recording,
    /// DTMF, hold).
    Command(CallCommand, oneshot::Sender<Result<Reply, CommandError>>),
    /// What the relay workers report (digits, announcements played).
    Media(MediaEvent),
}

pub type CoreTx = mpsc::Sender<CoreMsg>;
