//! The registrar (RFC 3261 §10): agents' phones REGISTER their address of record
//! `sip:{agent id}@…` with digest authentication (MD5 and/or SHA-256, qop=auth,
//! expiring nonces, nonce-count replay refused); bindings with Expires (423 below
//! the minimum, clamped to the maximum), several per agent, `Expires: 0` and `*`
//! to remove them. A binding keeps the flow it came on: requests to the agent go to
//! the address the REGISTER came from (its NAT binding, or its TCP connection).
//! Repeated failed authentication from one source gets 403 unchecked for a while.
//! Bindings change → [`crate::Output::Bindings`], so the driver persists them.

use crate::{B2bua, Output};
use control::DigestAlgorithm;
use rsip::headers::UntypedHeader;
use rsip::{Header, Request};
use sip::digest::{Algorithm, Challenge, Credentials, Verdict, Verifier};
use sip::message::{self, Head};
use sip::{Flow, TxId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// Most bindings one agent may hold (the oldest goes when a new one comes).
pub const MAX_BINDINGS: usize = 10;
/// How long a nonce is good for.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// One registered contact of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub agent: String,
    /// The Contact URI (the Request-URI of requests to it).
    pub contact: String,
    /// Where requests to it go: the flow the REGISTER came on.
    pub flow: Flow,
    pub expires: SystemTime,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    /// The REGISTER's Path (RFC 3327), in order: the proxies between the edge and
    /// the phone. Requests to the binding carry them as Route and go to the first.
    pub path: Vec<String>,
}

/// Most Path values one REGISTER may carry.
pub const MAX_PATH: usize = 8;

/// A binding as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    pub agent: String,
    pub contact: String,
    pub transport: String,
    pub source: String,
    pub expires_in: u64,
    pub user_agent: Option<String>,
    pub path: Vec<String>,
}

/// Failed authentications of one source.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

pub(crate) struct Registrar {
    pub(crate) verifier: Verifier,
    pub(crate) bindings: HashMap<String, Vec<Binding>>,
    /// Cluster mode: the bindings other nodes hold (agent → node → bindings), as
    /// they shared them. Only those with a Path are called from here: the proxy
    /// reaches the phone from any node.
    pub(crate) remote: HashMap<String, HashMap<String, Vec<Binding>>>,
    failures: HashMap<IpAddr, Failures>,
}

impl Registrar {
    pub(crate) fn new(secret: [u8; 32]) -> Registrar {
        Registrar {
            verifier: Verifier::new(secret, NONCE_LIFETIME),
            bindings: HashMap::new(),
            remote: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// The agent's live bindings at `wall`, newest first.
    pub(crate) fn live(&self, agent: &str, wall: SystemTime) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .bindings
            .get(agent)
            .map(|b| b.iter().filter(|b| b.expires > wall).collect())
            .unwrap_or_default();
        v.reverse();
        v
    }

    /// Other nodes' live bindings of `agent` that this node can call (through
    /// their Path: a proxy's, or the node itself while `live` says it is up),
    /// newest first.
    pub(crate) fn live_remote(
        &self,
        agent: &str,
        wall: SystemTime,
        live: impl Fn(&str) -> bool,
    ) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .remote
            .get(agent)
            .into_iter()
            .flat_map(|nodes| nodes.iter())
            .flat_map(|(node, list)| list.iter().map(move |b| (node, b)))
            .filter(|(node, b)| {
                b.expires > wall
                    && path_hop(b).is_some()
                    && (!b.path.first().is_some_and(|p| crate::hop::is_hop(p)) || live(node))
            })
            .map(|(_, b)| b)
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.expires));
        v
    }

    pub(crate) fn count(&self, wall: SystemTime) -> usize {
        self.bindings
            .values()
            .flatten()
            .filter(|b| b.expires > wall)
            .count()
    }

    /// Drop expired bindings; the agents whose bindings changed.
    pub(crate) fn expire(&mut self, wall: SystemTime) -> Vec<String> {
        self.drop_where(|b| b.expires <= wall)
    }

    /// Drop the bindings `gone` picks; the agents whose bindings changed.
    fn drop_where(&mut self, gone: impl Fn(&Binding) -> bool) -> Vec<String> {
        let mut changed = Vec::new();
        self.bindings.retain(|agent, list| {
            let before = list.len();
            list.retain(|b| !gone(b));
            if list.len() != before {
                changed.push(agent.clone());
            }
            !list.is_empty()
        });
        changed
    }
}

/// What a REGISTER's Contact values ask for.
enum Wanted {
    /// `*` with Expires 0.
    RemoveAll,
    /// (contact URI, seconds) per contact; none: a query.
    Set(Vec<(String, u32)>),
}

/// The contacts of a REGISTER with their expiry (§10.2.1.1), or `Err(())` when
/// malformed (400).
fn wanted(req: &Request, default: u32) -> Result<Wanted, ()> {
    let header_expires = req.headers.iter().find_map(|h| match h {
        Header::Expires(e) => Some(e.value().trim().parse::<u32>().map_err(|_| ())),
        _ => None,
    });
    let header_expires = match header_expires {
        Some(Err(())) => return Err(()),
        Some(Ok(e)) => Some(e),
        None => None,
    };
    let mut out = Vec::new();
    let values: Vec<&str> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::Contact(c) => Some(c.value()),
            _ => None,
        })
        .collect();
    for value in values {
        for contact in message::split_outside(value, ',').ok_or(())? {
            let contact = contact.trim();
            if contact == "*" {
                // `*` only with Expires: 0 and alone (§10.2.2).
                return if header_expires == Some(0) && out.is_empty() {
                    Ok(Wanted::RemoveAll)
                } else {
                    Err(())
                };
            }
            let uri = message::uri_of(contact).trim().to_string();
            if !uri.to_ascii_lowercase().starts_with("sip:")
                && !uri.to_ascii_lowercase().starts_with("sips:")
            {
                return Err(());
            }
            let params = match contact.rfind('>') {
                Some(i) => &contact[i + 1..],
                None => contact.split_once(';').map_or("", |(_, p)| p),
            };
            let param_expires = params.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| v.trim().parse::<u32>().ok())
            });
            let expires = match param_expires {
                Some(Some(e)) => e,
                Some(None) => return Err(()),
                None => header_expires.unwrap_or(default),
            };
            out.push((uri, expires));
        }
    }
    Ok(Wanted::Set(out))
}

/// The REGISTER's Path values in order (RFC 3327 §5.3), or `Err(())` when one is
/// not a `sip:`/`sips:` URI or there are more than [`MAX_PATH`] (400).
fn path_of(req: &Request) -> Result<Vec<String>, ()> {
    let mut out = Vec::new();
    for h in req.headers.iter() {
        let Header::Other(name, value) = h else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("path") {
            continue;
        }
        for v in message::split_outside(value, ',').ok_or(())? {
            let v = v.trim();
            let uri = message::uri_of(v).trim().to_ascii_lowercase();
            if !uri.starts_with("sip:") && !uri.starts_with("sips:") {
                return Err(());
            }
            out.push(v.to_string());
        }
    }
    if out.len() > MAX_PATH {
        return Err(());
    }
    Ok(out)
}

/// Whether the request lists `option` in Supported (or its compact form `k`).
fn supports(req: &Request, option: &str) -> bool {
    req.headers.iter().any(|h| {
        let v = match h {
            Header::Supported(s) => s.value(),
            Header::Other(n, v) if n.trim().eq_ignore_ascii_case("k") => v.as_str(),
            _ => return false,
        };
        v.split(',').any(|o| o.trim().eq_ignore_ascii_case(option))
    })
}

/// The address a trusted proxy says the REGISTER came from: the `received`
/// parameter Kamailio's `add_path_received()` puts in its Path value.
fn path_received(path: &[String]) -> Option<IpAddr> {
    let first = path.first()?;
    let inner = first.split_once('<').map_or(first.as_str(), |(_, r)| r);
    let inner = inner.split_once('>').map_or(inner, |(l, _)| l);
    let value = inner.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("received")
            .then_some(v.trim())
    })?;
    let value = value.trim_matches('"');
    let value = value
        .strip_prefix("sip:")
        .or_else(|| value.strip_prefix("sips:"))
        .unwrap_or(value);
    let host = value.split([';', '%']).next().unwrap_or(value);
    host.parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .or_else(|| host.trim_matches(['[', ']']).parse().ok())
}

fn algorithm(a: DigestAlgorithm) -> Algorithm {
    match a {
        DigestAlgorithm::Md5 => Algorithm::Md5,
        DigestAlgorithm::Sha256 => Algorithm::Sha256,
    }
}

impl B2bua {
    /// Wall-clock time at `now` (bindings outlive the process, so they are kept
    /// in wall time; the virtual clock of tests maps onto it linearly).
    pub(crate) fn wall(&self, now: Instant) -> SystemTime {
        let (i0, w0) = self.epoch;
        w0 + now.saturating_duration_since(i0)
    }

    /// A source over its failed-authentication budget is refused unchecked.
    pub(crate) fn auth_blocked(&mut self, ip: IpAddr, now: Instant) -> bool {
        let Some(f) = self.registrar.failures.get_mut(&ip) else {
            return false;
        };
        match f.blocked_until {
            Some(t) if t > now => true,
            Some(_) => {
                self.registrar.failures.remove(&ip);
                false
            }
            None => false,
        }
    }

    pub(crate) fn auth_failed(&mut self, ip: IpAddr, now: Instant, agent: &str) {
        self.stats.auth_failures += 1;
        let sip = &self.snap.config.sip;
        let (max, window) = (sip.auth_max_failures, sip.auth_block);
        let f = self.registrar.failures.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(f.since) > window {
            *f = Failures {
                count: 0,
                since: now,
                blocked_until: None,
            };
        }
        f.count += 1;
        warn!(source = %ip, %agent, failures = f.count, "digest authentication failed");
        if max > 0 && f.count >= max {
            f.blocked_until = Some(now + window);
            self.stats.auth_blocks += 1;
            warn!(source = %ip, block = ?window, "too many failed authentications: source refused for a while");
        }
        // The table cannot grow without bound under a spoofed-source flood.
        if self.registrar.failures.len() > 100_000 {
            self.registrar
                .failures
                .retain(|_, f| f.blocked_until.is_some_and(|t| t > now));
        }
    }

    /// 401 with WWW-Authenticate (a registrar), or 407 with Proxy-Authenticate
    /// (`proxy`: an agent's INVITE), one per algorithm in order.
    pub(crate) fn challenge_for(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Request,
        algs: &[DigestAlgorithm],
        stale: bool,
        proxy: bool,
    ) {
        let wall = self.wall(now);
        let realm = self.snap.config.sip.realm.clone();
        let headers: Vec<Header> = algs
            .iter()
            .map(|a| {
                let c = Challenge {
                    realm: realm.clone(),
                    nonce: self.registrar.verifier.nonce(wall),
                    opaque: None,
                    algorithm: algorithm(*a),
                    qop_auth: true,
                    stale,
                };
                let v = c.to_header_value();
                if proxy {
                    Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(v))
                } else {
                    Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(v))
                }
            })
            .collect();
        self.reply_with(now, tx, req, if proxy { 407 } else { 401 }, headers);
    }

    pub(crate) fn on_register(
        &mut self,
        now: Instant,
        tx: TxId,
        req: Request,
        head: Head,
        flow: Flow,
    ) {
        let Ok(path) = path_of(&req) else {
            return self.reply(now, tx, &req, 400, None);
        };
        // Behind a proxy that is a trunk (trusted), failed attempts count against
        // the phone's own address, as the proxy saw it: one guessing phone must
        // not get every phone behind the proxy refused.
        let ip = match path_received(&path) {
            Some(ip) if self.snap.trunk_for(flow.remote.ip()).is_some() => ip,
            _ => flow.remote.ip(),
        };
        if self.auth_blocked(ip, now) {
            self.stats.auth_blocked += 1;
            return self.reply(now, tx, &req, 403, None);
        }
        // The address of record: To's user part is the agent id.
        let to = req.headers.iter().find_map(|h| match h {
            Header::To(t) => Some(t.value().to_string()),
            _ => None,
        });
        let agent_id = to.as_deref().map_or("", message::user_of).to_string();
        // A browser signed in with its user's token (`/ws/sip?token=`) registers
        // that user (a supervisor) or the agent linked to it without digest.
        let by_token = self.signed_in.get(&flow).is_some_and(|u| {
            *u == agent_id
                || self
                    .snap
                    .agent(&agent_id)
                    .is_some_and(|a| a.user.as_deref() == Some(u.as_str()))
        });
        // The console registers its user's name: the binding is the agent's when
        // an agent names that user.
        let agent_id = match self.signed_in.get(&flow).filter(|_| by_token) {
            Some(u) => self.agent_of_user(u).unwrap_or(agent_id),
            None => agent_id,
        };
        if !by_token {
            let agent = self
                .snap
                .agent(&agent_id)
                .filter(|a| a.password.is_some())
                .cloned();
            let algs = agent
                .as_ref()
                .and_then(|a| a.digest.clone())
                .unwrap_or_else(|| self.snap.config.sip.digest.clone());
            let realm = self.snap.config.sip.realm.clone();
            // The credentials for our realm, if any.
            let creds = req.headers.iter().find_map(|h| match h {
                Header::Authorization(a) => {
                    Credentials::parse(a.value()).filter(|c| c.realm == realm)
                }
                _ => None,
            });
            let Some(creds) = creds else {
                return self.challenge_for(now, tx, &req, &algs, false, false);
            };
            let allowed = creds
                .algorithm()
                .is_some_and(|a| algs.iter().any(|x| algorithm(*x) == a));
            if !allowed {
                return self.challenge_for(now, tx, &req, &algs, false, false);
            }
            let wall = self.wall(now);
            // An unknown agent, or credentials for another user than the AOR, fail like
            // a wrong password (nothing tells a guesser which agents exist).
            let password = agent
                .as_ref()
                .filter(|_| creds.username == agent_id)
                .and_then(|a| a.password.clone());
            let verdict = match &password {
                Some(p) => self
                    .registrar
                    .verifier
                    .verify(wall, &creds, &realm, "REGISTER", p),
                None => Verdict::Wrong,
            };
            match verdict {
                Verdict::Ok => {}
                Verdict::Stale => return self.challenge_for(now, tx, &req, &algs, true, false),
                Verdict::UnknownNonce | Verdict::Replayed => {
                    debug!(source = %ip, agent = %agent_id, ?verdict, "REGISTER with an unusable nonce: challenging again");
                    return self.challenge_for(now, tx, &req, &algs, false, false);
                }
                Verdict::Wrong => {
                    self.auth_failed(ip, now, &agent_id);
                    return self.reply(now, tx, &req, 403, None);
                }
            }
        }
        let wall = self.wall(now);
        let sip = &self.snap.config.sip;
        let (min, max) = (
            u32::try_from(sip.register_min_expires.as_secs()).unwrap_or(u32::MAX),
            u32::try_from(sip.register_max_expires.as_secs()).unwrap_or(u32::MAX),
        );
        let wanted = match wanted(&req, max) {
            Ok(w) => w,
            Err(()) => return self.reply(now, tx, &req, 400, None),
        };
        let user_agent = req.headers.iter().find_map(|h| match h {
            Header::UserAgent(u) => Some(u.value().chars().take(128).collect::<String>()),
            _ => None,
        });
        // Most agents have one phone: room for one (a Vec's first push reserves
        // four, ~0.7 KB a registered agent never uses).
        let list = self
            .registrar
            .bindings
            .entry(agent_id.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        list.retain(|b| b.expires > wall);
        let before = list.clone();
        match wanted {
            Wanted::RemoveAll => list.clear(),
            Wanted::Set(contacts) => {
                if contacts.iter().any(|(_, e)| *e != 0 && *e < min) {
                    let h = Header::Other("Min-Expires".into(), min.to_string());
                    return self.reply_with(now, tx, &req, 423, vec![h]);
                }
                for (uri, expires) in contacts {
                    let existing = list.iter().position(|b| b.contact == uri);
                    // A reordered older REGISTER of the same registration changes
                    // nothing (§10.3 step 7).
                    if let Some(i) = existing {
                        let b = &list[i];
                        if b.call_id == head.call_id && head.cseq <= b.cseq {
                            continue;
                        }
                        list.remove(i);
                    }
                    if expires == 0 {
                        continue;
                    }
                    list.push(Binding {
                        agent: agent_id.clone(),
                        contact: uri,
                        flow,
                        expires: wall + Duration::from_secs(u64::from(expires.min(max))),
                        call_id: head.call_id.clone(),
                        cseq: head.cseq,
                        user_agent: user_agent.clone(),
                        path: path.clone(),
                    });
                    if list.len() > MAX_BINDINGS {
                        list.remove(0);
                    }
                }
            }
        }
        let current = list.clone();
        if current != before {
            if current.is_empty() {
                info!(agent = %agent_id, source = %flow.remote, "agent unregistered");
            } else {
                info!(agent = %agent_id, source = %flow.remote, transport = %flow.transport, bindings = current.len(), "agent registered");
            }
            self.outputs.push_back(Output::Bindings {
                agent: agent_id.clone(),
                bindings: current.clone(),
            });
            self.agent_changed(now, &agent_id);
        }
        if current.is_empty() {
            self.registrar.bindings.remove(&agent_id);
        }
        let mut headers: Vec<Header> = current
            .iter()
            .map(|b| {
                let left = b.expires.duration_since(wall).unwrap_or_default().as_secs();
                rsip::headers::Contact::new(format!("<{}>;expires={left}", b.contact)).into()
            })
            .collect();
        // The Path stored, back to a UA that supports it (RFC 3327 §5.3; a UA
        // that does not say so still gets its Path stored and used, as Kamailio's
        // registrar does in its `path_mode` 1: phones rarely list `path`).
        if supports(&req, "path") {
            for p in &path {
                headers.push(Header::Other("Path".into(), p.clone()));
            }
        }
        self.reply_with(now, tx, &req, 200, headers);
        self.dispatch_queues(now);
    }

    /// The agent a signed-in user is: the one naming it as `[[agents]] user`, else
    /// the agent whose id is the user's name.
    pub(crate) fn agent_of_user(&self, user: &str) -> Option<String> {
        let agents = &self.snap.config.agents;
        agents
            .iter()
            .find(|a| a.user.as_deref() == Some(user))
            .or_else(|| agents.iter().find(|a| a.id == user))
            .map(|a| a.id.clone())
    }

    /// The SIP WebSocket `flow` was opened with `user`'s API token: REGISTERs on
    /// it for that user, or for the agent linked to it, need no digest.
    pub fn flow_signed_in(&mut self, flow: Flow, user: String) {
        self.signed_in.insert(flow, user);
    }

    /// Bindings loaded from storage at start (expired ones are skipped, and
    /// WebSocket ones: their sockets died with the previous process and only the
    /// browser can open a new one).
    pub fn restore_bindings(&mut self, now: Instant, bindings: Vec<Binding>) {
        let wall = self.wall(now);
        let live = |b: &Binding| b.expires > wall && !b.flow.transport.is_websocket();
        for b in bindings.into_iter().filter(live) {
            self.registrar
                .bindings
                .entry(b.agent.clone())
                .or_default()
                .push(b);
        }
        self.agents_changed(now, true);
        self.dispatch_queues(now);
    }

    /// The live bindings, for the API.
    pub fn registrations(&self, now: Instant) -> Vec<BindingInfo> {
        let wall = self.wall(now);
        let mut v: Vec<BindingInfo> = self
            .registrar
            .bindings
            .values()
            .flatten()
            .filter(|b| b.expires > wall)
            .map(|b| BindingInfo {
                agent: b.agent.clone(),
                contact: b.contact.clone(),
                transport: b.flow.transport.to_string(),
                source: b.flow.remote.to_string(),
                expires_in: b.expires.duration_since(wall).unwrap_or_default().as_secs(),
                user_agent: b.user_agent.clone(),
                path: b.path.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.agent, &a.contact).cmp(&(&b.agent, &b.contact)));
        v
    }

    /// A WebSocket flow closed: its bindings can never be reached again (only the
    /// browser can open a socket; it registers anew on the next one), so they go
    /// now rather than at expiry, and their agents stop being offered calls.
    pub fn flow_closed(&mut self, now: Instant, flow: Flow) {
        if !flow.transport.is_websocket() {
            return;
        }
        self.signed_in.remove(&flow);
        let changed = self.registrar.drop_where(|b| b.flow == flow);
        self.bindings_dropped(now, changed, "its WebSocket closed");
    }

    /// Drop expired bindings (and tell the driver).
    pub(crate) fn expire_bindings(&mut self, now: Instant) {
        let wall = self.wall(now);
        let changed = self.registrar.expire(wall);
        self.bindings_dropped(now, changed, "registration expired");
    }

    fn bindings_dropped(&mut self, now: Instant, agents: Vec<String>, why: &'static str) {
        for agent in agents {
            let bindings = self
                .registrar
                .bindings
                .get(&agent)
                .cloned()
                .unwrap_or_default();
            info!(%agent, left = bindings.len(), "binding dropped: {why}");
            self.outputs.push_back(Output::Bindings {
                agent: agent.clone(),
                bindings,
            });
            self.agent_changed(now, &agent);
        }
    }

    /// Whether agent `id` can be called now (a live binding or a static contact),
    /// without building the targets.
    pub(crate) fn agent_reachable(&self, now: Instant, id: &str) -> bool {
        let wall = self.wall(now);
        self.registrar
            .bindings
            .get(id)
            .is_some_and(|l| l.iter().any(|b| b.expires > wall))
            || !self
                .registrar
                .live_remote(id, wall, |n| self.node_live(n))
                .is_empty()
            || self.snap.agent(id).is_some_and(|a| a.contact.is_some())
    }

    /// Where to call agent `id`: its live bindings (newest first, all rung at
    /// once; in cluster mode also those other nodes hold with a Path), else its
    /// static contact; none: the agent cannot be reached.
    pub(crate) fn agent_targets(&self, now: Instant, id: &str) -> Vec<crate::invite::LegTarget> {
        let wall = self.wall(now);
        let mut live: Vec<_> = self
            .registrar
            .live(id, wall)
            .into_iter()
            .map(|b| binding_target(b, true))
            .collect();
        // One phone once: a phone that registered again through another node
        // (its first node died, the proxy chose another) is listed by both until
        // the old binding expires; the newest wins.
        for b in self.registrar.live_remote(id, wall, |n| self.node_live(n)) {
            if !live.iter().any(|t| t.uri == b.contact) {
                live.push(binding_target(b, false));
            }
        }
        if !live.is_empty() {
            return live;
        }
        self.snap
            .agent(id)
            .and_then(|a| a.contact.as_ref())
            .map(|c| {
                vec![crate::invite::LegTarget {
                    uri: c.uri.clone(),
                    remote: c.addr,
                    transport: c.transport,
                    local: None,
                    route: Vec::new(),
                    browser: false,
                }]
            })
            .unwrap_or_default()
    }

    /// Stats for metrics: live bindings.
    pub fn registered(&self, now: Instant) -> usize {
        self.registrar.count(self.wall(now))
    }

    /// Every agent's bindings held here (for sharing them with the cluster).
    pub fn local_bindings(&self) -> Vec<(String, Vec<Binding>)> {
        let mut v: Vec<(String, Vec<Binding>)> = self
            .registrar
            .bindings
            .iter()
            .map(|(a, l)| (a.clone(), l.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Cluster mode: `node` now holds exactly `bindings` of `agent` (none: it
    /// holds none). Those with a Path are called from here too.
    pub fn remote_bindings(
        &mut self,
        now: Instant,
        node: String,
        agent: String,
        bindings: Vec<Binding>,
    ) {
        let nodes = self.registrar.remote.entry(agent.clone()).or_default();
        let changed = if bindings.is_empty() {
            nodes.remove(&node).is_some()
        } else {
            nodes.insert(node, bindings.clone()) != Some(bindings)
        };
        if nodes.is_empty() {
            self.registrar.remote.remove(&agent);
        }
        if changed {
            self.agent_changed(now, &agent);
            self.dispatch_queues(now);
        }
    }
}

/// The first hop of `b`'s Path, when it names an IP address.
fn path_hop(b: &Binding) -> Option<(std::net::SocketAddr, Option<sip::Transport>)> {
    let first = b.path.first()?;
    sip::dialog::uri_addr(message::uri_of(first))
}

/// Where a request to binding `b` goes. Through its Path when it has one (the
/// proxy that relayed the REGISTER reaches the phone, from any node); else on the
/// flow its REGISTER came on (`local`: this node's own binding; a WebSocket has no
/// listen address of its own).
fn binding_target(b: &Binding, local: bool) -> crate::invite::LegTarget {
    use crate::invite::LegTarget;
    match path_hop(b) {
        Some((addr, transport)) => {
            // A browser's binding on another node is reached through that node's
            // SIP address (UDP unless its Path says otherwise), not a WebSocket.
            let browser = b.flow.transport.is_websocket();
            let transport = transport.unwrap_or(if browser {
                control::Transport::Udp
            } else {
                b.flow.transport
            });
            // The proxy's own flow when the REGISTER came straight from it.
            let on_flow = local && addr == b.flow.remote && transport == b.flow.transport;
            LegTarget {
                uri: b.contact.clone(),
                remote: addr,
                transport,
                local: on_flow.then_some(b.flow.local),
                route: b.path.clone(),
                browser,
            }
        }
        None => LegTarget {
            uri: b.contact.clone(),
            remote: b.flow.remote,
            transport: b.flow.transport,
            local: Some(b.flow.local),
            route: Vec::new(),
            browser: b.flow.transport.is_websocket(),
        },
    }
}
