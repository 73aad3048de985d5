//! What the chat service persists, and the [`Store`] interface a store implements.
//! The service calls the store while it holds its own lock (or the room's shard
//! lock), so an implementation must not block: queue the record and write it
//! elsewhere (`storage::transcript` writes SQLite from its own thread in group
//! commits).

use crate::protocol::Offset;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A chat's row: written at start and at every change of state, queue or agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRecord {
    pub id: String,
    pub queue: String,
    pub fields: Map<String, Value>,
    /// SHA-256 (hex) of the customer's chat token; the token itself is not kept.
    pub token_hash: String,
    /// queued, offered, active or ended.
    pub state: String,
    pub agent: Option<String>,
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
}

/// A stored room entry: the frame exactly as it was fanned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub offset: Offset,
    pub private: bool,
    pub frame: String,
}

pub trait Store: Send + Sync {
    /// A chat's row, at start and at every change.
    fn chat(&self, c: &ChatRecord);
    /// A room entry as it was fanned out, with its offset and wall-clock time.
    fn message(&self, chat: &str, offset: Offset, private: bool, ts_ms: u64, frame: &str);
}

/// No persistence (tests, and the service before a store is attached).
pub struct NoStore;

impl Store for NoStore {
    fn chat(&self, _: &ChatRecord) {}
    fn message(&self, _: &str, _: Offset, _: bool, _: u64, _: &str) {}
}

/// The digest under which a chat token is looked up and stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
