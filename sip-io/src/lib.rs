//! The SIP socket driver shared by the edge and loadtest (tokio): a UDP reader that
//! turns datagrams into [`Inbound`] events, a stream reader that frames SIP messages
//! on a byte stream (Content-Length framing and CRLF keep-alives, RFC 3261 §18.3,
//! RFC 5626 §3.5.1) and a stream writer task. What happens to each message is the
//! caller's: `on` gets every event and says whether to go on.

use bytes::{Bytes, BytesMut};
use sip::message::{frame_stream, Frame, ParseError, MAX_MESSAGE_SIZE};
use sip::{Flow, Transport};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a socket delivers.
#[derive(Debug)]
pub enum Inbound {
    /// One whole SIP message.
    Message(Flow, Bytes),
    /// A double-CRLF keep-alive ping on a stream (answer with a single CRLF pong).
    Ping(Flow),
    /// ICMP port unreachable reported on the UDP socket bound at this address.
    Refused(SocketAddr),
}

/// Why a stream reader stopped.
#[derive(Debug)]
pub enum StreamEnd {
    /// The peer closed the stream.
    Closed,
    /// `on` asked to stop.
    Stopped,
    /// The bytes are not SIP; a stream that cannot be framed cannot be resynchronised.
    Unframeable(ParseError),
    Io(io::Error),
}

impl StreamEnd {
    /// Whether the stream ended in error (not by the peer or by the caller).
    pub fn failed(&self) -> bool {
        matches!(self, StreamEnd::Unframeable(_) | StreamEnd::Io(_))
    }
}

/// Room for socket bursts: thousands of calls' messages arrive together.
pub fn tune_udp(sock: &UdpSocket, buffer: usize) {
    let s = socket2::SockRef::from(sock);
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
}

/// Read datagrams from `sock` (bound at `local`) until `on` returns false. Empty and
/// CRLF-only datagrams (keep-alives) are skipped; errors other than ICMP port
/// unreachable are passed over (they surface on some systems and mean nothing for
/// the socket).
pub async fn read_datagrams<F, Fut>(sock: &UdpSocket, local: SocketAddr, mut on: F)
where
    F: FnMut(Inbound) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    loop {
        let ev = match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                if n == 0 || buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                let flow = Flow {
                    transport: Transport::Udp,
                    local,
                    remote,
                };
                Inbound::Message(flow, Bytes::copy_from_slice(&buf[..n]))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Inbound::Refused(local),
            Err(_) => continue,
        };
        if !on(ev).await {
            return;
        }
    }
}

/// Read a SIP byte stream of `flow`, framing messages, until the peer closes, the
/// stream cannot be framed, a read fails, or `on` returns false.
pub async fn read_stream<R, F, Fut>(mut rd: R, flow: Flow, mut on: F) -> StreamEnd
where
    R: AsyncRead + Unpin,
    F: FnMut(Inbound) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) => return StreamEnd::Closed,
            Ok(_) => loop {
                let ev = match frame_stream(&buf) {
                    Ok(Frame::Incomplete) => break,
                    Ok(Frame::KeepAlive { len, ping }) => {
                        let _ = buf.split_to(len);
                        if !ping {
                            continue;
                        }
                        Inbound::Ping(flow)
                    }
                    Ok(Frame::Message(n)) => Inbound::Message(flow, buf.split_to(n).freeze()),
                    Err(e) => return StreamEnd::Unframeable(e),
                };
                if !on(ev).await {
                    return StreamEnd::Stopped;
                }
            },
            Err(e) => return StreamEnd::Io(e),
        }
    }
}

/// A task writing what it is sent to the stream's write half, in order, until the
/// channel closes or a write fails. `queue` bounds what may wait.
pub fn spawn_writer<W>(mut wr: W, queue: usize) -> (mpsc::Sender<Bytes>, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(queue);
    let task = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn flow(t: Transport) -> Flow {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Flow {
            transport: t,
            local: a,
            remote: a,
        }
    }

    const OPTIONS: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody";

    #[tokio::test]
    async fn a_stream_is_framed_across_reads_with_pings_and_ends_where_it_cannot_be_framed() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let two = format!("\r\n\r\n{OPTIONS}{OPTIONS}");
            // Split mid-message: the reader must wait for the rest.
            let (a, b) = two.as_bytes().split_at(40);
            s.write_all(a).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(b).await.unwrap();
            s.write_all(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: many\r\n\r\n")
                .await
                .unwrap();
            s
        });
        let (conn, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let end = read_stream(conn, flow(Transport::Tcp), |ev| {
            got.push(ev);
            async { true }
        })
        .await;
        let _keep = writer.await.unwrap();
        assert!(matches!(got[0], Inbound::Ping(_)), "{got:?}");
        for ev in &got[1..3] {
            match ev {
                Inbound::Message(_, m) => assert_eq!(&m[..], OPTIONS.as_bytes()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got.len(), 3);
        assert!(matches!(end, StreamEnd::Unframeable(_)), "{end:?}");
        assert!(end.failed());
    }

    #[tokio::test]
    async fn datagrams_skip_keepalives_and_stop_when_asked() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = s.local_addr().unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(b"\r\n\r\n", local).await.unwrap();
        c.send_to(OPTIONS.as_bytes(), local).await.unwrap();
        let mut got = Vec::new();
        read_datagrams(&s, local, |ev| {
            got.push(ev);
            async { false }
        })
        .await;
        assert_eq!(got.len(), 1);
        match &got[0] {
            Inbound::Message(f, m) => {
                assert_eq!(f.transport, Transport::Udp);
                assert_eq!(f.remote, c.local_addr().unwrap());
                assert_eq!(&m[..], OPTIONS.as_bytes());
            }
            other => panic!("{other:?}"),
        }
    }
}
