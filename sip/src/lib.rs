//! SIP for the edge, sans-IO: message framing on `rsip` ([`message`]), the RFC 3261
//! §17 transaction layer ([`transaction`]) behind an [`Endpoint`], dialogs
//! ([`dialog`]) and SDP offer/answer rewriting ([`sdp`]). No sockets, no clock, no
//! runtime: drivers feed bytes and `Instant`s in and take transmits out.

pub mod digest;
pub mod endpoint;
pub mod message;
pub mod pike;
pub mod session_timer;
pub mod transaction;

pub use control::Transport;

pub use endpoint::{Endpoint, Event, Screen, Transmit};
pub use transaction::TxId;

use std::net::SocketAddr;

/// A transport path: how bytes reach a peer. For UDP, `local` names the socket to
/// send from; for TCP, the connection to `remote` (opened if needed), with `local`
/// the listen address we advertise in Via/Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}
pub mod dialog;
#[cfg(test)]
mod endpoint_tests;
pub mod sdp;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
