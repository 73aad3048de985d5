//! Everything measured during a run: per-call outcomes and latencies, per-stream
//! RTP quality, and per-second time series for the report. Shared between the SIP
//! loop and the RTP tasks behind one short-held lock.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One second of the run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Bucket {
    pub started: u64,
    pub answered: u64,
    pub failed: u64,
    pub concurrent: u64,
    pub rtp_expected: u64,
    pub rtp_lost: u64,
    pub jitter_ms_sum: f64,
    pub jitter_n: u64,
    /// Of the calls that *started* in this second: answered, failed, answered
    /// after more than [`SLOW_SETUP`], the longest setup (µs), and answered calls
    /// whose BYE got no 200 (their server went away).
    pub started_answered: u64,
    pub started_failed: u64,
    pub slow: u64,
    pub setup_max_us: u64,
    pub bye_failed: u64,
}

/// A setup slower than this counts as slow in the per-second figures (a proxy
/// that waited for a dead node before trying the next).
pub const SLOW_SETUP: Duration = Duration::from_secs(1);

/// The final figures of one RTP stream as received by one end.
#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub jitter_ms: f64,
    /// Mean one-way delay (send-time extension), if the peer stamped its packets.
    pub delay_ms: Option<f64>,
    pub dtmf_sent: String,
    pub dtmf_received: String,
    /// From the stream's start (the call answered) to its first packet
    /// received, and from its last packet received to its end: audio missing
    /// at either end is not counted as loss (no sequence gap shows it).
    pub first_rx_us: Option<u64>,
    pub quiet_at_end_us: Option<u64>,
}

pub struct Inner {
    pub buckets: Vec<Bucket>,
    pub setup_us: Histogram<u64>,
    pub pdd_us: Histogram<u64>,
    pub delay_us: Histogram<u64>,
    pub jitter_us: Histogram<u64>,
    pub first_rx_us: Histogram<u64>,
    pub quiet_at_end_us: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub timeouts: u64,
    pub attempted: u64,
    pub streams: Vec<StreamResult>,
    pub mos: Vec<f64>,
    pub max_concurrent: u64,
}

pub struct Collector {
    pub start: Instant,
    pub inner: Mutex<Inner>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

impl Collector {
    pub fn new(start: Instant) -> Self {
        Collector {
            start,
            inner: Mutex::new(Inner {
                buckets: Vec::new(),
                setup_us: hist(),
                pdd_us: hist(),
                delay_us: hist(),
                jitter_us: hist(),
                first_rx_us: hist(),
                quiet_at_end_us: hist(),
                statuses: BTreeMap::new(),
                timeouts: 0,
                attempted: 0,
                streams: Vec::new(),
                mos: Vec::new(),
                max_concurrent: 0,
            }),
        }
    }

    fn second(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    pub fn with_bucket(inner: &mut Inner, second: usize) -> &mut Bucket {
        if inner.buckets.len() <= second {
            inner.buckets.resize(second + 1, Bucket::default());
        }
        &mut inner.buckets[second]
    }

    pub fn call_started(&self, at: Instant, concurrent: u64) {
        let s = self.second(at);
        let mut g = self.inner.lock();
        g.attempted += 1;
        g.max_concurrent = g.max_concurrent.max(concurrent);
        let b = Self::with_bucket(&mut g, s);
        b.started += 1;
        b.concurrent = b.concurrent.max(concurrent);
    }

    /// A finished call: its INVITE status (200 for answered), setup and PDD.
    pub fn call_finished(
        &self,
        at: Instant,
        status: u16,
        timed_out: bool,
        setup: Option<Duration>,
        pdd: Option<Duration>,
    ) {
        let s = self.second(at);
        let mut g = self.inner.lock();
        *g.statuses.entry(status).or_default() += 1;
        if timed_out {
            g.timeouts += 1;
        }
        if let Some(d) = setup {
            let _ = g.setup_us.record((d.as_micros() as u64).max(1));
        }
        if let Some(d) = pdd {
            let _ = g.pdd_us.record((d.as_micros() as u64).max(1));
        }
        let b = Self::with_bucket(&mut g, s);
        if status == 200 {
            b.answered += 1;
        } else {
            b.failed += 1;
        }
    }

    /// A finished call, counted in the second it started (see [`Bucket`]).
    pub fn call_outcome(
        &self,
        started: Instant,
        status: u16,
        setup: Option<Duration>,
        bye_status: Option<u16>,
        ended_by_callee: bool,
    ) {
        let s = self.second(started);
        let mut g = self.inner.lock();
        let b = Self::with_bucket(&mut g, s);
        if status != 200 {
            b.started_failed += 1;
            return;
        }
        b.started_answered += 1;
        if let Some(d) = setup {
            if d > SLOW_SETUP {
                b.slow += 1;
            }
            b.setup_max_us = b.setup_max_us.max(d.as_micros() as u64);
        }
        if !ended_by_callee && bye_status != Some(200) {
            b.bye_failed += 1;
        }
    }

    pub fn concurrency(&self, at: Instant, concurrent: u64) {
        let s = self.second(at);
        let mut g = self.inner.lock();
        g.max_concurrent = g.max_concurrent.max(concurrent);
        let b = Self::with_bucket(&mut g, s);
        b.concurrent = b.concurrent.max(concurrent);
    }

    /// RTP figures of the last second of one stream.
    pub fn rtp_second(&self, at: Instant, expected: u64, lost: u64, jitter_ms: f64) {
        let s = self.second(at);
        let mut g = self.inner.lock();
        let b = Self::with_bucket(&mut g, s);
        b.rtp_expected += expected;
        b.rtp_lost += lost;
        b.jitter_ms_sum += jitter_ms;
        b.jitter_n += 1;
    }

    /// A stream ended; `delays_us` are its one-way delay samples.
    pub fn stream_finished(&self, r: StreamResult, delays_us: &Histogram<u64>) {
        let loss_pct = if r.expected > 0 {
            100.0 * r.lost as f64 / r.expected as f64
        } else {
            0.0
        };
        let mos = crate::quality::stream_mos(r.delay_ms.unwrap_or(0.0), r.jitter_ms, loss_pct);
        let mut g = self.inner.lock();
        let _ = g.delay_us.add(delays_us);
        let _ = g.jitter_us.record(((r.jitter_ms * 1000.0) as u64).max(1));
        if let Some(us) = r.first_rx_us {
            let _ = g.first_rx_us.record(us.max(1));
        }
        if let Some(us) = r.quiet_at_end_us {
            let _ = g.quiet_at_end_us.record(us.max(1));
        }
        if r.expected > 0 {
            g.mos.push(mos);
        }
        g.streams.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_in_the_second_the_call_started() {
        let t0 = Instant::now();
        let c = Collector::new(t0);
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        for s in [0.2, 2.1, 2.5, 2.7] {
            c.call_started(at(s), 1);
        }
        c.call_outcome(
            at(0.2),
            200,
            Some(Duration::from_millis(30)),
            Some(200),
            false,
        );
        // Started in second 2, answered 2.1 s later (after the dead node's
        // timeout), its BYE unanswered.
        c.call_outcome(at(2.1), 200, Some(Duration::from_millis(2100)), None, false);
        c.call_outcome(at(2.5), 408, None, None, false);
        c.call_outcome(at(2.7), 200, Some(Duration::from_millis(40)), None, true);
        let v = crate::summary::build(
            "call",
            "t",
            serde_json::json!({}),
            &c,
            Duration::from_secs(3),
        );
        let per = v["per_second"].as_array().unwrap();
        assert_eq!(per[0]["answered"], 1);
        assert_eq!(per[0]["slow"], 0);
        assert_eq!(per[2]["started"], 3);
        assert_eq!(per[2]["answered"], 2);
        assert_eq!(per[2]["failed"], 1);
        assert_eq!(per[2]["slow"], 1);
        assert_eq!(per[2]["setup_max_ms"], 2100.0);
        assert_eq!(
            per[2]["bye_failed"], 1,
            "the callee's own hang-up is no failure"
        );
        let v = crate::summary::build(
            "answer",
            "t",
            serde_json::json!({}),
            &c,
            Duration::from_secs(3),
        );
        assert_eq!(v["per_second"], serde_json::json!([]));
    }
}
