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
