//! Unit tests of `lib.rs`.

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
    let mut reader = StreamReader::new(conn, flow(Transport::Tcp));
    let end = loop {
        match reader.next().await {
            Ok(ev) => got.push(ev),
            Err(end) => break end,
        }
    };
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
async fn datagrams_skip_keepalives() {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = s.local_addr().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"\r\n\r\n", local).await.unwrap();
    c.send_to(OPTIONS.as_bytes(), local).await.unwrap();
    // The keep-alive is skipped: the first event is the message.
    let got = [DatagramReader::new(&s, local).next().await];
    match &got[0] {
        Inbound::Message(f, m) => {
            assert_eq!(f.transport, Transport::Udp);
            assert_eq!(f.remote, c.local_addr().unwrap());
            assert_eq!(&m[..], OPTIONS.as_bytes());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_and_a_stalled_message_end_at_their_timeouts() {
    use std::time::Duration;
    let idle = Duration::from_secs(60);
    let message = Duration::from_secs(5);
    // Idle: a ping keeps it open, silence afterwards ends it after `idle`.
    let (mut peer, conn) = tokio::io::duplex(4096);
    let mut reader = StreamReader::new(conn, flow(Transport::Tcp)).with_timeouts(idle, message);
    let t0 = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(50)).await;
        peer.write_all(b"\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(peer);
    });
    assert!(matches!(reader.next().await, Ok(Inbound::Ping(_))));
    assert!(matches!(reader.next().await, Err(StreamEnd::Idle)));
    assert_eq!(
        Instant::now() - t0,
        Duration::from_secs(110),
        "60 s after the ping"
    );
    // Stalled: a message trickling in byte by byte within the idle time but not
    // finishing within `message` of its first byte ends the stream.
    let (mut peer, conn) = tokio::io::duplex(4096);
    let mut reader = StreamReader::new(conn, flow(Transport::Tcp)).with_timeouts(idle, message);
    let t0 = Instant::now();
    tokio::spawn(async move {
        for b in OPTIONS.as_bytes() {
            if peer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let end = reader.next().await.unwrap_err();
    assert!(matches!(end, StreamEnd::Stalled), "{end:?}");
    assert!(end.failed());
    assert_eq!(Instant::now() - t0, message);
    // A whole message in time resets the clock for the next one.
    let (mut peer, conn) = tokio::io::duplex(4096);
    let mut reader = StreamReader::new(conn, flow(Transport::Tcp)).with_timeouts(idle, message);
    tokio::spawn(async move {
        for _ in 0..3 {
            let (a, b) = OPTIONS.as_bytes().split_at(10);
            peer.write_all(a).await.unwrap();
            tokio::time::sleep(Duration::from_secs(4)).await;
            peer.write_all(b).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    for _ in 0..3 {
        assert!(matches!(reader.next().await, Ok(Inbound::Message(..))));
    }
}

#[tokio::test]
async fn a_datagram_carries_the_time_it_reached_the_socket_not_the_time_it_was_read() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut reader = DatagramReader::with_arrival_stamps(&sock, local);
    let wait = std::time::Duration::from_millis(100);
    // Linux turns stamping on through deferred work: until it has, a datagram
    // carries the time it is read. Wait for the first stamped one (at most 5 s).
    let mut stamped = false;
    for _ in 0..50 {
        peer.send_to(OPTIONS.as_bytes(), local).unwrap();
        std::thread::sleep(wait);
        let (ev, arrived) = reader.next_arrived().await;
        assert!(matches!(ev, Inbound::Message(..)), "{ev:?}");
        if arrived.elapsed() >= wait {
            stamped = true;
            break;
        }
    }
    assert!(stamped, "no datagram carried its arrival time");
    // Keep-alives are skipped; the next message waits 200 ms in the socket buffer.
    peer.send_to(b"\r\n\r\n", local).unwrap();
    peer.send_to(OPTIONS.as_bytes(), local).unwrap();
    let sent = std::time::Instant::now();
    std::thread::sleep(2 * wait);
    let (ev, arrived) = reader.next_arrived().await;
    let Inbound::Message(flow, data) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(flow.remote, peer.local_addr().unwrap());
    assert_eq!(flow.local, local);
    assert_eq!(&data[..], OPTIONS.as_bytes());
    // Loopback delivers within send_to: the stamp is from before `sent` (up to
    // the error of converting the kernel's wall-clock stamp), 200 ms before the read.
    assert!(
        arrived <= sent + std::time::Duration::from_millis(20),
        "{:?} after the send returned",
        arrived.saturating_duration_since(sent)
    );
    assert!(arrived.elapsed() >= 2 * wait);
    // A reader made without stamps gives the time of the read.
    let plain_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let plain_local = plain_sock.local_addr().unwrap();
    let mut plain = DatagramReader::new(&plain_sock, plain_local);
    peer.send_to(OPTIONS.as_bytes(), plain_local).unwrap();
    std::thread::sleep(wait);
    let (_, read_at) = plain.next_arrived().await;
    assert!(read_at.elapsed() < wait);
}
