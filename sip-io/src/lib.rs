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
#[path = "lib_tests.rs"]
mod tests;
