//! Why the edge cannot start or stopped: one error type for the binary's wiring
//! (each variant names what failed and where). Errors of HTTP requests are
//! [`crate::api::ApiError`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    #[error("cannot create {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Bind(#[from] crate::core::BindError),
    #[error("cannot start {what}: {source}")]
    Start {
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot open the recording spool: {0}")]
    Spool(#[from] storage::spool::SpoolError),
    #[error(transparent)]
    UploadTarget(#[from] storage::target::TargetError),
    #[error(transparent)]
    Transcripts(#[from] storage::transcript::OpenError),
    #[error(transparent)]
    Registrations(#[from] storage::registrations::OpenError),
    #[error("cannot read {}: {source}", path.display())]
    ReadTranscripts {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    LinkKey(#[from] crate::api::attachments::KeyError),
    #[error("http server: {0}")]
    Http(io::Error),
    #[error("the SIP core stopped")]
    CoreStopped,
    #[error("cluster: {0}")]
    Cluster(String),
}
