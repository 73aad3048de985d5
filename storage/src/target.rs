//! Upload targets: `fs` (a directory, chunks written at their offsets into a
//! partial file, moved into place atomically on completion) and `http` (a CRM
//! webhook: `PUT {url}/{id}/{index}` per chunk, then `POST {url}/{id}/complete`).
//! Each step is idempotent: a retry may repeat it.

use crate::job::Outcome;
use crate::journal::{sync_dir, write_atomic, Journal};
use std::path::PathBuf;
use std::time::Duration;

pub enum Target {
    Fs(FsTarget),
    Http(HttpTarget),
}

pub struct FsTarget {
    pub dir: PathBuf,
}

pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Target {
    pub fn from_config(c: &control::StorageConfig) -> Result<Target, String> {
        let u = &c.upload;
        match u.target {
            control::UploadTarget::Fs => {
                let dir = u.dir.clone().unwrap_or_else(|| c.dir.join("archive"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create fs target {}: {e}", dir.display()))?;
                Ok(Target::Fs(FsTarget { dir }))
            }
            control::UploadTarget::Http => {
                let client = reqwest::Client::builder()
                    .timeout(u.request_timeout)
                    .build()
                    .map_err(|e| format!("http client: {e}"))?;
                let url = u
                    .url
                    .clone()
                    .ok_or("http target without url")?
                    .trim_end_matches('/')
                    .to_string();
                Ok(Target::Http(HttpTarget {
                    client,
                    url,
                    token: u.token.clone(),
                }))
            }
            control::UploadTarget::S3 => Err("the s3 target is not available yet".into()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Fs(_) => "fs",
            Target::Http(_) => "http",
        }
    }

    pub async fn put_chunk(&self, j: &Journal, index: usize, data: Vec<u8>) -> Outcome {
        match self {
            Target::Fs(t) => {
                let path = t.dir.join(format!(".partial-{}", j.id));
                let offset = j.chunks[index].offset;
                let r = tokio::task::spawn_blocking(move || {
                    crate::spool::write_at(&path, offset, &data)
                })
                .await;
                fs_outcome(r)
            }
            Target::Http(t) => {
                let c = &j.chunks[index];
                let mut req = t
                    .client
                    .put(format!("{}/{}/{}", t.url, j.id, index))
                    .header("X-Recording-Id", &j.id)
                    .header("X-Chunk-Index", index.to_string())
                    .header("X-Chunk-Count", j.chunks.len().to_string())
                    .header("X-Chunk-Sha256", &c.sha256)
                    .header("Content-Type", "application/octet-stream")
                    .body(data);
                if let Some(tok) = &t.token {
                    req = req.bearer_auth(tok);
                }
                classify(req.send().await).await
            }
        }
    }

    pub async fn complete(&self, j: &Journal, meta: serde_json::Value) -> Outcome {
        let mut meta = match meta {
            serde_json::Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("metadata".into(), other);
                m
            }
        };
        meta.insert("recording_id".into(), j.id.clone().into());
        meta.insert("size".into(), j.size.into());
        meta.insert("sha256".into(), j.sha256.clone().into());
        meta.insert("chunks".into(), j.chunks.len().into());
        let meta = serde_json::Value::Object(meta);
        match self {
            Target::Fs(t) => {
                let (dir, id, size) = (t.dir.clone(), j.id.clone(), j.size);
                let ext = std::path::Path::new(&j.file)
                    .extension()
                    .map(|e| format!(".{}", e.to_string_lossy()))
                    .unwrap_or_default();
                let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let partial = dir.join(format!(".partial-{id}"));
                    let done = dir.join(format!("{id}{ext}"));
                    if !partial.exists() && done.exists() {
                        return Ok(()); // completed before a crash
                    }
                    let have = std::fs::metadata(&partial)?.len();
                    if have != size {
                        return Err(std::io::Error::other(format!(
                            "archive copy has {have} bytes, expected {size}"
                        )));
                    }
                    write_atomic(
                        &dir,
                        &format!("{id}.json"),
                        &serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
                    )?;
                    std::fs::rename(&partial, &done)?;
                    sync_dir(&dir)
                })
                .await;
                fs_outcome(r)
            }
            Target::Http(t) => {
                let body = serde_json::to_vec(&meta).unwrap_or_default();
                let mut req = t
                    .client
                    .post(format!("{}/{}/complete", t.url, j.id))
                    .header("Content-Type", "application/json")
                    .body(body);
                if let Some(tok) = &t.token {
                    req = req.bearer_auth(tok);
                }
                classify(req.send().await).await
            }
        }
    }
}

fn fs_outcome(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> Outcome {
    match r {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Retry {
            reason: format!("fs: {e}"),
            retry_after: None,
        },
        Err(e) => Outcome::Retry {
            reason: format!("fs task: {e}"),
            retry_after: None,
        },
    }
}

/// Map an HTTP result to an outcome: 2xx acknowledges; connection errors, timeouts,
/// 5xx, 408 and 429 retry (Retry-After seconds honoured); other statuses fail.
async fn classify(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    let resp = match r {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Outcome::Retry {
                reason: "timeout".into(),
                retry_after: None,
            }
        }
        Err(e) => {
            return Outcome::Retry {
                reason: format!("connection: {}", root_cause(&e)),
                retry_after: None,
            }
        }
    };
    let status = resp.status();
    if status.is_success() {
        // Drain the body so the connection can be reused.
        let _ = resp.bytes().await;
        return Outcome::Ok;
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let code = status.as_u16();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let reason = format!(
        "HTTP {code}{}",
        if body.is_empty() {
            String::new()
        } else {
            format!(": {}", body.trim())
        }
    );
    if code >= 500 || code == 408 || code == 429 {
        Outcome::Retry {
            reason,
            retry_after,
        }
    } else {
        Outcome::Fatal { reason }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
