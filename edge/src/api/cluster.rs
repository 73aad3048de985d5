//! The cluster-wide API (cluster mode): lists merge this node's items with the other
//! live nodes' answers, each item tagged with its `node`; a command for a call or
//! chat this node does not hold goes to the other nodes, and the one holding it
//! carries it out. [`serve_peers`] answers the other nodes' requests on this
//! node's subject. On a single node (no `[cluster]`) lists are this node's, as
//! before, without a `node` field.
//!
//! Between nodes the requester has already authorised its user; a node trusts what
//! arrives on its NATS subject (secure the NATS servers: credentials and TLS in
//! their URLs, a network only the nodes reach).

use super::state::AppState;
use crate::cluster::Cluster;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::{debug, warn};

/// `item` (an object) with the `node` that holds it.
fn with_node(mut item: Value, node: &str) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.insert("node".into(), Value::from(node));
    }
    item
}

/// Tag one of this node's items with the node's name (cluster mode only).
pub fn tag_local(s: &AppState, item: Value) -> Value {
    match &s.cluster {
        Some(cl) => with_node(item, &cl.node),
        None => item,
    }
}

/// `{key: items}` of this node, plus the other live nodes' items in cluster mode,
/// and `"unreachable": [nodes]` (live nodes that did not answer in time).
pub async fn merged(s: &AppState, key: &str, local: Vec<Value>) -> Response {
    let Some(cl) = &s.cluster else {
        return Json(json!({ key: local })).into_response();
    };
    let mut items: Vec<Value> = local.into_iter().map(|i| tag_local(s, i)).collect();
    let g = cl.ask_others(&json!({ "op": key })).await;
    let mut unreachable = g.unreachable;
    // A node's list comes in pages (a NATS message is at most 1 MB by default):
    // the rest of each node's list is asked for, the nodes at once.
    let rest = futures_util::future::join_all(g.answers.into_iter().map(|(node, first)| {
        let cl = cl.clone();
        async move {
            let mut got = Vec::new();
            let mut answer = Some(first);
            while let Some(a) = answer.take() {
                let Some(list) = a.get("items").and_then(Value::as_array) else {
                    return (node, Err(()));
                };
                got.extend(list.iter().map(|i| with_node(i.clone(), &node)));
                if let Some(from) = a.get("next").and_then(Value::as_u64) {
                    match cl.ask(&node, &json!({ "op": key, "from": from })).await {
                        Some(next) => answer = Some(next),
                        None => return (node, Err(())),
                    }
                }
            }
            (node, Ok(got))
        }
    }))
    .await;
    for (node, got) in rest {
        match got {
            Ok(list) => items.extend(list),
            Err(()) => unreachable.push(node),
        }
    }
    Json(json!({ key: items, "unreachable": unreachable })).into_response()
}

/// The most of a list one answer to another node carries (serialised items);
/// the rest follows on request (`next`). Well under NATS's default 1 MB payload.
const PAGE_BYTES: usize = 256 * 1024;

/// The page of `items` that starts at `from`: `{"items": [...], "next": index}`
/// (`next` only when items are left). A list that changes between pages can
/// repeat or miss an item.
fn page(items: Vec<Value>, from: usize) -> Value {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    for (i, item) in items.into_iter().enumerate().skip(from) {
        let len = serde_json::to_vec(&item).map(|v| v.len()).unwrap_or(0);
        if !out.is_empty() && bytes + len > PAGE_BYTES {
            next = Some(i);
            break;
        }
        bytes += len;
        out.push(item);
    }
    match next {
        Some(n) => json!({ "items": out, "next": n }),
        None => json!({ "items": out }),
    }
}

/// Send `req` (a lookup or a command for one call or chat) to the other live
/// nodes; the answer of the node that holds it (`status` 200 or 204), with its
/// `node`. `None` on a single node, or when no node holds it.
pub async fn find(s: &AppState, req: Value) -> Option<Value> {
    let cl = s.cluster.as_ref()?;
    let g = cl.ask_others(&req).await;
    g.answers.into_iter().find_map(|(node, a)| {
        matches!(a.get("status").and_then(Value::as_u64), Some(200 | 204))
            .then(|| with_node(a.get("item").cloned().unwrap_or_else(|| json!({})), &node))
    })
}

/// What this node answers to another node's request.
async fn answer(s: &AppState, req: &Value) -> Value {
    let id = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let from = req.get("from").and_then(Value::as_u64).unwrap_or(0) as usize;
    let failed = |r: Response| json!({ "status": r.status().as_u16() });
    match req.get("op").and_then(Value::as_str).unwrap_or("") {
        "calls" => match super::calls::local_calls(s).await {
            Ok(items) => page(items, from),
            Err(r) => failed(r),
        },
        "registrations" => match super::registrations::local(s).await {
            Ok(items) => page(items, from),
            Err(r) => failed(r),
        },
        "chats" => page(super::chats::local(s), from),
        "call" => match super::calls::local_call(s, &id("call")).await {
            Ok(Some(item)) => json!({ "status": 200, "item": item }),
            Ok(None) => json!({ "status": 404 }),
            Err(r) => failed(r),
        },
        "hangup" => match super::calls::local_hangup(s, &id("call")).await {
            Ok(true) => {
                tracing::info!(call = %id("call"), "call ended at another node's request");
                json!({ "status": 204 })
            }
            Ok(false) => json!({ "status": 404 }),
            Err(r) => failed(r),
        },
        "http" => forwarded(s, req).await,
        "has_chat" => {
            if s.chats.read(|c| c.exists(&id("chat"))) {
                json!({ "status": 200 })
            } else {
                json!({ "status": 404 })
            }
        }
        "agent_chats" => {
            json!({ "status": 200, "chats": s.chats.read(|c| c.active_chats_by_agent()) })
        }
        "end_chat" => {
            if super::chats::local_end(s, &id("chat")) {
                tracing::info!(chat = %id("chat"), "chat ended at another node's request");
                json!({ "status": 204 })
            } else {
                json!({ "status": 404 })
            }
        }
        other => json!({ "status": 400, "error": format!("unknown op `{other}`") }),
    }
}

/// Answer the other nodes' requests on this node's subject, each in its own task,
/// for as long as the edge runs (the client re-subscribes after a reconnect).
pub fn serve_peers(s: AppState, cl: Arc<Cluster>) {
    tokio::spawn(async move {
        let subject = crate::cluster::api_subject(&cl.node);
        let mut sub = loop {
            match cl.client.subscribe(subject.clone()).await {
                Ok(sub) => break sub,
                Err(e) => {
                    warn!(error = %e, "cluster: cannot subscribe to the API subject yet");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        };
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let (s, cl) = (s.clone(), cl.clone());
            tokio::spawn(async move {
                let out = match serde_json::from_slice::<Value>(&msg.payload) {
                    Ok(req) => answer(&s, &req).await,
                    Err(_) => json!({ "status": 400, "error": "not JSON" }),
                };
                let body = serde_json::to_vec(&out).unwrap_or_default();
                if let Err(e) = cl.client.publish(reply, body.into()).await {
                    debug!(error = %e, "cluster: reply not sent");
                }
            });
        }
    });
}

/// The whole HTTP app, for the commands other nodes forward here ([`forwarded`]).
static APP: std::sync::OnceLock<axum::Router> = std::sync::OnceLock::new();

/// Main hands over the app once it is built.
pub fn set_app(app: axum::Router) {
    let _ = APP.set(app);
}

/// Largest request body forwarded to another node, and response body sent back.
const FORWARD_BODY: usize = 256 * 1024;

/// The call a `/api/v1/calls/{id}/…` command names (not the list, nor the call
/// itself: `GET` and `DELETE /calls/{id}` answer for the cluster on their own).
fn command_call(path: &str) -> Option<&str> {
    let (id, rest) = path.strip_prefix("/api/v1/calls/")?.split_once('/')?;
    (!id.is_empty() && !rest.is_empty()).then_some(id)
}

/// Cluster mode: a command about a call another node holds — monitor, whisper,
/// barge, hold, DTMF, recording, transfer, consult, conference participants — is
/// carried out by that node. The user is authenticated here (no token, nothing
/// forwarded); the holding node checks the user's role itself, as for a request
/// of its own, and its answer (status and body) is this request's, with
/// `x-edge-node` naming it.
pub async fn forward_calls(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{header, StatusCode};
    let forwarded_here = req.headers().contains_key(crate::ws::relay::RELAY_HEADER);
    let Some(id) = command_call(req.uri().path()).map(str::to_string) else {
        return next.run(req).await;
    };
    if s.cluster.is_none() || forwarded_here {
        return next.run(req).await;
    }
    let user = match super::authorize_user(&s, req.headers(), control::Role::Agent) {
        Ok(u) => u,
        Err(e) => return e,
    };
    match super::calls::local_call(&s, &id).await {
        Ok(Some(_)) => return next.run(req).await,
        Ok(None) => {}
        Err(e) => return e,
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, FORWARD_BODY).await else {
        return super::error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return super::error(StatusCode::BAD_REQUEST, "request body is not UTF-8");
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(parts.uri.path());
    let cmd = json!({
        "op": "http",
        "call": id,
        "method": parts.method.as_str(),
        "path": path,
        "content_type": content_type,
        "body": body,
        "user": user.name,
    });
    let Some(answer) = find(&s, cmd).await else {
        // Nobody holds it: this node's own handler gives the usual answer.
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
        return next.run(req).await;
    };
    let node = answer["node"].as_str().unwrap_or("").to_string();
    tracing::info!(call = %id, user = %user.name, node = %node, method = %parts.method, path = %parts.uri.path(), "call command carried out by another node");
    let code = answer["code"]
        .as_u64()
        .and_then(|c| StatusCode::from_u16(c as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (code, answer["body"].as_str().unwrap_or("").to_string()).into_response();
    let h = r.headers_mut();
    if let Some(ct) = answer["content_type"].as_str().and_then(|v| v.parse().ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Ok(n) = node.parse() {
        h.insert("x-edge-node", n);
    }
    r
}

/// Carry out a call command another node forwarded ([`forward_calls`]), as the
/// user it names, when the call is here.
async fn forwarded(s: &AppState, req: &Value) -> Value {
    use axum::http::header;
    use tower::ServiceExt;
    let call = req["call"].as_str().unwrap_or("");
    match super::calls::local_call(s, call).await {
        Ok(Some(_)) => {}
        _ => return json!({ "status": 404 }),
    }
    let path = req["path"].as_str().unwrap_or("");
    if command_call(path.split('?').next().unwrap_or("")) != Some(call) {
        return json!({ "status": 400, "error": "not a command of that call" });
    }
    let Some(app) = APP.get().cloned() else {
        return json!({ "status": 503 });
    };
    // The user's own token, from this node's configuration: the handler checks
    // the role as for any request (no token travels between the nodes).
    let Some(token) = s
        .snapshot
        .load()
        .user(req["user"].as_str().unwrap_or(""))
        .map(|u| u.token.clone())
    else {
        return json!({ "status": 200, "item": { "code": 401, "body": "{\"error\":\"unknown user on the call's node\"}", "content_type": "application/json" } });
    };
    let me = s
        .cluster
        .as_ref()
        .map(|c| c.node.clone())
        .unwrap_or_default();
    let mut b = axum::http::Request::builder()
        .method(req["method"].as_str().unwrap_or("GET"))
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(crate::ws::relay::RELAY_HEADER, me);
    let ct = req["content_type"].as_str().unwrap_or("");
    if !ct.is_empty() {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    let body = req["body"].as_str().unwrap_or("").to_string();
    let Ok(request) = b.body(axum::body::Body::from(body)) else {
        return json!({ "status": 400, "error": "bad forwarded request" });
    };
    let Ok(resp) = app.oneshot(request).await;
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(resp.into_body(), FORWARD_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    json!({ "status": 200, "item": { "code": code, "body": body, "content_type": content_type } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_goes_in_pages_that_fit_a_nats_message_and_lose_nothing() {
        let items: Vec<Value> = (0..20_000)
            .map(|i| json!({ "agent": format!("{}", 1_000_000 + i), "contact": "sip:random@random.invalid;transport=ws" }))
            .collect();
        let mut from = 0;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(items.clone(), from);
            assert!(serde_json::to_vec(&p).unwrap().len() < 1024 * 1024);
            seen.extend(p["items"].as_array().unwrap().iter().cloned());
            pages += 1;
            match p.get("next").and_then(Value::as_u64) {
                Some(n) => from = n as usize,
                None => break,
            }
        }
        assert!(pages > 1, "{pages}");
        assert_eq!(seen, items);
        // A short list: one page, no `next`.
        assert!(page(items[..3].to_vec(), 0).get("next").is_none());
    }

    #[test]
    fn only_commands_about_one_call_are_forwarded() {
        assert_eq!(command_call("/api/v1/calls/c-1/hold"), Some("c-1"));
        assert_eq!(command_call("/api/v1/calls/c-1/monitors/m-2"), Some("c-1"));
        // The list and the call itself answer for the cluster on their own.
        for p in [
            "/api/v1/calls",
            "/api/v1/calls/",
            "/api/v1/calls/c-1",
            "/api/v1/calls/c-1/",
            "/api/v1/calls//hold",
            "/api/v1/chats/c-1/end",
        ] {
            assert_eq!(command_call(p), None, "{p}");
        }
    }
}
