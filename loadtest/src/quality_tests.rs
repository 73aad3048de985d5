//! Unit tests of `quality.rs`.

use super::*;

#[test]
fn clean_g711_is_about_4_4() {
    let m = stream_mos(1.0, 0.1, 0.0);
    assert!((4.35..=4.45).contains(&m), "{m}");
}

#[test]
fn mos_falls_with_loss_and_delay() {
    let clean = stream_mos(1.0, 0.0, 0.0);
    let lossy = stream_mos(1.0, 0.0, 5.0);
    let delayed = stream_mos(300.0, 0.0, 0.0);
    let both = stream_mos(300.0, 20.0, 5.0);
    assert!(
        clean > lossy && clean > delayed,
        "{clean} {lossy} {delayed}"
    );
    assert!(both < lossy && both < delayed);
    assert!(mos(0.0) == 1.0 && mos(120.0) == 4.5);
}
