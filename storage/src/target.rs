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
    S3(S3Target),
}

/// S3-compatible object storage through `object_store`.
pub struct S3Target {
    store: object_store::aws::AmazonS3,
    prefix: String,
    split: bool,
}

/// What a chunk upload returned: the outcome and, for S3 multipart, the part's ETag.
pub struct ChunkResult {
    pub outcome: Outcome,
    pub etag: Option<String>,
}

impl From<Outcome> for ChunkResult {
    fn from(outcome: Outcome) -> Self {
        ChunkResult {
            outcome,
            etag: None,
        }
    }
}

pub struct FsTarget {
    pub dir: PathBuf,
}

pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

/// Why an upload target cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("cannot create fs target {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("http client: {0}")]
    HttpClient(reqwest::Error),
    #[error("{target} target without {field}")]
    Missing {
        target: &'static str,
        field: &'static str,
    },
    #[error("s3 target: {0}")]
    S3(object_store::Error),
}

impl Target {
    pub fn from_config(c: &control::StorageConfig) -> Result<Target, TargetError> {
        let u = &c.upload;
        match u.target {
            control::UploadTarget::Fs => {
                let dir = u.dir.clone().unwrap_or_else(|| c.dir.join("archive"));
                std::fs::create_dir_all(&dir).map_err(|source| TargetError::CreateDir {
                    dir: dir.clone(),
                    source,
                })?;
                Ok(Target::Fs(FsTarget { dir }))
            }
            control::UploadTarget::Http => {
                let client = reqwest::Client::builder()
                    .timeout(u.request_timeout)
                    .build()
                    .map_err(TargetError::HttpClient)?;
                let url = u
                    .url
                    .clone()
                    .ok_or(TargetError::Missing {
                        target: "http",
                        field: "url",
                    })?
                    .trim_end_matches('/')
                    .to_string();
                Ok(Target::Http(HttpTarget {
                    client,
                    url,
                    token: u.token.clone(),
                }))
            }
            control::UploadTarget::S3 => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(u.bucket.clone().ok_or(TargetError::Missing {
                        target: "s3",
                        field: "bucket",
                    })?)
                    .with_region(u.region.clone())
                    .with_retry(object_store::RetryConfig {
                        max_retries: 0,
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new().with_timeout(u.request_timeout),
                    );
                if let Some(e) = &u.endpoint {
                    b = b
                        .with_endpoint(e.clone())
                        .with_allow_http(e.starts_with("http://"));
                }
                if let (Some(k), Some(s)) = (&u.access_key_id, &u.secret_access_key) {
                    b = b
                        .with_access_key_id(k.clone())
                        .with_secret_access_key(s.clone());
                }
                let store = b.build().map_err(TargetError::S3)?;
                Ok(Target::S3(S3Target {
                    store,
                    prefix: u.prefix.clone(),
                    split: u.mode == control::S3Mode::Split,
                }))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Fs(_) => "fs",
            Target::Http(_) => "http",
            Target::S3(_) => "s3",
        }
    }

    /// S3 multipart needs an upload id before the first part.
    pub fn needs_upload_id(&self) -> bool {
        matches!(self, Target::S3(t) if !t.split)
    }

    /// Start the remote multipart upload; its id goes into the journal before any part.
    pub async fn begin(&self, j: &Journal) -> Result<String, Outcome> {
        match self {
            Target::S3(t) => {
                use object_store::multipart::MultipartStore;
                t.store
                    .create_multipart(&t.object(j))
                    .await
                    .map_err(s3_outcome)
            }
            _ => Err(Outcome::Fatal {
                reason: "no multipart upload on this target".into(),
            }),
        }
    }

    /// Abort a multipart upload that cannot finish (its parts would cost storage).
    pub async fn abort(&self, j: &Journal) {
        if let (Target::S3(t), Some(id)) = (self, &j.remote_upload_id) {
            use object_store::multipart::MultipartStore;
            match t.store.abort_multipart(&t.object(j), id).await {
                Ok(()) => tracing::info!(recording = %j.id, "s3 multipart upload aborted"),
                Err(e) => {
                    tracing::warn!(recording = %j.id, error = %e, "cannot abort s3 multipart upload")
                }
            }
        }
    }

    /// Whether [`Target::put_chunk_from`] streams chunks from the file itself
    /// (no whole chunk in memory; reading overlaps sending).
    pub fn streams(&self) -> bool {
        matches!(self, Target::Http(_))
    }

    /// PUT chunk `index` of `j` to the http target as a body streamed from
    /// `path` (the spooled file), 256 KiB at a time, with its Content-Length.
    pub async fn put_chunk_from(
        &self,
        j: &Journal,
        index: usize,
        path: std::path::PathBuf,
    ) -> ChunkResult {
        let Target::Http(t) = self else {
            return Outcome::Fatal {
                reason: "internal: only the http target streams chunks".into(),
            }
            .into();
        };
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let c = &j.chunks[index];
        let file = async {
            let mut f = tokio::fs::File::open(&path).await?;
            f.seek(std::io::SeekFrom::Start(c.offset)).await?;
            Ok::<_, std::io::Error>(f.take(c.len))
        };
        let reader = match file.await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("spool: {}: {e}", path.display()),
                    retry_after: None,
                }
                .into()
            }
        };
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            reader,
            256 * 1024,
        ));
        let req = chunk_request(t, j, index)
            .header("Content-Length", c.len.to_string())
            .body(body);
        classify(req.send().await).await.into()
    }

    pub async fn put_chunk(&self, j: &Journal, index: usize, data: Vec<u8>) -> ChunkResult {
        match self {
            Target::S3(t) => {
                use object_store::multipart::MultipartStore;
                use object_store::ObjectStoreExt;
                if t.split {
                    let path =
                        object_store::path::Path::from(format!("{}{}/{index:05}", t.prefix, j.id));
                    return match t.store.put(&path, data.into()).await {
                        Ok(_) => Outcome::Ok.into(),
                        Err(e) => s3_outcome(e).into(),
                    };
                }
                let Some(id) = &j.remote_upload_id else {
                    return Outcome::Retry {
                        reason: "s3: no upload id yet".into(),
                        retry_after: None,
                    }
                    .into();
                };
                match t.store.put_part(&t.object(j), id, index, data.into()).await {
                    Ok(part) => ChunkResult {
                        outcome: Outcome::Ok,
                        etag: Some(part.content_id),
                    },
                    Err(e) => s3_outcome(e).into(),
                }
            }
            Target::Fs(t) => {
                let path = t.dir.join(format!(".partial-{}", j.id));
                let offset = j.chunks[index].offset;
                let r = tokio::task::spawn_blocking(move || {
                    crate::spool::write_at(&path, offset, &data)
                })
                .await;
                fs_outcome(r).into()
            }
            Target::Http(t) => {
                let req = chunk_request(t, j, index).body(data);
                classify(req.send().await).await.into()
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
            Target::S3(t) => {
                use object_store::multipart::{MultipartStore, PartId};
                use object_store::ObjectStoreExt;
                let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
                if t.split {
                    let path = object_store::path::Path::from(format!(
                        "{}{}/metadata.json",
                        t.prefix, j.id
                    ));
                    return match t.store.put(&path, meta_bytes.into()).await {
                        Ok(_) => Outcome::Ok,
                        Err(e) => s3_outcome(e),
                    };
                }
                let path = t.object(j);
                let Some(id) = &j.remote_upload_id else {
                    return Outcome::Fatal {
                        reason: "s3: completing without an upload id".into(),
                    };
                };
                let parts: Option<Vec<PartId>> = j
                    .chunks
                    .iter()
                    .map(|c| c.etag.clone().map(|content_id| PartId { content_id }))
                    .collect();
                let Some(parts) = parts else {
                    return Outcome::Fatal {
                        reason: "s3: a part has no ETag in the journal".into(),
                    };
                };
                // Completing twice (a retry after a lost answer) fails once the upload
                // is gone: then the object's size decides.
                let completed = t.store.complete_multipart(&path, id, parts).await;
                match t.store.head(&path).await {
                    Ok(m) if m.size == j.size => {
                        tracing::info!(recording = %j.id, upload_id = %id, size = m.size, "s3 multipart upload completed");
                        let meta_path =
                            object_store::path::Path::from(format!("{}{}.json", t.prefix, j.id));
                        match t.store.put(&meta_path, meta_bytes.into()).await {
                            Ok(_) => Outcome::Ok,
                            Err(e) => s3_outcome(e),
                        }
                    }
                    Ok(m) => Outcome::Fatal {
                        reason: format!("s3: object has {} bytes, expected {}", m.size, j.size),
                    },
                    Err(e) => match completed {
                        Err(ce) => s3_outcome(ce),
                        Ok(_) => s3_outcome(e),
                    },
                }
            }
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
/// The PUT of chunk `index` of `j` with its headers (`X-Recording-Id`,
/// `X-Chunk-Index`, `X-Chunk-Count`, `X-Chunk-Sha256`) and the token; no body yet.
fn chunk_request(t: &HttpTarget, j: &Journal, index: usize) -> reqwest::RequestBuilder {
    let c = &j.chunks[index];
    let req = t
        .client
        .put(format!("{}/{}/{}", t.url, j.id, index))
        .header("X-Recording-Id", &j.id)
        .header("X-Chunk-Index", index.to_string())
        .header("X-Chunk-Count", j.chunks.len().to_string())
        .header("X-Chunk-Sha256", &c.sha256)
        .header("Content-Type", "application/octet-stream");
    match &t.token {
        Some(tok) => req.bearer_auth(tok),
        None => req,
    }
}

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

impl S3Target {
    /// The object of a recording: `{prefix}{id}{.ext}`.
    fn object(&self, j: &Journal) -> object_store::path::Path {
        let ext = std::path::Path::new(&j.file)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        object_store::path::Path::from(format!("{}{}{}", self.prefix, j.id, ext))
    }
}

/// Object-store errors: missing objects/uploads, permissions and preconditions are
/// final; everything else (connection, timeouts, 5xx) is retried.
fn s3_outcome(e: object_store::Error) -> Outcome {
    let reason = format!(
        "s3: {}",
        e.to_string().chars().take(300).collect::<String>()
    );
    match e {
        object_store::Error::NotFound { .. }
        | object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::Precondition { .. }
        | object_store::Error::NotSupported { .. } => Outcome::Fatal { reason },
        _ => Outcome::Retry {
            reason,
            retry_after: None,
        },
    }
}
