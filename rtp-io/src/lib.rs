//! RTP socket workers shared by the edge's relay and loadtest's streams: one thread
//! per worker, each polling its UDP sockets with level-triggered epoll, commanded
//! through a channel whose eventfd wakes the poll. Thousands of sockets cost no task
//! and no wakeup per packet; a [`Handler`] owns each worker's state and gets every
//! readable socket, command and deadline.
//!
//! Per wake-up a worker calls, in this order: [`Handler::on_readable`] for each ready
//! socket (one call per readiness: read one datagram; level-triggered epoll reports
//! the socket again while more are queued), [`Handler::on_command`] for each queued
//! command, then [`Handler::on_wake`]; it then sleeps until
//! [`Handler::poll_timeout`] (at most `max_wait`).

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The token the command waker uses; handlers must not register it.
pub const WAKER: u64 = u64::MAX;

/// Readiness events taken per wait.
const EVENTS: usize = 1024;

/// The worker's poll set, as handlers see it.
pub struct Poller {
    epoll: Epoll,
}

impl Poller {
    /// Watch `fd` for input; its readiness comes back as `token`.
    pub fn add(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        debug_assert_ne!(token, WAKER);
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io::Error::from)
    }

    /// Stop watching `fd` (closing it does too).
    pub fn delete(&self, fd: impl AsFd) {
        let _ = self.epoll.delete(fd);
    }

    /// Watch every socket of `fds` as `first_token + index`; on any failure none
    /// stays watched.
    pub fn add_all<F: AsFd>(&self, fds: &[F], first_token: u64) -> io::Result<()> {
        for (i, fd) in fds.iter().enumerate() {
            if let Err(e) = self.add(fd, first_token + i as u64) {
                for fd in fds {
                    self.delete(fd);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Whether a worker goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// One worker's state and logic.
pub trait Handler: Send + 'static {
    type Command: Send + 'static;

    /// The socket registered as `token` is readable.
    fn on_readable(&mut self, poller: &Poller, token: u64, now: Instant);

    /// A command sent with [`Workers::send`]; [`Flow::Stop`] ends the worker.
    fn on_command(&mut self, poller: &Poller, cmd: Self::Command, now: Instant) -> Flow;

    /// After the events and commands of a wake-up (and at each deadline).
    fn on_wake(&mut self, poller: &Poller, now: Instant);

    /// The next deadline at which [`Handler::on_wake`] must run, if any.
    fn poll_timeout(&self) -> Option<Instant>;
}

struct Worker<C> {
    tx: mpsc::Sender<C>,
    waker: Arc<EventFd>,
    /// Set by the first sender after the worker last took its commands: later
    /// senders skip the eventfd write (one write per batch, not per command).
    pending: Arc<AtomicBool>,
}

/// A set of worker threads running one handler each.
pub struct Workers<C> {
    workers: Vec<Worker<C>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<C: Send + 'static> Workers<C> {
    /// Start `threads` workers (at least one), named `{name}-{i}`; `make(i)` builds
    /// worker `i`'s handler. A worker with no deadline wakes every `max_wait`.
    pub fn start<H>(
        threads: usize,
        name: &str,
        max_wait: Duration,
        mut make: impl FnMut(usize) -> H,
    ) -> io::Result<Workers<C>>
    where
        H: Handler<Command = C>,
    {
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let waker = Arc::new(EventFd::from_value_and_flags(
                0,
                EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC,
            )?);
            epoll.add(waker.as_ref(), EpollEvent::new(EpollFlags::EPOLLIN, WAKER))?;
            let (tx, rx) = mpsc::channel();
            let handler = make(i);
            let w = waker.clone();
            let pending = Arc::new(AtomicBool::new(false));
            let p = pending.clone();
            let poller = Poller { epoll };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run(poller, w, p, rx, handler, max_wait))?,
            );
            workers.push(Worker { tx, waker, pending });
        }
        Ok(Workers {
            workers,
            threads: Mutex::new(handles),
        })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Queue `cmd` for worker `worker % len` and wake it. False when that worker has
    /// stopped.
    pub fn send(&self, worker: usize, cmd: C) -> bool {
        let w = &self.workers[worker % self.workers.len()];
        if w.tx.send(cmd).is_err() {
            return false;
        }
        // The worker clears `pending` before it drains the channel, so a command
        // sent while the flag is still set is taken by that drain.
        if !w.pending.swap(true, SeqCst) {
            let _ = w.waker.write(1);
        }
        true
    }

    /// Wait for every worker thread to end (after each got a command that stops it).
    pub fn join(&self) {
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn run<H: Handler>(
    poller: Poller,
    waker: Arc<EventFd>,
    pending: Arc<AtomicBool>,
    rx: mpsc::Receiver<H::Command>,
    mut handler: H,
    max_wait: Duration,
) {
    let mut events = vec![EpollEvent::empty(); EVENTS];
    let max_ms = max_wait.as_millis().min(u16::MAX as u128 - 1) as u16;
    loop {
        // Round up: waking early would only wait again.
        let ms = match handler.poll_timeout() {
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000)
                .min(max_ms as u128) as u16,
            None => max_ms,
        };
        let n = match poller.epoll.wait(&mut events, EpollTimeout::from(ms)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => {
                tracing::error!(error = %e, "RTP worker poll failed: worker stops");
                return;
            }
        };
        let now = Instant::now();
        let mut commands = false;
        for ev in &events[..n] {
            match ev.data() {
                WAKER => {
                    let _ = waker.read();
                    pending.store(false, SeqCst);
                    commands = true;
                }
                token => handler.on_readable(&poller, token, now),
            }
        }
        if commands {
            while let Ok(cmd) = rx.try_recv() {
                if handler.on_command(&poller, cmd, now) == Flow::Stop {
                    return;
                }
            }
        }
        handler.on_wake(&poller, Instant::now());
    }
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
