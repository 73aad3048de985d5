//! A NATS cluster with JetStream (Debian `nats-server`) for cluster-mode tests: `n`
//! servers on loopback, fully routed to each other, each with its own store
//! directory and log. Servers are killed on drop; one can be killed (`kill -9`)
//! and started again on the same ports and store.

use crate::{free_port, have_tool, tempdir::Dir};
use serde_json::json;
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
    /// The servers' sign-in configuration (a config file's text), if any.
    auth: Option<String>,
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
        let auth = format!("authorization {{\n  users = [ {{ nkey: \"{user}\" }} ]\n}}\n");
        NatsCluster::start_with(n, None, Some(auth))
    }

    /// Start `n` servers in operator (JWT) mode: an operator trusting one
    /// account with JetStream, whose one user signs in with the returned
    /// credentials file's text (its JWT and NKey seed, as `nsc` writes it).
    pub fn start_operator(n: usize) -> (NatsCluster, String) {
        let (operator, account, user) = (
            nkeys::KeyPair::new_operator(),
            nkeys::KeyPair::new_account(),
            nkeys::KeyPair::new_user(),
        );
        let op = &operator.public_key();
        let operator_jwt = jwt(
            &operator,
            op,
            "edge-test-operator",
            json!({"type": "operator", "version": 2}),
        );
        let unlimited = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "edge",
            json!({"limits": unlimited, "type": "account", "version": 2}),
        );
        // JetStream needs the server's system account.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2}),
        );
        let user_jwt = jwt(
            &account,
            &user.public_key(),
            "edge-node",
            json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
        );
        let auth = format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n",
            account.public_key(),
            sys = system.public_key(),
        );
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            user.seed().expect("a user seed")
        );
        (NatsCluster::start_with(n, None, Some(auth)), creds)
    }

    fn start_with(
        n: usize,
        tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
        auth: Option<String>,
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
            auth,
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
        if let Some(text) = &self.auth {
            let conf = self.dir.path().join("auth.conf");
            std::fs::write(&conf, text).expect("write the NATS server's sign-in configuration");
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

/// A NATS JWT (v2) of `subject` with claims `nats`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mut claims = json!({
        "iat": iat, "iss": issuer.public_key(), "name": name, "sub": subject, "nats": nats,
    });
    // The token's id: a hash of its claims.
    let id = <sha2::Sha256 as sha2::Digest>::digest(claims.to_string().as_bytes());
    claims["jti"] = hex_upper(&id[..16]).into();
    let signed = format!(
        "{}.{}",
        b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64.encode(claims.to_string())
    );
    let sig = issuer.sign(signed.as_bytes()).expect("sign a JWT");
    format!("{signed}.{}", b64.encode(sig))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
