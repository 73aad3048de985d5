//! The SIP core's inbox: what sockets, relay workers and the API send it.

use crate::audio::AudioCache;
use crate::metrics::CoreStats;
use crate::rtp::MediaEvent;
use b2bua::{CallInfo, CommandError, MonitorMode};
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
    Hangup(String, oneshot::Sender<bool>),
    Stats(oneshot::Sender<CoreStats>),
    /// A new configuration with its decoded audio files.
    Reload(Arc<Snapshot>, Arc<AudioCache>),
    /// Supervision / recording command from the API.
    Command(
        CallCommand,
        oneshot::Sender<Result<Option<String>, CommandError>>,
    ),
    /// What the relay workers report (digits, announcements played).
    Media(MediaEvent),
}

/// API commands on a live call (public call id, monitor id).
pub enum CallCommand {
    AddMonitor {
        call: String,
        user: String,
        mode: MonitorMode,
    },
    SetMode {
        call: String,
        monitor: String,
        mode: MonitorMode,
    },
    RemoveMonitor {
        call: String,
        monitor: String,
    },
    Recording {
        call: String,
        paused: bool,
    },
    Dtmf {
        call: String,
        digits: String,
        to: media::Side,
    },
    Hold {
        call: String,
        side: media::Side,
        held: bool,
    },
}

pub type CoreTx = mpsc::Sender<CoreMsg>;
