//! The JSON summary printed on stdout. Field names are stable (documented in
//! README); times in milliseconds, rates per second.

use crate::collector::Collector;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::Duration;

fn pct_ms(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        "count": h.len(),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Build the summary. `config` is echoed as given.
pub fn build(mode: &str, target: &str, config: Value, c: &Collector, elapsed: Duration) -> Value {
    let g = c.inner.lock();
    let answered = g.statuses.get(&200).copied().unwrap_or(0);
    let finished: u64 = g.statuses.values().sum();
    let failed = finished - answered;
    let by_status: serde_json::Map<String, Value> = g
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let (mut sent, mut received, mut expected, mut lost, mut dups, mut reord) = (0, 0, 0, 0, 0, 0);
    let (mut dtmf_sent, mut dtmf_received) = (0usize, 0usize);
    for s in &g.streams {
        sent += s.sent;
        received += s.received;
        expected += s.expected;
        lost += s.lost;
        dups += s.duplicates;
        reord += s.reordered;
        dtmf_sent += s.dtmf_sent.len();
        dtmf_received += s.dtmf_received.len();
    }
    let mut mos = g.mos.clone();
    mos.sort_by(|a, b| a.total_cmp(b));
    let mos_v = if mos.is_empty() {
        Value::Null
    } else {
        json!({
            "mean": round(mos.iter().sum::<f64>() / mos.len() as f64, 3),
            "p5": round(mos[(mos.len() - 1) * 5 / 100], 3),
            "min": round(mos[0], 3),
            "max": round(mos[mos.len() - 1], 3),
        })
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    // By the second calls started (callers only: an answerer has no such figures).
    let per_second: Vec<Value> = if mode == "call" {
        g.buckets
            .iter()
            .map(|b| {
                json!({
                    "started": b.started,
                    "answered": b.started_answered,
                    "failed": b.started_failed,
                    "slow": b.slow,
                    "setup_max_ms": round(b.setup_max_us as f64 / 1000.0, 1),
                    "bye_failed": b.bye_failed,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "tool": "loadtest",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": mode,
        "target": target,
        "config": config,
        "elapsed_s": round(secs, 3),
        "calls": {
            "attempted": g.attempted,
            "finished": finished,
            "answered": answered,
            "failed": failed,
            "timeouts": g.timeouts,
            "by_status": by_status,
            "rate_per_s": round(g.attempted as f64 / secs, 2),
            "max_concurrent": g.max_concurrent,
        },
        "setup_ms": pct_ms(&g.setup_us),
        "pdd_ms": pct_ms(&g.pdd_us),
        "rtp": {
            "streams": g.streams.len(),
            "packets_sent": sent,
            "packets_received": received,
            "packets_expected": expected,
            "lost": lost,
            "loss_pct": if expected > 0 { round(100.0 * lost as f64 / expected as f64, 4) } else { 0.0 },
            "duplicates": dups,
            "reordered": reord,
            "jitter_ms": pct_ms(&g.jitter_us),
            "delay_ms": pct_ms(&g.delay_us),
            "first_packet_ms": pct_ms(&g.first_rx_us),
            "quiet_at_end_ms": pct_ms(&g.quiet_at_end_us),
            "mos": mos_v,
        },
        "dtmf": { "digits_sent": dtmf_sent, "digits_received": dtmf_received },
        "per_second": per_second,
    })
}
