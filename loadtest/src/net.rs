//! SIP transport for loadtest: a UDP socket, or TCP (one connection to the target
//! for `call`, a listener for `answer`), delivering framed messages on one channel.

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use sip::message::{frame_stream, Frame, MAX_MESSAGE_SIZE};
use sip::{Flow, Transport};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What arrives from the network.
pub enum Inbound {
    Message(Flow, Bytes),
    /// ICMP port unreachable (UDP) or a refused/closed connection (TCP).
    Refused(SocketAddr),
}

#[derive(Clone)]
pub struct Net {
    pub transport: Transport,
    /// The address we advertise (Via, Contact).
    pub local: SocketAddr,
    udp: Option<Arc<UdpSocket>>,
    tcp: Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>>,
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
                    let _ = tx.send(data);
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
        let sr = socket2::SockRef::from(&s);
        let _ = sr.set_recv_buffer_size(8 << 20);
        let _ = sr.set_send_buffer_size(8 << 20);
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
            let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
            loop {
                match r.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let flow = Flow {
                            transport: Transport::Udp,
                            local,
                            remote: from,
                        };
                        if tx
                            .send(Inbound::Message(flow, Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        let _ = tx.send(Inbound::Refused(local)).await;
                    }
                    Err(_) => {}
                }
            }
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
    conns: Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>>,
    inbound: mpsc::Sender<Inbound>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
    conns.lock().insert(remote, wtx);
    tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let flow = Flow {
            transport: Transport::Tcp,
            local,
            remote,
        };
        'outer: loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => loop {
                    match frame_stream(&buf) {
                        Ok(Frame::Incomplete) => break,
                        Ok(Frame::KeepAlive { len, .. }) => {
                            let _ = buf.split_to(len);
                        }
                        Ok(Frame::Message(n)) => {
                            let m = buf.split_to(n).freeze();
                            if inbound.send(Inbound::Message(flow, m)).await.is_err() {
                                break 'outer;
                            }
                        }
                        Err(_) => break 'outer,
                    }
                },
            }
        }
        conns.lock().remove(&remote);
        let _ = inbound.send(Inbound::Refused(remote)).await;
    });
}
