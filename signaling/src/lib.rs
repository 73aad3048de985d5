//! SIP for the edge: message framing on `rsip` ([`message`]), the RFC 3261 §17
//! transaction layer ([`transaction`]) behind a sans-IO [`Endpoint`], dialogs
//! ([`dialog`]), SDP offer/answer rewriting ([`sdp`]) and the B2BUA call model
//! ([`b2bua`]) with queue distribution ([`acd`]).

pub mod endpoint;
pub mod message;
pub mod transaction;

pub use control::Transport;

/// Lower-case hex of bytes (digests, tokens, signatures).
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}
pub use endpoint::{Endpoint, Event, Transmit};
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
pub mod acd;
pub mod b2bua;
pub mod chat;
pub mod dialog;
#[cfg(test)]
mod endpoint_tests;
pub mod sdp;
pub use b2bua::B2bua;
