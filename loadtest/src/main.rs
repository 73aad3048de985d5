//! `loadtest`: drive SIP calls with RTP against any SIP server (`call`), or answer
//! them (`answer`), and report what callers would have heard.

use clap::{Parser, Subcommand};
use loadtest::rtp::Mode;
use loadtest::run::{self, AnswerArgs, CallArgs};
use sip::Transport;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "SIP + RTP load generator and answerer with call-quality figures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Web chat fan-out: rooms of customer + agent + two supervisors over WebSocket
    /// against the edge (or nats-server's WebSocket listener, to compare).
    Chat {
        /// HOST:PORT: the edge's HTTP listener or nats-server's websocket port.
        #[arg(long)]
        target: String,
        /// HOST:PORT: another cluster node's HTTP listener, where the agents and
        /// supervisors connect (edge; default: the target).
        #[arg(long)]
        staff_target: Option<String>,
        #[arg(long, value_enum, default_value = "edge")]
        server: ServerArg,
        /// Rooms (four connections each).
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Messages per second over all rooms.
        #[arg(long, default_value_t = 1000.0, value_parser = parse_rate)]
        rate: f64,
        /// How long to send (e.g. 30s).
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// Edge chat queue whose agents are lt-agent-0.. (tokens lt-agent-token-N).
        #[arg(long, default_value = "load")]
        queue: String,
        /// Supervisor token (edge).
        #[arg(long, default_value = "lt-supervisor-token")]
        supervisor_token: String,
        /// The server's PID, to report its memory per idle connection.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Message text size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Connections being set up at once.
        #[arg(long, default_value_t = 64)]
        setup_concurrency: usize,
    },
    /// Live chats across a cluster node kill: customers write on --first (each
    /// message acknowledged before the next), resume on --then when their
    /// connection breaks, and check that no acknowledged message is missing.
    ChatFailover {
        /// HOST:PORT: HTTP listener of the node the chats start on.
        #[arg(long)]
        first: String,
        /// HOST:PORT: HTTP listener of the node they resume on.
        #[arg(long)]
        then: String,
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        /// Chat queue the chats start in (they may stay queued).
        #[arg(long, default_value = "load")]
        queue: String,
        /// Between one customer's messages (e.g. 1s).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// How long a customer keeps trying to resume (e.g. 30s).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        resume_within: Duration,
        /// Give up waiting for the break after this long (e.g. 120s).
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        max_wait: Duration,
        /// Chats being started at once.
        #[arg(long, default_value_t = 64)]
        setup_concurrency: usize,
    },
    /// Place calls at a steady rate against a SIP server and measure them.
    Call {
        /// SIP server to call, HOST:PORT.
        #[arg(long, value_parser = parse_addr)]
        target: SocketAddr,
        /// New calls per second.
        #[arg(long, default_value_t = 10.0, value_parser = parse_rate)]
        rate: f64,
        /// Ramp up linearly to --rate over this time (e.g. 10s).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        ramp: Duration,
        /// Total calls to place.
        #[arg(long, default_value_t = 100)]
        calls: u64,
        /// Most calls up at once.
        #[arg(long, default_value_t = 10_000)]
        concurrency: usize,
        /// How long each answered call is held before BYE (e.g. 20s, 500ms, 2m).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, value_enum, default_value = "udp")]
        transport: TransportArg,
        /// Send and measure RTP both ways (G.711 µ-law tone, 20 ms packets).
        #[arg(long)]
        rtp: bool,
        /// Frequency of the caller's tone.
        #[arg(long, default_value_t = 440.0)]
        tone: f64,
        /// RFC 4733 digits to send 0.5 s into each call (0-9, *, #, A-D).
        #[arg(long, value_parser = parse_digits)]
        dtmf: Option<String>,
        /// Caller user part.
        #[arg(long, default_value = "loadtest")]
        from: String,
        /// Called user part (Request-URI).
        #[arg(long, default_value = "service")]
        to: String,
        /// Digest credentials USER:PASS, used when challenged (401/407).
        #[arg(long, value_parser = parse_auth)]
        auth: Option<(String, String)>,
        /// Local SIP address (UDP) to bind.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
        local: SocketAddr,
        /// Address to put in SDP and bind RTP on (default: the --local IP).
        #[arg(long)]
        media_ip: Option<IpAddr>,
        /// CANCEL a call not answered within this time.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        answer_timeout: Duration,
        /// Exit non-zero when more calls than this fail.
        #[arg(long, default_value_t = 0)]
        max_failed: u64,
        /// Write a self-contained HTML report with plots.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Sign agents' phones in at a steady rate: REGISTER, the 401 challenge,
    /// REGISTER with digest credentials (MD5 or SHA-256), 200 — one per user.
    Register {
        /// Registrar, HOST:PORT.
        #[arg(long, value_parser = parse_addr)]
        target: SocketAddr,
        /// Registrations started per second.
        #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
        rate: f64,
        /// Users to register: FIRST, FIRST + 1, …
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 1000)]
        first: u64,
        /// Each user's password; `{user}` is replaced by the user.
        #[arg(long, default_value = "secret-{user}")]
        password: String,
        #[arg(long, default_value_t = 3600)]
        expires: u32,
        /// Most registrations in progress at once.
        #[arg(long, default_value_t = 10_000)]
        concurrency: usize,
        /// Local SIP address (UDP) to bind.
        #[arg(long, default_value = "127.0.0.1:0", value_parser = parse_addr)]
        local: SocketAddr,
        /// Exit non-zero when more registrations than this fail.
        #[arg(long, default_value_t = 0)]
        max_failed: u64,
    },
    /// Agents in browsers: COUNT agents each open a SIP WebSocket, REGISTER with
    /// digest and answer every call with WebRTC media (ICE, DTLS-SRTP), sending a
    /// tone and measuring what arrives.
    AnswerWebrtc {
        /// The edge's SIP WebSocket, ws://HOST:PORT/ws/sip.
        #[arg(long)]
        ws: String,
        /// Agents FIRST, FIRST + 1, …
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 1000)]
        first: u64,
        /// Each agent's password; `{user}` is replaced by the agent id.
        #[arg(long, default_value = "secret-{user}")]
        password: String,
        /// Agents signed in per second.
        #[arg(long, default_value_t = 200.0, value_parser = parse_rate)]
        rate: f64,
        /// The tone the agents send (Hz).
        #[arg(long, default_value_t = 1000.0)]
        tone: f64,
        /// Exit after this many calls ended (default: run until Ctrl-C).
        #[arg(long)]
        calls: Option<u64>,
        #[arg(long, default_value = "127.0.0.1")]
        media_ip: IpAddr,
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
    },
    /// Browsers placing calls: COUNT agents each open a SIP WebSocket; calls start
    /// at RATE, each an INVITE with a WebRTC offer (the 407 answered with the
    /// agent's digest credentials), ICE + DTLS-SRTP with a tone, held for DURATION.
    CallWebrtc {
        /// The edge's SIP WebSocket, ws://HOST:PORT/ws/sip.
        #[arg(long)]
        ws: String,
        #[arg(long, default_value_t = 10)]
        count: u64,
        #[arg(long, default_value_t = 1000)]
        first: u64,
        /// Each agent's password; `{user}` is replaced by the agent id.
        #[arg(long, default_value = "secret-{user}")]
        password: String,
        /// The number dialled.
        #[arg(long, default_value = "service")]
        to: String,
        #[arg(long, default_value_t = 10.0, value_parser = parse_rate)]
        rate: f64,
        #[arg(long, default_value_t = 100)]
        calls: u64,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1000.0)]
        tone: f64,
        #[arg(long, default_value = "127.0.0.1")]
        media_ip: IpAddr,
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
    },
    /// Answer any number of calls (the agents' side of a test, or a stand-in SIP server).
    Answer {
        /// Address to listen on, HOST:PORT.
        #[arg(long, value_parser = parse_addr)]
        listen: SocketAddr,
        #[arg(long, value_enum, default_value = "udp")]
        transport: TransportArg,
        /// RTP: `echo` (send back what arrives) or `tone:HZ`; none when absent.
        #[arg(long, value_parser = parse_mode)]
        rtp: Option<Mode>,
        /// Ring (180) this long before answering.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        ring: Duration,
        /// Reject a share of calls: STATUS%PERCENT, e.g. 486%5.
        #[arg(long, value_parser = parse_reject)]
        reject: Option<(u16, f64)>,
        /// Exit after this many calls finished (default: run until Ctrl-C).
        #[arg(long)]
        calls: Option<u64>,
        #[arg(long)]
        media_ip: Option<IpAddr>,
        /// Act as an agent that transfers each answered call blind: REFER with
        /// this Refer-To (a SIP URI), `--refer-after` the answer. The summary
        /// gets `transfers` (REFER responses, final NOTIFY statuses, latency).
        #[arg(long)]
        refer_to: Option<String>,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        refer_after: Duration,
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
        }
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("`{s}` is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    control::values::parse_duration(s)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim_end_matches("/s")
        .parse()
        .map_err(|_| format!("`{s}` is not a rate (calls per second)"))?;
    if r > 0.0 && r.is_finite() {
        Ok(r)
    } else {
        Err("rate must be above 0".into())
    }
}

fn parse_digits(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| media::dtmf::event_code(c).is_some()) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}`: DTMF digits are 0-9, *, #, A-D"))
    }
}

fn parse_auth(s: &str) -> Result<(String, String), String> {
    let (u, p) = s.split_once(':').ok_or("expected USER:PASS")?;
    Ok((u.to_string(), p.to_string()))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    if s == "echo" {
        return Ok(Mode::Echo);
    }
    match s.strip_prefix("tone:").map(str::parse::<f64>) {
        Some(Ok(hz)) if hz > 0.0 && hz < 4000.0 => Ok(Mode::Tone(hz)),
        _ => Err(format!(
            "`{s}`: expected `echo` or `tone:HZ` (0 < HZ < 4000)"
        )),
    }
}

fn parse_reject(s: &str) -> Result<(u16, f64), String> {
    let (c, p) = s
        .split_once('%')
        .ok_or_else(|| format!("`{s}`: expected STATUS%PERCENT, e.g. 486%5"))?;
    let code: u16 = c
        .parse()
        .map_err(|_| format!("`{c}` is not a status code"))?;
    let pct: f64 = p
        .parse()
        .map_err(|_| format!("`{p}` is not a percentage"))?;
    if !(300..700).contains(&code) || !(0.0..=100.0).contains(&pct) {
        return Err("status must be 300-699 and percentage 0-100".into());
    }
    Ok((code, pct))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ServerArg {
    Edge,
    Nats,
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Chat {
        target,
        staff_target,
        server,
        rooms,
        rate,
        duration,
        queue,
        supervisor_token,
        server_pid,
        size,
        setup_concurrency,
    } = &cli.command
    {
        let args = loadtest::chat::ChatArgs {
            target: target.clone(),
            staff_target: staff_target.clone(),
            server: match server {
                ServerArg::Edge => loadtest::chat::Server::Edge,
                ServerArg::Nats => loadtest::chat::Server::Nats,
            },
            rooms: (*rooms).max(1),
            rate: *rate,
            duration: *duration,
            queue: queue.clone(),
            supervisor_token: supervisor_token.clone(),
            server_pid: *server_pid,
            size: (*size).max(32),
            setup_concurrency: (*setup_concurrency).max(1),
        };
        let rt = multi_thread();
        return match rt.block_on(loadtest::chat::run_chat(args.clone())) {
            Ok(rep) => {
                rep.print(&args);
                if rep.lost > 0 || rep.dup_or_reordered > 0 {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("loadtest: error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::ChatFailover {
        first,
        then,
        rooms,
        queue,
        interval,
        resume_within,
        max_wait,
        setup_concurrency,
    } = &cli.command
    {
        let args = loadtest::failover::FailoverArgs {
            first: first.clone(),
            then: then.clone(),
            rooms: (*rooms).max(1),
            queue: queue.clone(),
            interval: *interval,
            resume_within: *resume_within,
            max_wait: *max_wait,
            setup_concurrency: (*setup_concurrency).max(1),
        };
        let rt = multi_thread();
        let rep = rt.block_on(loadtest::failover::run_failover(args));
        rep.print();
        return if rep.clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    if let Command::Register {
        target,
        rate,
        count,
        first,
        password,
        expires,
        concurrency,
        local,
        max_failed,
    } = &cli.command
    {
        let args = loadtest::run::RegisterArgs {
            target: *target,
            rate: *rate,
            count: *count,
            first: *first,
            password: password.clone(),
            expires: *expires,
            concurrency: (*concurrency).max(1),
            local: *local,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return match rt.block_on(run::run_register(args)) {
            Ok(summary) => {
                println!("{summary}");
                let failed = summary["registrations"]["failed"].as_u64().unwrap_or(0);
                if failed > *max_failed {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("loadtest: error: {e}");
                ExitCode::from(2)
            }
        };
    }
    // SIP runs on one thread (no cross-thread wakeups per message); RTP streams on
    // one worker thread per core (LOADTEST_MEDIA_THREADS to change).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let media_threads = std::env::var("LOADTEST_MEDIA_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    let (result, report, max_failed) = match cli.command {
        Command::Chat { .. } | Command::ChatFailover { .. } | Command::Register { .. } => {
            unreachable!("handled above")
        }
        Command::Call {
            target,
            rate,
            ramp,
            calls,
            concurrency,
            duration,
            transport,
            rtp,
            tone,
            dtmf,
            from,
            to,
            auth,
            local,
            media_ip,
            answer_timeout,
            max_failed,
            report,
            quiet,
        } => {
            let args = CallArgs {
                target,
                transport: transport.into(),
                rate,
                ramp,
                calls,
                concurrency: concurrency.max(1),
                hold: duration,
                rtp,
                tone_hz: tone,
                dtmf,
                from,
                to,
                auth,
                local,
                media_ip: media_ip.unwrap_or(local.ip()),
                answer_timeout,
                progress: !quiet,
                media_threads,
            };
            (rt.block_on(run::run_call(args)), report, Some(max_failed))
        }
        Command::Answer {
            listen,
            transport,
            rtp,
            ring,
            reject,
            calls,
            media_ip,
            refer_to,
            refer_after,
            report,
            quiet,
        } => {
            let args = AnswerArgs {
                refer: refer_to.map(|to| loadtest::answerer::ReferPlan {
                    to,
                    after: refer_after,
                }),
                listen,
                transport: transport.into(),
                mode: rtp,
                ring,
                reject,
                media_ip: media_ip.unwrap_or(listen.ip()),
                calls,
                progress: !quiet,
                media_threads,
            };
            (rt.block_on(run::run_answer(args)), report, None)
        }
        Command::CallWebrtc {
            ws,
            count,
            first,
            password,
            to,
            rate,
            calls,
            duration,
            tone,
            media_ip,
            report,
            quiet,
        } => {
            let args = loadtest::webrtc_call::WebRtcCallArgs {
                url: ws,
                first,
                count,
                password,
                to,
                rate,
                calls,
                duration,
                tone,
                media_ip,
                progress: !quiet,
                media_threads,
            };
            (
                rt.block_on(loadtest::webrtc_call::run_call_webrtc(args)),
                report,
                None,
            )
        }
        Command::AnswerWebrtc {
            ws,
            count,
            first,
            password,
            rate,
            tone,
            calls,
            media_ip,
            report,
            quiet,
        } => {
            let args = loadtest::webrtc::WebRtcAnswerArgs {
                url: ws,
                first,
                count,
                password,
                rate,
                tone,
                media_ip,
                calls,
                progress: !quiet,
                media_threads,
            };
            (
                rt.block_on(loadtest::webrtc::run_answer_webrtc(args)),
                report,
                None,
            )
        }
    };
    let (summary, collector) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = report {
        match loadtest::report::render(&summary, &collector) {
            Ok(html) => {
                if let Err(e) = std::fs::write(&path, html) {
                    eprintln!(
                        "loadtest: error: cannot write the report {}: {e}",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
                eprintln!("loadtest: report written to {}", path.display());
            }
            Err(e) => {
                eprintln!("loadtest: error: cannot draw the report: {e}");
                return ExitCode::from(2);
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
    if let Some(max) = max_failed {
        let failed = summary["calls"]["failed"].as_u64().unwrap_or(0);
        if failed > max {
            eprintln!("loadtest: {failed} calls failed (more than --max-failed {max})");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
