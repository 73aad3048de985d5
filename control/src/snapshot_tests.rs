//! Unit tests of `snapshot.rs`.

use crate::{parse, ConfigError, Destination, DEFAULT_CONFIG};

/// The file from the foundation issue, verbatim.
const ISSUE_CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]

[media]
address = "127.0.0.1"          # address put in SDP
rtp_ports = "20000-29999"

[http]
listen = "127.0.0.1:8080"

[storage]
dir = "./data"

[[trunks]]
name = "carrier-a"
sources = ["127.0.0.1/32"]     # INVITEs from other sources get 403

[[routes]]
number = "service"             # request-URI user part, exact or prefix ("44*")
target = "sip:service@127.0.0.1:5090"

[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001", "1002"]
max_wait = "60s"               # then 480 to the caller

[[agents]]
id = "1001"
name = "Alice"
contact = "sip:1001@127.0.0.1:5092"

[[agents]]
id = "1002"
name = "Bob"
contact = "sip:1002@127.0.0.1:5094"

[[users]]
name = "root"
role = "admin"                 # admin | supervisor | agent
token = "change-me"
"#;

#[test]
fn accepts_the_issue_file_as_written() {
    let s = parse("issue.toml", ISSUE_CONFIG).unwrap();
    assert!(matches!(
        s.destination("service"),
        Some(Destination::Route(_))
    ));
    assert!(matches!(s.destination("1000"), Some(Destination::Queue(q)) if q.name == "sales"));
    assert!(s.destination("999").is_none());
    assert_eq!(s.trunk_for("127.0.0.1".parse().unwrap()), Some("carrier-a"));
    assert_eq!(s.trunk_for("10.0.0.1".parse().unwrap()), None);
    assert_eq!(s.user_by_token("change-me").unwrap().name, "root");
    assert!(s.user_by_token("change-mf").is_none());
}

#[test]
fn accepts_the_recording_upload_block_as_written() {
    let text = r#"
[storage]
dir = "./data"
retention = "7d"
chunk_size = "50MB"              # sizes: B, KB, MB, GB (and KiB, MiB, GiB)

[storage.upload]
target = "http"                 # fs | http | s3
url = "http://127.0.0.1:9000/recordings"
token = "optional bearer token"
backoff_base = "1s"
backoff_max = "5m"
concurrency = 4
"#;
    let s = parse("t", text).unwrap();
    let st = &s.config.storage;
    assert_eq!(st.chunk_size, 50_000_000);
    assert_eq!(st.retention, std::time::Duration::from_secs(7 * 86_400));
    assert_eq!(st.upload.target, crate::UploadTarget::Http);
    assert_eq!(st.upload.concurrency, 4);
    assert!(
        !format!("{:?}", st.upload).contains("optional bearer token"),
        "token redacted"
    );
    let bad = text.replace("chunk_size = \"50MB\"", "chunk_size = \"50XB\"");
    assert!(parse("t", &bad)
        .unwrap_err()
        .to_string()
        .contains("chunk_size"));
    let s3 = text.replace("target = \"http\"", "target = \"s3\"");
    assert!(parse("t", &s3)
        .unwrap_err()
        .to_string()
        .contains("needs a bucket"));
    let s3 = s3.replace(
        "concurrency = 4",
        "concurrency = 4\nbucket = \"rec\"\nsecret_access_key = \"s3cr3t\"",
    );
    let snap = parse("t", &s3).unwrap();
    assert!(
        !format!("{:?}", snap.config.storage.upload).contains("s3cr3t"),
        "secret redacted"
    );
    let small = s3.replace("chunk_size = \"50MB\"", "chunk_size = \"1MB\"");
    assert!(parse("t", &small)
        .unwrap_err()
        .to_string()
        .contains("at least 5MiB"));
}

#[test]
fn embedded_default_is_valid() {
    parse("default", DEFAULT_CONFIG).unwrap();
}

#[test]
fn prefix_routes_longest_first_and_exact_wins() {
    let text = r#"
[[routes]]
number = "44*"
target = "sip:uk@127.0.0.1:5070"
[[routes]]
number = "4420*"
target = "sip:london@127.0.0.1:5071"
[[routes]]
number = "4420123"
target = "sip:exact@127.0.0.1:5072"
"#;
    let s = parse("t", text).unwrap();
    let target = |n: &str| match s.destination(n) {
        Some(Destination::Route(r)) => r.target.user.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(target("441234"), "uk");
    assert_eq!(target("44201"), "london");
    assert_eq!(target("4420123"), "exact");
    assert!(s.destination("33").is_none());
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\nlistne = 3\n";
    let e = parse("edge.toml", text).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("edge.toml:3:"), "{msg}");
    assert!(msg.contains("listne"), "{msg}");
    match e {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_value_names_the_field() {
    let text = "[[queues]]\nname = \"q\"\nagents = [\"a\"]\nmax_wait = \"soon\"\n";
    let msg = parse("edge.toml", text).unwrap_err().to_string();
    assert!(msg.starts_with("edge.toml:4:"), "{msg}");
    assert!(msg.contains("max_wait"), "{msg}");
}

#[test]
fn dangling_agent_reference_is_located() {
    let text = "[[agents]]\nid = \"1001\"\ncontact = \"sip:1001@127.0.0.1:5092\"\n\n[[queues]]\nname = \"q\"\nagents = [\"1001\",\n  \"1009\"]\n";
    let e = parse("edge.toml", text).unwrap_err();
    match &e {
        ConfigError::Invalid { line, field, .. } => {
            assert_eq!(field, "queues[0].agents[1]");
            assert_eq!(*line, 8, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("1009"));
}

#[test]
fn duplicate_numbers_and_tokens_are_rejected_without_echoing_tokens() {
    let dup = "[[routes]]\nnumber = \"1\"\ntarget = \"sip:a@127.0.0.1\"\n[[routes]]\nnumber = \"1\"\ntarget = \"sip:b@127.0.0.1\"\n";
    assert!(parse("t", dup)
        .unwrap_err()
        .to_string()
        .contains("routes[1].number"));
    let tok = "[[users]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"secret-123\"\n[[users]]\nname = \"b\"\nrole = \"agent\"\ntoken = \"secret-123\"\n";
    let msg = parse("t", tok).unwrap_err().to_string();
    assert!(msg.contains("users[1].token"), "{msg}");
    assert!(!msg.contains("secret-123"), "{msg}");
}

#[test]
fn supervision_settings_and_user_contacts() {
    let wav = std::env::temp_dir().join(format!("edge-ctl-{}.wav", std::process::id()));
    std::fs::write(&wav, b"RIFF").unwrap();
    let text = format!(
        "[[agents]]\nid = \"1001\"\ncontact = \"sip:1001@127.0.0.1:5092\"\n\n\
         [[queues]]\nname = \"sales\"\nnumbers = [\"1000\"]\nagents = [\"1001\"]\n\
         record = true\nbeep_on_monitor = true\nannouncement = {:?}\n\n\
         [[routes]]\nnumber = \"2000\"\ntarget = \"sip:a@127.0.0.1\"\n\n\
         [[users]]\nname = \"sam\"\nrole = \"supervisor\"\ntoken = \"sam-token-1\"\n\
         contact = \"sip:sam@127.0.0.1:5070\"\n",
        wav.display().to_string()
    );
    let s = parse("t", &text).unwrap();
    let q = s.call_settings(Some("sales"), None);
    assert!(q.record && q.beep_on_monitor);
    assert_eq!(q.announcement, Some(wav.as_path()));
    assert_eq!(q.hold_audio, None);
    let r = s.call_settings(None, Some("2000"));
    assert!(!r.record && !r.beep_on_monitor);
    let c = s.user("sam").unwrap().contact.as_ref().unwrap();
    assert_eq!(c.addr, "127.0.0.1:5070".parse().unwrap());
    assert!(s.user("nobody").is_none());
    let _ = std::fs::remove_file(&wav);
    let msg = parse("t", &text).unwrap_err().to_string();
    assert!(msg.contains("queues[0].announcement"), "{msg}");
    assert!(msg.contains("cannot read"), "{msg}");
}

#[test]
fn bad_role_and_target_are_rejected() {
    let role = "[[users]]\nname = \"a\"\nrole = \"god\"\ntoken = \"12345678\"\n";
    assert!(parse("t", role).unwrap_err().to_string().contains("role"));
    let target = "[[routes]]\nnumber = \"1\"\ntarget = \"sip:a@pbx.example.com\"\n";
    let msg = parse("t", target).unwrap_err().to_string();
    assert!(msg.contains("must be an IP address"), "{msg}");
}

#[test]
fn an_agent_names_its_console_user_once_and_the_issue_keys_parse() {
    let base = "[[users]]\nname = \"alice\"\nrole = \"agent\"\ntoken = \"alice-token-1\"\n\n\
        [[agents]]\nid = \"1001\"\nname = \"Alice\"\npassword = \"alice-sip-secret\"\n\
        user = \"alice\"\nwrap_up = \"10s\"\n\n\
        [[queues]]\nname = \"sales\"\nnumbers = [\"1000\"]\nagents = [\"1001\"]\nmax_no_answer = 3\n";
    let s = parse("t", base).unwrap();
    let a = s.agent_of_user("alice").unwrap();
    assert_eq!(a.id, "1001");
    assert_eq!(a.wrap_up, std::time::Duration::from_secs(10));
    assert_eq!(s.queue("sales").unwrap().max_no_answer, 3);
    assert!(s.agent_of_user("root").is_none());
    let unknown = base.replace("user = \"alice\"", "user = \"alicia\"");
    let msg = parse("t", &unknown).unwrap_err().to_string();
    assert!(
        msg.contains("agents[0].user") && msg.contains("alicia"),
        "{msg}"
    );
    let twice = format!(
        "{base}\n[[agents]]\nid = \"1002\"\ncontact = \"sip:1002@127.0.0.1:5094\"\nuser = \"alice\"\n"
    );
    let msg = parse("t", &twice).unwrap_err().to_string();
    assert!(
        msg.contains("agents[1].user") && msg.contains("1001"),
        "{msg}"
    );
}

#[test]
fn reserved_data_values_are_checked_and_named_for_the_agent_leg() {
    let text =
        "[[reserved_data]]\nfield = \"verified_customer\"\nheader = \"X-Verified-Customer\"\n\
                [[reserved_data]]\nfield = \"crm-id\"\nheader = \"X-CRM\"\nmax_length = 4\n";
    let s = parse("t", text).unwrap();
    let (v, c) = (&s.config.reserved_data[0], &s.config.reserved_data[1]);
    assert_eq!(v.agent_header(), "X-Edge-Verified-Customer");
    assert_eq!(c.agent_header(), "X-Edge-Crm-Id");
    assert_eq!(v.check("  yes "), Ok("yes"));
    assert_eq!(
        v.check("a\r\nX-Evil: 1"),
        Err(crate::ReservedValueError::Control)
    );
    assert_eq!(v.check("a\u{0}b"), Err(crate::ReservedValueError::Control));
    assert_eq!(v.check(" "), Err(crate::ReservedValueError::Empty));
    assert_eq!(c.check("12345"), Err(crate::ReservedValueError::TooLong(4)));
    assert_eq!(c.check("1234"), Ok("1234"));
    for (bad, key) in [
        ("field = \"a b\"\nheader = \"X-A\"", "field"),
        ("field = \"a\"\nheader = \"X A\"", "header"),
        (
            "field = \"a\"\nheader = \"X-A\"\nmax_length = 0",
            "max_length",
        ),
    ] {
        let msg = parse("t", &format!("[[reserved_data]]\n{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&format!("reserved_data[0].{key}")), "{msg}");
    }
    let clash = "[[reserved_data]]\nfield = \"a_b\"\nheader = \"X-A\"\n\
                 [[reserved_data]]\nfield = \"a-b\"\nheader = \"X-B\"\n";
    let msg = parse("t", clash).unwrap_err().to_string();
    assert!(msg.contains("reserved_data[1].field"), "{msg}");
}

#[test]
fn a_tls_listen_address_needs_the_tls_table() {
    let text = "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n";
    let msg = parse("edge.toml", text).unwrap_err().to_string();
    assert!(
        msg.contains("sip.listen[1]") && msg.contains("[tls] cert and key"),
        "{msg}"
    );
    let text = format!("{text}[tls]\ncert = \"edge.pem\"\nkey = \"edge-key.pem\"\n");
    let s = parse("edge.toml", &text).unwrap();
    let tls = s.config.tls.as_ref().unwrap();
    assert_eq!(tls.cert, std::path::PathBuf::from("edge.pem"));
    assert!(
        parse("edge.toml", "[tls]\ncert = \"a\"\n").is_err(),
        "key is required"
    );
}

#[test]
fn a_target_needs_a_listen_address_of_its_transport() {
    let base = "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n";
    let route = "[[routes]]\nnumber = \"9*\"\ntarget = \"sips:trunk@127.0.0.1:5081\"\n";
    let msg = parse("edge.toml", &format!("{base}{route}"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("routes[0].target") && msg.contains("no IPv4 `tls:` listen address"),
        "{msg}"
    );
    let agent = "[[agents]]\nid = \"1001\"\ncontact = \"sip:1001@127.0.0.1:5090;transport=tcp\"\n";
    let msg = parse("edge.toml", &format!("{base}{agent}"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("agents[0].contact") && msg.contains("over TCP"),
        "{msg}"
    );
    let tls = "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n\
               [tls]\ncert = \"edge.pem\"\nkey = \"edge-key.pem\"\nca = \"trunks.pem\"\n";
    let s = parse("edge.toml", &format!("{tls}{route}")).unwrap();
    assert_eq!(
        s.config.tls.as_ref().unwrap().ca.as_deref(),
        Some(std::path::Path::new("trunks.pem"))
    );
}

/// The configuration block of the agents issue (13), verbatim, plus the console
/// user its agent names.
const AGENTS_ISSUE_CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
realm = "edge"
digest = ["MD5"]                # challenges sent, in this order: "MD5", "SHA-256"

[tls]
cert = "edge.pem"
key = "edge-key.pem"

[[agents]]
id = "1001"
name = "Alice"
password = "alice-sip-secret"   # REGISTER as sip:1001@… with digest auth
user = "alice"                  # the [[users]] entry: one agent for calls and chats
wrap_up = "10s"

[[hours]]
name = "office"
timezone = "Europe/Paris"
open = ["mon-fri 08:00-18:00", "sat 09:00-12:00"]
closed = ["2026-12-25"]

[[queues]]
name = "sales"
numbers = ["1000"]
agents = ["1001"]
hours = "office"
after_hours = "voicemail"       # announce | voicemail | queue:NAME | forward:SIP-URI
after_hours_announcement = "closed.wav"
max_no_answer = 3

[[reserved_data]]
field = "verified_customer"
header = "X-Verified-Customer"
"#;

#[test]
fn accepts_the_agents_issue_file_as_written() {
    let text = format!(
        "{AGENTS_ISSUE_CONFIG}\n[[users]]\nname = \"alice\"\nrole = \"agent\"\ntoken = \"alice-token-1\"\n"
    );
    // Every key is accepted; the announcement must exist (read at validation).
    let msg = parse("edge.toml", &text).unwrap_err().to_string();
    assert!(
        msg.contains("after_hours_announcement") && msg.contains("closed.wav"),
        "{msg}"
    );
    let here = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("Cargo.toml")
        .display()
        .to_string();
    let text = text.replace("\"closed.wav\"", &format!("\"{here}\""));
    let s = parse("edge.toml", &text).unwrap();
    assert_eq!(s.config.sip.listen[2].transport, crate::Transport::Tls);
    assert!(s.config.tls.is_some());
    let q = s.queue("sales").unwrap();
    assert_eq!(q.after_hours, Some(crate::AfterHours::Voicemail));
    // 2026-12-25 (a Friday) is closed all day in Paris; the Monday after at 10:00
    // Paris time (09:00 UTC) is open.
    let at = |unix: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    assert_eq!(
        s.closed_action("sales", at(1_798_189_200)),
        Some(crate::AfterHours::Voicemail)
    );
    assert_eq!(s.closed_action("sales", at(1_798_448_400)), None);
}

#[test]
fn after_hours_routes_follow_closed_queues_up_to_the_hop_limit() {
    // q0 → q1 → … → q5, all closed: four hops are followed, then q4 announces.
    let mut text = String::from("[[hours]]\nname = \"never\"\ntimezone = \"UTC\"\nopen = []\n");
    for i in 0..6 {
        text.push_str(&format!(
            "[[queues]]\nname = \"q{i}\"\nchannel = \"chat\"\nagents = [\"ann\"]\nhours = \"never\"\n"
        ));
        if i < 5 {
            text.push_str(&format!("after_hours = \"queue:q{}\"\n", i + 1));
        }
    }
    text.push_str("[[queues]]\nname = \"open\"\nchannel = \"chat\"\nagents = [\"ann\"]\n");
    text.push_str("[[queues]]\nname = \"to-open\"\nchannel = \"chat\"\nagents = [\"ann\"]\nhours = \"never\"\nafter_hours = \"queue:open\"\n");
    text.push_str("[[users]]\nname = \"ann\"\nrole = \"agent\"\ntoken = \"ann-token-1\"\n");
    let s = parse("t", &text).unwrap();
    let now = std::time::SystemTime::now();
    let r = s.after_hours_route("q0", now);
    assert_eq!(
        (r.queue.as_str(), r.hops),
        ("q4", crate::MAX_AFTER_HOURS_HOPS)
    );
    assert_eq!(r.action, Some(crate::AfterHours::Announce));
    assert!(r.too_long);
    let r = s.after_hours_route("q4", now);
    assert_eq!((r.queue.as_str(), r.hops, r.too_long), ("q5", 1, false));
    assert_eq!(r.action, Some(crate::AfterHours::Announce), "q5's default");
    let r = s.after_hours_route("to-open", now);
    assert_eq!((r.queue.as_str(), r.hops, r.action), ("open", 1, None));
    let r = s.after_hours_route("open", now);
    assert_eq!((r.queue.as_str(), r.hops, r.action), ("open", 0, None));
}

#[test]
fn the_cluster_table_is_optional_and_checked() {
    let s = parse("edge.toml", "").unwrap();
    assert!(s.config.cluster.is_none(), "single node by default");
    let ok = "[cluster]\nnode = \"edge-a\"\nnats = [\"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"]\n\
              advertise_sip = \"127.0.0.2:5060\"\n";
    let s = parse("edge.toml", ok).unwrap();
    let c = s.config.cluster.as_ref().unwrap();
    assert_eq!(c.node, "edge-a");
    assert_eq!(c.nats.len(), 2);
    assert_eq!(c.replicas, 3);
    assert_eq!(c.node_lease, std::time::Duration::from_secs(5));
    assert_eq!(c.nats_grace, std::time::Duration::from_secs(5));
    assert_eq!(c.advertise_http, None);
    assert_eq!(c.advertise_https, None);
    for (bad, field, why) in [
        ("node = \"edge a\"", "cluster.node", "letters, digits"),
        ("node = \"\"", "cluster.node", "letters, digits"),
        ("nats = []", "cluster.nats", "at least one"),
        (
            "nats = [\"127.0.0.1:4222\"]",
            "cluster.nats[0]",
            "nats://HOST:PORT",
        ),
        (
            "nats = [\"nats://127.0.0.1\"]",
            "cluster.nats[0]",
            "nats://HOST:PORT",
        ),
        (
            "advertise_sip = \"0.0.0.0:5060\"",
            "cluster.advertise_sip",
            "specific IP",
        ),
        (
            "advertise_http = \"0.0.0.0:8080\"",
            "cluster.advertise_http",
            "specific IP",
        ),
        (
            "advertise_https = \"127.0.0.2:0\"",
            "cluster.advertise_https",
            "specific IP",
        ),
        (
            "advertise_https = \"127.0.0.2:8443\"",
            "cluster.advertise_https",
            "needs [http] tls_listen",
        ),
        (
            "nats_cert = \"edge-nats.pem\"",
            "cluster.nats_key",
            "go together",
        ),
        (
            "nats_key = \"edge-nats-key.pem\"",
            "cluster.nats_cert",
            "go together",
        ),
        (
            "nats = [\"nats://a:one@127.0.0.1:4222\", \"nats://a:two@127.0.0.1:4223\"]",
            "cluster.nats[1]",
            "other credentials",
        ),
        (
            "nats = [\"nats://a:one@127.0.0.1:4222\"]\nnats_nkey = \"edge.nk\"",
            "cluster.nats_nkey",
            "one way of signing in",
        ),
        (
            "nats_nkey = \"edge.nk\"\nnats_creds = \"edge.creds\"",
            "cluster.nats_creds",
            "one way of signing in",
        ),
        ("replicas = 0", "cluster.replicas", "1 to 5"),
        ("node_lease = \"1s\"", "cluster.node_lease", "at least 2s"),
    ] {
        let key = bad.split(' ').next().unwrap();
        let text: String = ok
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .chain([bad])
            .map(|l| format!("{l}\n"))
            .collect();
        let msg = parse("edge.toml", &text).unwrap_err().to_string();
        assert!(msg.contains(field) && msg.contains(why), "{bad}: {msg}");
    }
    let msg = parse("edge.toml", "[cluster]\nnode = \"a\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nats"), "nats is required: {msg}");
}
