//! Unit tests of `lib.rs`.

use super::*;
use std::net::UdpSocket;
use std::sync::mpsc as std_mpsc;

/// Echoes every datagram back and reports what it saw.
struct Echo {
    socks: Vec<UdpSocket>,
    seen: std_mpsc::Sender<String>,
    deadline: Option<Instant>,
}

enum Cmd {
    Add(UdpSocket),
    Deadline(Instant),
    Stop,
}

impl Handler for Echo {
    type Command = Cmd;
    fn on_readable(&mut self, _: &Poller, token: u64, _: Instant) {
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = self.socks[token as usize].recv_from(&mut buf) {
            let _ = self.socks[token as usize].send_to(&buf[..n], from);
            let _ = self.seen.send(format!("read {token}"));
        }
    }
    fn on_command(&mut self, poller: &Poller, cmd: Cmd, _: Instant) -> Flow {
        match cmd {
            Cmd::Add(s) => {
                s.set_nonblocking(true).unwrap();
                poller.add(&s, self.socks.len() as u64).unwrap();
                self.socks.push(s);
                let _ = self.seen.send("added".into());
            }
            Cmd::Deadline(t) => self.deadline = Some(t),
            Cmd::Stop => return Flow::Stop,
        }
        Flow::Continue
    }
    fn on_wake(&mut self, _: &Poller, now: Instant) {
        if self.deadline.is_some_and(|t| now >= t) {
            self.deadline = None;
            let _ = self.seen.send("deadline".into());
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}

#[test]
fn a_worker_reads_registered_sockets_runs_commands_and_deadlines_then_stops() {
    let (seen_tx, seen) = std_mpsc::channel();
    let workers = Workers::start(1, "test-rtp", Duration::from_secs(10), |_| Echo {
        socks: Vec::new(),
        seen: seen_tx.clone(),
        deadline: None,
    })
    .unwrap();
    let wait = |what: &str| {
        let got = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got, what);
    };
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    assert!(workers.send(0, Cmd::Add(server)));
    wait("added");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for i in 0..3u8 {
        client.send_to(&[i; 4], addr).unwrap();
        let mut b = [0u8; 8];
        let (n, _) = client.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], &[i; 4]);
        wait("read 0");
    }
    // A deadline far below max_wait: the worker wakes for it, not after 10 s.
    workers.send(0, Cmd::Deadline(Instant::now() + Duration::from_millis(30)));
    wait("deadline");
    assert!(workers.send(0, Cmd::Stop));
    workers.join();
    assert!(
        !workers.send(0, Cmd::Stop),
        "a stopped worker refuses commands"
    );
}

/// Counts commands; the test reads the count when the worker stops.
struct Count(std_mpsc::Sender<u64>, u64);

impl Handler for Count {
    type Command = bool;
    fn on_readable(&mut self, _: &Poller, _: u64, _: Instant) {}
    fn on_command(&mut self, _: &Poller, stop: bool, _: Instant) -> Flow {
        if stop {
            let _ = self.0.send(self.1);
            return Flow::Stop;
        }
        self.1 += 1;
        Flow::Continue
    }
    fn on_wake(&mut self, _: &Poller, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn commands_sent_from_many_threads_while_the_worker_runs_all_arrive() {
    // The eventfd is written once per batch: a command sent while the worker is
    // between clearing the flag and draining must still be taken (a long wait
    // would show a lost wake-up: max_wait is an hour).
    let (tx, rx) = std_mpsc::channel();
    let workers = Arc::new(
        Workers::start(1, "test-count", Duration::from_secs(3600), move |_| {
            Count(tx.clone(), 0)
        })
        .unwrap(),
    );
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let w = workers.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    assert!(w.send(0, false));
                    if i % 1000 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    assert!(workers.send(0, true));
    let n = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker woke for its stop");
    assert_eq!(n, 80_000);
    workers.join();
}
