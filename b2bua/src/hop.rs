//! The SIP hop between cluster nodes: a phone registered straight to node B (its
//! flow — a TCP connection, a NAT's UDP mapping — lives on B) is called by node A
//! through B. B shares such a binding with a Path naming itself,
//! `<sip:B;lr;edge-hop=TOKEN>` ([`hop_path`]; the token names the agent and the
//! flow), so A treats it as any binding behind a proxy (Route = the Path) and B
//! relays statelessly (RFC 3261 §16.11):
//!
//! - **towards the phone**: a request from a live cluster node whose top Route is
//!   B with a token naming a live binding of B. B takes its Route off, lowers
//!   Max-Forwards, record-routes a new dialog through itself with the same token
//!   (so the dialog's later requests come the same way, from either side), adds
//!   its Via and sends it on the binding's flow.
//! - **from the phone**: a request in a dialog made that way (the phone sends it
//!   to B's Record-Route) goes on to its Request-URI or next Route, which must be
//!   a live cluster node.
//! - **responses**: B's Via carries the flow the request came on and a MAC of it
//!   (`edge-back`, keyed by this process's secret): B takes it off and sends the
//!   response back on that flow; a response whose Via B did not write is dropped.
//!
//! Nothing is kept per transaction or dialog. Browsers (WebSocket bindings) are not
//! shared this way: their leg needs WebRTC media, which only their own node sets
//! up for them.

use crate::B2bua;
use rsip::headers::UntypedHeader;
use rsip::{Header, Method, Request, Response, SipMessage};
use sip::message::{self, Head};
use sip::{Flow, Transport};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::{debug, warn};

/// The URI parameter of a hop Route / Record-Route.
pub const HOP_PARAM: &str = "edge-hop";
/// The Via parameter naming the flow a relayed request came on.
pub const BACK_PARAM: &str = "edge-back";
const BRANCH_PREFIX: &str = "z9hG4bK-hop-";

/// `transport~local~remote` (URI-parameter safe: `[`, `]`, `:` and `~` are).
pub fn flow_token(f: Flow) -> String {
    format!(
        "{}~{}~{}",
        f.transport.as_str().to_ascii_lowercase(),
        f.local,
        f.remote
    )
}

pub fn parse_flow(t: &str) -> Option<Flow> {
    let mut it = t.splitn(3, '~');
    Some(Flow {
        transport: Transport::from_name(it.next()?)?,
        local: it.next()?.parse().ok()?,
        remote: it.next()?.parse().ok()?,
    })
}

/// The Path a node shares for `agent`'s binding on its own `flow`: other nodes
/// reach the phone through `advertise` (this node's SIP address).
pub fn hop_path(advertise: SocketAddr, agent: &str, flow: Flow) -> String {
    format!(
        "<sip:{advertise};lr;{HOP_PARAM}={}~{}>",
        hex::encode(agent),
        flow_token(flow)
    )
}

/// (agent, flow) of a hop token.
pub fn parse_hop(t: &str) -> Option<(String, Flow)> {
    let (agent, flow) = t.split_once('~')?;
    Some((
        String::from_utf8(hex::decode(agent).ok()?).ok()?,
        parse_flow(flow)?,
    ))
}

/// Whether a Path value is a node hop (not a proxy's).
pub fn is_hop(path_value: &str) -> bool {
    uri_param(message::uri_of(path_value), HOP_PARAM).is_some()
}

/// The value of URI parameter `name` (case-insensitive name).
fn uri_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let uri = uri.split('?').next().unwrap_or(uri);
    uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether `data` may be a hop message (a cheap look before parsing).
pub(crate) fn maybe_hop(data: &[u8]) -> bool {
    memchr::memmem::find(data, HOP_PARAM.as_bytes()).is_some()
        || memchr::memmem::find(data, BACK_PARAM.as_bytes()).is_some()
}

/// The Route values of a request, in order.
fn routes(req: &Request) -> Vec<String> {
    let mut out = Vec::new();
    for h in req.headers.iter() {
        if let Header::Route(r) = h {
            match message::split_outside(r.value(), ',') {
                Some(vs) => out.extend(vs.into_iter().map(|v| v.trim().to_string())),
                None => out.push(r.value().to_string()),
            }
        }
    }
    out
}

/// Replace the request's Route headers by `values`.
fn set_routes(req: &mut Request, values: &[String]) {
    let mut headers: Vec<Header> = req
        .headers
        .iter()
        .filter(|h| !matches!(h, Header::Route(_)))
        .cloned()
        .collect();
    // Route goes where it was: before the first header that is not Via (order
    // among different names does not matter, §7.3.1).
    let at = headers
        .iter()
        .position(|h| !matches!(h, Header::Via(_)))
        .unwrap_or(headers.len());
    for (i, v) in values.iter().enumerate() {
        headers.insert(at + i, rsip::headers::Route::new(v.clone()).into());
    }
    req.headers = headers.into();
}

/// Lower Max-Forwards by one; `false` when it was already 0 (483).
fn forward_max(req: &mut Request) -> bool {
    let mut ok = true;
    let mut found = false;
    for h in req.headers.iter_mut() {
        if let Header::MaxForwards(m) = h {
            found = true;
            let n = m.value().trim().parse::<u32>().unwrap_or(70);
            if n == 0 {
                ok = false;
            } else {
                m.replace((n - 1).to_string());
            }
        }
    }
    if !found {
        req.headers
            .push(rsip::headers::MaxForwards::new("69").into());
    }
    ok
}

/// The top Via value of a message.
fn top_via(headers: &rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Via(v) => message::split_outside(v.value(), ',')
            .and_then(|vs| vs.first().map(|s| s.trim().to_string())),
        _ => None,
    })
}

/// Remove the top Via value.
fn pop_via(headers: &mut rsip::Headers) {
    let mut out: Vec<Header> = Vec::new();
    let mut done = false;
    for h in headers.iter() {
        if let (false, Header::Via(v)) = (done, h) {
            done = true;
            if let Some(vs) = message::split_outside(v.value(), ',') {
                let rest: Vec<&str> = vs.iter().skip(1).map(|s| s.trim()).collect();
                if !rest.is_empty() {
                    out.push(rsip::headers::Via::new(rest.join(", ")).into());
                }
            }
            continue;
        }
        out.push(h.clone());
    }
    *headers = out.into();
}

fn via_param<'a>(via: &'a str, name: &str) -> Option<&'a str> {
    via.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Which way a hop request goes.
enum Way {
    /// From a node to the phone on `flow`.
    ToPhone(Flow),
    /// From the phone (in a dialog made through this node) on to a node.
    FromPhone,
}

impl B2bua {
    /// Cluster mode: the live nodes' SIP addresses (`me`: this node's own). Bindings
    /// other nodes share through a hop are called only while their node is live.
    pub fn set_cluster_nodes(
        &mut self,
        now: Instant,
        me: SocketAddr,
        nodes: Vec<(String, SocketAddr)>,
    ) {
        let changed = self.cluster_nodes != nodes || self.cluster_me != Some(me);
        self.cluster_me = Some(me);
        self.cluster_nodes = nodes;
        if changed {
            // Agents whose only way in was a node that came or went.
            let agents: Vec<String> = self.registrar.remote.keys().cloned().collect();
            for a in agents {
                self.agent_changed_with(now, &a, true);
            }
            self.dispatch_queues(now);
        }
    }

    /// Whether node `name` is live (always, outside cluster mode: no hop there).
    pub(crate) fn node_live(&self, name: &str) -> bool {
        self.cluster_nodes.iter().any(|(n, _)| n == name)
    }

    fn node_ip(&self, ip: IpAddr) -> bool {
        self.cluster_nodes.iter().any(|(_, a)| a.ip() == ip)
    }

    fn is_me(&self, addr: SocketAddr) -> bool {
        self.cluster_me == Some(addr) || self.snap.config.sip.listen.iter().any(|l| l.addr == addr)
    }

    /// A message for the hop (see the module). `false`: not one; the caller
    /// handles it as usual.
    pub(crate) fn try_hop(&mut self, now: Instant, flow: Flow, data: &[u8]) -> bool {
        if self.cluster_me.is_none() || !maybe_hop(data) {
            return false;
        }
        let Ok((msg, head)) = message::parse(data) else {
            return false;
        };
        match msg {
            SipMessage::Request(req) => self.hop_request(now, flow, req, head),
            SipMessage::Response(resp) => self.hop_response(flow, resp),
        }
    }

    fn hop_request(&mut self, now: Instant, flow: Flow, mut req: Request, head: Head) -> bool {
        let mut route = routes(&req);
        let Some(top) = route.first() else {
            return false;
        };
        let uri = message::uri_of(top).to_string();
        let Some(token) = uri_param(&uri, HOP_PARAM).map(str::to_string) else {
            return false;
        };
        match sip::dialog::uri_addr(&uri) {
            Some((addr, _)) if self.is_me(addr) => {}
            _ => return false,
        }
        let Some((agent, target)) = parse_hop(&token) else {
            return self.hop_refuse(now, flow, &req, 400, "bad hop token");
        };
        let wall = self.wall(now);
        let live = self
            .registrar
            .live(&agent, wall)
            .iter()
            .any(|b| b.flow == target);
        if !live {
            // The phone unregistered (or this node restarted): 480, as for an
            // agent with no binding.
            return self.hop_refuse(now, flow, &req, 480, "no such binding here");
        }
        let same_flow = flow.remote == target.remote && flow.transport == target.transport;
        let way = if same_flow {
            Way::FromPhone
        } else if self.node_ip(flow.remote.ip()) {
            Way::ToPhone(target)
        } else if flow.remote.ip() == target.remote.ip() && flow.transport == target.transport {
            // The phone on a new connection of its own.
            Way::FromPhone
        } else {
            return self.hop_refuse(now, flow, &req, 403, "not a cluster node");
        };
        if !forward_max(&mut req) {
            return self.hop_refuse(now, flow, &req, 483, "too many hops");
        }
        route.remove(0);
        set_routes(&mut req, &route);
        let out = match way {
            Way::ToPhone(target) => {
                if head.to_tag.is_none()
                    && matches!(
                        req.method,
                        Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
                    )
                {
                    // Later requests of the dialog come this way, from both sides.
                    // A browser sends everything on its WebSocket whatever the
                    // URI, and the calling node must reach this node by its SIP
                    // address: for a WebSocket flow that is the one named.
                    let rr = if target.transport.is_websocket() {
                        let me = self.cluster_me.unwrap_or(target.local);
                        format!("<sip:{me};lr;{HOP_PARAM}={token}>")
                    } else {
                        format!(
                            "<sip:{};lr;{HOP_PARAM}={token}{}>",
                            target.local,
                            target.transport.uri_param()
                        )
                    };
                    let mut headers: Vec<Header> = vec![rsip::headers::RecordRoute::new(rr).into()];
                    headers.extend(req.headers.iter().cloned());
                    req.headers = headers.into();
                }
                target
            }
            Way::FromPhone => {
                // In a dialog only (a new request from the phone comes to its
                // node as usual), and only on to a cluster node.
                if head.to_tag.is_none() && req.method != Method::Ack {
                    return self.hop_refuse(now, flow, &req, 403, "new request through a hop");
                }
                let next = route.first().map(|r| message::uri_of(r).to_string());
                let next = next.unwrap_or_else(|| req.uri.to_string());
                let Some((addr, t)) = sip::dialog::uri_addr(&next) else {
                    return self.hop_refuse(now, flow, &req, 404, "next hop not an address");
                };
                if !self.node_ip(addr.ip()) {
                    return self.hop_refuse(now, flow, &req, 403, "next hop not a cluster node");
                }
                let Some(out) = self.local_flow(t.unwrap_or(Transport::Udp), addr) else {
                    return self.hop_refuse(now, flow, &req, 503, "no listen address");
                };
                out
            }
        };
        // Our Via: where the response goes back to, under a MAC only we can make.
        // The branch is the same for a request's retransmissions, its CANCEL and
        // the ACK of a failure (all share the top branch we got).
        let back = flow_token(flow);
        let incoming = head.via.branch.clone().unwrap_or_default();
        let tag = sip::digest::mac_hex(&self.hop_secret, &[&incoming, &back]);
        let via = format!(
            "SIP/2.0/{} {};branch={BRANCH_PREFIX}{tag};{BACK_PARAM}={back}",
            out.transport.as_str(),
            out.local,
        );
        let mut headers: Vec<Header> = vec![rsip::headers::Via::new(via).into()];
        headers.extend(req.headers.iter().cloned());
        req.headers = headers.into();
        debug!(method = %req.method, call_id = %head.call_id, to = %out.remote, "relayed through the node hop");
        self.stats.hop_relayed += 1;
        self.ep.send_raw(out, req.to_string().into());
        true
    }

    fn hop_response(&mut self, _flow: Flow, mut resp: Response) -> bool {
        let Some(via) = top_via(&resp.headers) else {
            return false;
        };
        let (Some(branch), Some(back)) = (via_param(&via, "branch"), via_param(&via, BACK_PARAM))
        else {
            return false;
        };
        let Some(tag) = branch.strip_prefix(BRANCH_PREFIX) else {
            return false;
        };
        let (tag, back) = (tag.to_string(), back.to_string());
        pop_via(&mut resp.headers);
        // The MAC covers the branch of the Via below ours (the one we got with
        // the request) and the flow: a Via we did not write sends nothing anywhere.
        let incoming = top_via(&resp.headers)
            .and_then(|v| via_param(&v, "branch").map(str::to_string))
            .unwrap_or_default();
        let good = sip::digest::mac_hex(&self.hop_secret, &[&incoming, &back]) == tag;
        let Some(back_flow) = parse_flow(&back).filter(|_| good) else {
            self.stats.hop_refused += 1;
            debug!("response with a hop Via this node did not write: dropped");
            return true;
        };
        self.stats.hop_relayed += 1;
        self.ep.send_raw(back_flow, resp.to_string().into());
        true
    }

    /// Answer a hop request statelessly (never an ACK) and count it.
    fn hop_refuse(
        &mut self,
        _now: Instant,
        flow: Flow,
        req: &Request,
        code: u16,
        why: &str,
    ) -> bool {
        self.stats.hop_refused += 1;
        warn!(source = %flow.remote, method = %req.method, code, why, "node hop refused");
        if req.method != Method::Ack {
            let resp = message::response(req, code, Some("hop"), self.ep.server_name());
            self.ep.send_raw(flow, resp.to_string().into());
        }
        true
    }
}
