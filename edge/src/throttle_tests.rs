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

#[test]
fn a_librarys_repeated_lines_pass_once_a_minute_per_call_site() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Lines::default();
    let writer = out.clone();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_filter(super::LibraryRepeats {
            targets: &["noisy_lib"],
        });
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..5 {
            tracing::error!(target: "noisy_lib::conn", attempt = i, "authorization violation");
            tracing::info!(target: "noisy_lib", attempt = i, "event: client error");
            tracing::debug!(target: "noisy_lib", attempt = i, "detail");
            tracing::warn!(target: "edge_own", attempt = i, "said every time");
        }
    });
    let text = String::from_utf8(out.0.lock().clone()).unwrap();
    let count = |s: &str| text.lines().filter(|l| l.contains(s)).count();
    assert_eq!(count("authorization violation"), 1, "{text}");
    assert_eq!(count("event: client error"), 1, "{text}");
    assert_eq!(count("said every time"), 5, "another target: {text}");
}
