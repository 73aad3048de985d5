//! The HTTP server: axum's router on hyper's HTTP/1 connections, with what
//! `axum::serve` lacks for a server on the open network: a header-read timeout
//! that also closes kept-alive connections left idle (slowloris), a cap on open
//! connections (refused ones are closed at once, counted), and graceful shutdown
//! (open requests and WebSockets finish; new connections are no longer accepted).
//! The same server runs HTTPS (`[http] tls_listen`): the TLS handshake must finish
//! within the header timeout.

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
    /// Over TLS (HTTPS, `wss:`).
    pub secure: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: u64,
}

/// Serve `app` on `listener` until `shutdown` completes, then wait for open
/// connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
        let peer = Peer {
            local,
            remote,
            secure: tls.is_some(),
        };
        let with_peer =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                hyper::service::Service::call(&inner, req)
            });
        let metrics = metrics.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_timeout;
        metrics.http_connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            match tls {
                None => {
                    run(
                        builder
                            .serve_connection(TokioIo::new(stream), with_peer)
                            .with_upgrades(),
                        stop,
                        remote,
                    )
                    .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            run(
                                builder
                                    .serve_connection(TokioIo::new(s), with_peer)
                                    .with_upgrades(),
                                stop,
                                remote,
                            )
                            .await
                        }
                        Ok(Err(e)) => {
                            metrics.https_handshake_failures.fetch_add(1, Relaxed);
                            debug!(%remote, error = %e, "HTTPS handshake failed");
                        }
                        Err(_) => {
                            metrics.https_handshake_failures.fetch_add(1, Relaxed);
                            debug!(%remote, "HTTPS handshake did not finish in time");
                        }
                    }
                }
            }
            metrics.http_connections.fetch_sub(1, Relaxed);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // (Both servers, HTTP and HTTPS, wait for the connections of both: the
    // counter is shared.)
    // Open requests finish (bounded: a client that never reads must not hold the
    // process).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.http_connections.load(Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One connection until it ends, or until shutdown asks it to finish its request.
async fn run<C>(conn: C, mut stop: tokio::sync::watch::Receiver<bool>, remote: std::net::SocketAddr)
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    let mut conn = std::pin::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful();
            conn.as_mut().await
        }
    };
    if let Err(e) = r {
        debug!(%remote, error = %e, "http connection ended");
    }
}

/// hyper's upgradeable HTTP/1 connection, whatever its stream.
trait GracefulConnection {
    fn graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
