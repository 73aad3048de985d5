//! Per-source request rate limiting, after Kamailio's `pike`: a source that sends
//! more than `limit` messages in one `window` is blocked for `block` (everything it
//! sends is dropped unread), then starts afresh. Sans-IO: time is an input. The
//! table is bounded: expired entries are swept once per window, and when it is full
//! new sources are let through untracked rather than tracked at any cost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PikeConfig {
    /// Messages per window per source; 0 turns limiting off.
    pub limit: u32,
    pub window: Duration,
    pub block: Duration,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Pike {
    cfg: PikeConfig,
    sources: HashMap<IpAddr, Source>,
    next_sweep: Option<Instant>,
    /// Sources blocked so far (each block counted once).
    pub blocks: u64,
}

/// What [`Pike::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit: drop. `first` is true for the message that started the block.
    Block {
        first: bool,
    },
}

impl Pike {
    pub fn new(cfg: PikeConfig) -> Pike {
        Pike {
            cfg,
            sources: HashMap::new(),
            next_sweep: None,
            blocks: 0,
        }
    }

    /// Change the limits (a configuration reload); tracked sources keep counting.
    pub fn set_config(&mut self, cfg: PikeConfig) {
        self.cfg = cfg;
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// One message from `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        if self.cfg.limit == 0 {
            return Verdict::Allow;
        }
        self.sweep(now);
        let full = self.sources.len() >= self.cfg.max_sources;
        let s = match self.sources.get_mut(&ip) {
            Some(s) => s,
            None if full => return Verdict::Allow,
            None => self.sources.entry(ip).or_insert(Source {
                window_start: now,
                count: 0,
                blocked_until: None,
            }),
        };
        if let Some(until) = s.blocked_until {
            if now < until {
                return Verdict::Block { first: false };
            }
            s.blocked_until = None;
            s.window_start = now;
            s.count = 0;
        }
        if now.duration_since(s.window_start) >= self.cfg.window {
            s.window_start = now;
            s.count = 0;
        }
        s.count += 1;
        if s.count > self.cfg.limit {
            s.blocked_until = Some(now + self.cfg.block);
            self.blocks += 1;
            return Verdict::Block { first: true };
        }
        Verdict::Allow
    }

    /// Forget sources whose window and block are over (once per window).
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + self.cfg.window);
        let window = self.cfg.window;
        self.sources.retain(|_, s| match s.blocked_until {
            Some(until) => now < until,
            None => now.duration_since(s.window_start) < window,
        });
    }
}

#[cfg(test)]
#[path = "pike_tests.rs"]
mod tests;
