//! RTP media for the edge. This crate holds the sans-IO parts: the command set a
//! call's media obeys ([`Command`]), the RTP port pool ([`PortPool`]), one call's
//! media ([`CallMedia`]: applies the commands and decides for every datagram), built
//! from the relay core ([`relay::Relay`]: whether to forward a datagram and where,
//! symmetric RTP latching) and the mix session with its codecs, jitter buffers and
//! DTMF. The `edge` crate owns the sockets and drives these.

pub mod call;
pub mod command;
mod port_pool;
pub mod relay;

pub use call::CallMedia;
pub use command::{CallId, Command, MonitorId};
pub use port_pool::{PortPool, PortProbe};
pub use relay::{Relay, RelayStats, Side, Socket};
pub mod audio;
pub mod continuity;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod mixer;
#[cfg(test)]
mod mixer_tests;
pub mod rtp;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod stats;
pub mod tone;
pub mod wav;
pub mod webrtc;
