//! The driver of agents' claims (the decisions are the B2BUA's, `b2bua::claims`):
//! a claim is a key of the JetStream key-value bucket [`CLAIMS_BUCKET`], one per
//! agent (its id in hex, so any id is a valid key), whose value names the node.
//!
//! - **claim**: `create` — a compare-and-set on the key's revision that succeeds
//!   only when no node holds the agent (no key, or a deleted one). Exists: taken.
//!   No answer in [`ASK`]: failed (the call waits for the next queue retry).
//! - **refresh**: every third of [`CLAIM_LEASE`], `update` with the revision this
//!   node wrote last; the bucket drops a key not written for a lease, so a node
//!   that dies loses its claims after at most one lease. A refresh refused for a
//!   wrong revision means another node took the agent (ours had lapsed).
//! - **release**: `delete` expecting this node's revision.
//! - **watch**: other nodes' claims and releases reach the B2BUA
//!   (`claim_elsewhere`, `claim_released_elsewhere`).
//!
//! - **shared states**: what each agent chose (ready, not ready with its reason,
//!   signed out), since when it is idle, its calls today, its offers missed in a
//!   row and the end of its wrap-up live in the bucket [`AGENTS_BUCKET`] (key: the
//!   agent's id in hex); a node writes a value that differs from what the bucket
//!   has, and every other node applies it (`agent_shared_with`), so an agent is
//!   one person in the cluster: "longest idle", calls today and `max_no_answer`
//!   are the cluster's.
//!
//! Requests of one agent are carried out one at a time, in the order the core
//! sent them, so a release and a new claim of the same agent cannot cross; those
//! of different agents at once.

use super::ledger::{Ledger, Verdict};
use super::Cluster;
use crate::core::{CoreMsg, CoreTx};
use async_nats::jetstream::kv;
use b2bua::{CallId, ClaimResult, CLAIM_LEASE};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The JetStream key-value bucket of agents' claims.
pub const CLAIMS_BUCKET: &str = "edge_claims";
/// The JetStream key-value bucket of agents' chosen states and idle times.
pub const AGENTS_BUCKET: &str = "edge_agents";

/// How long a claim, refresh or release may take before it counts as failed.
const ASK: Duration = Duration::from_secs(2);

/// How long a create that went through may wait for the watch's verdict. The
/// watch can lag behind a busy core (it hands every other node's claim to the
/// core first); giving up early only makes the agent unusable until its lease.
const CONFIRM: Duration = Duration::from_secs(10);
/// The watches pass other nodes' changes to the SIP core at most once per this
/// (the first after a quiet spell at once): each message woke the core thread
/// — a context switch each way — and at 300 calls/s a node follows ~900 other
/// nodes' writes a second.
const GATHER: Duration = Duration::from_millis(20);

/// Other nodes' changes on their way to the core, sent together (see [`GATHER`]).
struct Gathered {
    msgs: Vec<CoreMsg>,
    sent: tokio::time::Instant,
}

impl Gathered {
    fn new() -> Gathered {
        Gathered {
            msgs: Vec::new(),
            sent: tokio::time::Instant::now() - GATHER,
        }
    }

    /// How long the watch may wait for its next entry: until the gathered
    /// messages are due, else `idle`.
    fn wait(&self, idle: Duration) -> Duration {
        if self.msgs.is_empty() {
            idle
        } else {
            (self.sent + GATHER).saturating_duration_since(tokio::time::Instant::now())
        }
    }

    /// The watch's next entry, sending what was gathered when it falls due
    /// meanwhile. `Ok(None)`: the watch ended, failed or stayed quiet for
    /// `idle` (it is opened again); `Err`: the core stopped.
    async fn next_entry(
        &mut self,
        w: &mut kv::Watch,
        idle: Duration,
        core: &CoreTx,
    ) -> Result<Option<kv::Entry>, ()> {
        loop {
            match tokio::time::timeout(self.wait(idle), w.next()).await {
                Ok(Some(Ok(e))) => return Ok(Some(e)),
                Err(_) if !self.msgs.is_empty() => self.flush(core, true).await?,
                _ => return Ok(None),
            }
        }
    }

    /// Send what was gathered if it is due (`now`: whatever the time). `Err`:
    /// the core stopped.
    async fn flush(&mut self, core: &CoreTx, now: bool) -> Result<(), ()> {
        let at = tokio::time::Instant::now();
        if self.msgs.is_empty() || (!now && at < self.sent + GATHER) {
            return Ok(());
        }
        let msg = if self.msgs.len() == 1 {
            self.msgs.pop().expect("one message")
        } else {
            CoreMsg::Batch(std::mem::take(&mut self.msgs))
        };
        self.sent = at;
        core.send(msg).await.map_err(|_| ())
    }
}

/// What the SIP core asks of the cluster.
#[derive(Debug)]
pub enum ClaimReq {
    Claim {
        call: CallId,
        agent: String,
    },
    Release {
        agent: String,
    },
    Share {
        agent: String,
        share: b2bua::AgentShare,
    },
}

/// An agent's shared state as JSON (without the writing node).
fn state_json(s: &b2bua::AgentShare) -> serde_json::Value {
    let (state, reason) = match &s.choice {
        b2bua::Choice::Ready => ("ready", None),
        b2bua::Choice::NotReady(r) => ("not_ready", Some(r.as_str())),
        b2bua::Choice::SignedOut => ("logged_out", None),
    };
    let mut v = serde_json::json!({
        "state": state, "reason": reason, "idle_since_ms": s.idle_since_ms,
    });
    if let Some(t) = s.tally {
        v["calls_today"] = t.calls_today.into();
        v["day"] = t.day.into();
        v["missed_in_a_row"] = t.no_answer.into();
        v["wrap_until_ms"] = s.wrap_until_ms.into();
    }
    v
}

/// The inverse of [`state_json`]; the counters are `None` in a value written
/// before they were shared.
fn state_of(v: &serde_json::Value) -> Option<b2bua::AgentShare> {
    let choice = b2bua::parse_choice(v["state"].as_str()?, v["reason"].as_str()).ok()?;
    let tally = (|| {
        Some(b2bua::Tally {
            calls_today: u32::try_from(v["calls_today"].as_u64()?).ok()?,
            day: v["day"].as_u64()?,
            no_answer: u32::try_from(v["missed_in_a_row"].as_u64()?).ok()?,
        })
    })();
    Some(b2bua::AgentShare {
        choice,
        idle_since_ms: v["idle_since_ms"].as_u64()?,
        tally,
        wrap_until_ms: tally.and(v["wrap_until_ms"].as_u64()),
    })
}

/// The claims bucket's holders as this node's watch saw them (see [`Ledger`]).
type Shared = Arc<parking_lot::Mutex<Ledger>>;

/// The watch's verdict on a write of this node: (agent, revision, valid).
type Verdicts = mpsc::UnboundedReceiver<(String, u64, bool)>;

/// What this node last wrote or read per agent (so it writes only changes).
type Known = Arc<parking_lot::Mutex<HashMap<String, serde_json::Value>>>;

fn key(agent: &str) -> String {
    hex::encode(agent.as_bytes())
}

fn agent_of(key: &str) -> Option<String> {
    String::from_utf8(hex::decode(key).ok()?).ok()
}

/// Start the claims driver; the core sends its requests on the returned channel.
pub fn start(
    c: Arc<Cluster>,
    cfg: &control::ClusterConfig,
    core: CoreTx,
) -> mpsc::UnboundedSender<ClaimReq> {
    let (tx, rx) = mpsc::unbounded_channel();
    let claims = Bucket::new(CLAIMS_BUCKET, cfg.replicas);
    let agents = Bucket::new(AGENTS_BUCKET, cfg.replicas);
    let known = Known::default();
    let ledger = Shared::new(parking_lot::Mutex::new(Ledger::new(&c.node, CLAIM_LEASE)));
    let (verdict_tx, verdicts) = mpsc::unbounded_channel();
    tokio::spawn(serve(
        c.clone(),
        Buckets {
            claims: claims.clone(),
            agents: agents.clone(),
        },
        known.clone(),
        ledger.clone(),
        core.clone(),
        rx,
        verdicts,
    ));
    tokio::spawn(watch(c.clone(), claims, ledger, verdict_tx, core.clone()));
    tokio::spawn(watch_states(c, agents, known, core));
    tx
}

/// A bucket made (or found) on first use.
#[derive(Clone)]
struct Bucket {
    name: &'static str,
    replicas: usize,
    cell: Arc<tokio::sync::OnceCell<kv::Store>>,
}

impl Bucket {
    fn new(name: &'static str, replicas: usize) -> Bucket {
        Bucket {
            name,
            replicas,
            cell: Arc::default(),
        }
    }

    async fn store(&self, c: &Cluster) -> Result<kv::Store, String> {
        self.cell
            .get_or_try_init(|| async {
                let js = async_nats::jetstream::new(c.client.clone());
                // Claims lapse a lease after their last write; states stay.
                let (what, max_age) = if self.name == CLAIMS_BUCKET {
                    ("edge cluster: which node holds each agent", CLAIM_LEASE)
                } else {
                    (
                        "edge cluster: agents' chosen states and idle times",
                        Duration::ZERO,
                    )
                };
                // A JetStream still forming (the nodes and NATS servers
                // starting together) may leave the first request unanswered for
                // its whole 10 s timeout; every claim would wait behind it.
                let make = super::key_value(&js, self.name, what, max_age, self.replicas);
                tokio::time::timeout(ASK, make)
                    .await
                    .map_err(|_| "bucket not made in time".to_string())?
            })
            .await
            .cloned()
    }
}

/// After a write expecting `rev` was refused for a wrong revision: the key's last
/// revision if this node still holds `agent` there — a void create of another
/// node came after this node's own last write (asked once the watch has had a
/// moment to see it).
async fn still_mine_at(ledger: &Shared, agent: &str, rev: u64) -> Option<u64> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    ledger.lock().mine_at(agent).filter(|last| *last != rev)
}

/// Tell the core how the claim of `agent` for `call` ended; false when the core
/// is gone.
async fn report(core: &CoreTx, call: CallId, agent: String, result: ClaimResult) -> bool {
    core.send(CoreMsg::ClaimResult {
        call,
        agent,
        result,
    })
    .await
    .is_ok()
}

/// One request carried out, with what the serving loop needs to act on it.
enum Done {
    /// A create went through at `rev` (`None`: it did not, `result` says why);
    /// granted only once the watch finds it valid.
    Claim {
        call: CallId,
        agent: String,
        result: ClaimResult,
        rev: Option<u64>,
    },
    /// The watch said nothing about this node's create at `rev` in time.
    Unconfirmed {
        agent: String,
        rev: u64,
    },
    Release {
        agent: String,
    },
    Share {
        agent: String,
        shared: bool,
    },
    Refresh {
        agent: String,
        outcome: Result<u64, bool>,
    },
}

impl Done {
    fn agent(&self) -> &str {
        match self {
            Done::Claim { agent, .. }
            | Done::Unconfirmed { agent, .. }
            | Done::Release { agent }
            | Done::Share { agent, .. }
            | Done::Refresh { agent, .. } => agent,
        }
    }
}

type Op = futures_util::future::BoxFuture<'static, Done>;

struct Buckets {
    claims: Bucket,
    agents: Bucket,
}

/// A create that went through, waiting for the watch's verdict.
struct Confirming {
    call: CallId,
    rev: u64,
}

/// The serving loop's state.
struct Driver {
    c: Arc<Cluster>,
    b: Buckets,
    known: Known,
    ledger: Shared,
    value: bytes::Bytes,
    /// Agent → the revision this node wrote last.
    held: HashMap<String, u64>,
    /// Agents with a request in flight → their requests not started yet.
    busy: HashMap<String, std::collections::VecDeque<ClaimReq>>,
    inflight: futures_util::stream::FuturesUnordered<Op>,
    /// Agent → this node's create waiting for the watch's verdict.
    confirming: HashMap<String, Confirming>,
    /// Verdicts on this node's latest write per agent that came before the create's
    /// own answer (the watch can be quicker than the reply).
    early: HashMap<String, (u64, bool)>,
}

impl Driver {
    /// Start `req` unless the agent has one in flight (then it waits its turn).
    fn submit(&mut self, req: ClaimReq) {
        let agent = match &req {
            ClaimReq::Claim { agent, .. }
            | ClaimReq::Release { agent }
            | ClaimReq::Share { agent, .. } => agent.clone(),
        };
        if let Some(waiting) = self.busy.get_mut(&agent) {
            waiting.push_back(req);
        } else if let Some(op) = self.start(req) {
            self.busy.insert(agent, Default::default());
            self.inflight.push(op);
        }
    }

    /// The agent's next request, if any (one that needs nothing is skipped).
    fn advance(&mut self, agent: &str) {
        loop {
            let Some(next) = self.busy.get_mut(agent).and_then(|q| q.pop_front()) else {
                self.busy.remove(agent);
                return;
            };
            if let Some(op) = self.start(next) {
                self.inflight.push(op);
                return;
            }
        }
    }

    fn start(&mut self, req: ClaimReq) -> Option<Op> {
        let c = self.c.clone();
        match req {
            ClaimReq::Claim { call, agent } => {
                let (bucket, value) = (self.b.claims.clone(), self.value.clone());
                Some(Box::pin(async move {
                    let attempt = async {
                        let kv = bucket.store(&c).await.map_err(|e| (false, e))?;
                        kv.create(key(&agent), value).await.map_err(|e| {
                            (
                                e.kind() == kv::CreateErrorKind::AlreadyExists,
                                e.to_string(),
                            )
                        })
                    };
                    let (result, rev) = match tokio::time::timeout(ASK, attempt).await {
                        Ok(Ok(rev)) => (ClaimResult::Granted, Some(rev)),
                        Ok(Err((true, _))) => (ClaimResult::Taken, None),
                        Ok(Err((false, e))) => {
                            warn!(%agent, error = %e, "agent claim failed");
                            (ClaimResult::Failed, None)
                        }
                        Err(_) => {
                            warn!(%agent, "agent claim not answered in time");
                            (ClaimResult::Failed, None)
                        }
                    };
                    Done::Claim {
                        call,
                        agent,
                        result,
                        rev,
                    }
                }))
            }
            ClaimReq::Release { agent } => {
                let rev = self.held.remove(&agent)?;
                let (bucket, ledger) = (self.b.claims.clone(), self.ledger.clone());
                Some(Box::pin(async move {
                    let release = async {
                        let kv = bucket.store(&c).await?;
                        match kv.delete_expect_revision(key(&agent), Some(rev)).await {
                            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                                match still_mine_at(&ledger, &agent, rev).await {
                                    Some(last) => Ok(Some(last)),
                                    None => Err(e.to_string()),
                                }
                            }
                            r => r.map(|()| None).map_err(|e| e.to_string()),
                        }
                        .map(|again| (kv, again))
                    };
                    let outcome = match tokio::time::timeout(ASK, release).await {
                        Ok(Ok((kv, Some(last)))) => {
                            match tokio::time::timeout(
                                ASK,
                                kv.delete_expect_revision(key(&agent), Some(last)),
                            )
                            .await
                            {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(_) => Err("not answered in time".to_string()),
                            }
                        }
                        Ok(Ok((_, None))) => Ok(()),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err("not answered in time".to_string()),
                    };
                    match outcome {
                        Ok(()) => debug!(%agent, "agent released"),
                        Err(e) => {
                            warn!(%agent, error = %e, "agent release failed: it lapses after the lease")
                        }
                    }
                    Done::Release { agent }
                }))
            }
            ClaimReq::Share { agent, share } => {
                let v = state_json(&share);
                if self.known.lock().get(&agent) == Some(&v) {
                    return None;
                }
                self.known.lock().insert(agent.clone(), v.clone());
                let mut body = v;
                body["node"] = serde_json::Value::from(c.node.clone());
                let agents = self.b.agents.clone();
                Some(Box::pin(async move {
                    let write = async {
                        let kv = agents.store(&c).await?;
                        kv.put(
                            key(&agent),
                            serde_json::to_vec(&body).unwrap_or_default().into(),
                        )
                        .await
                        .map_err(|e| e.to_string())
                    };
                    let shared = match tokio::time::timeout(ASK, write).await {
                        Ok(Ok(_)) => {
                            debug!(%agent, "agent state shared");
                            true
                        }
                        Ok(Err(e)) => {
                            warn!(%agent, error = %e, "agent state not shared");
                            false
                        }
                        Err(_) => {
                            warn!(%agent, "agent state not shared in time");
                            false
                        }
                    };
                    Done::Share { agent, shared }
                }))
            }
        }
    }

    /// Refresh every claim held and not busy (a release is about to delete the
    /// key, or a claim is being made).
    fn refresh(&mut self, kv: kv::Store) {
        let due: Vec<(String, u64)> = self
            .held
            .iter()
            .filter(|(a, _)| !self.busy.contains_key(*a))
            .map(|(a, r)| (a.clone(), *r))
            .collect();
        for (agent, rev) in due {
            let (kv, value, ledger) = (kv.clone(), self.value.clone(), self.ledger.clone());
            self.busy.insert(agent.clone(), Default::default());
            self.inflight.push(Box::pin(async move {
                let update = async {
                    match kv.update(key(&agent), value.clone(), rev).await {
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            match still_mine_at(&ledger, &agent, rev).await {
                                Some(last) => {
                                    kv.update(key(&agent), value, last).await.map_err(|e| {
                                        e.kind() == kv::UpdateErrorKind::WrongLastRevision
                                    })
                                }
                                None => Err(true),
                            }
                        }
                        r => r.map_err(|e| {
                            warn!(%agent, error = %e, "claim refresh failed");
                            false
                        }),
                    }
                };
                let outcome = match tokio::time::timeout(ASK, update).await {
                    Ok(r) => r,
                    Err(_) => {
                        warn!(%agent, "claim refresh not answered in time");
                        Err(false)
                    }
                };
                Done::Refresh { agent, outcome }
            }));
        }
    }

    /// The watch's verdict on this node's write `rev` of `agent`: a create
    /// waiting for it is granted or, void, taken.
    async fn verdict(&mut self, core: &CoreTx, agent: String, rev: u64, valid: bool) -> bool {
        if self.confirming.get(&agent).is_some_and(|w| w.rev == rev) {
            let w = self.confirming.remove(&agent).expect("present");
            let ok = self.conclude(core, agent.clone(), w.call, rev, valid).await;
            self.advance(&agent);
            return ok;
        }
        if self.early.get(&agent).is_none_or(|(r, _)| *r < rev) {
            self.early.insert(agent, (rev, valid));
        }
        true
    }

    async fn conclude(
        &mut self,
        core: &CoreTx,
        agent: String,
        call: CallId,
        rev: u64,
        valid: bool,
    ) -> bool {
        let result = if valid {
            self.held.insert(agent.clone(), rev);
            debug!(%agent, rev, "agent claimed");
            ClaimResult::Granted
        } else {
            self.c.claims_voided.fetch_add(1, Ordering::Relaxed);
            info!(%agent, rev, "agent claim void: another node's create came first (server-side race)");
            ClaimResult::Taken
        };
        report(core, call, agent, result).await
    }

    /// Act on `done`; false when the core is gone.
    async fn finish(&mut self, core: &CoreTx, done: Done) -> bool {
        let agent = done.agent().to_string();
        match done {
            Done::Claim {
                call,
                agent,
                result,
                rev,
            } => match rev {
                Some(rev) => {
                    if let Some((r, valid)) = self.early.remove(&agent).filter(|(r, _)| *r == rev) {
                        if !self.conclude(core, agent.clone(), call, r, valid).await {
                            return false;
                        }
                    } else {
                        self.confirming
                            .insert(agent.clone(), Confirming { call, rev });
                        self.inflight.push(Box::pin(async move {
                            tokio::time::sleep(CONFIRM).await;
                            Done::Unconfirmed { agent, rev }
                        }));
                        return true; // the agent stays busy until the verdict
                    }
                }
                None => {
                    if !report(core, call, agent, result).await {
                        return false;
                    }
                }
            },
            Done::Unconfirmed { agent, rev } => {
                if self.confirming.get(&agent).is_none_or(|w| w.rev != rev) {
                    return true; // decided meanwhile
                }
                let w = self.confirming.remove(&agent).expect("present");
                warn!(%agent, rev, "agent claim not confirmed by the watch in time: released");
                // Written but not known valid: give it back, the call waits.
                self.held.insert(agent.clone(), rev);
                self.busy
                    .entry(agent.clone())
                    .or_default()
                    .push_front(ClaimReq::Release {
                        agent: agent.clone(),
                    });
                if !report(core, w.call, agent.clone(), ClaimResult::Failed).await {
                    return false;
                }
            }
            Done::Release { .. } => {}
            Done::Share { agent, shared } => {
                if !shared {
                    self.known.lock().remove(&agent);
                }
            }
            Done::Refresh { agent, outcome } => match outcome {
                Ok(new) => {
                    self.held.insert(agent, new);
                }
                Err(true) => {
                    warn!(%agent, "claim lost: another node holds the agent now");
                    self.held.remove(&agent);
                    let _ = core.send(CoreMsg::ClaimSeen { agent }).await;
                }
                Err(false) => {}
            },
        }
        self.advance(&agent);
        true
    }
}

/// Carries out the core's requests: those of one agent one at a time, in the
/// order the core sent them (a release and a new claim of the agent cannot
/// cross), those of different agents at once — each is a JetStream round trip
/// (an R3 write: milliseconds), so one at a time for all agents capped a node
/// at a few hundred a second and let claims queue up behind each other. A create
/// that went through is granted only when the watch finds it valid (see
/// [`Ledger`]).
async fn serve(
    c: Arc<Cluster>,
    b: Buckets,
    known: Known,
    ledger: Shared,
    core: CoreTx,
    mut rx: mpsc::UnboundedReceiver<ClaimReq>,
    mut verdicts: Verdicts,
) {
    let value: bytes::Bytes = serde_json::to_vec(&serde_json::json!({ "node": c.node }))
        .unwrap_or_default()
        .into();
    let mut refresh = tokio::time::interval(CLAIM_LEASE / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut d = Driver {
        c,
        b,
        known,
        ledger,
        value,
        held: HashMap::new(),
        busy: HashMap::new(),
        inflight: Default::default(),
        confirming: HashMap::new(),
        early: HashMap::new(),
    };
    loop {
        let alive = tokio::select! {
            req = rx.recv() => {
                let Some(req) = req else { return };
                d.submit(req);
                true
            }
            Some((agent, rev, valid)) = verdicts.recv() => d.verdict(&core, agent, rev, valid).await,
            Some(done) = d.inflight.next(), if !d.inflight.is_empty() => d.finish(&core, done).await,
            _ = refresh.tick() => {
                // Never wait here for the bucket (at start JetStream may take
                // seconds to answer, and every claim would wait behind it): a
                // claim held means the bucket was there.
                if let Some(kv) = d.b.claims.cell.get().filter(|_| !d.held.is_empty()) {
                    d.refresh(kv.clone());
                }
                true
            }
        };
        if !alive {
            return;
        }
    }
}

/// A watch of every key of `bucket` that first delivers each key's current value
/// (`watch_all` would deliver only changes made after it), retried until NATS
/// gives one.
async fn open_watch(c: &Cluster, bucket: &Bucket) -> kv::Watch {
    loop {
        let w = match bucket.store(c).await {
            Ok(kv) => kv.watch_with_history(">").await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match w {
            Ok(w) => return w,
            Err(e) => {
                debug!(bucket = bucket.name, error = %e, "watch not ready");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Follow the claims bucket in the stream's order: every entry goes through the
/// [`Ledger`]; another node's valid claims and all releases reach the B2BUA
/// (`claim_elsewhere`, `claim_released_elsewhere`), verdicts on this node's own
/// writes reach the serving loop (which grants a create only when it is valid).
/// A watch with no event for a third of the lease is made again: after a NATS
/// server change it may be stale, and a fresh one delivers the current claims
/// again (harmless: they only extend the skips).
async fn watch(
    c: Arc<Cluster>,
    bucket: Bucket,
    ledger: Shared,
    verdicts: mpsc::UnboundedSender<(String, u64, bool)>,
    core: CoreTx,
) {
    let mut out = Gathered::new();
    loop {
        let mut w = open_watch(&c, &bucket).await;
        c.claims_ready.store(true, Ordering::Relaxed);
        ledger.lock().reset();
        loop {
            let e = match out.next_entry(&mut w, CLAIM_LEASE / 3, &core).await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(()) => return,
            };
            let Some(agent) = agent_of(&e.key) else {
                continue;
            };
            let node = match e.operation {
                kv::Operation::Put => serde_json::from_slice::<serde_json::Value>(&e.value)
                    .ok()
                    .and_then(|v| v["node"].as_str().map(str::to_string))
                    .or_else(|| Some(String::new())),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            let at = e.created.unix_timestamp_nanos();
            let verdict = ledger.lock().apply(&agent, e.revision, node.as_deref(), at);
            let msg = match verdict {
                Verdict::Held { mine: false } => CoreMsg::ClaimSeen { agent },
                Verdict::Held { mine: true } | Verdict::Void { mine: true } => {
                    // What came before this node's own claim in the bucket
                    // reaches the core before the claim's verdict does (a claim
                    // seen of another node, then released, must not come after
                    // this node was granted the agent).
                    if out.flush(&core, true).await.is_err() {
                        return;
                    }
                    let valid = verdict == (Verdict::Held { mine: true });
                    if verdicts.send((agent, e.revision, valid)).is_err() {
                        return;
                    }
                    continue;
                }
                Verdict::Void { mine: false } => {
                    debug!(%agent, rev = e.revision, node = ?node, "void claim of another node: ignored");
                    continue;
                }
                Verdict::Released => {
                    // (This node's own releases come here too: a delete marker
                    // names no node. The B2BUA ignores agents it does not skip.)
                    debug!(%agent, "agent released");
                    CoreMsg::ClaimGone { agent }
                }
            };
            out.msgs.push(msg);
            if out.flush(&core, false).await.is_err() {
                return;
            }
        }
        // The watch is opened again: what it had gathered goes first.
        if out.flush(&core, true).await.is_err() {
            return;
        }
    }
}

/// Follow the agents' shared states: another node's change reaches the B2BUA. A
/// fresh watch (at start, after a reconnect) delivers every agent's current state,
/// so a node that starts late learns them.
async fn watch_states(c: Arc<Cluster>, bucket: Bucket, known: Known, core: CoreTx) {
    let mut out = Gathered::new();
    loop {
        let mut w = open_watch(&c, &bucket).await;
        loop {
            let e = match out.next_entry(&mut w, CLAIM_LEASE, &core).await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(()) => return,
            };
            if e.operation != kv::Operation::Put {
                continue;
            }
            let (Some(agent), Ok(mut v)) = (
                agent_of(&e.key),
                serde_json::from_slice::<serde_json::Value>(&e.value),
            ) else {
                continue;
            };
            let node = v
                .as_object_mut()
                .and_then(|o| o.remove("node"))
                .and_then(|n| n.as_str().map(str::to_string));
            {
                let mut k = known.lock();
                if k.get(&agent) == Some(&v) {
                    continue;
                }
                k.insert(agent.clone(), v.clone());
            }
            if node.as_deref() == Some(c.node.as_str()) {
                continue;
            }
            let Some(share) = state_of(&v) else {
                warn!(%agent, "unreadable shared agent state ignored");
                continue;
            };
            out.msgs.push(CoreMsg::AgentShared { agent, share });
            if out.flush(&core, false).await.is_err() {
                return;
            }
        }
        if out.flush(&core, true).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
