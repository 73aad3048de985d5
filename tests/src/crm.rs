//! A test CRM webhook for recording uploads (tests only): accepts
//! `PUT /recordings/{id}/{index}` and `POST /recordings/{id}/complete`, checks the
//! chunk headers and digests, assembles recordings, and injects faults on demand:
//! 503s, connections dropped mid-body, 429 with Retry-After, stalls, 403s.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every n-th chunk request gets 503 (0: never).
    pub fail_every: u64,
    /// Every n-th chunk request loses its connection mid-body (0: never).
    pub drop_every: u64,
    /// The first n chunk requests get 429 with Retry-After: 1.
    pub throttle_first: u64,
    /// Every n-th chunk request stalls for `stall` before answering (0: never).
    pub stall_every: u64,
    pub stall: Duration,
    /// Answer every request 403 (a permanent refusal).
    pub forbid: bool,
    /// Delay before acknowledging each chunk.
    pub slow: Duration,
}

#[derive(Debug, Default)]
pub struct Received {
    /// Chunks acknowledged, per recording.
    pub chunks: HashMap<String, BTreeMap<usize, Vec<u8>>>,
    /// Completion metadata, per recording, in arrival order.
    pub completed: Vec<(String, serde_json::Value)>,
    /// (recording, chunk) acknowledgements, in order.
    pub acks: Vec<(String, usize)>,
    /// Requests that arrived for a chunk already acknowledged.
    pub resent_after_ack: Vec<(String, usize)>,
    /// Protocol errors seen (bad headers, wrong digest, complete before chunks).
    pub errors: Vec<String>,
}

pub struct Crm {
    pub addr: SocketAddr,
    pub faults: Arc<Mutex<Faults>>,
    pub received: Arc<Mutex<Received>>,
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Crm {
    pub fn start(faults: Faults, token: &str) -> Crm {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let crm = Crm {
            addr,
            faults: Arc::new(Mutex::new(faults)),
            received: Arc::new(Mutex::new(Received::default())),
            requests: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (f, r, n, stop, token) = (
            crm.faults.clone(),
            crm.received.clone(),
            crm.requests.clone(),
            crm.stop.clone(),
            token.to_string(),
        );
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (f, r, n, token) = (f.clone(), r.clone(), n.clone(), token.clone());
                        std::thread::spawn(move || serve(s, f, r, n, &token));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        crm
    }

    pub fn url(&self) -> String {
        format!("http://{}/recordings", self.addr)
    }

    /// The assembled bytes of a recording (chunks in index order).
    pub fn assembled(&self, id: &str) -> Option<Vec<u8>> {
        let r = self.received.lock().unwrap();
        let chunks = r.chunks.get(id)?;
        Some(chunks.values().flatten().copied().collect())
    }

    pub fn completed_ids(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .completed
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn respond(s: &mut TcpStream, code: u16, extra: &str) {
    let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n{extra}\r\n");
}

fn serve(
    stream: TcpStream,
    faults: Arc<Mutex<Faults>>,
    rec: Arc<Mutex<Received>>,
    n: Arc<AtomicU64>,
    token: &str,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut out = stream.try_clone().unwrap();
    let mut rd = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let f = faults.lock().unwrap().clone();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let is_chunk = method == "PUT" && segs.len() == 3 && segs[0] == "recordings";
        let k = if is_chunk {
            n.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        if is_chunk && f.drop_every > 0 && k % f.drop_every == 0 {
            // Read half the body, then vanish.
            let mut half = vec![0u8; len / 2];
            let _ = rd.read_exact(&mut half);
            return;
        }
        let mut body = vec![0u8; len];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
            respond(&mut out, 401, "");
            continue;
        }
        if f.forbid {
            respond(&mut out, 403, "");
            continue;
        }
        if is_chunk {
            if k <= f.throttle_first {
                respond(&mut out, 429, "Retry-After: 1\r\n");
                continue;
            }
            if f.fail_every > 0 && k % f.fail_every == 0 {
                respond(&mut out, 503, "");
                continue;
            }
            if f.stall_every > 0 && k % f.stall_every == 0 {
                // Longer than the client's request timeout: it has given up, so this
                // chunk is not taken (the answer goes nowhere).
                std::thread::sleep(f.stall);
                respond(&mut out, 200, "");
                continue;
            }
            std::thread::sleep(f.slow);
            let (id, index) = (
                segs[1].to_string(),
                segs[2].parse::<usize>().unwrap_or(usize::MAX),
            );
            let mut r = rec.lock().unwrap();
            let hdr = |name: &str| headers.get(name).cloned().unwrap_or_default();
            if hdr("x-recording-id") != id
                || hdr("x-chunk-index") != index.to_string()
                || hdr("x-chunk-count").parse::<usize>().is_err()
            {
                r.errors
                    .push(format!("bad chunk headers for {id}/{index}: {headers:?}"));
            }
            let digest: String = Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if hdr("x-chunk-sha256") != digest {
                r.errors.push(format!("digest mismatch on {id}/{index}"));
            }
            if r.chunks.get(&id).is_some_and(|c| c.contains_key(&index)) {
                r.resent_after_ack.push((id.clone(), index));
            }
            r.chunks.entry(id.clone()).or_default().insert(index, body);
            r.acks.push((id, index));
            drop(r);
            respond(&mut out, 200, "");
        } else if method == "POST" && segs.len() == 3 && segs[2] == "complete" {
            let id = segs[1].to_string();
            let meta: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut r = rec.lock().unwrap();
            let want = meta["chunks"].as_u64().unwrap_or(0) as usize;
            let have = r.chunks.get(&id).map(|c| c.len()).unwrap_or(0);
            if have != want {
                r.errors
                    .push(format!("complete for {id} with {have} of {want} chunks"));
            }
            if !r.completed.iter().any(|(c, _)| *c == id) {
                r.completed.push((id, meta));
            }
            drop(r);
            respond(&mut out, 204, "");
        } else {
            respond(&mut out, 404, "");
        }
    }
}
