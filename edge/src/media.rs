//! RTP relay tasks: one per call, owning the call's four UDP sockets and a
//! [`media::Relay`] core. Datagrams are forwarded without decoding from one fixed
//! buffer; counters are published to [`Metrics`] in batches.

use crate::metrics::Metrics;
use media::{Relay, Side, Socket};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum RelayCmd {
    Remote(Side, Option<SocketAddr>),
}

/// Handle to a running relay; dropping it stops the relay and closes its sockets.
pub struct RelayHandle {
    tx: mpsc::UnboundedSender<RelayCmd>,
}

impl RelayHandle {
    pub fn set_remote(&self, side: Side, addr: Option<SocketAddr>) {
        let _ = self.tx.send(RelayCmd::Remote(side, addr));
    }
}

fn bind(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_nonblocking(true)?;
    // Room for bursts: 20 ms packets from thousands of calls arrive together.
    let _ = s.set_recv_buffer_size(256 * 1024);
    s.bind(&SocketAddr::new(ip, port).into())?;
    UdpSocket::from_std(s.into())
}

/// Bind the four sockets (A RTP/RTCP at `a_port`, B at `b_port`) and start relaying.
pub fn start(
    ip: IpAddr,
    a_port: u16,
    b_port: u16,
    metrics: Arc<Metrics>,
) -> io::Result<RelayHandle> {
    let sockets = [
        bind(ip, a_port)?,
        bind(ip, a_port + 1)?,
        bind(ip, b_port)?,
        bind(ip, b_port + 1)?,
    ];
    let (tx, rx) = mpsc::unbounded_channel();
    metrics.relays_active.fetch_add(1, Relaxed);
    tokio::spawn(run(sockets, rx, metrics));
    Ok(RelayHandle { tx })
}

struct Counters {
    packets: u64,
    bytes: u64,
    dropped: u64,
}

impl Counters {
    fn flush(&mut self, m: &Metrics) {
        m.rtp_packets.fetch_add(self.packets, Relaxed);
        m.rtp_bytes.fetch_add(self.bytes, Relaxed);
        m.rtp_dropped.fetch_add(self.dropped, Relaxed);
        *self = Counters {
            packets: 0,
            bytes: 0,
            dropped: 0,
        };
    }
}

async fn run(
    sockets: [UdpSocket; 4],
    mut rx: mpsc::UnboundedReceiver<RelayCmd>,
    metrics: Arc<Metrics>,
) {
    let mut relay = Relay::new();
    let mut buf = [0u8; 2048];
    let mut c = Counters {
        packets: 0,
        bytes: 0,
        dropped: 0,
    };
    let mut last_flush = std::time::Instant::now();
    loop {
        let ready = tokio::select! {
            biased;
            cmd = rx.recv() => match cmd {
                Some(RelayCmd::Remote(side, addr)) => { relay.set_remote(side, addr); continue; }
                None => break,
            },
            r = sockets[0].readable() => r.map(|_| 0),
            r = sockets[2].readable() => r.map(|_| 2),
            r = sockets[1].readable() => r.map(|_| 1),
            r = sockets[3].readable() => r.map(|_| 3),
        };
        let Ok(i) = ready else { break };
        let on = Socket::ALL[i];
        let out = &sockets[on.peer().index()];
        // Drain everything queued on this socket.
        loop {
            match sockets[i].try_recv_from(&mut buf) {
                Ok((n, src)) => match relay.on_datagram(on, src, &buf[..n]) {
                    Some(dst) => match out.try_send_to(&buf[..n], dst) {
                        Ok(_) => {
                            c.packets += 1;
                            c.bytes += n as u64;
                        }
                        Err(_) => c.dropped += 1,
                    },
                    None => c.dropped += 1,
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP port unreachable from a peer that went away, etc.
                Err(_) => break,
            }
        }
        // Publish in batches: at most once a second or every 256 packets.
        if c.packets >= 256
            || c.dropped >= 256
            || (c.packets + c.dropped > 0 && last_flush.elapsed().as_millis() >= 1000)
        {
            c.flush(&metrics);
            last_flush = std::time::Instant::now();
        }
    }
    c.flush(&metrics);
    metrics.relays_active.fetch_sub(1, Relaxed);
}
