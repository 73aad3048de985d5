//! The edge's SIP sockets on the shared `sip-io` driver: every listen address bound,
//! a reader per UDP socket, an acceptor per TCP listener and a reader + writer per
//! connection, all feeding the core's inbox.

use super::msg::{CoreMsg, CoreTx};
use crate::metrics::Metrics;
use bytes::Bytes;
use control::{Snapshot, Transport};
use sip::Flow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::warn;

/// Most TCP connections kept open at once (inbound + outbound).
pub const MAX_TCP_CONNECTIONS: u64 = 10_000;

pub type Listeners = (
    Vec<(SocketAddr, Arc<UdpSocket>)>,
    Vec<(SocketAddr, TcpListener)>,
);

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
                let s = UdpSocket::bind(l.addr).await.map_err(|source| BindError {
                    what: "sip udp",
                    addr: l.addr,
                    source,
                })?;
                sip_io::tune_udp(&s, 4 * 1024 * 1024);
                udp.push((l.addr, Arc::new(s)));
            }
            Transport::Tcp => {
                let s = TcpListener::bind(l.addr)
                    .await
                    .map_err(|source| BindError {
                        what: "sip tcp",
                        addr: l.addr,
                        source,
                    })?;
                tcp.push((l.addr, s));
            }
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
        let mut reader = sip_io::DatagramReader::new(&sock, local);
        loop {
            if let sip_io::Inbound::Message(flow, data) = reader.next().await {
                if core.try_send(CoreMsg::Inbound { flow, data }).is_err() {
                    metrics.sip_inbound_dropped.fetch_add(1, Relaxed);
                }
            }
        }
    });
}

pub fn spawn_tcp_listener(
    local: SocketAddr,
    listener: TcpListener,
    core: CoreTx,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    if metrics.tcp_connections.load(Relaxed) >= MAX_TCP_CONNECTIONS {
                        warn!(%remote, "too many SIP TCP connections: refusing");
                        continue;
                    }
                    spawn_connection(stream, local, remote, core.clone(), metrics.clone());
                }
                Err(e) => {
                    warn!(%local, error = %e, "tcp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}

/// Run one TCP connection: a writer fed by the core, a reader that frames messages.
pub(super) fn spawn_connection(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    core: CoreTx,
    metrics: Arc<Metrics>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, writer) = sip_io::spawn_writer(wr, 1024);
    metrics.tcp_connections.fetch_add(1, Relaxed);
    tokio::spawn(async move {
        let _ = core.send(CoreMsg::TcpUp { remote, tx }).await;
        let flow = Flow {
            transport: Transport::Tcp,
            local,
            remote,
        };
        let mut reader = sip_io::StreamReader::new(rd, flow);
        // Ok: the core is gone (the process is stopping); Err: the stream ended.
        let end = loop {
            let data = match reader.next().await {
                Ok(sip_io::Inbound::Message(_, data)) => data,
                // A ping gets its pong from the core (it sees a bare CRLF).
                Ok(sip_io::Inbound::Ping(_)) => Bytes::from_static(b"\r\n"),
                Ok(sip_io::Inbound::Refused(_)) => continue,
                Err(end) => break Err(end),
            };
            if core.send(CoreMsg::Inbound { flow, data }).await.is_err() {
                break Ok(());
            }
        };
        let unframeable = matches!(end, Err(sip_io::StreamEnd::Unframeable(_)));
        if let Err(sip_io::StreamEnd::Unframeable(e)) = &end {
            // A stream that cannot be framed cannot be resynchronised (several
            // Content-Lengths would smuggle a second request): the core answers
            // what it can of it (400 from the raw text), then the connection closes.
            warn!(%remote, error = %e, "unframeable SIP TCP stream: 400 and closing connection");
            let data = Bytes::copy_from_slice(reader.pending());
            let _ = core.send(CoreMsg::Inbound { flow, data }).await;
        }
        metrics.tcp_connections.fetch_sub(1, Relaxed);
        let _ = core
            .send(CoreMsg::TcpDown {
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
