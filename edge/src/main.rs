//! `edge`: the media and session edge server. Loads the configuration (embedded
//! default or `--config FILE`), binds SIP, RTP and HTTP, and wires the sans-IO cores
//! to sockets. `edge check-config FILE` validates a file and exits.

mod api;
mod audio;
mod cluster;
mod core;
mod desk;
mod error;
mod metrics;
mod recorder;
mod recordings;
mod rtp;
mod throttle;
mod tls;
mod ws;

use arc_swap::ArcSwap;
use b2bua::B2bua;
use clap::{Parser, Subcommand};
use error::EdgeError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, info, warn};

/// jemalloc instead of glibc's malloc. A burst of short-lived SIP transactions
/// (each UDP REGISTER's two linger 32 s for Timer J) left glibc's arenas full of
/// freed memory they kept mapped between the long-lived bindings: with 100 000
/// phones registered the edge used 132 MB and held 316 MB. jemalloc's background
/// thread gives freed pages back to the system ~10 s after they fall idle (see
/// `return_freed_memory`), even while the edge is idle.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
    about = "Media and session edge server for contact centres"
)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded demo configuration is used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. `info`, `edge=debug,sip=debug,b2bua=debug`.
    #[arg(long, default_value = "info", env = "EDGE_LOG")]
    log: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file; exit non-zero with the error.
    CheckConfig { file: PathBuf },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Drain a running edge, then let it stop (as SIGTERM does): `POST
    /// /api/v1/drain` with the admin token in the EDGE_TOKEN environment variable
    /// (not an argument: arguments are visible to every local user).
    Drain {
        /// The edge's HTTP listener (http only; for https use curl).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            // Audio files are decoded too: a file that would fail the start fails here.
            let checked = control::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    audio::AudioCache::load(&s).map_err(|e| e.to_string())?;
                    Ok(s)
                });
            return match checked {
                Ok(s) => {
                    println!(
                        "{}: ok ({} routes, {} queues, {} agents, {} users)",
                        file.display(),
                        s.config.routes.len(),
                        s.config.queues.len(),
                        s.config.agents.len(),
                        s.config.users.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::DefaultConfig) => {
            print!("{}", control::DEFAULT_CONFIG);
            return ExitCode::SUCCESS;
        }
        Some(Command::Drain { url }) => return drain_command(&url),
        None => {}
    }
    init_logging(&cli.log);
    return_freed_memory();
    let snap = match &cli.config {
        Some(path) => match control::load(path) {
            Ok(s) => s,
            Err(e) => {
                error!("{e}");
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => {
            info!("no --config given: running the embedded default configuration");
            control::embedded_default()
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(snap, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("edge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Start jemalloc's background thread, which purges freed pages on a timer
/// (its decay, 10 s) rather than only when the thread that freed them allocates
/// again: a thread that goes quiet after a burst would otherwise keep them.
fn return_freed_memory() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        warn!(error = %e, "cannot start the allocator's background thread: freed memory is returned only as threads allocate");
    }
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

async fn run(snap: control::Snapshot, config_path: Option<PathBuf>) -> Result<(), EdgeError> {
    let snap = Arc::new(snap);
    let c = &snap.config;
    if c.trunks.is_empty() {
        warn!("no [[trunks]] configured: INVITEs from any source are accepted");
    }
    warn_ephemeral_overlap(c.media.rtp_ports.first, c.media.rtp_ports.last);
    std::fs::create_dir_all(&c.storage.dir).map_err(|source| EdgeError::CreateDir {
        path: c.storage.dir.clone(),
        source,
    })?;
    let metrics = Arc::new(metrics::Metrics::default());
    let spool = storage::Spool::open(
        &c.storage.dir,
        c.storage.chunk_size,
        &format!("{:?}", c.storage.upload.target).to_lowercase(),
    )?;
    let target = storage::target::Target::from_config(&c.storage)?;
    let uploader = storage::uploader::Uploader::new(
        spool,
        target,
        storage::uploader::Settings::from_config(&c.storage),
        seed(),
    );
    tokio::spawn(uploader.clone().run());
    let inbox = recordings::inbox_dir(&c.storage.dir);
    std::fs::create_dir_all(&inbox).map_err(|source| EdgeError::CreateDir {
        path: inbox.clone(),
        source,
    })?;
    let recovered = recorder::recover(&c.storage.dir);
    if recovered > 0 {
        warn!(recovered, "recordings left by a crash handed to storage");
    }
    recordings::spawn_inbox(uploader.clone(), inbox);
    let audio = Arc::new(audio::AudioCache::load(&snap)?);
    let fd_limit = raise_fd_limit();
    let (udp, tcp) = core::bind_all(&snap).await?;
    let http = tokio::net::TcpListener::bind(c.http.listen)
        .await
        .map_err(|source| EdgeError::Listen {
            what: "http",
            addr: c.http.listen,
            source,
        })?;
    // HTTPS / wss: browsers give a page the microphone only in a secure context.
    let https = match (c.http.tls_listen, &c.tls) {
        (Some(addr), Some(t)) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| EdgeError::Listen {
                    what: "https",
                    addr,
                    source,
                })?;
            Some((l, tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)))
        }
        _ => None,
    };
    let (core_tx, core_rx) = core::inbox(65_536, 4_096);
    let rtp_ports = u64::from(c.media.rtp_ports.last - c.media.rtp_ports.first) + 1;
    let tcp_limits = Arc::new(core::TcpLimits::new(&c.sip, fd_limit, rtp_ports));
    let tls = match &c.tls {
        Some(t) if tcp.iter().any(|l| l.transport == control::Transport::Tls) => {
            Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?))
        }
        _ => None,
    };
    // Outbound TLS (`sips:` targets). A bad `[tls] ca` stops the edge; an empty
    // system trust store only leaves outbound TLS unavailable (said once here, and
    // per refused send).
    let tls_client = match &c.tls {
        Some(t) if tls.is_some() => {
            tls::client_config_or_warn(t, "the edge cannot open TLS connections")?
                .map(tokio_rustls::TlsConnector::from)
        }
        _ => None,
    };
    for l in tcp {
        let acceptor = (l.transport == control::Transport::Tls)
            .then(|| tls.clone())
            .flatten();
        core::spawn_tcp_listener(
            l,
            acceptor,
            core_tx.clone(),
            metrics.clone(),
            tcp_limits.clone(),
        );
    }
    let mut b2bua = B2bua::new(snap.clone(), seed(), Instant::now());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let finisher = recorder::Finisher::start().map_err(|source| EdgeError::Start {
        what: "the recording finisher",
        source,
    })?;
    // Relay workers report on their own channel; the core hears them as CoreMsg::Media.
    let (media_tx, mut media_rx) = tokio::sync::mpsc::channel(4096);
    let to_core = core_tx.clone();
    tokio::spawn(async move {
        while let Some(e) = media_rx.recv().await {
            if to_core.send(core::CoreMsg::Media(e)).await.is_err() {
                break;
            }
        }
    });
    // Port pairs are bound when the B2BUA allocates them (one held by another
    // program is skipped), and the relay takes those sockets.
    let reserved = rtp::Reserved::new(c.media.address);
    b2bua.set_port_probe(Box::new(reserved.clone()));
    let silence = rtp::SilenceLimits {
        normal: c.media.rtp_timeout,
        hold: c.media.rtp_hold_timeout,
    };
    // Browser legs (WebRTC): one self-signed DTLS certificate per process, its
    // fingerprint in their SDP (RFC 8842), as browsers and other servers do.
    let identity = Arc::new(
        media::webrtc::Identity::generate().map_err(|e| EdgeError::Start {
            what: "the WebRTC DTLS certificate",
            source: std::io::Error::other(e.to_string()),
        })?,
    );
    b2bua.set_webrtc_fingerprint(identity.fingerprint().to_string());
    let relays = rtp::Relays::start(rtp::RelaySetup {
        threads,
        metrics: metrics.clone(),
        events: media_tx,
        finisher,
        seed: seed(),
        silence,
        reserved: reserved.clone(),
        identity,
        webrtc_timeout: c.media.webrtc_timeout,
    })
    .map_err(|source| EdgeError::Start {
        what: "the RTP relay workers",
        source,
    })?;
    // Agents' registrations survive a restart: the live ones are read back.
    let (registrations, rows) = storage::registrations::Registrations::open(
        &c.storage.dir.join("sip"),
        std::time::SystemTime::now(),
    )?;
    let restored: Vec<_> = rows
        .into_iter()
        .filter_map(core::binding_from_row)
        .collect();
    if !restored.is_empty() {
        info!(bindings = restored.len(), "registrations restored");
    }
    b2bua.restore_bindings(Instant::now(), restored);
    let registrations = Arc::new(registrations);
    let transcripts = storage::transcript::Transcripts::open(&c.storage.dir)?;
    // In cluster mode chat entries go to JetStream too, and reach participants
    // only once it has them; the chats come back from there (cluster::chat).
    let (store, journal): (Arc<dyn chat::store::Store>, _) = match &c.cluster {
        Some(_) => {
            let (j, rx) = cluster::chat::journal(transcripts.clone());
            (j, Some(rx))
        }
        None => (transcripts.clone(), None),
    };
    let limits = chat::hub::Limits {
        durable_first: c.cluster.is_some(),
        ..Default::default()
    };
    let rooms = Arc::new(chat::Rooms::new(limits, store));
    let chats = Arc::new(desk::Desk::new(rooms));
    if c.cluster.is_none() {
        let open = transcripts
            .open_chats()
            .map_err(|e| EdgeError::ReadTranscripts {
                path: transcripts.path().to_path_buf(),
                source: Box::new(e),
            })?;
        chats.run(|c, at| c.restore(open, at));
    } else {
        // A cluster node takes new work only once it has joined (its first
        // heartbeat reached NATS); a single node takes it at once.
        b2bua.hold_new_work(true);
        // Agents are offered calls only once this node holds their claim.
        b2bua.enable_claims();
    }
    let core = core::Core::new(
        b2bua,
        core::SipSockets {
            udp,
            tcp_limits,
            tls_client,
        },
        relays,
        metrics.clone(),
        core_tx.clone(),
        core::Stores {
            dir: c.storage.dir.clone(),
            registrations: registrations.clone(),
            desk: chats.clone(),
        },
        audio,
    );
    let core_task = spawn_core_thread(core, core_rx).map_err(|source| EdgeError::Start {
        what: "the SIP core thread",
        source,
    })?;
    let shared = Arc::new(ArcSwap::from(snap.clone()));
    spawn_reloader(
        config_path,
        shared.clone(),
        core_tx.clone(),
        metrics.clone(),
    );
    let state = api::AppState {
        core: core_tx.clone(),
        snapshot: shared,
        metrics,
        uploader,
        chats,
        transcripts: transcripts.clone(),
        attachments: Arc::new(api::attachments::Attachments::open(
            &c.storage.dir,
            c.http.max_uploads as usize,
        )?),
        drain: Arc::new(tokio::sync::Notify::new()),
        cluster: None,
    };
    let mut state = state;
    if let Some(cfg) = &c.cluster {
        // Where other nodes relay chat customers and consoles to (see
        // `ws::relay`): reachable addresses, never 0.0.0.0. With HTTPS, only
        // there (tokens cross the network in those connections).
        let reachable = |mut a: std::net::SocketAddr| {
            if a.ip().is_unspecified() {
                a.set_ip(cfg.advertise_sip.ip());
            }
            a.to_string()
        };
        let advertised = cluster::Advertised {
            http: cfg
                .advertise_http
                .map(|a| a.to_string())
                .unwrap_or_else(|| reachable(http.local_addr().unwrap_or(c.http.listen))),
            https: cfg.advertise_https.map(|a| a.to_string()).or_else(|| {
                https
                    .as_ref()
                    .and_then(|(l, _)| l.local_addr().ok())
                    .map(reachable)
            }),
        };
        if advertised.https.is_none() {
            warn!(
                "cluster mode without [http] tls_listen: chat relays between nodes use plain \
                 HTTP and carry the users' tokens; keep the nodes on a private network"
            );
        }
        // Nodes serving HTTPS and `tls://` NATS servers are checked against
        // `[tls] ca` (or the system's trust store); a bad `ca` file stops the
        // edge, as for `sips:` targets.
        // The trust anchors are read once for both.
        let cluster_tls = match &c.tls {
            Some(t) => match tls::roots_or_warn(
                t,
                "chat relays to nodes serving HTTPS and tls:// NATS servers cannot be checked against [tls]",
            )? {
                Some(roots) => Some(cluster::ClusterTls {
                    relays: tls::client_config_with(roots.clone())?,
                    nats: tls::client_config_reporting(
                        roots,
                        "NATS server",
                        cfg.nats_cert.as_deref().zip(cfg.nats_key.as_deref()),
                    )?,
                }),
                None => None,
            },
            None => None,
        };
        let sign_in = cluster::sign_in(cfg).map_err(EdgeError::Cluster)?;
        let cl = cluster::Cluster::start(cfg, sign_in, advertised, cluster_tls, core_tx.clone())
            .await
            .map_err(|e| EdgeError::Cluster(e.to_string()))?;
        api::cluster::serve_peers(state.clone(), cl.clone());
        if let Some(rx) = journal {
            let log = cluster::chat::start(
                cl.clone(),
                cfg,
                c.storage.retention,
                state.chats.clone(),
                rx,
            );
            let _ = cl.chat.set(log);
        }
        state.cluster = Some(cl);
    }
    let cluster = state.cluster.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(drain_then_stop(
        core_tx.clone(),
        state.drain.clone(),
        c.sip.drain_timeout,
        stop_tx,
    ));
    let shutdown = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    ws::spawn_sweeper(state.clone());
    let listen: Vec<String> = c.sip.listen.iter().map(|l| l.to_string()).collect();
    let https_addr = https
        .as_ref()
        .and_then(|(l, _)| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "-".into());
    info!(sip = ?listen, http = %c.http.listen, https = %https_addr, media = %c.media.address, rtp_ports = %format!("{}-{}", c.media.rtp_ports.first, c.media.rtp_ports.last), "edge ready");
    let http_metrics = state.metrics.clone();
    // Cluster mode: commands about another node's calls go there.
    let app = api::routes()
        .merge(ws::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::cluster::forward_calls,
        ))
        .with_state(state);
    api::cluster::set_app(app.clone());
    let limits = api::serve::HttpLimits {
        header_timeout: c.http.header_timeout,
        max_connections: u64::from(c.http.max_connections),
    };
    let secure = match https {
        Some((l, acceptor)) => {
            let server = api::serve::serve(
                l,
                Some(acceptor),
                app.clone(),
                limits,
                http_metrics.clone(),
                shutdown(),
            );
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let server = api::serve::serve(http, None, app, limits, http_metrics, shutdown());
    tokio::select! {
        r = server => r.map_err(EdgeError::Http)?,
        _ = core_task => return Err(EdgeError::CoreStopped),
    }
    if let Some(s) = secure {
        let _ = s.await;
    }
    if let Some(cl) = cluster {
        cl.leave().await;
    }
    // Everything the chats accepted is committed before the process goes, and the
    // registrations too.
    tokio::task::spawn_blocking(move || {
        transcripts.flush();
        registrations.flush();
    })
    .await
    .ok();
    info!("shutting down");
    Ok(())
}

/// The SIP core on a thread of its own (a current-thread runtime): under a SIP
/// flood it is busy all the time, and on the shared runtime it would hold a worker
/// the HTTP API and the chat sockets need. The OS shares the CPU between them
/// instead. Resolves when the core stops.
fn spawn_core_thread(
    core: core::Core,
    rx: core::CoreRx,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sip-core".into())
        .spawn(move || {
            rt.block_on(core.run(rx));
            let _ = done_tx.send(());
        })?;
    Ok(done)
}

/// RTP ports inside the kernel's ephemeral range can be taken by any program's
/// outgoing sockets; a call that gets such a port fails with 503. Say so at start.
fn warn_ephemeral_overlap(first: u16, last: u16) {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        if first <= hi && last >= lo {
            warn!(
                rtp_ports = %format!("{first}-{last}"),
                ephemeral = %format!("{lo}-{hi}"),
                "media.rtp_ports overlaps the kernel's ephemeral port range: other programs' sockets may take RTP ports, and calls that get one fail with 503"
            );
        }
    }
}

/// `edge drain`: ask a running edge to drain (plain HTTP/1.1 on a std socket).
fn drain_command(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let Ok(token) = std::env::var("EDGE_TOKEN") else {
        eprintln!("edge drain: set EDGE_TOKEN to an admin's API token");
        return ExitCode::from(2);
    };
    let Some(host) = url.strip_prefix("http://").map(|h| h.trim_end_matches('/')) else {
        eprintln!("edge drain: only http:// URLs (over https: curl -X POST -H 'Authorization: Bearer …' URL/api/v1/drain)");
        return ExitCode::from(2);
    };
    let addr = match std::net::ToSocketAddrs::to_socket_addrs(host).map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("edge drain: {host} is not a host:port");
            return ExitCode::from(2);
        }
    };
    let timeout = std::time::Duration::from_secs(10);
    let answer = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut s| {
        s.set_read_timeout(Some(timeout))?;
        write!(
            s,
            "POST /api/v1/drain HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    match answer {
        Ok(text) => {
            let status = text.lines().next().unwrap_or("").to_string();
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            println!("{status}\n{body}");
            if status.split_whitespace().nth(1) == Some("202") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("edge drain: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// When the process stops. SIGINT (Ctrl-C): at once. SIGTERM or `POST
/// /api/v1/drain`: drain first — the SIP core refuses new calls and registrations
/// (OPTIONS 503, so a proxy's dispatcher moves new calls to other nodes), the
/// calls in progress go on, and the edge stops when the last one ends or after
/// `[sip] drain_timeout`; a second SIGTERM or a SIGINT stops it at once.
async fn drain_then_stop(
    core: core::CoreTx,
    asked: Arc<tokio::sync::Notify>,
    limit: std::time::Duration,
    stop: tokio::sync::watch::Sender<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install the SIGTERM/SIGINT handlers: the edge stops only when killed");
        // `stop` stays alive: a dropped sender would stop the servers now.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {
            info!("SIGINT: stopping");
            let _ = stop.send(true);
            return;
        }
        _ = term.recv() => info!("SIGTERM: draining, then stopping"),
        _ = asked.notified() => {}
    }
    let started = tokio::time::Instant::now();
    let mut last_log = started;
    loop {
        let calls = core.ask(core::CoreMsg::Drain).await.unwrap_or(0);
        if calls == 0 {
            info!(
                after_ms = started.elapsed().as_millis() as u64,
                "drained: no call left, stopping"
            );
            break;
        }
        if started.elapsed() >= limit {
            warn!(
                calls,
                "drain_timeout reached: stopping with calls still up (their media stops)"
            );
            break;
        }
        if last_log.elapsed() >= std::time::Duration::from_secs(10) {
            last_log = tokio::time::Instant::now();
            info!(calls, "draining: waiting for calls to end");
        }
        tokio::select! {
            _ = int.recv() => {
                warn!(calls, "SIGINT while draining: stopping now");
                break;
            }
            _ = term.recv() => {
                warn!(calls, "second SIGTERM while draining: stopping now");
                break;
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
    }
    let _ = stop.send(true);
}

/// SIGHUP: re-read the config file; swap it in only when valid.
fn spawn_reloader(
    path: Option<PathBuf>,
    shared: Arc<ArcSwap<control::Snapshot>>,
    core: core::CoreTx,
    metrics: Arc<metrics::Metrics>,
) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let Some(path) = &path else {
                warn!("SIGHUP: running the embedded default configuration; nothing to reload");
                continue;
            };
            // Parsing and decoding audio files read disk: off the async workers.
            let p = path.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let new = control::load(&p).map_err(|e| e.to_string())?;
                let audio = audio::AudioCache::load(&new).map_err(|e| e.to_string())?;
                Ok::<_, String>((new, audio))
            })
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
            match loaded {
                Ok((new, audio)) => {
                    let old = shared.load();
                    let (n, o) = (&new.config, &old.config);
                    if n.sip.listen != o.sip.listen
                        || n.http.listen != o.http.listen
                        || n.media.rtp_ports != o.media.rtp_ports
                        || n.media.address != o.media.address
                        || n.media.rtp_timeout != o.media.rtp_timeout
                        || n.media.rtp_hold_timeout != o.media.rtp_hold_timeout
                        || n.http.header_timeout != o.http.header_timeout
                        || n.http.max_connections != o.http.max_connections
                        || n.http.max_uploads != o.http.max_uploads
                        || n.sip.tcp_idle_timeout != o.sip.tcp_idle_timeout
                        || n.sip.tcp_message_timeout != o.sip.tcp_message_timeout
                        || n.sip.tcp_max_per_source != o.sip.tcp_max_per_source
                        || n.sip.tcp_max_connections != o.sip.tcp_max_connections
                    {
                        warn!("config reload: listen addresses, media settings, [http] limits and SIP TCP limits apply only after a restart");
                    }
                    let new = Arc::new(new);
                    shared.store(new.clone());
                    let _ = core.send(core::CoreMsg::Reload(new, Arc::new(audio))).await;
                    metrics.config_reloads.fetch_add(1, Relaxed);
                    info!(file = %path.display(), "configuration reloaded");
                }
                Err(e) => {
                    metrics.config_reload_failures.fetch_add(1, Relaxed);
                    error!("configuration reload rejected, keeping the running configuration: {e}");
                }
            }
        }
    });
}

/// Dependencies that dump what crosses the wire at debug/trace level: WebSocket
/// frames (chat text, tokens in `auth` frames), HTTP headers (bearer tokens, signed
/// links). Whatever `EDGE_LOG` says, they log at info at most, so no secret reaches
/// the log at any level. The edge's own code never logs a token.
const WIRE_DUMPERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "axum",
    "reqwest",
    "rustls",
    "tower_http",
    "rtc_dtls",
    "rtc_srtp",
    "rtc_stun",
];

fn init_logging(filter: &str) {
    use tracing_subscriber::filter::{filter_fn, EnvFilter};
    use tracing_subscriber::prelude::*;
    // webrtc-rs's DTLS warns about every DTLS 1.3 extension a browser offers
    // before settling on 1.2 (each browser call): errors only, unless asked for.
    let filter = if filter.contains("rtc_dtls") {
        filter.to_string()
    } else {
        format!("{filter},rtc_dtls=error")
    };
    let env = EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
    // The filter's most verbose level, passed on to `quiet` too: without a hint
    // the combined filter admits TRACE, the `log` bridge then lets every
    // `log::trace!` of tungstenite and rusqlite through to be filtered one by one
    // (perf: ~3 % of the edge's CPU in a chat load run).
    let hint = env
        .max_level_hint()
        .unwrap_or(tracing::level_filters::LevelFilter::TRACE);
    let quiet = filter_fn(|m| {
        *m.level() <= tracing::Level::INFO || !throttle::target_in(m.target(), WIRE_DUMPERS)
    })
    .with_max_level_hint(hint);
    // The NATS client logs each failed connection attempt (every few seconds
    // while a server refuses the node); the edge says why once a minute.
    let repeats = throttle::LibraryRepeats {
        targets: &["async_nats"],
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(repeats)
                .with_filter(env)
                .with_filter(quiet),
        )
        .init();
}

/// Raise the soft open-file limit to the hard one (every call holds RTP sockets,
/// every SIP TCP connection one descriptor); the limit in force, logged.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                info!(from = soft, to = hard, "open-file limit raised");
                return hard;
            }
            info!(limit = soft, "open-file limit");
            soft
        }
        Err(e) => {
            warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1024
        }
    }
}
