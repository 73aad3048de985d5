//! The SIP socket driver shared by the edge and loadtest (tokio): a UDP reader that
//! turns datagrams into [`Inbound`] events, a stream reader that frames SIP messages
//! on a byte stream (Content-Length framing and CRLF keep-alives, RFC 3261 §18.3,
//! RFC 5626 §3.5.1) and a stream writer task. What happens to each message is the
//! caller's: it loops on `next()`.

use bytes::{Bytes, BytesMut};
use sip::message::{frame_stream, Frame, ParseError, MAX_MESSAGE_SIZE};
use sip::{Flow, Transport};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    /// The bytes are not SIP; a stream that cannot be framed cannot be resynchronised.
    Unframeable(ParseError),
    Io(io::Error),
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A message was begun and not finished within the message timeout (slowloris).
    Stalled,
}

impl StreamEnd {
    /// Whether the stream ended in error (not closed by the peer).
    pub fn failed(&self) -> bool {
        matches!(
            self,
            StreamEnd::Unframeable(_) | StreamEnd::Io(_) | StreamEnd::Stalled
        )
    }
}

/// Room for socket bursts: thousands of calls' messages arrive together.
pub fn tune_udp<S: std::os::fd::AsFd>(sock: &S, buffer: usize) {
    let s = socket2::SockRef::from(sock);
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
}

/// Reads SIP datagrams from one UDP socket (bound at `local`) into one buffer.
pub struct DatagramReader<'a> {
    sock: &'a UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
    /// Room for the receive timestamp's control message.
    cmsg: Vec<u8>,
}

impl<'a> DatagramReader<'a> {
    pub fn new(sock: &'a UdpSocket, local: SocketAddr) -> Self {
        DatagramReader {
            sock,
            local,
            buf: vec![0u8; MAX_MESSAGE_SIZE + 1],
            cmsg: nix::cmsg_space!(nix::sys::time::TimeSpec),
        }
    }

    /// A reader whose socket has the kernel stamp each datagram as it arrives
    /// (`SO_TIMESTAMPNS`), for [`DatagramReader::next_arrived`]. Asked for when
    /// the socket is set up: Linux turns stamping on a moment later (deferred
    /// work), and datagrams before that carry the time they are read.
    pub fn with_arrival_stamps(sock: &'a UdpSocket, local: SocketAddr) -> Self {
        use nix::sys::socket::{setsockopt, sockopt};
        let _ = setsockopt(sock, sockopt::ReceiveTimestampns, &true);
        Self::new(sock, local)
    }

    /// The next datagram, or `Refused` for an ICMP port unreachable, with when
    /// the kernel received it (made [`DatagramReader::with_arrival_stamps`];
    /// otherwise, or where the system gives no timestamp, when it was read). A
    /// reader that shares its thread with the work it feeds leaves the backlog in
    /// the socket buffer: the time spent there is what overload shedding must see.
    /// Empty and CRLF-only datagrams (keep-alives) are skipped; other errors are
    /// passed over (they surface on some systems and mean nothing for the socket).
    pub async fn next_arrived(&mut self) -> (Inbound, std::time::Instant) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        use std::os::fd::AsRawFd;
        let fd = self.sock.as_raw_fd();
        loop {
            if self.sock.readable().await.is_err() {
                continue;
            }
            let (buf, cmsg) = (&mut self.buf, &mut self.cmsg);
            let got = self.sock.try_io(tokio::io::Interest::READABLE, || {
                let mut iov = [io::IoSliceMut::new(&mut buf[..])];
                let msg = recvmsg::<SockaddrStorage>(
                    fd,
                    &mut iov,
                    Some(&mut cmsg[..]),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let mut stamp = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmTimestampns(t) = c {
                            stamp = Some(t);
                        }
                    }
                }
                let from = msg.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|a| SocketAddr::V4((*a).into()))
                        .or_else(|| a.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into())))
                });
                Ok((msg.bytes, from, stamp))
            });
            match got {
                Ok((n, Some(remote), stamp)) => {
                    let d = &self.buf[..n];
                    if n == 0 || d.iter().all(|b| *b == b'\r' || *b == b'\n') {
                        continue;
                    }
                    let now = std::time::Instant::now();
                    let arrived = stamp
                        .and_then(|t| {
                            let at = std::time::UNIX_EPOCH
                                + Duration::new(
                                    u64::try_from(t.tv_sec()).ok()?,
                                    u32::try_from(t.tv_nsec()).ok()?,
                                );
                            let age = std::time::SystemTime::now().duration_since(at).ok()?;
                            now.checked_sub(age)
                        })
                        .unwrap_or(now);
                    let flow = Flow {
                        transport: Transport::Udp,
                        local: self.local,
                        remote,
                    };
                    return (Inbound::Message(flow, Bytes::copy_from_slice(d)), arrived);
                }
                Ok((_, None, _)) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return (Inbound::Refused(self.local), std::time::Instant::now())
                }
                Err(_) => continue,
            }
        }
    }

    /// As [`DatagramReader::next_arrived`], without the time.
    pub async fn next(&mut self) -> Inbound {
        self.next_arrived().await.0
    }
}

/// Frames SIP messages on a byte stream of `flow`.
pub struct StreamReader<R> {
    rd: R,
    flow: Flow,
    buf: BytesMut,
    /// Longest wait with nothing buffered.
    idle: Option<Duration>,
    /// Longest time from a message's first byte to its last.
    message: Option<Duration>,
    /// When the message now being buffered began.
    partial_since: Option<Instant>,
    last_activity: Instant,
}

impl<R: AsyncRead + Unpin> StreamReader<R> {
    pub fn new(rd: R, flow: Flow) -> Self {
        StreamReader {
            rd,
            flow,
            buf: BytesMut::with_capacity(8192),
            idle: None,
            message: None,
            partial_since: None,
            last_activity: Instant::now(),
        }
    }

    /// End the stream with [`StreamEnd::Idle`] after `idle` with nothing arriving
    /// (keep-alive pings count), and with [`StreamEnd::Stalled`] when a message is
    /// not complete `message` after its first byte.
    pub fn with_timeouts(mut self, idle: Duration, message: Duration) -> Self {
        self.idle = Some(idle);
        self.message = Some(message);
        self
    }

    /// When the next read must have completed, and what ending it is otherwise.
    fn deadline(&mut self) -> Option<(Instant, StreamEnd)> {
        if self.buf.is_empty() {
            self.partial_since = None;
            let idle = self.idle?;
            Some((self.last_activity + idle, StreamEnd::Idle))
        } else {
            let message = self.message?;
            let since = *self.partial_since.get_or_insert_with(Instant::now);
            Some((since + message, StreamEnd::Stalled))
        }
    }

    /// The bytes read and not yet returned (after [`StreamEnd::Unframeable`]: the
    /// message that could not be framed, for a 400 before the connection closes).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next whole message or keep-alive ping; why the stream ended otherwise
    /// (the peer closed it, it cannot be framed, or a read failed).
    pub async fn next(&mut self) -> Result<Inbound, StreamEnd> {
        loop {
            match frame_stream(&self.buf) {
                Ok(Frame::Incomplete) => {}
                Ok(Frame::KeepAlive { len, ping }) => {
                    let _ = self.buf.split_to(len);
                    self.partial_since = None;
                    if ping {
                        return Ok(Inbound::Ping(self.flow));
                    }
                    continue;
                }
                Ok(Frame::Message(n)) => {
                    self.partial_since = None;
                    return Ok(Inbound::Message(self.flow, self.buf.split_to(n).freeze()));
                }
                Err(e) => return Err(StreamEnd::Unframeable(e)),
            }
            let read = match self.deadline() {
                Some((at, end)) => {
                    match tokio::time::timeout_at(at, self.rd.read_buf(&mut self.buf)).await {
                        Ok(r) => r,
                        Err(_) => return Err(end),
                    }
                }
                None => self.rd.read_buf(&mut self.buf).await,
            };
            match read {
                Ok(0) => return Err(StreamEnd::Closed),
                Ok(_) => self.last_activity = Instant::now(),
                Err(e) => return Err(StreamEnd::Io(e)),
            }
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
