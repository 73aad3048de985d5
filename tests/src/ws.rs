//! A blocking WebSocket client for chat tests (tungstenite): JSON frames in and out
//! (every server frame is checked against `chat::ServerFrame`), waits with deadlines,
//! the close code the server sent.

use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
pub use tungstenite;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A read that only hit the socket's read timeout (nothing arrived yet).
pub fn read_timed_out(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

pub struct Ws {
    s: WebSocket<MaybeTlsStream<TcpStream>>,
    /// Every JSON frame received, in order.
    pub seen: Vec<Value>,
    pub close: Option<u16>,
}

impl Ws {
    /// Connect to `path` on the edge's HTTP port, with a bearer header if given.
    pub fn connect(http: SocketAddr, path: &str, bearer: Option<&str>) -> Ws {
        let mut req = format!("ws://{http}{path}").into_client_request().unwrap();
        if let Some(t) = bearer {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (s, _) = tungstenite::connect(req).expect("websocket handshake");
        if let MaybeTlsStream::Plain(t) = s.get_ref() {
            t.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        Ws {
            s,
            seen: Vec::new(),
            close: None,
        }
    }

    pub fn send(&mut self, v: Value) {
        self.s.send(Message::Text(v.to_string().into())).unwrap();
    }

    /// Send a typed client frame.
    pub fn send_frame(&mut self, f: &chat::ClientFrame) {
        let t = serde_json::to_string(f).expect("client frames serialize");
        self.s.send(Message::Text(t.into())).unwrap();
    }

    pub fn send_raw(&mut self, t: &str) {
        self.s.send(Message::Text(t.into())).unwrap();
    }

    /// The next JSON frame within `secs`, or None (timeout or closed).
    pub fn recv(&mut self, secs: f64) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < deadline && self.close.is_none() {
            match self.s.read() {
                Ok(Message::Text(t)) => {
                    // Every frame the server sends must be one of the protocol's.
                    if let Err(e) = chat::ServerFrame::parse(&t) {
                        panic!("server frame outside chat::protocol: {e}: {t}");
                    }
                    let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Ok(Message::Close(f)) => {
                    self.close = Some(f.map(|f: CloseFrame| u16::from(f.code)).unwrap_or(1005));
                }
                Ok(_) => {}
                Err(e) if read_timed_out(&e) => {}
                Err(_) => self.close = Some(1006),
            }
        }
        None
    }

    /// Read until a frame matches `pred` (within `secs`); panics with what came.
    pub fn until(&mut self, what: &str, secs: f64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < deadline {
            if let Some(v) = self.recv(0.2) {
                if pred(&v) {
                    return v;
                }
            }
            if self.close.is_some() {
                break;
            }
        }
        panic!("no {what}; got {:?}, close {:?}", self.seen, self.close);
    }

    /// Frames that arrive within `secs`.
    pub fn drain(&mut self, secs: f64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut v = Vec::new();
        while Instant::now() < deadline {
            if let Some(f) = self.recv(0.1) {
                v.push(f);
            }
        }
        v
    }

    /// Wait for the server to close; its close code.
    pub fn closed(&mut self, secs: f64) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while self.close.is_none() && Instant::now() < deadline {
            self.recv(0.1);
        }
        self.close
    }
}
