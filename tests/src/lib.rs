//! Test harness for cross-crate integration and interop tests: starts the real
//! `edge` binary on loopback with ephemeral ports, talks HTTP to it, runs SIPp, and
//! provides a tiny SIP user agent with RTP for end-to-end media checks.

pub mod baresip;
pub mod crm;
pub use md5;
pub use sha2;
pub mod http;
pub mod lossy;
pub mod nats;
pub mod sipmsg;
pub mod tone_peer;
pub mod ua;
pub mod ws;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// Ports for tests come from a plan, not from the kernel: a port picked with `:0` and
// released could be handed by the kernel to another test's `:0` socket before its
// user binds it again ("Address already in use", seen once on a fresh clone). Every
// planned port lies below the kernel's ephemeral range (32768+ here), where no `:0`
// socket is ever placed, and each is handed out once per test process:
//   10000-29999  RTP blocks for edges (`rtp_block`), 4 partitions
//   30000-32767  SIP/HTTP/peer ports (`free_port`), 4 partitions
// Cargo runs test binaries one at a time; the partitions keep two concurrent runs
// (e.g. two clones, or CI while a developer runs the tests) apart too: a process
// claims its partition with an exclusive lock on a file in the temp directory
// (`partition`), so two live test processes never share one. Choosing it by
// process id alone let two runs share a partition one time in four, and one's
// planned port was bound by the other between the check and the use ("Address
// already in use" in CI). A planned port that some other program holds (e.g. an
// edge a killed run left behind) is skipped.

/// This test process's port partition (0..4), held by a lock for its lifetime.
/// When all four are held by other runs, waits for the one its process id picks.
fn partition() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::sync::OnceLock;
    static HELD: OnceLock<(u16, Flock<std::fs::File>)> = OnceLock::new();
    let open = |k: u16| {
        let path = partition_lock(k);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    };
    HELD.get_or_init(|| {
        let first = (std::process::id() % 4) as u16;
        for k in (0..4).map(|i| (first + i) % 4) {
            if let Ok(lock) = Flock::lock(open(k), FlockArg::LockExclusiveNonblock) {
                return (k, lock);
            }
        }
        let lock = Flock::lock(open(first), FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock the port partition file: {e}"));
        (first, lock)
    })
    .0
}

/// The lock file of port partition `k`.
fn partition_lock(k: u16) -> PathBuf {
    std::env::temp_dir().join(format!("edge-tests-ports-{k}.lock"))
}

/// The lowest port the kernel hands out for `:0`; planned ports stay below it.
const EPHEMERAL_FLOOR: u16 = 32768;

/// A loopback port for both UDP and TCP, unique in this test process and outside
/// the kernel's ephemeral range (see above), free when handed out.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive planned ports (for programs that bind a port and
/// the ones after it, like SIPp's `-mp`).
pub fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const SPAN: u16 = (EPHEMERAL_FLOOR - 30_000) / 4;
    let base = 30_000 + partition() * SPAN;
    loop {
        let i = NEXT.fetch_add(n, Ordering::Relaxed);
        assert!(
            i + n <= SPAN,
            "this test process used all {SPAN} planned ports"
        );
        let first = base + i;
        // Only another program (not a test of this suite) can hold a planned port.
        let free = (first..first + n).all(|port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return first;
        }
    }
}

/// Bind a loopback UDP socket on `port` (0: one the kernel picks). A planned port
/// found taken panics with the sockets on it and their processes (`ss`), so a
/// collision names its holder.
pub fn bind_udp(port: u16) -> UdpSocket {
    UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        let held = Command::new("ss")
            .args(["-uatnp", &format!("sport = :{port}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(ss: {e})"));
        let all = Command::new("ps")
            .args(["-eo", "pid,ppid,etimes,args"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "bind UDP 127.0.0.1:{port} (partition {}): {e}\n{held}\nprocesses:\n{all}",
            partition()
        )
    })
}

/// Poll `f` every 20 ms for up to `secs`; whether it became true.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A block of `n` RTP ports not shared with other tests of this process.
pub fn rtp_block(n: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // 25 blocks of up to 200 ports per process, in its partition.
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        slot < 25,
        "this test process used all 25 planned RTP blocks"
    );
    let base = 10_000 + partition() * 5_000;
    let first = base + slot * 200;
    (first, first + n.min(200) - 1)
}

/// Path of the `edge` binary built next to this test binary.
pub fn edge_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("edge");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p edge` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Whether an external tool exists. Under `CI`, a missing tool fails the test;
/// elsewhere the caller prints a SKIP line and returns.
pub fn have_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required under CI (install it: see .ci/run)");
        }
        eprintln!("SKIP: {name} not installed");
    }
    found
}

pub struct Edge {
    pub child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempdir::Dir,
    pub config_path: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    pub route_port: u16,
    pub agent_ports: [u16; 2],
    /// `--log` given to the binary (default `info`).
    pub log_level: String,
    /// The edge's RTP port range.
    pub rtp: (u16, u16),
}

/// A queue (number 5000) with one agent, 5001 "Wendy", who signs in with a
/// password (browser phones over /ws/sip in the WebSocket and WebRTC tests).
pub const WEB_AGENT: &str = r#"
[[queues]]
name = "web"
numbers = ["5000"]
agents = ["5001"]
max_wait = "20s"

[[agents]]
id = "5001"
name = "Wendy"
password = "wendy-sip-secret"
"#;

/// A queue (number 2000) whose only agent, 2001 "Carol", signs in from a phone
/// with a password (no static contact): baresip's account.
pub const PHONE_AGENT: &str = r#"
[[queues]]
name = "phones"
numbers = ["2000"]
agents = ["2001"]
max_wait = "20s"

[[agents]]
id = "2001"
name = "Carol"
password = "carol-sip-secret"
"#;

pub mod tempdir {
    use std::path::{Path, PathBuf};
    /// A temporary directory removed on drop.
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("edge-test-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub const ADMIN_TOKEN: &str = "admin-token-1";
pub const AGENT_TOKEN: &str = "agent-token-1";

impl Edge {
    /// The standard test configuration: route `service` → `route_port`, queue
    /// `sales` on number 1000 with two agents, an admin and an agent user.
    pub fn config(
        sip: u16,
        http: u16,
        rtp: (u16, u16),
        dir: &Path,
        route_port: u16,
        agents: [u16; 2],
        extra: &str,
    ) -> String {
        Edge::config_full(sip, http, rtp, dir, route_port, agents, "", extra)
    }

    /// As [`Edge::config`], with `storage` lines inside the `[storage]` table.
    #[allow(clippy::too_many_arguments)]
    pub fn config_full(
        sip: u16,
        http: u16,
        rtp: (u16, u16),
        dir: &Path,
        route_port: u16,
        agents: [u16; 2],
        storage: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"[sip]
listen = ["udp:127.0.0.1:{sip}", "tcp:127.0.0.1:{sip}"]
agent_ring_timeout = "5s"

[media]
address = "127.0.0.1"
rtp_ports = "{}-{}"

[http]
listen = "127.0.0.1:{http}"

[storage]
dir = "{}"
{storage}

[[trunks]]
name = "loopback"
sources = ["127.0.0.1/32"]

[[routes]]
number = "service"
target = "sip:service@127.0.0.1:{route_port}"

[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001", "1002"]
max_wait = "10s"

[[agents]]
id = "1001"
name = "Alice"
contact = "sip:1001@127.0.0.1:{}"

[[agents]]
id = "1002"
name = "Bob"
contact = "sip:1002@127.0.0.1:{}"

[[users]]
name = "root"
role = "admin"
token = "{ADMIN_TOKEN}"

[[users]]
name = "ann"
role = "agent"
token = "{AGENT_TOKEN}"
{extra}
"#,
            rtp.0,
            rtp.1,
            dir.join("data").display(),
            agents[0],
            agents[1],
        )
    }

    pub fn start() -> Edge {
        Edge::start_with("")
    }

    /// Start the edge with the standard config plus `extra` TOML; waits for /healthz.
    pub fn start_with(extra: &str) -> Edge {
        Edge::start_full("", extra)
    }

    /// Start with `storage` lines in `[storage]` and `extra` TOML at the end.
    pub fn start_full(storage: &str, extra: &str) -> Edge {
        Edge::start_logged(storage, extra, "info")
    }

    /// As [`Edge::start_full`], logging at `level` (an `EDGE_LOG` filter).
    pub fn start_logged(storage: &str, extra: &str, level: &str) -> Edge {
        Edge::start_configured(storage, ["", "", ""], extra, level)
    }

    /// The standard configuration with `http` lines added to its `[http]` table.
    pub fn start_http(http: &str, extra: &str) -> Edge {
        Edge::start_configured("", ["", "", http], extra, "info")
    }

    /// The standard configuration with `sip` lines added to its `[sip]` table.
    pub fn start_sip(sip: &str, extra: &str) -> Edge {
        Edge::start_configured("", [sip, "", ""], extra, "info")
    }

    /// The standard configuration with lines added to its `[sip]`, `[media]` and
    /// `[http]` tables.
    pub fn start_tables(sip: &str, media: &str, http: &str, extra: &str) -> Edge {
        Edge::start_configured("", [sip, media, http], extra, "info")
    }

    /// The standard configuration with more `[sip] listen` entries (`listen` is
    /// what goes after the UDP and TCP ones, e.g. `"tls:127.0.0.1:5061"`), `extra`
    /// TOML at the end; `{dir}` in either is the edge's directory.
    pub fn start_listening(listen: &str, extra: &str) -> Edge {
        Edge::start_in(tempdir::Dir::new("edge"), listen, extra)
    }

    /// As [`Edge::start_listening`], in a directory the caller prepared (files the
    /// config names, like certificates, are already there).
    pub fn start_in(dir: tempdir::Dir, listen: &str, extra: &str) -> Edge {
        let e = Edge::start_dir(dir, "", ["", "", ""], listen, extra, "info");
        e.wait_healthy();
        e
    }

    /// As [`Edge::start_with`], returning once the edge answers `/healthz`
    /// (200, or 503 `held`: a cluster node that cannot reach NATS).
    pub fn start_held(extra: &str) -> Edge {
        let e = Edge::start_dir(
            tempdir::Dir::new("edge"),
            "",
            ["", "", ""],
            "",
            extra,
            "info",
        );
        e.wait_health(
            |r| r.status == 200 || (r.status == 503 && r.body.contains("held")),
            "answer /healthz",
        );
        e
    }

    fn start_configured(storage: &str, tables: [&str; 3], extra: &str, level: &str) -> Edge {
        let e = Edge::start_dir(tempdir::Dir::new("edge"), storage, tables, "", extra, level);
        e.wait_healthy();
        e
    }

    fn start_dir(
        dir: tempdir::Dir,
        storage: &str,
        tables: [&str; 3],
        listen: &str,
        extra: &str,
        level: &str,
    ) -> Edge {
        let [sip_lines, media_lines, http_lines] = tables;
        let sip = free_port();
        let http = free_port();
        let route_port = free_port();
        let agents = [free_port(), free_port()];
        let rtp = rtp_block(200);
        let config = Edge::config_full(
            sip,
            http,
            rtp,
            dir.path(),
            route_port,
            agents,
            storage,
            &extra
                .replace("{route_port}", &route_port.to_string())
                .replace("{sip_port}", &sip.to_string()),
        );
        let listen_line = format!("\"tcp:127.0.0.1:{sip}\"]");
        let config = if listen.is_empty() {
            config
        } else {
            config.replacen(
                &listen_line,
                &format!("\"tcp:127.0.0.1:{sip}\", {listen}]"),
                1,
            )
        };
        let config = config.replace("{dir}", &dir.path().display().to_string());
        let config = config.replacen(
            "agent_ring_timeout = \"5s\"\n",
            &format!("agent_ring_timeout = \"5s\"\n{sip_lines}\n"),
            1,
        );
        let media_line = format!("rtp_ports = \"{}-{}\"\n", rtp.0, rtp.1);
        let config = config.replacen(&media_line, &format!("{media_line}{media_lines}\n"), 1);
        let http_line = format!("listen = \"127.0.0.1:{http}\"\n");
        let config = config.replacen(&http_line, &format!("{http_line}{http_lines}\n"), 1);
        let config_path = dir.path().join("edge.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let child = spawn_edge(&config_path, &log, level);
        Edge {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip)),
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            dir,
            config_path,
            log,
            route_port,
            agent_ports: agents,
            log_level: level.to_string(),
            rtp,
        }
    }

    fn wait_healthy(&self) {
        self.wait_health(|r| r.status == 200, "become healthy");
    }

    /// Wait (20 s at most) until `/healthz` answers as `ok` says; panics saying
    /// the edge did not `what`.
    fn wait_health(&self, ok: impl Fn(&http::Reply) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http::get(self.http, "/healthz", None).is_ok_and(|r| ok(&r)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("edge did not {what}; log:\n{}", self.log_text());
    }

    /// `kill -9` the edge (no chance to clean up), then start it again on the same
    /// configuration and data directory.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        self.log
            .lock()
            .unwrap()
            .push("---- killed with SIGKILL, restarting ----".into());
        self.child = spawn_edge(&self.config_path, &self.log, &self.log_level);
        self.wait_healthy();
    }

    /// Stop the edge with SIGTERM (a clean shutdown: what it accepted is written),
    /// wait for it to exit, and start it again on the same config.
    pub fn stop_and_restart(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "the edge did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log
            .lock()
            .unwrap()
            .push("---- stopped with SIGTERM, restarting ----".into());
        self.child = spawn_edge(&self.config_path, &self.log, &self.log_level);
        self.wait_healthy();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether a line containing `needle` reaches the log within `secs`. The edge
    /// writes a line before what it logs becomes visible (a response sent), but
    /// the thread reading its stderr may lag: assert on log lines through this.
    pub fn logged(&self, secs: u64, needle: &str) -> bool {
        wait_until(secs, || {
            self.log.lock().unwrap().iter().any(|l| l.contains(needle))
        })
    }

    /// A Prometheus sample value (first line that starts with `name`).
    pub fn metric(&self, name: &str) -> f64 {
        let r = http::get(self.http, "/metrics", None).unwrap();
        r.body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The bindings `GET /api/v1/registrations` lists (empty if it cannot be read).
    pub fn registrations(&self) -> Vec<serde_json::Value> {
        http::get(self.http, "/api/v1/registrations", Some(ADMIN_TOKEN))
            .map(|r| {
                r.json()["registrations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Wait until no call is active (or panic after `secs`).
    pub fn wait_idle(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.metric("edge_calls_active") == 0.0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "calls still active after {secs}s; log:\n{}",
            self.log_text()
        );
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
    }
}

fn spawn_edge(config_path: &Path, log: &Arc<Mutex<Vec<String>>>, level: &str) -> Child {
    let mut child = Command::new(edge_binary())
        .arg("--config")
        .arg(config_path)
        .arg("--log")
        .arg(level)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edge");
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
    }
    child
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIPp process.
pub struct Sipp {
    pub child: Child,
    pub dir: tempdir::Dir,
}

impl Sipp {
    /// Start SIPp with `args` in a scratch directory that has `pcap/` (SIPp's own
    /// sample captures) for `uac_pcap`.
    pub fn spawn(args: &[&str]) -> Sipp {
        let dir = tempdir::Dir::new("sipp");
        let _ = std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap"));
        let child = Command::new("sipp")
            .args(args)
            .args(["-nostdin", "-trace_err", "-trace_stat", "-stf", "stats.csv"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipp");
        Sipp { child, dir }
    }

    /// Wait for exit; returns (exit code, error log).
    pub fn wait(mut self, secs: u64) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.errors());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sipp did not finish in {secs}s; errors:\n{}", self.errors());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for exit; returns (exit code, error log, successful calls from the
    /// statistics file).
    pub fn finish(self, secs: u64) -> (i32, String, Option<u64>) {
        let mut me = self;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let code = loop {
            if let Some(st) = me.child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = me.child.kill();
                panic!("sipp did not finish in {secs}s; errors:\n{}", me.errors());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (code, me.errors(), me.stat("SuccessfulCall(C)"))
    }

    /// The scenario's counters from the last line of the statistics file.
    pub fn stat(&self, column: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir.path().join("stats.csv")).ok()?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.rfind(|l| !l.trim().is_empty())?.split(';').collect();
        let i = header.iter().position(|h| *h == column)?;
        last.get(i)?.trim().parse().ok()
    }

    pub fn errors(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with("_errors.log") {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a scenario file in `tests/sipp/`.
///
/// Found from the directory cargo runs the test in (the `edge` package, or this
/// one), not from where this crate was compiled: a target directory shared by
/// clones at different paths reuses the compiled crate with the other clone's
/// path baked in.
pub fn scenario(name: &str) -> String {
    let run = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let run = Path::new(&run);
    [run.join("sipp"), run.join("../tests/sipp")]
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp"))
        .join(name)
        .display()
        .to_string()
}

/// Path of the `loadtest` binary built next to this test binary.
pub fn loadtest_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("loadtest");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p loadtest`",
        bin.display()
    );
    bin
}

/// Run a command with a deadline; returns (exit code, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, secs: u64) -> (i32, String, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    });
    let out = child.wait_with_output().expect("wait");
    let _ = killer.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Stereo 16-bit WAV → (left, right).
pub fn wav_channels(bytes: &[u8]) -> (Vec<i16>, Vec<i16>) {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "stereo");
    assert_eq!(
        u32::from_le_bytes(bytes[24..28].try_into().unwrap()),
        8000,
        "the call's rate"
    );
    let data = &bytes[44..];
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in data.chunks_exact(4) {
        l.push(i16::from_le_bytes([f[0], f[1]]));
        r.push(i16::from_le_bytes([f[2], f[3]]));
    }
    (l, r)
}

/// Write an 8 kHz 16-bit WAV of `hz` lasting `secs` (an announcement or hold audio
/// a tone detector can recognise). The writer is stereo; the edge's decoder mixes
/// the two equal channels down.
pub fn tone_wav(path: &Path, hz: f64, secs: f64) {
    let mut t = media::tone::Tone::new(hz, 8000);
    let samples: Vec<i16> = (0..(8000.0 * secs) as usize)
        .map(|_| t.next_sample())
        .collect();
    let mut w = media::wav::StereoWav::new(std::io::Cursor::new(Vec::new()), 8000).unwrap();
    w.write(&samples, &samples).unwrap();
    std::fs::write(path, w.finish().unwrap().into_inner()).unwrap();
}

#[cfg(test)]
mod partition_tests {
    use nix::fcntl::{Flock, FlockArg};

    #[test]
    fn a_test_process_holds_its_port_partition_against_other_runs() {
        let k = super::partition();
        assert!(k < 4);
        // Another run trying this partition's lock is refused while we live.
        let other = std::fs::File::open(super::partition_lock(k)).unwrap();
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err());
        assert_eq!(super::partition(), k, "the partition is chosen once");
        let (first, _) = super::rtp_block(10);
        assert_eq!((first - 10_000) / 5_000, k);
    }
}
