//! The edge's SIP sockets on the shared `sip-io` driver: every listen address bound,
//! a reader per UDP socket, an acceptor per TCP or TLS listener and a reader + writer
//! per connection (TLS: after the handshake, the same code on the decrypted stream),
//! all feeding the core's inbox.

use super::msg::{CoreMsg, CoreTx};
use crate::metrics::Metrics;
use bytes::Bytes;
use control::{Snapshot, Transport};
use sip::Flow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

/// Limits of SIP over TCP, shared by the acceptors, the connections and the core
/// (outbound connections count against the same total).
#[derive(Debug)]
pub struct TcpLimits {
    pub idle: Duration,
    pub message: Duration,
    pub per_source: u32,
    /// Connections in all, inbound + outbound.
    pub total: u64,
    by_source: parking_lot::Mutex<HashMap<IpAddr, u32>>,
}

impl TcpLimits {
    /// From the configuration, with `total` lowered so that `fd_limit` keeps
    /// [`FD_RESERVE`] descriptors plus one per RTP port for everything else.
    pub fn new(c: &control::SipConfig, fd_limit: u64, rtp_ports: u64) -> TcpLimits {
        let room = fd_limit.saturating_sub(FD_RESERVE + rtp_ports);
        let total = u64::from(c.tcp_max_connections).min(room);
        if total < u64::from(c.tcp_max_connections) {
            warn!(
                configured = c.tcp_max_connections,
                allowed = total,
                fd_limit,
                "open-file limit too low for tcp_max_connections: SIP TCP capped"
            );
        }
        TcpLimits {
            idle: c.tcp_idle_timeout,
            message: c.tcp_message_timeout,
            per_source: c.tcp_max_per_source,
            total,
            by_source: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Count an inbound connection from `ip`, unless it holds its share already.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut m = self.by_source.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.per_source {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut m = self.by_source.lock();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Descriptors kept for the HTTP API, recordings, uploads and the process itself
/// whatever SIP TCP does.
pub const FD_RESERVE: u64 = 1024;

/// A stream listener: plain TCP or TLS.
pub struct StreamListener {
    pub local: SocketAddr,
    pub listener: TcpListener,
    pub transport: Transport,
}

/// UDP sockets come unregistered (std, non-blocking): the SIP core thread
/// reads them on its own runtime (see [`Core::run`](super::Core::run)).
pub type Listeners = (Vec<(SocketAddr, std::net::UdpSocket)>, Vec<StreamListener>);

/// Bind every listen address; errors name the address.
/// A SIP listen address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {what} {addr}: {source}")]
pub struct BindError {
    pub what: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

pub async fn bind_all(snap: &Snapshot) -> Result<Listeners, BindError> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for l in &snap.config.sip.listen {
        match l.transport {
            Transport::Udp => {
                let s = std::net::UdpSocket::bind(l.addr)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .map_err(|source| BindError {
                        what: "sip udp",
                        addr: l.addr,
                        source,
                    })?;
                sip_io::tune_udp(&s, 4 * 1024 * 1024);
                udp.push((l.addr, s));
            }
            Transport::Tcp | Transport::Tls => {
                let s = TcpListener::bind(l.addr)
                    .await
                    .map_err(|source| BindError {
                        what: if l.transport == Transport::Tls {
                            "sip tls"
                        } else {
                            "sip tcp"
                        },
                        addr: l.addr,
                        source,
                    })?;
                tcp.push(StreamListener {
                    local: l.addr,
                    listener: s,
                    transport: l.transport,
                });
            }
            // SIP over WebSocket is served at `/ws/sip` on the HTTP listener; the
            // configuration has no `ws:` listen entries.
            Transport::Ws | Transport::Wss => {}
        }
    }
    Ok((udp, tcp))
}

pub fn spawn_udp_reader(
    local: SocketAddr,
    sock: Arc<UdpSocket>,
    core: CoreTx,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let mut reader = sip_io::DatagramReader::with_arrival_stamps(&sock, local);
        loop {
            // Stamped with the kernel's arrival time: this reader runs on the core's
            // thread, so a backlog waits in the socket buffer, and shedding by
            // queue delay must count that wait.
            if let (sip_io::Inbound::Message(flow, data), at) = reader.next_arrived().await {
                if core.try_send(CoreMsg::Inbound { flow, data, at }).is_err() {
                    metrics.sip_inbound_dropped.fetch_add(1, Relaxed);
                }
            }
        }
    });
}

/// Accept connections on a TCP listener, or a TLS one when `tls` is given (the
/// handshake must finish within the message timeout). TLS connections count
/// against the same limits as TCP ones.
pub fn spawn_tcp_listener(
    l: StreamListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    core: CoreTx,
    metrics: Arc<Metrics>,
    limits: Arc<TcpLimits>,
) {
    let StreamListener {
        local, listener, ..
    } = l;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    // Refused connections are closed at once (dropped); counted, and
                    // logged at debug: a flood must not flood the log too.
                    if metrics.tcp_connections.load(Relaxed) >= limits.total {
                        metrics.tcp_refused_total.fetch_add(1, Relaxed);
                        debug!(%remote, "SIP TCP connection limit reached: refusing");
                        continue;
                    }
                    if !limits.admit(remote.ip()) {
                        metrics.tcp_refused_per_source.fetch_add(1, Relaxed);
                        debug!(%remote, "source holds its share of SIP TCP connections: refusing");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let ctx = Streams {
                        core: core.clone(),
                        metrics: metrics.clone(),
                        limits: limits.clone(),
                    };
                    let flow = move |transport| Flow {
                        transport,
                        local,
                        remote,
                    };
                    let Some(acceptor) = tls.clone() else {
                        spawn_connection(stream, flow(Transport::Tcp), ctx, true);
                        continue;
                    };
                    tokio::spawn(async move {
                        let shake =
                            tokio::time::timeout(ctx.limits.message, acceptor.accept(stream)).await;
                        match shake {
                            Ok(Ok(s)) => spawn_connection(s, flow(Transport::Tls), ctx, true),
                            failed => {
                                tls_failed(&ctx.metrics, remote, failed.map(|r| r.map(drop)));
                                ctx.limits.leave(remote.ip());
                            }
                        }
                    });
                }
                Err(e) => {
                    warn!(%local, error = %e, "tcp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}

/// What every SIP stream connection reports to and counts against.
pub(super) struct Streams {
    pub core: CoreTx,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<TcpLimits>,
}

/// A TLS handshake (either side) that failed or timed out: counted and logged
/// with the reason (`Err(_)`: not completed in time).
pub(super) fn tls_failed(
    metrics: &Metrics,
    remote: SocketAddr,
    result: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
) {
    let error = match result {
        Ok(Err(e)) => e.to_string(),
        _ => "not completed in time".to_string(),
    };
    metrics.tls_handshake_failures.fetch_add(1, Relaxed);
    info!(%remote, %error, "SIP TLS handshake failed");
}

/// Run one TCP or TLS connection on `flow`: a writer fed by the core, a reader
/// that frames messages. `inbound`: accepted (counted against its source's share,
/// released at the end).
pub(super) fn spawn_connection<S>(stream: S, flow: Flow, ctx: Streams, inbound: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let Streams {
        core,
        metrics,
        limits,
    } = ctx;
    let Flow {
        transport,
        local,
        remote,
    } = flow;
    let (rd, wr) = tokio::io::split(stream);
    let (tx, writer) = sip_io::spawn_writer(wr, 1024);
    metrics.tcp_connections.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        let _ = core
            .send(CoreMsg::TcpUp {
                transport,
                remote,
                tx,
            })
            .await;
        let mut reader =
            sip_io::StreamReader::new(rd, flow).with_timeouts(limits.idle, limits.message);
        // Ok: the core is gone (the process is stopping); Err: the stream ended.
        let end = loop {
            let data = match reader.next().await {
                Ok(sip_io::Inbound::Message(_, data)) => data,
                // A ping gets its pong from the core (it sees a bare CRLF).
                Ok(sip_io::Inbound::Ping(_)) => Bytes::from_static(b"\r\n"),
                Ok(sip_io::Inbound::Refused(_)) => continue,
                Err(end) => break Err(end),
            };
            if core
                .send(CoreMsg::Inbound {
                    flow,
                    data,
                    at: Instant::now(),
                })
                .await
                .is_err()
            {
                break Ok(());
            }
        };
        match &end {
            Err(sip_io::StreamEnd::Idle) => {
                metrics.tcp_timeouts_idle.fetch_add(1, Relaxed);
                debug!(%remote, "idle SIP TCP connection closed");
            }
            Err(sip_io::StreamEnd::Stalled) => {
                metrics.tcp_timeouts_message.fetch_add(1, Relaxed);
                info!(%remote, "SIP TCP message not completed in time: connection closed");
            }
            _ => {}
        }
        if inbound {
            limits.leave(remote.ip());
        }
        let unframeable = matches!(end, Err(sip_io::StreamEnd::Unframeable(_)));
        if let Err(sip_io::StreamEnd::Unframeable(e)) = &end {
            // A stream that cannot be framed cannot be resynchronised (several
            // Content-Lengths would smuggle a second request): the core answers
            // what it can of it (400 from the raw text), then the connection closes.
            warn!(%remote, error = %e, "unframeable SIP TCP stream: 400 and closing connection");
            let data = Bytes::copy_from_slice(reader.pending());
            let _ = core
                .send(CoreMsg::Inbound {
                    flow,
                    data,
                    at: Instant::now(),
                })
                .await;
        }
        metrics.tcp_connections.fetch_sub(1, Relaxed);
        let _ = core
            .send(CoreMsg::TcpDown {
                transport,
                remote,
                local,
                failed: end.is_err_and(|e| e.failed()),
            })
            .await;
        if unframeable {
            // The core drops its sender on TcpDown: the writer flushes the 400 and
            // ends (bounded, a peer that does not read must not pin the task).
            let abort = writer.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), writer)
                .await
                .is_err()
            {
                abort.abort();
            }
        } else {
            writer.abort();
        }
    });
}
