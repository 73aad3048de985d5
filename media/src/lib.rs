//! RTP media for the edge. This crate holds the sans-IO parts: the RTP port pool
//! ([`PortPool`]) and the per-call relay core ([`relay::Relay`]) that decides, for each
//! datagram, whether to forward it and where (symmetric RTP latching). The `edge` crate
//! owns the sockets and drives these.

mod port_pool;
pub mod relay;

pub use port_pool::PortPool;
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
