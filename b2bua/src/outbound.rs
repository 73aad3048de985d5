//! Who placed a new call: a trunk, or an agent dialling out. An INVITE that comes
//! over a SIP WebSocket (a browser: never a trunk) or carries Proxy-Authorization,
//! or that names an agent in From from a source that is no trunk, is an agent's.
//! A socket signed in with the user's token (`/ws/sip?token=`) needs nothing more;
//! otherwise digest as for REGISTER (RFC 3261 §22.3: 407 with Proxy-Authenticate,
//! the same realm, algorithms, expiring nonces, nonce counts and failure
//! throttling). The call then routes by the dialled number like a trunk's.

use crate::B2bua;
use rsip::headers::UntypedHeader;
use rsip::{Header, Request};
use sip::digest::{Credentials, Verdict};
use sip::message;
use sip::{Flow, TxId};
use std::time::Instant;
use tracing::{debug, info};

/// What [`B2bua::caller`] found.
pub(crate) enum Caller {
    /// A trunk's call (its name).
    Trunk(String),
    /// Agent `id` dials out.
    Agent(String),
    /// Answered already (407 challenge, 403).
    Replied,
}

/// Whether a new INVITE from a source that is no trunk may be an agent's (it
/// came over a WebSocket, carries Proxy-Authorization, or names an agent with a
/// password in From): it then gets a digest challenge, not the strangers' 403.
pub(crate) fn maybe_agent(snap: &control::Snapshot, req: &Request, flow: Flow) -> bool {
    flow.transport.is_websocket()
        || req.headers.iter().any(|h| match h {
            Header::ProxyAuthorization(_) => true,
            Header::From(f) => snap
                .agent(message::user_of(f.value()))
                .is_some_and(|a| a.password.is_some()),
            _ => false,
        })
}

impl B2bua {
    pub(crate) fn caller(&mut self, now: Instant, tx: TxId, req: &Request, flow: Flow) -> Caller {
        let ip = flow.remote.ip();
        let creds = req.headers.iter().find_map(|h| match h {
            Header::ProxyAuthorization(a) => Some(a.value().to_string()),
            _ => None,
        });
        let from = req
            .headers
            .iter()
            .find_map(|h| match h {
                Header::From(f) => Some(message::user_of(f.value()).to_string()),
                _ => None,
            })
            .unwrap_or_default();
        if !flow.transport.is_websocket() && creds.is_none() {
            if let Some(t) = self.snap.trunk_for(ip) {
                return Caller::Trunk(t.to_string());
            }
            if self.snap.agent(&from).is_none_or(|a| a.password.is_none()) {
                info!(source = %flow.remote, "INVITE from a source that is no trunk: 403");
                self.reply(now, tx, req, 403, None);
                return Caller::Replied;
            }
        }
        // A browser signed in with its user's token: that user's agent.
        if let Some(user) = self.signed_in.get(&flow) {
            return match self.agent_of_user(user) {
                Some(id) => Caller::Agent(id),
                None => {
                    info!(%user, "INVITE from a signed-in user who is no agent: 403");
                    self.reply(now, tx, req, 403, None);
                    Caller::Replied
                }
            };
        }
        if self.auth_blocked(ip, now) {
            self.stats.auth_blocked += 1;
            self.reply(now, tx, req, 403, None);
            return Caller::Replied;
        }
        let realm = self.snap.config.sip.realm.clone();
        let creds = creds
            .as_deref()
            .and_then(Credentials::parse)
            .filter(|c| c.realm == realm);
        let agent = creds
            .as_ref()
            .map_or(from.as_str(), |c| c.username.as_str())
            .to_string();
        let a = self.snap.agent(&agent).filter(|a| a.password.is_some());
        let algs = a
            .and_then(|a| a.digest.clone())
            .unwrap_or_else(|| self.snap.config.sip.digest.clone());
        let Some(creds) = creds else {
            self.challenge_for(now, tx, req, &algs, false, true);
            return Caller::Replied;
        };
        let password = a.and_then(|a| a.password.clone());
        let wall = self.wall(now);
        let verdict = match &password {
            Some(p) => self
                .registrar
                .verifier
                .verify(wall, &creds, &realm, "INVITE", p),
            None => Verdict::Wrong,
        };
        match verdict {
            Verdict::Ok => Caller::Agent(agent),
            Verdict::Stale => {
                self.challenge_for(now, tx, req, &algs, true, true);
                Caller::Replied
            }
            Verdict::UnknownNonce | Verdict::Replayed => {
                debug!(source = %ip, %agent, ?verdict, "INVITE with an unusable nonce: challenging again");
                self.challenge_for(now, tx, req, &algs, false, true);
                Caller::Replied
            }
            Verdict::Wrong => {
                self.auth_failed(ip, now, &agent);
                self.reply(now, tx, req, 403, None);
                Caller::Replied
            }
        }
    }
}
