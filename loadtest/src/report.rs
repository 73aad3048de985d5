//! The HTML report: one self-contained page with SVG plots drawn by `plotters`
//! (calls/s and concurrency over time, setup-time histogram, loss and jitter over
//! time, MOS distribution) and the summary table.

use crate::collector::Collector;
use plotters::prelude::*;
use serde_json::Value;

type Plot = Result<String, String>;

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Plot {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A named line: label, points, colour.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

fn series_plot(title: &str, y_desc: &str, lines: &[Line]) -> Plot {
    let xmax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw()
            .map_err(e2s)?;
        for (name, pts, color) in lines {
            let c = *color;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(e2s)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(e2s)?;
        Ok(())
    })
}

fn histogram_plot(title: &str, x_desc: &str, values: &[f64], bins: usize, color: RGBColor) -> Plot {
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if values.is_empty() {
        (0.0, 1.0)
    } else if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in values {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(e2s)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .draw()
            .map_err(e2s)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.95, n as f64)], color.filled())
            }))
            .map_err(e2s)?;
        Ok(())
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Render the report page.
pub fn render(summary: &Value, c: &Collector) -> Result<String, String> {
    let g = c.inner.lock();
    let secs: Vec<f64> = (0..g.buckets.len()).map(|i| i as f64 + 0.5).collect();
    let pick = |f: &dyn Fn(&crate::collector::Bucket) -> f64| -> Vec<(f64, f64)> {
        g.buckets
            .iter()
            .zip(&secs)
            .map(|(b, x)| (*x, f(b)))
            .collect()
    };
    let calls = series_plot(
        "Calls per second and concurrency",
        "calls",
        &[
            ("started/s", pick(&|b| b.started as f64), BLUE),
            ("completed/s", pick(&|b| b.answered as f64), GREEN),
            ("failed/s", pick(&|b| b.failed as f64), RED),
            ("concurrent", pick(&|b| b.concurrent as f64), BLACK),
        ],
    )?;
    let loss = series_plot(
        "RTP loss and jitter over time",
        "% / ms",
        &[
            (
                "loss %",
                pick(&|b| {
                    if b.rtp_expected > 0 {
                        100.0 * b.rtp_lost as f64 / b.rtp_expected as f64
                    } else {
                        0.0
                    }
                }),
                RED,
            ),
            (
                "mean jitter ms",
                pick(&|b| {
                    if b.jitter_n > 0 {
                        b.jitter_ms_sum / b.jitter_n as f64
                    } else {
                        0.0
                    }
                }),
                MAGENTA,
            ),
        ],
    )?;
    let mut setup: Vec<f64> = Vec::new();
    for v in g.setup_us.iter_recorded() {
        for _ in 0..v.count_at_value().min(100_000) {
            setup.push(v.value_iterated_to() as f64 / 1000.0);
        }
    }
    let setup_h = histogram_plot("Setup time (INVITE → 200)", "ms", &setup, 40, BLUE)?;
    let mos_h = histogram_plot(
        "Estimated MOS per stream (G.107 E-model)",
        "MOS",
        &g.mos,
        30,
        GREEN,
    )?;
    drop(g);
    let pretty = serde_json::to_string_pretty(summary).unwrap_or_default();
    let cell = |p: &[&str]| -> String {
        let mut v = summary;
        for k in p {
            v = &v[*k];
        }
        match v {
            Value::Null => "–".into(),
            other => other.to_string(),
        }
    };
    let rows = [
        ("target", cell(&["target"])),
        (
            "calls attempted / answered / failed",
            format!(
                "{} / {} / {}",
                cell(&["calls", "attempted"]),
                cell(&["calls", "answered"]),
                cell(&["calls", "failed"])
            ),
        ),
        ("achieved rate (calls/s)", cell(&["calls", "rate_per_s"])),
        ("max concurrent", cell(&["calls", "max_concurrent"])),
        (
            "setup ms p50 / p99",
            format!(
                "{} / {}",
                cell(&["setup_ms", "p50"]),
                cell(&["setup_ms", "p99"])
            ),
        ),
        (
            "post-dial delay ms p50 / p99",
            format!(
                "{} / {}",
                cell(&["pdd_ms", "p50"]),
                cell(&["pdd_ms", "p99"])
            ),
        ),
        ("RTP loss %", cell(&["rtp", "loss_pct"])),
        (
            "jitter ms p50 / p99",
            format!(
                "{} / {}",
                cell(&["rtp", "jitter_ms", "p50"]),
                cell(&["rtp", "jitter_ms", "p99"])
            ),
        ),
        (
            "one-way delay ms p50 / p99",
            format!(
                "{} / {}",
                cell(&["rtp", "delay_ms", "p50"]),
                cell(&["rtp", "delay_ms", "p99"])
            ),
        ),
        (
            "MOS mean / p5",
            format!(
                "{} / {}",
                cell(&["rtp", "mos", "mean"]),
                cell(&["rtp", "mos", "p5"])
            ),
        ),
    ];
    let table: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v)))
        .collect();
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadtest report</title>\
<style>body{{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left}}th{{background:#f4f4f4}}pre{{background:#f8f8f8;padding:1em;overflow:auto}}</style></head>\
<body><h1>loadtest report</h1><table>{table}</table><h2>Calls</h2>{calls}<h2>Setup time</h2>{setup_h}<h2>Media quality</h2>{loss}{mos_h}\
<h2>Summary (JSON)</h2><pre>{}</pre></body></html>",
        escape(&pretty)
    ))
}
