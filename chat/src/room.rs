//! Writing into rooms: the [`Hub`] plus the [`Store`] every stored entry goes to.
//! This is the chat hot path (every message, every typing signal): it takes only the
//! room's shard lock, never the service's state, so rooms write in parallel. The
//! caller supplies the wall-clock time (`ts_ms`) of each entry.

use crate::hub::{dedup_key, Hub, HubError, Limits, Published};
use crate::protocol::{Author, Offset, ServerFrame};
use crate::service::ChatError;
use crate::store::{NoStore, Store};
use serde_json::Value;
use std::sync::Arc;

/// Longest message text accepted (characters).
pub const MAX_TEXT: usize = 4000;

pub struct Rooms {
    pub hub: Hub,
    store: Arc<dyn Store>,
}

impl Rooms {
    pub fn new(limits: Limits, store: Arc<dyn Store>) -> Rooms {
        Rooms {
            hub: Hub::new(limits),
            store,
        }
    }

    /// Rooms that persist nothing (tests).
    pub fn in_memory(limits: Limits) -> Rooms {
        Rooms::new(limits, Arc::new(NoStore))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Store a room entry and fan it out; the store gets it with its offset.
    fn publish(
        &self,
        id: &str,
        dedup: Option<(&str, &str)>,
        private: bool,
        ts_ms: u64,
        build: impl FnOnce(Offset) -> ServerFrame,
    ) -> Result<Published, HubError> {
        self.hub.publish(id, dedup, private, |o| {
            let f = build(o).to_json();
            self.store.message(id, o, private, ts_ms, &f);
            f
        })
    }

    /// A message from the customer or an agent, shown with `name`. A `private`
    /// message (consultation, notes) is not shown to the customer. A resend with a
    /// `client_id` the same sender already used is not delivered again.
    #[allow(clippy::too_many_arguments)]
    pub fn message(
        &self,
        id: &str,
        from: Author,
        name: &str,
        client_id: Option<&str>,
        text: &str,
        private: bool,
        ts_ms: u64,
    ) -> Result<Published, ChatError> {
        let n = text.chars().count();
        if n == 0 || n > MAX_TEXT {
            return Err(ChatError::BadText);
        }
        let key = dedup_key(from.as_str(), name);
        Ok(self.publish(
            id,
            client_id.map(|c| (key.as_str(), c)),
            private,
            ts_ms,
            |offset| ServerFrame::Message {
                chat: id.to_string(),
                offset,
                from,
                name: Some(name.to_string()),
                text: text.to_string(),
                client_id: client_id.map(str::to_string),
                attachment: None,
                private,
                ts: ts_ms,
            },
        )?)
    }

    /// A file shared into the chat: a message whose `attachment` holds the link (made
    /// by the caller), file name as its text. Everyone in the room sees it.
    pub fn attachment(
        &self,
        id: &str,
        from: Author,
        name: &str,
        file_name: &str,
        attachment: Value,
        ts_ms: u64,
    ) -> Result<Published, ChatError> {
        Ok(
            self.publish(id, None, false, ts_ms, |offset| ServerFrame::Message {
                chat: id.to_string(),
                offset,
                from,
                name: Some(name.to_string()),
                text: file_name.to_string(),
                client_id: None,
                attachment: Some(attachment),
                private: false,
                ts: ts_ms,
            })?,
        )
    }

    /// A system message into a room (stored, with an offset); `private`: agents and
    /// supervisors only.
    pub fn system(&self, chat: &str, text: &str, private: bool, ts_ms: u64) {
        let _ = self.publish(chat, None, private, ts_ms, |offset| ServerFrame::Message {
            chat: chat.to_string(),
            offset,
            from: Author::System,
            name: None,
            text: text.to_string(),
            client_id: None,
            attachment: None,
            private,
            ts: ts_ms,
        });
    }

    /// The room's last entry: the chat ended.
    pub fn ended(&self, chat: &str, by: &str, reason: &str, ts_ms: u64) {
        let _ = self.publish(chat, None, false, ts_ms, |offset| ServerFrame::Ended {
            chat: Some(chat.to_string()),
            offset: Some(offset),
            by: Some(by.to_string()),
            reason: reason.to_string(),
        });
        self.hub.end(chat);
    }

    /// Typing indicator (not stored; carries the last offset); not sent back to the
    /// typist's connection.
    pub fn typing(&self, id: &str, conn: u64, from: Author, on: bool) -> Result<(), ChatError> {
        Ok(self.hub.signal(id, conn, false, |offset| {
            ServerFrame::Typing {
                chat: id.to_string(),
                offset,
                from,
                on,
            }
            .to_json()
        })?)
    }
}
