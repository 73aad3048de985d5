//! `loadtest register`: agents' phones signing in at a steady rate, sans-IO. Each
//! registration is REGISTER, the 401 challenge, REGISTER with digest credentials
//! (the strongest algorithm offered), and the 200; users are `first`, `first + 1`,
//! … with the password `password` where `{user}` is replaced by the user.

use crate::auth;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request};
use sip::dialog::Dialog;
use sip::endpoint::{Endpoint, Event, Transmit};
use sip::{Flow, TxId};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RegisterConfig {
    pub flow: Flow,
    pub first: u64,
    /// `{user}` is replaced by the user part.
    pub password: String,
    pub expires: u32,
    pub user_agent: String,
}

struct Reg {
    user: String,
    dialog: Dialog,
    started: Instant,
    authenticated: bool,
}

/// What a finished registration came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The final status (408 when nothing answered).
    pub status: u16,
    pub took: Duration,
}

pub struct Registerer {
    cfg: RegisterConfig,
    ep: Endpoint,
    pending: HashMap<TxId, Reg>,
    next: u64,
    finished: Vec<Finished>,
}

impl Registerer {
    pub fn new(cfg: RegisterConfig, seed: u64) -> Registerer {
        let ep = Endpoint::new(cfg.user_agent.clone(), seed);
        Registerer {
            cfg,
            ep,
            pending: HashMap::new(),
            next: 0,
            finished: Vec::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.pending.len()
    }

    fn request(&self, dialog: &mut Dialog, user: &str, authorization: Option<String>) -> Request {
        let mut req = dialog.request(Method::Register, None, &self.cfg.user_agent);
        let mut extra: Vec<Header> = vec![
            rsip::headers::Contact::new(format!("<sip:{user}@{}>", self.cfg.flow.local)).into(),
            rsip::headers::Expires::new(self.cfg.expires.to_string()).into(),
        ];
        if let Some(a) = authorization {
            extra.push(rsip::headers::Authorization::new(a).into());
        }
        sip::message::insert_headers(&mut req.headers, extra);
        req
    }

    /// Sign the next user in.
    pub fn start(&mut self, now: Instant) {
        let user = (self.cfg.first + self.next).to_string();
        self.next += 1;
        let f = self.cfg.flow;
        let aor = format!("<sip:{user}@{}>", f.remote);
        let mut dialog = Dialog::uac(
            format!("{}@loadtest", self.ep.ids().token()),
            self.ep.ids().token(),
            aor.clone(),
            aor,
            format!("sip:{}", f.remote),
            f,
            format!("<sip:{user}@{}>", f.local),
        );
        let req = self.request(&mut dialog, &user, None);
        let tx = self.ep.send_request(now, req, f);
        self.pending.insert(
            tx,
            Reg {
                user,
                dialog,
                started: now,
                authenticated: false,
            },
        );
    }

    pub fn handle_datagram(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.ep.handle_datagram(now, flow, data);
        self.process(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.process(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    /// Registrations finished since the last call.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Response { tx, response, .. } => {
                    let code = response.status_code.code();
                    if code < 200 {
                        continue;
                    }
                    let Some(mut r) = self.pending.remove(&tx) else {
                        continue;
                    };
                    if code == 401 && !r.authenticated {
                        let challenge =
                            auth::best_challenge(response.headers.iter().filter_map(|h| match h {
                                Header::WwwAuthenticate(w) => Some(w.value()),
                                _ => None,
                            }));
                        if let Some(c) = challenge {
                            let password = self.cfg.password.replace("{user}", &r.user);
                            let cnonce = self.ep.ids().token();
                            let uri = format!("sip:{}", self.cfg.flow.remote);
                            let value = auth::authorization(
                                &c, &r.user, &password, "REGISTER", &uri, &cnonce,
                            );
                            let user = r.user.clone();
                            let req = self.request(&mut r.dialog, &user, Some(value));
                            r.authenticated = true;
                            let tx = self.ep.send_request(now, req, self.cfg.flow);
                            self.pending.insert(tx, r);
                            continue;
                        }
                    }
                    self.finished.push(Finished {
                        status: code,
                        took: now.saturating_duration_since(r.started),
                    });
                }
                Event::Timeout { tx } | Event::TransportError { tx } => {
                    let status = if matches!(ev, Event::Timeout { .. }) {
                        408
                    } else {
                        503
                    };
                    if let Some(r) = self.pending.remove(&tx) {
                        self.finished.push(Finished {
                            status,
                            took: now.saturating_duration_since(r.started),
                        });
                    }
                }
                _ => {}
            }
        }
    }
}

/// Counts of finished registrations by status.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_status: BTreeMap<u16, u64>,
    pub took_us: Vec<u64>,
}

impl Tally {
    pub fn add(&mut self, f: Finished) {
        *self.by_status.entry(f.status).or_default() += 1;
        if f.status == 200 {
            self.took_us
                .push(u64::try_from(f.took.as_micros()).unwrap_or(u64::MAX));
        }
    }

    pub fn ok(&self) -> u64 {
        self.by_status.get(&200).copied().unwrap_or(0)
    }

    pub fn finished(&self) -> u64 {
        self.by_status.values().sum()
    }
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
