//! What every handler shares: the SIP core's channel, the config snapshot, metrics,
//! the uploader, the chat desk, transcripts and attachments; and [`ask`], a question
//! to the SIP core with a deadline.

use crate::core::{CoreMsg, CoreTx};
use crate::desk::Desk;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::response::Response;
use control::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::auth::error;

#[derive(Clone)]
pub struct AppState {
    pub core: CoreTx,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub uploader: Arc<storage::uploader::Uploader>,
    pub chats: Arc<Desk>,
    pub transcripts: Arc<storage::transcript::Transcripts>,
    pub attachments: Arc<super::attachments::Attachments>,
    /// Wakes the drain task (`POST /api/v1/drain`): drain, then stop.
    pub drain: Arc<tokio::sync::Notify>,
    /// Cluster mode (`[cluster]`): the link to NATS; `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Ask the SIP core; 503 when it is not running or does not answer in 5 s.
pub async fn ask<T>(
    core: &CoreTx,
    make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    if core.send(make(tx)).await.is_err() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP core is not running",
        ));
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SIP core did not answer",
        )),
    }
}
