//! The immutable, validated configuration with the indexes hot paths use:
//! number → destination (exact first, then longest prefix), token → user.

use crate::model::{Config, Queue, Role, Route, User};
use std::collections::HashMap;
use std::net::IpAddr;

/// Where a dialled number goes.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    Route(&'a Route),
    Queue(&'a Queue),
}

/// What a queue or route asks of each of its calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallSettings<'a> {
    pub record: bool,
    pub announcement: Option<&'a std::path::Path>,
    pub hold_audio: Option<&'a std::path::Path>,
    pub beep_on_monitor: bool,
    pub conference_ends_without_agent: bool,
    pub conference_ends_without_customer: bool,
}

#[derive(Debug, Clone, Copy)]
enum DestIdx {
    Route(usize),
    Queue(usize),
}

/// A validated configuration. Never mutated after construction; share it in an `Arc`.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    exact: HashMap<String, DestIdx>,
    /// Prefix routes, longest prefix first.
    prefixes: Vec<(String, DestIdx)>,
    /// Agents by id (a registrar with many agents looks one up per REGISTER).
    agents: HashMap<String, usize>,
    /// `[[users]]` name → the agent that names it as its `user`.
    agent_users: HashMap<String, usize>,
    /// `[[hours]]` by name, parsed.
    hours: HashMap<String, crate::hours::Hours>,
}

impl Snapshot {
    pub(crate) fn new(config: Config) -> Self {
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            match r.number.strip_suffix('*') {
                Some(p) => prefixes.push((p.to_string(), DestIdx::Route(i))),
                None => {
                    exact.insert(r.number.clone(), DestIdx::Route(i));
                }
            }
        }
        for (i, q) in config.queues.iter().enumerate() {
            for n in &q.numbers {
                match n.strip_suffix('*') {
                    Some(p) => prefixes.push((p.to_string(), DestIdx::Queue(i))),
                    None => {
                        exact.insert(n.clone(), DestIdx::Queue(i));
                    }
                }
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let agents = config
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let agent_users = config
            .agents
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.user.clone().map(|u| (u, i)))
            .collect();
        // Validation parsed every entry already.
        let hours = config
            .hours
            .iter()
            .filter_map(|h| {
                crate::hours::Hours::parse(&h.timezone, &h.open, &h.closed)
                    .ok()
                    .map(|p| (h.name.clone(), p))
            })
            .collect();
        Snapshot {
            config,
            exact,
            prefixes,
            agents,
            agent_users,
            hours,
        }
    }

    /// The destination for a request-URI user part: exact match first, then the
    /// longest matching prefix.
    pub fn destination(&self, number: &str) -> Option<Destination<'_>> {
        let idx = self.exact.get(number).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| number.starts_with(p.as_str()))
                .map(|(_, d)| *d)
        })?;
        Some(match idx {
            DestIdx::Route(i) => Destination::Route(&self.config.routes[i]),
            DestIdx::Queue(i) => Destination::Queue(&self.config.queues[i]),
        })
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.config.queues.iter().find(|q| q.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.config.users.iter().find(|u| u.name == name)
    }

    /// The per-call settings (recording, announcement, hold audio, monitor beep) of a
    /// queue (by name) or a static route (by its configured number).
    pub fn call_settings(&self, queue: Option<&str>, route: Option<&str>) -> CallSettings<'_> {
        if let Some(q) = queue.and_then(|n| self.queue(n)) {
            return CallSettings {
                record: q.record,
                announcement: q.announcement.as_deref(),
                hold_audio: q.hold_audio.as_deref(),
                beep_on_monitor: q.beep_on_monitor,
                conference_ends_without_agent: q.conference_ends_without_agent,
                conference_ends_without_customer: q.conference_ends_without_customer,
            };
        }
        if let Some(r) = route.and_then(|n| self.config.routes.iter().find(|r| r.number == n)) {
            return CallSettings {
                record: r.record,
                announcement: r.announcement.as_deref(),
                hold_audio: r.hold_audio.as_deref(),
                beep_on_monitor: r.beep_on_monitor,
                conference_ends_without_agent: r.conference_ends_without_agent,
                conference_ends_without_customer: r.conference_ends_without_customer,
            };
        }
        CallSettings::default()
    }

    pub fn agent(&self, id: &str) -> Option<&crate::model::Agent> {
        self.agents.get(id).map(|&i| &self.config.agents[i])
    }

    /// Where a call or chat for queue `name` goes at `at`: `queue:NAME` actions of
    /// closed queues are followed, at most [`MAX_AFTER_HOURS_HOPS`] of them (queues
    /// closed at once, each by its own hours, can form a loop validation cannot
    /// see); past that the last queue reached announces.
    pub fn after_hours_route(&self, name: &str, at: std::time::SystemTime) -> AfterHoursRoute {
        let mut r = AfterHoursRoute {
            queue: name.to_string(),
            hops: 0,
            action: None,
            too_long: false,
        };
        loop {
            match self.closed_action(&r.queue, at) {
                Some(crate::AfterHours::Queue(next)) if r.hops < MAX_AFTER_HOURS_HOPS => {
                    r.hops += 1;
                    r.queue = next;
                }
                Some(crate::AfterHours::Queue(_)) => {
                    r.action = Some(crate::AfterHours::Announce);
                    r.too_long = true;
                    return r;
                }
                action => {
                    r.action = action;
                    return r;
                }
            }
        }
    }

    /// What queue `name` does now when it is closed at `at` (its `hours`); `None`:
    /// open (or no hours, or no such queue).
    pub fn closed_action(
        &self,
        name: &str,
        at: std::time::SystemTime,
    ) -> Option<crate::AfterHours> {
        let q = self.queue(name)?;
        let h = self.hours.get(q.hours.as_deref()?)?;
        if h.is_open(at) {
            return None;
        }
        Some(q.after_hours.clone().unwrap_or(crate::AfterHours::Announce))
    }

    /// The agent whose `user` is console user `name` (one person for calls and chats).
    pub fn agent_of_user(&self, name: &str) -> Option<&crate::model::Agent> {
        self.agent_users.get(name).map(|&i| &self.config.agents[i])
    }

    /// Whether an INVITE from `ip` is allowed. With no trunks configured, any source is.
    pub fn trunk_for(&self, ip: IpAddr) -> Option<&str> {
        if self.config.trunks.is_empty() {
            return Some("any");
        }
        self.config
            .trunks
            .iter()
            .find(|t| t.sources.iter().any(|n| n.contains(&ip)))
            .map(|t| t.name.as_str())
    }

    /// The user a bearer token belongs to. Compares every token in constant time
    /// per byte so response timing does not reveal prefixes.
    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for u in &self.config.users {
            if ct_eq(u.token.as_bytes(), token.as_bytes()) {
                found = Some(u);
            }
        }
        found
    }
}

impl User {
    pub fn has_role(&self, at_least: Role) -> bool {
        self.role >= at_least
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Longest chain of `queue:NAME` after-hours deflections one call or chat follows.
pub const MAX_AFTER_HOURS_HOPS: usize = 4;

/// Where [`Snapshot::after_hours_route`] sends a call or chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterHoursRoute {
    /// The queue reached (the one asked for when `hops` is 0).
    pub queue: String,
    /// `queue:NAME` deflections followed to get there.
    pub hops: usize,
    /// `None`: `queue` is open (or keeps no hours). Otherwise its action while
    /// closed, never `Queue`.
    pub action: Option<crate::AfterHours>,
    /// The chain was longer than [`MAX_AFTER_HOURS_HOPS`]; `action` is `Announce`.
    pub too_long: bool,
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
