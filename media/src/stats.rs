//! Receiver statistics of one RTP stream (RFC 3550 A.1 sequence accounting, A.8
//! interarrival jitter) plus duplicates, reordering and one-way delay. Sans-IO: the
//! caller passes arrival times.

/// Counters of a received stream.
#[derive(Debug, Clone, Default)]
pub struct RecvStats {
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    base_seq: Option<u32>,
    /// Extended highest sequence number received (RFC 3550 cycles included).
    max_ext: u32,
    /// Last 1024 sequence numbers seen (for duplicate detection).
    seen: Box<[u64; 16]>,
    transit: Option<i64>,
    /// Interarrival jitter in timestamp units, ×16 (RFC 3550 A.8 fixed point).
    jitter16: i64,
    clock_rate: u32,
}

impl RecvStats {
    pub fn new(clock_rate: u32) -> Self {
        RecvStats {
            clock_rate,
            seen: Box::new([0; 16]),
            ..Default::default()
        }
    }

    fn seen_bit(&mut self, ext: u32) -> bool {
        let i = (ext % 1024) as usize;
        let (w, b) = (i / 64, i % 64);
        let was = self.seen[w] & (1 << b) != 0;
        self.seen[w] |= 1 << b;
        was
    }

    fn clear_bit(&mut self, ext: u32) {
        let i = (ext % 1024) as usize;
        self.seen[i / 64] &= !(1 << (i % 64));
    }

    /// A packet arrived. `arrival_us` is in microseconds on any monotonic clock.
    pub fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival_us: u64) {
        self.account(seq, rtp_ts, arrival_us, true);
    }

    /// A telephone-event packet: counted in the sequence space, but its timestamp
    /// (the event's start, repeated) says nothing about jitter.
    pub fn on_event_packet(&mut self, seq: u16) {
        self.account(seq, 0, 0, false);
    }

    fn account(&mut self, seq: u16, rtp_ts: u32, arrival_us: u64, timing: bool) {
        let ext = match self.base_seq {
            None => {
                self.base_seq = Some(seq as u32);
                self.max_ext = seq as u32;
                seq as u32
            }
            Some(_) => {
                let delta = seq.wrapping_sub(self.max_ext as u16);
                if delta == 0 {
                    self.max_ext
                } else if delta < 0x8000 {
                    // Ahead of the highest (wrap included): forget the window slots
                    // of the sequence numbers skipped over, then move the maximum.
                    let ext = self.max_ext + delta as u32;
                    let skipped = (delta as u32).min(1024);
                    for s in ext + 1 - skipped..=ext {
                        self.clear_bit(s);
                    }
                    self.max_ext = ext;
                    ext
                } else {
                    let back = (self.max_ext as u16).wrapping_sub(seq) as u32;
                    if back >= 1024 || back > self.max_ext {
                        // Too old to tell from a duplicate: count it as late.
                        self.received += 1;
                        self.reordered += 1;
                        return;
                    }
                    self.max_ext - back
                }
            }
        };
        if self.seen_bit(ext) {
            self.duplicates += 1;
            return;
        }
        if ext < self.max_ext {
            self.reordered += 1;
        }
        self.received += 1;
        if timing {
            self.update_jitter(rtp_ts, arrival_us);
        }
    }

    fn update_jitter(&mut self, rtp_ts: u32, arrival_us: u64) {
        let arrival = (arrival_us as i128 * self.clock_rate as i128 / 1_000_000) as i64;
        let transit = arrival - rtp_ts as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs();
            // J += (|D| - J) / 16, kept ×16.
            self.jitter16 += d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u64 {
        match self.base_seq {
            None => 0,
            Some(b) => (self.max_ext as u64 + 1).saturating_sub(b as u64),
        }
    }

    /// Packets lost (never negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        (self.jitter16 as f64 / 16.0) * 1000.0 / self.clock_rate as f64
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
