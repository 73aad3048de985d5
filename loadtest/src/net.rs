//! SIP transport for loadtest: a UDP socket, or TCP (one connection to the target
//! for `call`, a listener for `answer`), delivering framed messages on one channel.

use bytes::Bytes;
use parking_lot::Mutex;
use sip::{Flow, Transport};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What arrives from the network: a message, or `Refused` for ICMP port unreachable
/// (UDP) or a refused/closed connection (TCP). Keep-alive pings are not delivered.
pub use sip_io::Inbound;

/// Messages that may wait for one TCP connection's writer.
const WRITE_QUEUE: usize = 65_536;

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>;

#[derive(Clone)]
pub struct Net {
    pub transport: Transport,
    /// The address we advertise (Via, Contact).
    pub local: SocketAddr,
    udp: Option<Arc<UdpSocket>>,
    tcp: Conns,
    /// Keeps the inbound channel open when the UDP socket is read directly.
    _inbound: Option<mpsc::Sender<Inbound>>,
}

impl Net {
    pub fn send(&self, flow: Flow, data: Bytes) {
        match &self.udp {
            Some(s) => {
                let _ = s.try_send_to(&data, flow.remote);
            }
            None => {
                if let Some(tx) = self.tcp.lock().get(&flow.remote) {
                    let _ = tx.try_send(data);
                }
            }
        }
    }

    /// The UDP socket, for callers that read it directly (no reader task, no
    /// channel hop per datagram).
    pub fn udp_socket(&self) -> Option<&Arc<UdpSocket>> {
        self.udp.as_ref()
    }

    /// A UDP socket. With `reader`, a task forwards datagrams to the channel;
    /// without, the caller reads [`Net::udp_socket`] itself.
    pub async fn udp(bind: SocketAddr, reader: bool) -> io::Result<(Net, mpsc::Receiver<Inbound>)> {
        let s = UdpSocket::bind(bind).await?;
        sip_io::tune_udp(&s, 8 << 20);
        let local = s.local_addr()?;
        let s = Arc::new(s);
        let (tx, rx) = mpsc::channel(65_536);
        if !reader {
            return Ok((
                Net {
                    transport: Transport::Udp,
                    local,
                    udp: Some(s),
                    tcp: Default::default(),
                    _inbound: Some(tx),
                },
                rx,
            ));
        }
        let r = s.clone();
        tokio::spawn(async move {
            let mut reader = sip_io::DatagramReader::new(&r, local);
            while tx.send(reader.next().await).await.is_ok() {}
        });
        Ok((
            Net {
                transport: Transport::Udp,
                local,
                udp: Some(s),
                tcp: Default::default(),
                _inbound: None,
            },
            rx,
        ))
    }

    /// One TCP connection to `target`.
    pub async fn tcp_connect(target: SocketAddr) -> io::Result<(Net, mpsc::Receiver<Inbound>)> {
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            TcpStream::connect(target),
        )
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TCP connect to {target} timed out"),
            )
        })??;
        let local = stream.local_addr()?;
        let (tx, rx) = mpsc::channel(65_536);
        let net = Net {
            transport: Transport::Tcp,
            local,
            udp: None,
            tcp: Default::default(),
            _inbound: None,
        };
        spawn_conn(stream, local, target, net.tcp.clone(), tx);
        Ok((net, rx))
    }

    /// Accept TCP connections on `bind`.
    pub async fn tcp_listen(bind: SocketAddr) -> io::Result<(Net, mpsc::Receiver<Inbound>)> {
        let l = TcpListener::bind(bind).await?;
        let local = l.local_addr()?;
        let (tx, rx) = mpsc::channel(65_536);
        let net = Net {
            transport: Transport::Tcp,
            local,
            udp: None,
            tcp: Default::default(),
            _inbound: None,
        };
        let conns = net.tcp.clone();
        tokio::spawn(async move {
            while let Ok((s, remote)) = l.accept().await {
                spawn_conn(s, local, remote, conns.clone(), tx.clone());
            }
        });
        Ok((net, rx))
    }
}

fn spawn_conn(
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    conns: Conns,
    inbound: mpsc::Sender<Inbound>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (wtx, _writer) = sip_io::spawn_writer(wr, WRITE_QUEUE);
    conns.lock().insert(remote, wtx);
    tokio::spawn(async move {
        let flow = Flow {
            transport: Transport::Tcp,
            local,
            remote,
        };
        let mut reader = sip_io::StreamReader::new(rd, flow);
        while let Ok(ev) = reader.next().await {
            if matches!(ev, Inbound::Message(..)) && inbound.send(ev).await.is_err() {
                break;
            }
        }
        conns.lock().remove(&remote);
        let _ = inbound.send(Inbound::Refused(remote)).await;
    });
}
