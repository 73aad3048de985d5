//! A NATS cluster with JetStream (Debian `nats-server`) for cluster-mode tests: `n`
//! servers on loopback, fully routed to each other, each with its own store
//! directory and log. Servers are killed on drop; one can be killed (`kill -9`)
//! and started again on the same ports and store.

use crate::{free_port, have_tool, tempdir::Dir};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The credentials of [`NatsCluster::start_tls`]'s servers.
pub const NATS_USER: &str = "edge-node";
pub const NATS_PASSWORD: &str = "nats-s3cret-pass";

pub struct NatsCluster {
    dir: Dir,
    /// (client port, route port) per server.
    ports: Vec<(u16, u16)>,
    children: Vec<Option<Child>>,
    /// TLS for clients (certificate, key, the CA of client certificates when
    /// clients must present one): the URLs are `tls://`.
    tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// The one user the servers admit, by its NKey public key (`U…`).
    nkey_user: Option<String>,
}

impl NatsCluster {
    /// Start `n` servers (1: a single server, no routes).
    pub fn start(n: usize) -> NatsCluster {
        NatsCluster::start_with(n, None, None)
    }

    /// Start `n` servers whose clients must use TLS, with this certificate and
    /// key (PEM files), and sign in as [`NATS_USER`] with [`NATS_PASSWORD`]
    /// (in the URLs); with `clients_ca`, clients must also present a
    /// certificate it signed.
    pub fn start_tls(
        n: usize,
        cert: PathBuf,
        key: PathBuf,
        clients_ca: Option<PathBuf>,
    ) -> NatsCluster {
        NatsCluster::start_with(n, Some((cert, key, clients_ca)), None)
    }

    /// Start `n` servers that admit one user only: the NKey whose public key
    /// (`U…`) is `user` (clients sign the server's nonce with its seed).
    pub fn start_nkey(n: usize, user: &str) -> NatsCluster {
        NatsCluster::start_with(n, None, Some(user.to_string()))
    }

    fn start_with(
        n: usize,
        tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
        nkey_user: Option<String>,
    ) -> NatsCluster {
        assert!(
            have_tool("nats-server"),
            "nats-server is required (apt-get install nats-server; .ci/run installs it)"
        );
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut c = NatsCluster {
            dir: Dir::new("nats"),
            ports,
            children: (0..n).map(|_| None).collect(),
            tls,
            nkey_user,
        };
        for i in 0..n {
            c.start_server(i);
        }
        c
    }

    /// Client URLs, in server order (what `[cluster] nats` lists).
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|(p, _)| {
                if self.tls.is_some() {
                    format!("tls://{NATS_USER}:{NATS_PASSWORD}@127.0.0.1:{p}")
                } else {
                    format!("nats://127.0.0.1:{p}")
                }
            })
            .collect()
    }

    /// `nats = [...]` as TOML.
    pub fn toml_list(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("nats-{i}.log"))
    }

    /// Start server `i` (again, after [`NatsCluster::kill`]: same ports, same store).
    pub fn start_server(&mut self, i: usize) {
        let (port, route) = self.ports[i];
        let store = self.dir.path().join(format!("js-{i}"));
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-n", &format!("nats-{i}")])
            .args(["-js", "-sd", store.to_str().unwrap()])
            .arg("-l")
            .arg(self.log_path(i))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((cert, key, clients_ca)) = &self.tls {
            cmd.arg("--tls")
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key)
                .args(["--user", NATS_USER, "--pass", NATS_PASSWORD]);
            if let Some(ca) = clients_ca {
                cmd.arg("--tlsverify").arg("--tlscacert").arg(ca);
            }
        }
        if let Some(user) = &self.nkey_user {
            let conf = self.dir.path().join("nkey-users.conf");
            let text = format!("authorization {{\n  users = [ {{ nkey: \"{user}\" }} ]\n}}\n");
            std::fs::write(&conf, text).expect("write the NATS server's users");
            cmd.arg("-c").arg(conf);
        }
        if self.ports.len() > 1 {
            let routes: Vec<String> = self
                .ports
                .iter()
                .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
                .collect();
            cmd.args(["--cluster_name", "edge-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
                .args(["--routes", &routes.join(",")]);
        }
        self.children[i] = Some(cmd.spawn().expect("start nats-server"));
    }

    /// `kill -9` server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every server's log (for failure messages).
    pub fn logs(&self) -> String {
        (0..self.ports.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("---- nats-{i} ----\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
