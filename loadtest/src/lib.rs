//! `loadtest`: a SIP + RTP load generator ([`caller`]) and answerer ([`answerer`])
//! built on the edge's own sans-IO SIP endpoint and media code, with call-quality
//! measurement ([`quality`]) and JSON/HTML reports ([`summary`], [`report`]).

pub mod auth;
pub mod quality;
pub mod answerer;
pub mod caller;
pub mod sdp;
#[cfg(test)]
mod flow_tests;
