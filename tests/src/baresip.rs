//! baresip (a SIP phone nobody here wrote) with its own config directory: registers
//! an account, answers (auto or manual), sends a 440 Hz sine and dumps what it hears
//! to WAV files.

use crate::ua::{send_rtp, spawn_pcmu_counter, Uac};
use crate::{free_ports, rtp_block, tempdir, wait_until};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Baresip {
    child: Child,
    pub dir: tempdir::Dir,
}

/// One command to a baresip started with [`Baresip::with_control`] (its `ctrl_tcp`
/// module: JSON in a netstring), e.g. `("transfer", "sip:…")`; baresip's answer.
pub fn control(port: u16, command: &str, params: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let json =
        serde_json::json!({ "command": command, "params": params, "token": "t1" }).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{}:{json},", json.len()).as_bytes())?;
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl Baresip {
    /// Agent `2001` at the edge's UDP address with `password`, answering at once.
    pub fn start(sip: SocketAddr, password: &str) -> Baresip {
        Baresip::start_answering(sip, password, "auto")
    }

    /// `answermode`: `auto` (answers at once) or `manual` (rings until cancelled).
    pub fn start_answering(sip: SocketAddr, password: &str, answermode: &str) -> Baresip {
        Baresip::spawn(&format!("<sip:2001@{sip}>"), password, answermode, "")
    }

    /// As [`Baresip::start`], controllable over TCP at the returned port
    /// ([`control`]).
    pub fn with_control(sip: SocketAddr, password: &str) -> (Baresip, u16) {
        let port = crate::free_port();
        let config = format!("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{port}");
        let b = Baresip::spawn(&format!("<sip:2001@{sip}>"), password, "auto", &config);
        (b, port)
    }

    /// Any account address of record (`<sip:…;transport=tls>`), with `config` lines
    /// added to baresip's config (e.g. `sip_cafile`).
    pub fn spawn(aor: &str, password: &str, answermode: &str, config: &str) -> Baresip {
        let dir = tempdir::Dir::new("baresip");
        // baresip listens on UDP and TCP at `port` and on TLS at `port + 1`.
        let port = free_ports(2);
        let (rtp_lo, rtp_hi) = rtp_block(20);
        std::fs::create_dir_all(dir.path().join("snd")).unwrap();
        let text = format!(
            "poll_method poll\nsip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\n\
module g711.so\nmodule ausine.so\nmodule aubridge.so\nmodule sndfile.so\n\
module_app account.so\nmodule_app menu.so\n\
audio_player aubridge,nowhere\naudio_source ausine,440\naudio_alert aubridge,nowhere\n\
ausrc_srate 48000\nauplay_srate 48000\nausrc_channels 2\nrtp_ports {rtp_lo}-{rtp_hi}\nsnd_path {}\n{config}\n",
            dir.path().join("snd").display()
        );
        std::fs::write(dir.path().join("config"), text).unwrap();
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "{aor};auth_pass={password};answermode={answermode};regint=60;audio_codecs=PCMU\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        Baresip { child, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// Bytes of audio baresip decoded from the call (its `*-dec.wav` dumps).
    pub fn heard_bytes(&self) -> u64 {
        std::fs::read_dir(self.dir.path().join("snd"))
            .map(|it| {
                it.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with("-dec.wav"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len().saturating_sub(44))
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Baresip {
    /// With `uac`'s call answered by this phone: 3 s of our G.711 towards the phone
    /// (the edge relays it) while the phone's sine comes back; both are checked.
    pub fn assert_audio_both_ways(&self, uac: &Uac) {
        let to_edge = uac.remote_rtp.expect("the 200 has SDP");
        let stop = Arc::new(AtomicBool::new(false));
        let heard_by_caller = spawn_pcmu_counter(uac.rtp.try_clone().unwrap(), stop.clone());
        for _ in 0..3 {
            send_rtp(&uac.rtp, to_edge, 100, 7);
            std::thread::sleep(Duration::from_millis(800));
        }
        stop.store(true, Ordering::Relaxed);
        let from_phone = heard_by_caller.load(Ordering::Relaxed);
        assert!(
            from_phone >= 50,
            "the caller got {from_phone} RTP packets from baresip"
        );
        assert!(
            wait_until(5, || self.heard_bytes() > 8000),
            "baresip decoded {} bytes of our audio; log:\n{}",
            self.heard_bytes(),
            self.log()
        );
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
