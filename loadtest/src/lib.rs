//! `loadtest`: a SIP + RTP load generator ([`caller`]) and answerer ([`answerer`])
//! built on the edge's own sans-IO SIP endpoint and media code, with call-quality
//! measurement ([`quality`]) and JSON/HTML reports ([`summary`], [`report`]).

pub mod answerer;
pub mod auth;
pub mod caller;
pub mod chat;
pub mod collector;
pub mod failover;
#[cfg(test)]
mod flow_tests;
pub mod net;
pub mod quality;
pub mod register;
pub mod report;
pub mod rtp;
pub mod run;
pub mod sdp;
pub mod summary;
pub mod webrtc;
pub mod webrtc_call;
