//! Unit tests of `g711.rs`.

use super::*;

#[test]
fn ulaw_round_trip_within_quantisation_error() {
    for s in (-32000i32..32000).step_by(37) {
        let back = ulaw_to_linear(linear_to_ulaw(s as i16)) as i32;
        let tol = (s.abs() / 16).max(8);
        assert!((back - s).abs() <= tol, "{s} -> {back}");
    }
    assert_eq!(linear_to_ulaw(0), 0xFF);
}

#[test]
fn alaw_round_trip_within_quantisation_error() {
    for s in (-32000i32..32000).step_by(37) {
        let back = alaw_to_linear(linear_to_alaw(s as i16)) as i32;
        let tol = (s.abs() / 16).max(16);
        assert!((back - s).abs() <= tol, "{s} -> {back}");
    }
    assert_eq!(linear_to_alaw(0), 0xD5);
}
