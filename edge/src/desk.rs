//! The chat service's driver: owns the sans-IO [`Chats`] behind one lock, feeds it the
//! clock and the OS randomness it does not read itself, and delivers its effects to
//! the agent consoles' channels. Room writes (the hot path) go straight to
//! [`Rooms`] without this lock.

use chat::hub::Frame;
use chat::{At, Chats, Effect, Keys, Rooms};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// What a console's socket task receives from the service.
#[derive(Debug)]
pub enum ConsoleMsg {
    Frame(Frame),
    /// A newer console of the same agent took over: close with 4009.
    Replaced,
    /// A chat this console's agent has, taken over from a node that died: join it.
    Join(String),
}

/// Frames queued per console before new ones are dropped (a console that stops
/// reading loses control frames rather than blocking the service).
const CONSOLE_QUEUE: usize = 256;

pub struct Desk {
    chats: Mutex<Chats>,
    pub rooms: Arc<Rooms>,
    consoles: Mutex<HashMap<u64, mpsc::Sender<ConsoleMsg>>>,
}

/// Wall-clock milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    storage::unix_ms(SystemTime::now())
}

/// The time of an input now.
pub fn now() -> At {
    At {
        now: Instant::now(),
        unix_ms: unix_ms(),
    }
}

/// Fill `buf` from the OS CSPRNG.
fn random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the OS random source is available");
}

/// A new chat's id and token bytes, both from the OS CSPRNG (the token is the
/// customer's secret: never from a predictable generator).
pub fn keys() -> Keys {
    let mut k = Keys {
        id: [0; 8],
        token: [0; 16],
    };
    random(&mut k.id);
    random(&mut k.token);
    k
}

/// 128 random bits as 32 hex digits (file names of attachments).
pub fn secret_token() -> String {
    let mut b = [0u8; 16];
    random(&mut b);
    hex::encode(b)
}

impl Desk {
    pub fn new(rooms: Arc<Rooms>) -> Desk {
        Desk {
            chats: Mutex::new(Chats::new(rooms.clone())),
            rooms,
            consoles: Mutex::new(HashMap::new()),
        }
    }

    /// One input to the service at the current time; its effects are delivered
    /// before the lock is released, so consoles see them in the service's order.
    pub fn run<R>(&self, f: impl FnOnce(&mut Chats, At) -> R) -> R {
        let mut c = self.chats.lock();
        let r = f(&mut c, now());
        while let Some(e) = c.poll_effect() {
            self.deliver(e);
        }
        r
    }

    /// A question to the service (no input, no effects).
    pub fn read<R>(&self, f: impl FnOnce(&Chats) -> R) -> R {
        f(&self.chats.lock())
    }

    fn deliver(&self, e: Effect) {
        let consoles = self.consoles.lock();
        match e {
            Effect::Console { conn, frame } => {
                if let Some(tx) = consoles.get(&conn) {
                    let _ = tx.try_send(ConsoleMsg::Frame(frame.to_json().into()));
                }
            }
            Effect::Replaced { conn } => {
                if let Some(tx) = consoles.get(&conn) {
                    let _ = tx.try_send(ConsoleMsg::Replaced);
                }
            }
            Effect::Join { conn, chat } => {
                if let Some(tx) = consoles.get(&conn) {
                    let _ = tx.try_send(ConsoleMsg::Join(chat));
                }
            }
        }
    }

    /// A console's channel; register before telling the service it connected.
    pub fn open_console(&self, conn: u64) -> mpsc::Receiver<ConsoleMsg> {
        let (tx, rx) = mpsc::channel(CONSOLE_QUEUE);
        self.consoles.lock().insert(conn, tx);
        rx
    }

    pub fn close_console(&self, conn: u64) {
        self.consoles.lock().remove(&conn);
    }
}

#[cfg(test)]
#[path = "desk_tests.rs"]
mod tests;
