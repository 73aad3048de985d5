//! The chat wire protocol: every frame a client sends ([`ClientFrame`]) and every frame
//! the server sends ([`ServerFrame`]), as JSON objects with a `type` field. The edge's
//! sockets, `loadtest chat` and the tests all speak through these types, so the
//! protocol is written down once, here (README shows it as tables).
//!
//! Room frames (`message`, `typing`, `ended`) carry the room's [`Offset`]: a client
//! that reconnects sends `resume`/`watch` with `offset` = the last offset it saw + 1
//! and gets every stored frame from that offset on (inclusive), then live frames.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A room entry's position: 1 for the first entry of a room, then +1 per stored
/// entry. Typing signals carry the last assigned offset (they are not stored).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset after this one.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A returning customer's answer to a `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    /// Go on with the previous chat.
    Continue,
    /// End it and start a new one.
    New,
}

/// Everything a client may send. Customers (`/ws/chat`) send `start` or `resume`
/// first, then `message`, `typing`, `end`; agents and supervisors (`/ws/agent`) may
/// send `auth` first (when no bearer header was given), then the rest. Fields a
/// frame does not need are optional so that a missing one gets a clear error from the
/// service rather than a parse error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Start {
        #[serde(default)]
        queue: Option<String>,
        #[serde(default)]
        fields: Option<Map<String, Value>>,
    },
    Resume {
        #[serde(default)]
        token: String,
        #[serde(default)]
        offset: Offset,
        #[serde(default)]
        choice: Option<Choice>,
        #[serde(default)]
        queue: Option<String>,
        #[serde(default)]
        fields: Option<Map<String, Value>>,
    },
    Auth {
        #[serde(default)]
        token: String,
    },
    Message {
        #[serde(default)]
        chat: String,
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        text: String,
        // No `name`: a customer is shown by the start form's name, an agent by its
        // user name; a `name` key in the frame is ignored.
        #[serde(default)]
        private: bool,
    },
    Typing {
        #[serde(default)]
        chat: String,
        #[serde(default = "yes")]
        on: bool,
    },
    End {
        #[serde(default)]
        chat: String,
    },
    Accept {
        chat: String,
    },
    Release {
        chat: String,
    },
    Transfer {
        chat: String,
        #[serde(default)]
        to_agent: Option<String>,
        #[serde(default)]
        to_queue: Option<String>,
    },
    Consult {
        chat: String,
        #[serde(default)]
        agent: Option<String>,
    },
    ConsultEnd {
        chat: String,
        #[serde(default)]
        agent: Option<String>,
    },
    Watch {
        chat: String,
        #[serde(default)]
        offset: Offset,
    },
    Unwatch {
        chat: String,
    },
    /// Cluster mode, sent by the node a console is connected to over its relay to
    /// another node: how many chats the agent has on the other nodes (they count
    /// against its `max_chats` there).
    Elsewhere {
        #[serde(default)]
        chats: u32,
    },
}

fn yes() -> bool {
    true
}

/// Why a client frame was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("bad frame: {0}")]
    Frame(String),
    #[error("binary frames are not accepted")]
    Binary,
}

impl ClientFrame {
    /// Parse one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => FrameError::Frame(e.to_string()),
            _ => FrameError::Json(e.to_string()),
        })
    }

    /// The chat a frame names, if any (for error replies).
    pub fn chat(&self) -> Option<&str> {
        match self {
            ClientFrame::Start { .. }
            | ClientFrame::Resume { .. }
            | ClientFrame::Auth { .. }
            | ClientFrame::Elsewhere { .. } => None,
            ClientFrame::Message { chat, .. }
            | ClientFrame::Typing { chat, .. }
            | ClientFrame::End { chat }
            | ClientFrame::Accept { chat }
            | ClientFrame::Release { chat }
            | ClientFrame::Transfer { chat, .. }
            | ClientFrame::Consult { chat, .. }
            | ClientFrame::ConsultEnd { chat, .. }
            | ClientFrame::Watch { chat, .. }
            | ClientFrame::Unwatch { chat } => Some(chat),
        }
    }

    /// The frame's `type`, as written on the wire (for error replies).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Start { .. } => "start",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Message { .. } => "message",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::End { .. } => "end",
            ClientFrame::Accept { .. } => "accept",
            ClientFrame::Release { .. } => "release",
            ClientFrame::Transfer { .. } => "transfer",
            ClientFrame::Consult { .. } => "consult",
            ClientFrame::ConsultEnd { .. } => "consult_end",
            ClientFrame::Watch { .. } => "watch",
            ClientFrame::Unwatch { .. } => "unwatch",
            ClientFrame::Elsewhere { .. } => "elsewhere",
        }
    }
}

/// Who wrote a room entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    Customer,
    Agent,
    System,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Customer => "customer",
            Author::Agent => "agent",
            Author::System => "system",
        }
    }
}

/// Everything the server sends. Room frames (`message`, `typing`, `ended` with an
/// offset) go to everyone in the room (private ones not to the customer); the rest
/// answer one connection or reach one agent's console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A new chat: keep `token` to resume it.
    Started {
        chat: String,
        token: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        previous_ended: bool,
    },
    Resumed {
        chat: String,
    },
    /// The queue asks whether to continue the previous chat (`resume` + `choice`).
    Prompt {
        chat: String,
    },
    /// A room entry written by the customer, an agent or the system.
    Message {
        chat: String,
        offset: Offset,
        from: Author,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// A shared file: `{url, name, size, type, expires}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<Value>,
        /// Agents and supervisors only (consultation, notes).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
        /// Wall-clock milliseconds since the Unix epoch.
        ts: u64,
    },
    /// Typing indicator (not stored; carries the last offset).
    Typing {
        chat: String,
        offset: Offset,
        from: Author,
        on: bool,
    },
    /// The chat ended (room frame with an offset), or, answering a `resume` with no
    /// chat to continue, `chat` null and no offset.
    Ended {
        chat: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<Offset>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        reason: String,
    },
    /// The asked offset is older than what the room keeps: replay starts later.
    HistoryTruncated {
        chat: String,
    },
    Error {
        chat: Option<String>,
        error: String,
    },
    /// First frame of an agent or supervisor console.
    Hello {
        user: String,
        role: control::Role,
        max_chats: u32,
        chats: Vec<String>,
        queues: Vec<String>,
        canned: Vec<String>,
    },
    Offer {
        chat: String,
        queue: String,
        fields: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transfer_from: Option<String>,
        waited_secs: f64,
    },
    OfferWithdrawn {
        chat: String,
        reason: String,
    },
    ChatEnded {
        chat: String,
        by: String,
        reason: String,
    },
    Accepted {
        chat: String,
    },
    Released {
        chat: String,
    },
    Transferred {
        chat: String,
    },
    Consulting {
        chat: String,
        agent: String,
    },
    /// You are consulted on `chat` by `from`: send `watch` to see the room.
    Consult {
        chat: String,
        from: String,
        fields: Map<String, Value>,
    },
    ConsultEnded {
        chat: String,
        by: String,
        consultant: String,
    },
    Watching {
        chat: String,
    },
    /// A queue call of the agent this console is (see `[[agents]] user`):
    /// `ringing`, `connected`, `missed`, `ended`; `reserved_data` from the trunk's
    /// INVITE (`[[reserved_data]]`).
    Call {
        call: String,
        state: String,
        caller: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        #[serde(default)]
        reserved_data: Map<String, Value>,
    },
    /// The state of the agent this console is (one person for calls and chats):
    /// `ready`, `not_ready` (with `reason`), `busy`, `wrap_up`, `logged_out`.
    /// Chats are offered only while `ready` or `busy`.
    AgentState {
        agent: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Wall-clock milliseconds since the Unix epoch of the change.
        since: u64,
    },
}

impl ServerFrame {
    /// The JSON text of the frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// Parse a server frame (clients: loadtest, tests).
    pub fn parse(text: &str) -> Result<ServerFrame, FrameError> {
        serde_json::from_str(text).map_err(|e| FrameError::Frame(e.to_string()))
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
