//! Web chat: the lock-sharded fan-out hub ([`hub`]) and the contact-centre logic on
//! top of it ([`service`]: chat queues, offers to agents, restore, abandon).

pub mod hub;
#[cfg(test)]
mod hub_tests;
pub mod journal;
#[cfg(test)]
mod journal_tests;
pub mod service;
#[cfg(test)]
mod service_tests;
