//! Web chat: the lock-sharded fan-out hub ([`hub`]).

pub mod hub;
#[cfg(test)]
mod hub_tests;
