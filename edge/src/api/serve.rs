//! The HTTP server: axum's router on hyper's HTTP/1 connections, with what
//! `axum::serve` lacks for a server on the open network: a header-read timeout
//! that also closes kept-alive connections left idle (slowloris), a cap on open
//! connections (refused ones are closed at once, counted), and graceful shutdown
//! (open requests and WebSockets finish; new connections are no longer accepted).

use crate::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::debug;

/// The two ends of a request's connection (a request extension on every request):
/// a SIP WebSocket is the flow `local` ↔ `remote`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
}

pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: u64,
}

/// Serve `app` on `listener` until `shutdown` completes, then wait for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // Tells every connection to finish its request in flight and close.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let service = TowerToHyperService::new(app);
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if metrics.http_connections.load(Relaxed) >= limits.max_connections {
            metrics.http_refused.fetch_add(1, Relaxed);
            debug!(%remote, "HTTP connection limit reached: refusing");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let inner = service.clone();
        let peer = Peer { local, remote };
        let with_peer =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                hyper::service::Service::call(&inner, req)
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), with_peer)
            .with_upgrades();
        let metrics = metrics.clone();
        let mut stop = stop.clone();
        metrics.http_connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = r {
                debug!(%remote, error = %e, "http connection ended");
            }
            metrics.http_connections.fetch_sub(1, Relaxed);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Open requests finish (bounded: a client that never reads must not hold the
    // process).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.http_connections.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
