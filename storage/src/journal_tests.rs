//! Unit tests of `journal.rs`.

use super::*;

#[test]
fn chunk_plan_of_70mb_is_50_then_20() {
    assert_eq!(
        plan(70_000_000, 50_000_000),
        vec![(0, 50_000_000), (50_000_000, 20_000_000)]
    );
    assert_eq!(plan(100, 50), vec![(0, 50), (50, 50)]);
    assert_eq!(plan(0, 50), vec![(0, 0)]);
    assert_eq!(plan(10, 50), vec![(0, 10)]);
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp() {
    let d = tempfile::tempdir().unwrap();
    write_atomic(d.path(), "j.json", b"one").unwrap();
    write_atomic(d.path(), "j.json", b"two").unwrap();
    assert_eq!(std::fs::read(d.path().join("j.json")).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
}
