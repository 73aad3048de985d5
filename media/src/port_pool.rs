//! A pool of RTP/RTCP port pairs from the configured range. RTP gets the even port,
//! RTCP the odd one above it. Released pairs go to the back of the queue so a port is
//! reused as late as possible (a late packet of an ended call never reaches a new one,
//! and the old socket has long been closed when the port comes round again).

use std::collections::VecDeque;

/// What the media driver says about a pair before the call model uses it: it binds
/// the sockets of `port` and `port + 1` at once and keeps them for the call
/// (`false`: a port is taken by another program), and drops them if the pair comes
/// back unused.
pub trait PortProbe: Send {
    fn reserve(&mut self, port: u16) -> bool;
    fn release(&mut self, port: u16);

    /// `ports` are among the next few the pool hands out: a probe may bind them
    /// now, off the caller's thread, so that [`PortProbe::reserve`] finds them ready.
    fn ahead(&mut self, _ports: &[u16]) {}
}

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortPool {
    /// A pool of the even ports `p` in `first..=last` with `p + 1` also in range.
    pub fn new(first: u16, last: u16) -> Self {
        let start = first + (first % 2);
        let free: VecDeque<u16> = (start..last).step_by(2).collect();
        let capacity = free.len();
        PortPool { free, capacity }
    }

    /// Take a pair; returns the RTP (even) port. `None` when exhausted.
    pub fn allocate(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// Put a pair back (the RTP port returned by `allocate`).
    pub fn release(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} released twice");
        self.free.push_back(port);
    }

    /// A free pair for which `usable` holds, trying at most `tries` of them. A pair
    /// that is not usable (another program holds it) goes to the back of the free
    /// list, to be tried again later. Returns the pair and how many were skipped.
    pub fn allocate_with(
        &mut self,
        tries: usize,
        mut usable: impl FnMut(u16) -> bool,
    ) -> (Option<u16>, u64) {
        let mut skipped = 0;
        for _ in 0..tries.min(self.free.len()) {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            if usable(port) {
                return (Some(port), skipped);
            }
            skipped += 1;
            self.free.push_back(port);
        }
        (None, skipped)
    }

    /// The free pair that `n` more allocations from now would hand out (0: the next).
    pub fn peek(&self, n: usize) -> Option<u16> {
        self.free.get(n).copied()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.free.len()
    }
}

#[cfg(test)]
#[path = "port_pool_tests.rs"]
mod tests;
