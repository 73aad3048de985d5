//! Web chat: the wire protocol ([`protocol`]: typed client and server frames, room
//! offsets), the lock-sharded fan-out hub ([`hub`]), writing into rooms ([`room`]),
//! the sans-IO contact-centre logic on top ([`service`]: chat queues, offers to
//! agents, transfer, consult, restore, abandon) and what a transcript store
//! implements ([`store`]).

pub mod hub;
#[cfg(test)]
mod hub_tests;
pub mod protocol;
pub mod room;
pub mod service;
#[cfg(test)]
mod service_tests;
pub mod store;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod testing;

pub use protocol::{Author, ClientFrame, Offset, ServerFrame};
pub use room::Rooms;
pub use service::{At, ChatError, Chats, Effect, Keys};
