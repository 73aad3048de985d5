//! Repeated warnings: once a minute per key.

use super::warn_now;

#[test]
fn a_repeated_warning_is_said_once_a_minute_per_key() {
    assert!(warn_now("links to edge-test-x"));
    assert!(
        !warn_now("links to edge-test-x"),
        "the second within a minute"
    );
    assert!(warn_now("customers to edge-test-x"), "another key");
}
