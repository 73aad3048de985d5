//! A pool of RTP/RTCP port pairs from the configured range. RTP gets the even port,
//! RTCP the odd one above it. Released pairs go to the back of the queue so a port is
//! reused as late as possible (a late packet of an ended call never reaches a new one,
//! and the old socket has long been closed when the port comes round again).

use std::collections::VecDeque;

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
