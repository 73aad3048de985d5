//! Who holds each agent, as the claims bucket's stream orders the writes — the
//! arbiter of claims that does not trust the server's compare-and-set alone.
//!
//! A claim is a `create` of the agent's key: a write expecting the key to have no
//! value (or a delete marker). nats-server before 2.9.21 checks that expectation
//! before the write goes through its Raft log, not in it (nats-server issue 4320),
//! so two creates in flight at once on a clustered stream can *both* succeed — seen
//! here at 300 queue calls/s on three nodes: two nodes granted one agent, both
//! offering it a call. The stream still orders the two writes, and every node sees
//! that order through its watch, so every node can tell which create came first:
//!
//! - a claim (put) by node N is **valid** when the key has no holder, when N holds
//!   it already (a refresh), or when the holder's last valid write is a lease old
//!   by the server's clock (the key lapsed: the bucket dropped it);
//! - a put that is not valid is **void**: the earlier holder keeps the agent, the
//!   node that wrote it treats its claim as taken;
//! - a delete (a release) leaves the key without a holder.
//!
//! The decision uses only what the stream carries (order, writer, server
//! timestamps), so all nodes reach the same one. Pure: the driver feeds it the
//! watch's entries.

use std::collections::HashMap;
use std::time::Duration;

/// What one entry of the claims bucket means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A valid claim or refresh; `mine`: this node wrote it.
    Held { mine: bool },
    /// A create that got through although another node held the agent.
    Void { mine: bool },
    /// The agent was released (or its key purged).
    Released,
}

#[derive(Debug, Clone)]
struct Holder {
    node: String,
    /// Server time (ns since the epoch) of the holder's last valid write.
    at_ns: i128,
}

#[derive(Debug, Default, Clone)]
struct Key {
    holder: Option<Holder>,
    /// The key's last revision (whatever wrote it).
    last_rev: u64,
}

#[derive(Debug)]
pub struct Ledger {
    me: String,
    lease: Duration,
    keys: HashMap<String, Key>,
}

impl Ledger {
    pub fn new(me: &str, lease: Duration) -> Ledger {
        Ledger {
            me: me.to_string(),
            lease,
            keys: HashMap::new(),
        }
    }

    /// A new watch starts: it first delivers each key's current value, so what
    /// was known is dropped.
    pub fn reset(&mut self) {
        self.keys.clear();
    }

    /// Apply the entry `rev` of `agent`'s key: written by `node` (`None`: a delete
    /// or purge) at server time `at_ns`.
    pub fn apply(&mut self, agent: &str, rev: u64, node: Option<&str>, at_ns: i128) -> Verdict {
        let k = self.keys.entry(agent.to_string()).or_default();
        k.last_rev = k.last_rev.max(rev);
        let Some(node) = node else {
            k.holder = None;
            return Verdict::Released;
        };
        let mine = node == self.me;
        let valid = match &k.holder {
            None => true,
            Some(h) => h.node == node || at_ns - h.at_ns >= self.lease.as_nanos() as i128,
        };
        if valid {
            k.holder = Some(Holder {
                node: node.to_string(),
                at_ns,
            });
            Verdict::Held { mine }
        } else {
            Verdict::Void { mine }
        }
    }

    /// The key's last revision when this node holds `agent` (a void put of
    /// another node may have come after this node's own last write: a refresh or
    /// release must expect that revision).
    pub fn mine_at(&self, agent: &str) -> Option<u64> {
        let k = self.keys.get(agent)?;
        (k.holder.as_ref()?.node == self.me).then_some(k.last_rev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    fn ledger() -> Ledger {
        Ledger::new("a", Duration::from_secs(30))
    }

    #[test]
    fn the_first_create_after_a_release_holds_and_a_racing_one_is_void() {
        let mut l = ledger();
        assert_eq!(
            l.apply("1001", 10, Some("b"), S),
            Verdict::Held { mine: false }
        );
        assert_eq!(l.apply("1001", 11, None, 2 * S), Verdict::Released);
        // Both creates expected the delete marker 11; the server let both through.
        assert_eq!(
            l.apply("1001", 12, Some("a"), 3 * S),
            Verdict::Held { mine: true }
        );
        assert_eq!(
            l.apply("1001", 13, Some("c"), 3 * S),
            Verdict::Void { mine: false }
        );
        // The holder is still this node, at the key's last revision (13).
        assert_eq!(l.mine_at("1001"), Some(13));
        // Another node's view of the same stream: the same decisions.
        let mut c = Ledger::new("c", Duration::from_secs(30));
        c.apply("1001", 10, Some("b"), S);
        c.apply("1001", 11, None, 2 * S);
        assert_eq!(
            c.apply("1001", 12, Some("a"), 3 * S),
            Verdict::Held { mine: false }
        );
        assert_eq!(
            c.apply("1001", 13, Some("c"), 3 * S),
            Verdict::Void { mine: true }
        );
        assert_eq!(c.mine_at("1001"), None);
    }

    #[test]
    fn refreshes_keep_the_holder_and_a_lapsed_claim_can_be_taken() {
        let mut l = ledger();
        assert_eq!(
            l.apply("1001", 1, Some("b"), 0),
            Verdict::Held { mine: false }
        );
        assert_eq!(
            l.apply("1001", 2, Some("b"), 10 * S),
            Verdict::Held { mine: false }
        );
        // 29 s after b's last refresh: still b's.
        assert_eq!(
            l.apply("1001", 3, Some("a"), 39 * S),
            Verdict::Void { mine: true }
        );
        // A lease after it: the key had lapsed, the create is valid.
        assert_eq!(
            l.apply("1001", 4, Some("a"), 40 * S),
            Verdict::Held { mine: true }
        );
        assert_eq!(l.mine_at("1001"), Some(4));
        // Released: nobody holds it.
        assert_eq!(l.apply("1001", 5, None, 41 * S), Verdict::Released);
        assert_eq!(l.mine_at("1001"), None);
    }

    #[test]
    fn a_new_watch_starts_from_the_current_values() {
        let mut l = ledger();
        l.apply("1001", 7, Some("b"), S);
        l.reset();
        assert!(l.keys.is_empty());
        // The current value of the key is c's claim: c holds it.
        assert_eq!(
            l.apply("1001", 9, Some("c"), 2 * S),
            Verdict::Held { mine: false }
        );
        assert_eq!(
            l.apply("1001", 10, Some("a"), 2 * S),
            Verdict::Void { mine: true }
        );
    }
}
