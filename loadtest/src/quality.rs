//! Call quality: the ITU-T G.107 E-model, simplified for G.711 over a packet
//! network, turning one-way delay, jitter and loss into an R factor and a MOS.

/// Mouth-to-ear delay in ms the E-model sees for a stream: network one-way delay,
/// plus a jitter buffer of twice the jitter, plus 20 ms packetisation.
pub fn effective_delay_ms(one_way_ms: f64, jitter_ms: f64) -> f64 {
    one_way_ms + 2.0 * jitter_ms + 20.0
}

/// R factor (G.107 §7 with default values): R = R0 − Is − Id − Ie,eff + A, with
/// R0 − Is = 93.2, A = 0; Id from the delay; Ie,eff for G.711 (Ie = 0, Bpl = 25.1
/// with packet loss concealment, random loss).
pub fn r_factor(delay_ms: f64, loss_pct: f64) -> f64 {
    let d = delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = loss_pct.clamp(0.0, 100.0);
    let (ie, bpl) = (0.0, 25.1);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (1.0–4.5) from R (G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// Estimated MOS of a received stream.
pub fn stream_mos(one_way_ms: f64, jitter_ms: f64, loss_pct: f64) -> f64 {
    mos(r_factor(
        effective_delay_ms(one_way_ms, jitter_ms),
        loss_pct,
    ))
}

#[cfg(test)]
#[path = "quality_tests.rs"]
mod tests;
