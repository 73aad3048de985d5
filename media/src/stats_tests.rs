//! Unit tests of `stats.rs`.

use super::*;

fn feed(s: &mut RecvStats, seqs: &[u16]) {
    for (i, &q) in seqs.iter().enumerate() {
        s.on_packet(q, q as u32 * 160, i as u64 * 20_000);
    }
}

#[test]
fn clean_stream() {
    let mut s = RecvStats::new(8000);
    feed(&mut s, &(0..100).collect::<Vec<_>>());
    assert_eq!(
        (
            s.received,
            s.expected(),
            s.lost(),
            s.duplicates,
            s.reordered
        ),
        (100, 100, 0, 0, 0)
    );
    assert!(s.jitter_ms() < 0.01);
}

#[test]
fn loss_duplicates_reordering_and_wrap() {
    let mut s = RecvStats::new(8000);
    // 65533..=65535, 0..=4 with 1 lost, 3 duplicated, 4 before 2.
    feed(&mut s, &[65533, 65534, 65535, 0, 3, 2, 3, 4]);
    assert_eq!(s.expected(), 8);
    assert_eq!(s.received, 7);
    assert_eq!(s.lost(), 1);
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.reordered, 1);
}

#[test]
fn jitter_follows_arrival_variation() {
    let mut s = RecvStats::new(8000);
    // Packets every 20 ms of media, arriving alternately 0 and 10 ms late.
    for i in 0..200u32 {
        let late = if i % 2 == 0 { 0 } else { 10_000 };
        s.on_packet(i as u16, i * 160, i as u64 * 20_000 + late);
    }
    // |D| = 10 ms each packet: J converges to 10 ms.
    assert!((s.jitter_ms() - 10.0).abs() < 0.5, "{}", s.jitter_ms());
}
