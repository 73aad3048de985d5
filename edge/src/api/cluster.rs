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
}
