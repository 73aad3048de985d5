//! Spool + uploader against the fs target; retention with an injected clock; resume
//! of a journal that a crash left mid-upload.

use crate::backoff::Backoff;
use crate::journal::{Journal, State};
use crate::spool::Spool;
use crate::target::{FsTarget, Target};
use crate::uploader::{Settings, Uploader};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

fn settings() -> Settings {
    Settings {
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
        max_attempts: None,
        concurrency: 2,
        retention: Duration::from_secs(7 * 86_400),
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write_src(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

async fn wait_until(mut f: impl FnMut() -> bool) -> Result<(), ()> {
    for _ in 0..500 {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(())
}

#[tokio::test]
async fn recordings_reach_the_fs_target_whole_and_the_spool_empties() {
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let spool = Spool::open(d.path(), 1000, "fs").unwrap();
    let up = Uploader::new(
        spool,
        Target::Fs(FsTarget {
            dir: archive.clone(),
        }),
        settings(),
        1,
    );
    tokio::spawn(up.clone().run());
    let a = data(2500, 1);
    let b = data(10, 2);
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let ja = up
        .accept(
            &write_src(&src, "a.wav", &a),
            "rec-a",
            &serde_json::json!({"call_id": "c1"}),
        )
        .unwrap();
    assert_eq!(ja.chunks.len(), 3, "2500 bytes in chunks of 1000");
    up.accept(
        &write_src(&src, "b.wav", &b),
        "rec-b",
        &serde_json::json!({}),
    )
    .unwrap();
    wait_until(|| up.list().is_empty())
        .await
        .unwrap_or_else(|_| panic!("{:?}", up.list()));
    assert_eq!(std::fs::read(archive.join("rec-a.wav")).unwrap(), a);
    assert_eq!(std::fs::read(archive.join("rec-b.wav")).unwrap(), b);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("rec-a.json")).unwrap()).unwrap();
    assert_eq!(meta["sha256"], hex::encode(Sha256::digest(&a)));
    assert_eq!(meta["size"], 2500);
    assert_eq!(meta["call_id"], "c1");
    assert!(
        !d.path().join("spool/rec-a").exists(),
        "local copy deleted after acknowledgement"
    );
    assert_eq!(
        up.metrics
            .bytes_uploaded
            .load(std::sync::atomic::Ordering::Relaxed),
        2510
    );
}

#[tokio::test]
async fn a_resumed_upload_does_not_resend_acknowledged_chunks() {
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let src = d.path().join("a.wav");
    let a = data(3000, 7);
    std::fs::write(&src, &a).unwrap();
    {
        // A first run spooled it and got chunk 0 acknowledged, then died.
        let spool = Spool::open(d.path(), 1000, "fs").unwrap();
        let mut j = spool
            .accept(
                &src,
                "r",
                &serde_json::json!({}),
                crate::unix_ms(std::time::SystemTime::now()),
            )
            .unwrap();
        j.chunks[0].acked = true;
        j.state = State::Uploading;
        spool.save(&j).unwrap();
        // The archive holds chunk 0 — marked, to see whether it is written again.
        crate::spool::write_at(&archive.join(".partial-r"), 0, &[0xEE; 1000]).unwrap();
    }
    let spool = Spool::open(d.path(), 1000, "fs").unwrap();
    let up = Uploader::new(
        spool,
        Target::Fs(FsTarget {
            dir: archive.clone(),
        }),
        settings(),
        1,
    );
    assert_eq!(up.list().len(), 1, "the journal is found again");
    tokio::spawn(up.clone().run());
    wait_until(|| up.list().is_empty())
        .await
        .unwrap_or_else(|_| panic!("{:?}", up.list()));
    let got = std::fs::read(archive.join("r.wav")).unwrap();
    assert_eq!(
        &got[..1000],
        &[0xEE; 1000][..],
        "chunk 0 was not sent again"
    );
    assert_eq!(&got[1000..], &a[1000..]);
}

#[test]
fn retention_deletes_old_recordings_whatever_their_state_and_keeps_new_ones() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path(), 1000, "fs").unwrap();
    let day = 86_400_000u64;
    let now = 100 * day;
    let src = d.path().join("x.wav");
    std::fs::write(&src, b"x").unwrap();
    let mut old = spool
        .accept(&src, "old", &serde_json::json!({}), now - 8 * day)
        .unwrap();
    old.state = State::Failed;
    spool.save(&old).unwrap();
    std::fs::write(&src, b"x").unwrap(); // accept moved the first one in
    spool
        .accept(&src, "new", &serde_json::json!({}), now - 6 * day)
        .unwrap();
    let up = Uploader::new(
        spool,
        Target::Fs(FsTarget {
            dir: d.path().join("archive"),
        }),
        settings(),
        1,
    );
    let gone = up.sweep_retention(now);
    assert_eq!(
        gone.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec!["old"]
    );
    assert!(!d.path().join("spool/old").exists());
    assert!(d.path().join("spool/new/x.wav").exists());
    let listed: Vec<(String, State)> = up.list().into_iter().map(|j| (j.id, j.state)).collect();
    assert!(
        listed.contains(&("old".into(), State::Expired))
            && listed.contains(&("new".into(), State::Pending)),
        "{listed:?}"
    );
    // Expired stays expired after a restart.
    let spool = Spool::open(d.path(), 1000, "fs").unwrap();
    let up = Uploader::new(
        spool,
        Target::Fs(FsTarget {
            dir: d.path().join("archive"),
        }),
        settings(),
        1,
    );
    assert_eq!(up.get("old").unwrap().state, State::Expired);
}

#[test]
fn bad_ids_and_duplicates_are_refused_and_nothing_spooled_is_touched() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path(), 1000, "fs").unwrap();
    let src = d.path().join("x.wav");
    std::fs::write(&src, b"abc").unwrap();
    for bad in ["", "../etc", ".hidden", "a/b", "a b"] {
        assert!(
            spool.accept(&src, bad, &serde_json::json!({}), 0).is_err(),
            "{bad:?}"
        );
    }
    let j: Journal = spool.accept(&src, "ok", &serde_json::json!({}), 0).unwrap();
    assert!(!src.exists(), "moved into the spool (same filesystem)");
    std::fs::write(&src, b"abc").unwrap();
    assert!(spool.accept(&src, "ok", &serde_json::json!({}), 0).is_err());
    assert!(src.exists(), "a refused recording stays where it was");
    assert_eq!(Journal::load(&spool.job_dir("ok")).unwrap(), j);
    // A missing source file fails cleanly and leaves no half job behind.
    assert!(spool
        .accept(
            &d.path().join("missing.wav"),
            "m",
            &serde_json::json!({}),
            0
        )
        .is_err());
    assert_eq!(spool.load().len(), 1);
    let _ = Arc::new(());
}
