//! Recordings in the edge: the uploader (storage crate) and the inbox through which
//! any producer hands over a finished recording: write `NAME.wav` (any extension),
//! then `NAME.json` (metadata; optional `recording_id`, `call_id`, `file`) into
//! `{storage.dir}/inbox`. The edge spools the pair and removes it from the inbox;
//! a pair it cannot take goes to `inbox/failed/` with the reason beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::spool::SpoolError;
use storage::uploader::Uploader;

pub fn inbox_dir(dir: &Path) -> PathBuf {
    dir.join("inbox")
}

/// Find the recording file a metadata file names (`file`), or the sibling with the
/// same stem.
fn audio_for(meta_path: &Path, meta: &serde_json::Value) -> Option<PathBuf> {
    let dir = meta_path.parent()?;
    if let Some(f) = meta.get("file").and_then(|v| v.as_str()) {
        let name = Path::new(f).file_name()?;
        return Some(dir.join(name));
    }
    let stem = meta_path.file_stem()?.to_string_lossy().to_string();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_file()
                && p.file_stem()
                    .map(|s| s.to_string_lossy() == stem)
                    .unwrap_or(false)
                && p.extension().map(|e| e != "json").unwrap_or(true)
        })
}

fn quarantine(inbox: &Path, files: &[&Path], reason: &str) {
    let failed = inbox.join("failed");
    let _ = std::fs::create_dir_all(&failed);
    for f in files {
        if let Some(name) = f.file_name() {
            let _ = std::fs::rename(f, failed.join(name));
        }
    }
    if let Some(name) = files.first().and_then(|f| f.file_stem()) {
        let _ = std::fs::write(
            failed.join(format!("{}.error.txt", name.to_string_lossy())),
            reason,
        );
    }
}

/// One pass over the inbox.
pub fn scan_inbox(up: &Uploader, inbox: &Path) {
    let Ok(rd) = std::fs::read_dir(inbox) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !name.ends_with(".json") || !path.is_file() {
            continue;
        }
        let meta: serde_json::Value = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(m) => m,
            Err(err) => {
                tracing::error!(file = %path.display(), error = %err, "inbox: unreadable metadata");
                quarantine(inbox, &[&path], &format!("unreadable metadata: {err}"));
                continue;
            }
        };
        let Some(audio) = audio_for(&path, &meta).filter(|a| a.is_file()) else {
            // The producer may still be writing: the metadata file comes last, so a
            // missing recording beside it is an error.
            tracing::error!(file = %path.display(), "inbox: metadata without its recording file");
            quarantine(inbox, &[&path], "no recording file beside the metadata");
            continue;
        };
        let id = meta
            .get("recording_id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default()
            });
        match up.accept(&audio, &id, &meta) {
            Ok(_) => {
                let _ = std::fs::remove_file(&audio);
                let _ = std::fs::remove_file(&path);
            }
            Err(e @ (SpoolError::BadId(_) | SpoolError::Exists(_))) => {
                quarantine(inbox, &[&path, &audio], &e.to_string())
            }
            // Disk full, unwritable spool: leave the pair for the next pass.
            Err(_) => {}
        }
    }
}

/// Scan the inbox every half second (blocking I/O off the async threads).
pub fn spawn_inbox(up: Arc<Uploader>, inbox: PathBuf) {
    tokio::spawn(async move {
        loop {
            let (u, i) = (up.clone(), inbox.clone());
            let _ = tokio::task::spawn_blocking(move || scan_inbox(&u, &i)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}
