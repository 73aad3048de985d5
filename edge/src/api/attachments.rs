//! Chat attachments: `POST /api/v1/chats/{id}/attachments?name=FILE` (raw body) by
//! the customer (`X-Chat-Token`) or the chat's agent (bearer), and
//! `GET /api/v1/attachments/{chat}/{file}?exp=&sig=` for the link posted into the
//! chat.
//!
//! A file is accepted when its extension is allowed (`chat.attachment_types`) and its
//! content starts like that type (so a renamed executable is refused), up to
//! `chat.attachment_max_size`. It is stored under `{storage.dir}/chat/attachments/`.
//! Links carry an expiry and an HMAC-SHA256 over chat, file and expiry with a key
//! kept in `{storage.dir}/chat/link.key` (made at first start, mode 0600), so links
//! survive restarts: expired → 410, altered → 403.

// Handlers return their error response as the Err side.
#![allow(clippy::result_large_err)]

use super::auth::{authorize_user, declared_length, error};
use super::state::AppState;
use super::transcripts::CHAT_TOKEN_HEADER;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chat::Author;
use control::Role;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::info;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks links; holds where files go.
pub struct Attachments {
    key: [u8; 32],
    dir: PathBuf,
    /// Uploads in progress at once ([http] max_uploads; more get 503).
    uploads: tokio::sync::Semaphore,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How a streamed upload ended.
enum Streamed {
    /// All of it, `size` bytes; `head` is its first bytes (for [`sniff`]).
    Whole { size: u64, head: Vec<u8> },
    /// More than the limit arrived (the rest is not read).
    TooLarge,
}

/// Write `body` to `tmp` chunk by chunk, stopping past `max` bytes.
async fn stream_to_file(body: Body, tmp: &FsPath, max: u64) -> std::io::Result<Streamed> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if let Some(dir) = tmp.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut f = tokio::fs::File::create(tmp).await?;
    let mut body = body.into_data_stream();
    let (mut size, mut head) = (0u64, Vec::with_capacity(16));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        size += chunk.len() as u64;
        if size > max {
            return Ok(Streamed::TooLarge);
        }
        if head.len() < 16 {
            let take = (16 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    Ok(Streamed::Whole { size, head })
}

/// The type a file's first bytes show, if it is one we accept.
pub fn sniff(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if b.starts_with(b"%PDF-") {
        Some("pdf")
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" {
        Some("mp4")
    } else {
        None
    }
}

fn content_type(ext: &str) -> &'static str {
    match ext {
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// The extension of a file name, lower case, `jpeg` as `jpg`.
fn extension(name: &str) -> Option<String> {
    let (_, e) = name.rsplit_once('.')?;
    let e = e.to_ascii_lowercase();
    Some(if e == "jpeg" { "jpg".into() } else { e })
}

/// Why the attachment link key cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a 32-byte key", path.display())]
    BadKey { path: PathBuf },
    #[error("no OS randomness: {0}")]
    Random(getrandom::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Attachments {
    /// Load the link key under `storage_dir` or make one.
    pub fn open(storage_dir: &FsPath, max_uploads: usize) -> Result<Attachments, KeyError> {
        let cdir = storage_dir.join("chat");
        let dir = cdir.join("attachments");
        std::fs::create_dir_all(&dir).map_err(|source| KeyError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let kp = cdir.join("link.key");
        let key = match std::fs::read(&kp) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => return Err(KeyError::BadKey { path: kp }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(KeyError::Random)?;
                write_private(&kp, &k).map_err(|source| KeyError::Write {
                    path: kp.clone(),
                    source,
                })?;
                k.to_vec()
            }
            Err(source) => return Err(KeyError::Read { path: kp, source }),
        };
        let mut k = [0u8; 32];
        k.copy_from_slice(&key);
        Ok(Attachments {
            key: k,
            dir,
            uploads: tokio::sync::Semaphore::new(max_uploads),
        })
    }

    fn mac(&self, chat: &str, file: &str, exp: u64) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(format!("{chat}/{file}:{exp}").as_bytes());
        m
    }

    /// The signed path of a stored file, valid until `exp` (Unix seconds).
    pub fn link(&self, chat: &str, file: &str, exp: u64) -> String {
        let sig = hex::encode(self.mac(chat, file, exp).finalize().into_bytes());
        format!("/api/v1/attachments/{chat}/{file}?exp={exp}&sig={sig}")
    }

    /// Check a link: Ok, or the status to answer (403 altered, 410 expired).
    pub fn check(&self, chat: &str, file: &str, exp: &str, sig: &str) -> Result<(), StatusCode> {
        let exp_n: u64 = exp.parse().map_err(|_| StatusCode::FORBIDDEN)?;
        let sig = unhex(sig).ok_or(StatusCode::FORBIDDEN)?;
        // Constant-time comparison inside verify_slice.
        self.mac(chat, file, exp_n)
            .verify_slice(&sig)
            .map_err(|_| StatusCode::FORBIDDEN)?;
        if exp_n <= now_secs() {
            return Err(StatusCode::GONE);
        }
        Ok(())
    }

    fn path(&self, chat: &str, file: &str) -> PathBuf {
        self.dir.join(chat).join(file)
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn write_private(path: &FsPath, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Safe ids only in paths (chat ids and generated file names are `[A-Za-z0-9.-]`).
fn safe(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// Who is uploading: ("customer", display name) or ("agent", user name).
fn uploader(s: &AppState, headers: &HeaderMap, chat: &str) -> Result<(Author, String), Response> {
    if let Some(t) = headers.get(CHAT_TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return match s.chats.read(|c| c.chat_of_token(t.trim())) {
            Some(id) if id == chat => {
                Ok((Author::Customer, s.chats.read(|c| c.customer_name(chat))))
            }
            _ => Err(error(
                StatusCode::FORBIDDEN,
                "the chat token does not match a live chat with this id",
            )),
        };
    }
    let user = authorize_user(s, headers, Role::Agent)?;
    if s.chats.read(|c| c.is_agent_of(&user.name, chat)) {
        Ok((Author::Agent, user.name))
    } else {
        Err(error(StatusCode::FORBIDDEN, "not your chat"))
    }
}

/// `POST /api/v1/chats/{id}/attachments?name=FILE`: the body is the file.
///
/// Nothing of the body is read before the uploader is authenticated (chat token or
/// agent bearer, from the headers), the name and type are checked, and the declared
/// Content-Length fits the limit. The body is then streamed to a temporary file,
/// never held whole in memory, and cut off at the limit (413). At most
/// `[http] max_uploads` run at once (503 with Retry-After beyond).
pub async fn upload(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(chat): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let (from, name) = match uploader(&s, &headers, &chat) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let cfg = s.snapshot.load().config.chat.clone();
    let file_name = q.get("name").map(|n| n.trim()).unwrap_or("");
    if file_name.is_empty() || file_name.len() > 200 || file_name.contains(['/', '\\']) {
        return error(
            StatusCode::BAD_REQUEST,
            "`name` must be the file's name (1 to 200 characters, no path)",
        );
    }
    let Some(ext) = extension(file_name).filter(|e| cfg.attachment_types.contains(e)) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "allowed attachment types: {}",
                cfg.attachment_types.join(", ")
            ),
        );
    };
    let max = cfg.attachment_max_size;
    let too_large = || {
        s.metrics.uploads_too_large.fetch_add(1, Relaxed);
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("attachments are limited to {max} bytes"),
        )
    };
    if declared_length(&headers).is_some_and(|n| n > max) {
        return too_large();
    }
    let Ok(_slot) = s.attachments.uploads.try_acquire() else {
        s.metrics.uploads_busy.fetch_add(1, Relaxed);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads at once; retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        return r;
    };
    let file = format!("{}.{ext}", crate::desk::secret_token());
    let path = s.attachments.path(&chat, &file);
    let tmp = path.with_extension("part");
    let size = match stream_to_file(body, &tmp, max).await {
        Ok(Streamed::Whole { size, head }) if sniff(&head) == Some(ext.as_str()) => size,
        Ok(Streamed::Whole { .. }) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("the content is not a {ext} file"),
            );
        }
        Ok(Streamed::TooLarge) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return too_large();
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot store the file: {e}"),
            );
        }
    };
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot store the file: {e}"),
        );
    }
    let exp = now_secs() + cfg.attachment_link_ttl.as_secs();
    let url = s.attachments.link(&chat, &file, exp);
    let att = json!({"url": url, "name": file_name, "size": size,
        "content_type": content_type(&ext), "expires": exp});
    let ts = crate::desk::unix_ms();
    match s
        .chats
        .rooms
        .attachment(&chat, from, &name, file_name, att.clone(), ts)
    {
        Ok(_) => {
            info!(chat = %chat, from = from.as_str(), size, "attachment shared");
            (StatusCode::CREATED, Json(att)).into_response()
        }
        Err(e) => {
            let _ = std::fs::remove_file(s.attachments.path(&chat, &file));
            error(StatusCode::CONFLICT, &e.to_string())
        }
    }
}

/// `GET /api/v1/attachments/{chat}/{file}?exp=&sig=`
pub async fn download(
    State(s): State<AppState>,
    Path((chat, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if !safe(&chat) || !safe(&file) {
        return error(StatusCode::FORBIDDEN, "invalid attachment link");
    }
    match s.attachments.check(&chat, &file, get("exp"), get("sig")) {
        Ok(()) => {}
        Err(StatusCode::GONE) => return error(StatusCode::GONE, "this link has expired"),
        Err(code) => return error(code, "invalid attachment link"),
    }
    let path = s.attachments.path(&chat, &file);
    let ext = extension(&file).unwrap_or_default();
    match tokio::fs::read(&path).await {
        Ok(data) => {
            let disposition = if matches!(ext.as_str(), "png" | "jpg") {
                "inline"
            } else {
                "attachment"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type(&ext)),
                    (header::CONTENT_DISPOSITION, disposition),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                data,
            )
                .into_response()
        }
        Err(_) => error(StatusCode::NOT_FOUND, "the file is gone"),
    }
}

#[cfg(test)]
#[path = "attachments_tests.rs"]
mod tests;
