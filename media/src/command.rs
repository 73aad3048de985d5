//! What a call's media must do, as the call model decides it: the one command set
//! between the B2BUA (`b2bua::Output::Media`) and whatever runs the media (the edge's
//! relay workers). Ports and files are named here; the driver binds the sockets and
//! decodes the audio.

use crate::mixer::MonitorMode;
use crate::relay::Side;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A call's identity inside the edge (its public id is what the API and logs show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A supervisor's media stream within its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonitorId(pub u64);

impl fmt::Display for MonitorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open the call's RTP relay: `a_port`/`a_port+1` face the caller (side A),
    /// `b_port`/`b_port+1` the callee (side B).
    Open { a_port: u16, b_port: u16 },
    /// A side announced (or withdrew, `None`) its RTP address.
    Remote {
        side: Side,
        addr: Option<SocketAddr>,
    },
    /// Close the relay and everything on it; its ports are back in the pool.
    Close,
    /// Bind `port`/`port+1` for a supervisor and mix for it in `mode`.
    MonitorOpen {
        monitor: MonitorId,
        port: u16,
        mode: MonitorMode,
    },
    /// The supervisor's phone answered: its RTP address.
    MonitorRemote {
        monitor: MonitorId,
        addr: SocketAddr,
    },
    MonitorMode {
        monitor: MonitorId,
        mode: MonitorMode,
    },
    /// Stop mixing for this supervisor and close its sockets.
    MonitorClose { monitor: MonitorId },
    /// Pause (silence) or resume the call's recording.
    RecordPause { paused: bool },
    /// Send RFC 4733 events (codes 0–15) to `side` in its payload type `pt`.
    SendDtmf { side: Side, events: Vec<u8>, pt: u8 },
    /// The same to a conference member.
    MemberDtmf {
        monitor: MonitorId,
        events: Vec<u8>,
        pt: u8,
    },
    /// Play `file` to `side` in payload type `pt` (the agent: whisper announcement;
    /// the caller: after hours); the driver reports when it has played.
    Announce { side: Side, file: PathBuf, pt: u8 },
    /// The agent left during the announcement: stop it (not reported as played).
    AnnounceStop,
    /// `side` is held (or resumed): it hears `audio` looped (None: silence), nobody
    /// hears it, it is not recorded.
    Hold {
        side: Side,
        held: bool,
        audio: Option<PathBuf>,
    },
    /// Customer and agent hear the monitor beep.
    Beep,
    /// A conference's flags for a party: muted (nobody hears it), deaf (it hears
    /// nothing). Its hold is [`Command::Hold`].
    PartyFlags { side: Side, muted: bool, deaf: bool },
    /// A conference member's flags (a monitor stream opened in `Member` mode).
    MemberFlags {
        monitor: MonitorId,
        muted: bool,
        deaf: bool,
        held: bool,
    },
    /// `side` is a browser (WebRTC, the edge offered or answered with `local`): its
    /// port answers ICE checks and runs DTLS-SRTP. `None`: plain RTP again (another
    /// of the agent's phones answered).
    WebRtc {
        side: Side,
        local: Option<crate::webrtc::IceCredentials>,
    },
    /// The browser's ICE credentials, fingerprint and DTLS role from its SDP.
    WebRtcRemote {
        side: Side,
        remote: crate::webrtc::RemoteParams,
    },
    /// Supervisor `monitor` is in a browser: its port runs ICE-lite and DTLS-SRTP.
    MonitorWebRtc {
        monitor: MonitorId,
        local: crate::webrtc::IceCredentials,
    },
    /// The supervisor's browser parameters from its SDP.
    MonitorWebRtcRemote {
        monitor: MonitorId,
        remote: crate::webrtc::RemoteParams,
    },
}
