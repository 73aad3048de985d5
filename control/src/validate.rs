//! Semantic validation of a parsed [`Config`]: references resolve, names are unique,
//! numbers do not clash. The first problem is reported with its field path.

use crate::error::{FieldPath, Issue};
use crate::model::Config;
use std::collections::HashMap;

pub(crate) fn validate(c: &Config) -> Result<(), Issue> {
    let root = FieldPath::default;
    if c.sip.listen.is_empty() {
        return Err(Issue::new(
            root().key("sip").key("listen"),
            "at least one listen address is required",
        ));
    }
    if let Some(i) = c
        .sip
        .listen
        .iter()
        .position(|l| l.transport == crate::Transport::Tls)
    {
        if c.tls.is_none() {
            return Err(Issue::new(
                root().key("sip").key("listen").index(i),
                "a `tls:` listen address needs [tls] cert and key",
            ));
        }
    }
    if c.http.tls_listen.is_some() && c.tls.is_none() {
        return Err(Issue::new(
            root().key("http").key("tls_listen"),
            "HTTPS needs [tls] cert and key",
        ));
    }
    check_target_transports(c)?;
    if let Some(cl) = &c.cluster {
        check_cluster(cl)?;
        if cl.nats_cert.is_some() != cl.nats_key.is_some() {
            return Err(Issue::new(
                root().key("cluster").key(if cl.nats_cert.is_some() {
                    "nats_key"
                } else {
                    "nats_cert"
                }),
                "nats_cert and nats_key go together",
            ));
        }
        if cl.nats_cert.is_some() && c.tls.is_none() {
            return Err(Issue::new(
                root().key("cluster").key("nats_cert"),
                "needs [tls]: its ca checks the NATS servers",
            ));
        }
        if cl.advertise_https.is_some() && c.http.tls_listen.is_none() {
            return Err(Issue::new(
                root().key("cluster").key("advertise_https"),
                "needs [http] tls_listen: the HTTPS listener it names",
            ));
        }
    }
    if c.sip.max_calls == 0 {
        return Err(Issue::new(
            root().key("sip").key("max_calls"),
            "must be at least 1",
        ));
    }
    if !(2..=64).contains(&c.sip.max_participants) {
        return Err(Issue::new(
            root().key("sip").key("max_participants"),
            "must be 2 to 64",
        ));
    }
    let (se, min_se) = (c.sip.session_expires, c.sip.min_se);
    if min_se.as_secs() < 90 || min_se.subsec_nanos() != 0 {
        return Err(Issue::new(
            root().key("sip").key("min_se"),
            "must be whole seconds, at least 90s (RFC 4028)",
        ));
    }
    if !se.is_zero() && (se < min_se || se.subsec_nanos() != 0) {
        return Err(Issue::new(
            root().key("sip").key("session_expires"),
            "must be 0s (off) or whole seconds, at least min_se",
        ));
    }
    if c.media.address.is_unspecified() {
        return Err(Issue::new(
            root().key("media").key("address"),
            "must be a concrete address peers can send RTP to, not 0.0.0.0 / ::",
        ));
    }

    let up = &c.storage.upload;
    let upath = || root().key("storage").key("upload");
    match up.target {
        crate::model::UploadTarget::Http => match up.url.as_deref() {
            None => {
                return Err(Issue::new(
                    upath().key("url"),
                    "the http target needs a url",
                ))
            }
            Some(u) if !u.starts_with("http://") && !u.starts_with("https://") => {
                return Err(Issue::new(
                    upath().key("url"),
                    format!("`{u}` is not an http(s) URL"),
                ))
            }
            Some(_) => {}
        },
        crate::model::UploadTarget::S3 => {
            if up.bucket.as_deref().is_none_or(str::is_empty) {
                return Err(Issue::new(
                    upath().key("bucket"),
                    "the s3 target needs a bucket",
                ));
            }
            if let Some(e) = up
                .endpoint
                .as_deref()
                .filter(|e| !e.starts_with("http://") && !e.starts_with("https://"))
            {
                return Err(Issue::new(
                    upath().key("endpoint"),
                    format!("`{e}` is not an http(s) URL"),
                ));
            }
            if up.mode == crate::model::S3Mode::Multipart && c.storage.chunk_size < 5 * 1024 * 1024
            {
                return Err(Issue::new(
                    root().key("storage").key("chunk_size"),
                    "S3 multipart parts must be at least 5MiB",
                ));
            }
        }
        crate::model::UploadTarget::Fs => {}
    }
    if up.concurrency == 0 {
        return Err(Issue::new(upath().key("concurrency"), "must be at least 1"));
    }
    if up.backoff_base.is_zero() || up.backoff_max < up.backoff_base {
        return Err(Issue::new(
            upath().key("backoff_max"),
            "backoff_base must be > 0 and backoff_max >= backoff_base",
        ));
    }
    if c.storage.retention.is_zero() {
        return Err(Issue::new(
            root().key("storage").key("retention"),
            "must be longer than 0s",
        ));
    }

    let chat = || root().key("chat");
    for (i, t) in c.chat.attachment_types.iter().enumerate() {
        if !crate::model::ATTACHMENT_TYPES.contains(&t.as_str()) {
            return Err(Issue::new(
                chat().key("attachment_types").index(i),
                format!(
                    "`{t}` is not a supported attachment type (supported: {})",
                    crate::model::ATTACHMENT_TYPES.join(", ")
                ),
            ));
        }
    }
    if c.chat.attachment_link_ttl.is_zero() || c.chat.attachment_max_size == 0 {
        return Err(Issue::new(
            chat(),
            "attachment_link_ttl and attachment_max_size must be more than 0",
        ));
    }

    for (i, t) in c.trunks.iter().enumerate() {
        if t.sources.is_empty() {
            return Err(Issue::new(
                root().key("trunks").index(i).key("sources"),
                format!("trunk `{}` has no sources", t.name),
            ));
        }
    }

    // Numbers: each dialled number maps to exactly one destination.
    let mut numbers: HashMap<&str, FieldPath> = HashMap::new();
    for (i, r) in c.routes.iter().enumerate() {
        let path = root().key("routes").index(i).key("number");
        check_number(&r.number, &path)?;
        if let Some(prev) = numbers.insert(&r.number, path.clone()) {
            return Err(Issue::new(
                path,
                format!("number `{}` is already used by {prev}", r.number),
            ));
        }
    }

    let mut agent_ids: HashMap<&str, usize> = HashMap::new();
    for (i, a) in c.agents.iter().enumerate() {
        let path = root().key("agents").index(i).key("id");
        if a.id.is_empty() {
            return Err(Issue::new(path, "agent id must not be empty"));
        }
        if agent_ids.insert(&a.id, i).is_some() {
            return Err(Issue::new(
                path,
                format!("agent id `{}` appears twice", a.id),
            ));
        }
        // The id is the user part of the agent's address of record.
        if !a
            .id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.!~*'()+".contains(ch))
        {
            return Err(Issue::new(
                path,
                "agent id must be a SIP user part (letters, digits, - _ . ! ~ * ' ( ) +)",
            ));
        }
        let apath = || root().key("agents").index(i);
        if a.contact.is_none() && a.password.is_none() {
            return Err(Issue::new(
                apath().key("password"),
                "an agent needs a `password` (its phone registers) or a static `contact`",
            ));
        }
        if a.password.as_ref().is_some_and(|p| p.len() < 8) {
            return Err(Issue::new(
                apath().key("password"),
                "must be at least 8 characters",
            ));
        }
        if a.digest.as_ref().is_some_and(Vec::is_empty) {
            return Err(Issue::new(
                apath().key("digest"),
                "must name at least one algorithm",
            ));
        }
        if let Some(u) = &a.user {
            if !c.users.iter().any(|x| &x.name == u) {
                return Err(Issue::new(
                    apath().key("user"),
                    format!("user `{u}` is not defined in [[users]]"),
                ));
            }
            if let Some(j) = c.agents[..i]
                .iter()
                .position(|b| b.user.as_ref() == Some(u))
            {
                return Err(Issue::new(
                    apath().key("user"),
                    format!(
                        "user `{u}` is already the user of agent `{}`",
                        c.agents[j].id
                    ),
                ));
            }
        }
    }
    if c.sip.digest.is_empty() {
        return Err(Issue::new(
            root().key("sip").key("digest"),
            "must name at least one algorithm (\"MD5\", \"SHA-256\")",
        ));
    }
    if c.sip.register_min_expires.is_zero()
        || c.sip.register_max_expires < c.sip.register_min_expires
    {
        return Err(Issue::new(
            root().key("sip").key("register_max_expires"),
            "register_min_expires must be > 0s and register_max_expires >= it",
        ));
    }

    let mut hours_names: HashMap<&str, usize> = HashMap::new();
    for (i, h) in c.hours.iter().enumerate() {
        let hpath = || root().key("hours").index(i);
        if h.name.is_empty() || hours_names.insert(&h.name, i).is_some() {
            return Err(Issue::new(
                hpath().key("name"),
                format!("hours name `{}` is empty or appears twice", h.name),
            ));
        }
        if let Err(e) = crate::hours::Hours::parse(&h.timezone, &h.open, &h.closed) {
            return Err(Issue::new(hpath(), e));
        }
    }

    let mut fields: HashMap<String, usize> = HashMap::new();
    for (i, r) in c.reserved_data.iter().enumerate() {
        let rpath = || root().key("reserved_data").index(i);
        if r.field.is_empty()
            || r.field.len() > 64
            || !r
                .field
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(Issue::new(
                rpath().key("field"),
                "must be 1 to 64 letters, digits, `_` or `-`",
            ));
        }
        if r.header.is_empty()
            || !r
                .header
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.!%*+`'~".contains(ch))
        {
            return Err(Issue::new(
                rpath().key("header"),
                "must be a SIP header name (a token)",
            ));
        }
        if r.max_length == 0 || r.max_length > 1024 {
            return Err(Issue::new(rpath().key("max_length"), "must be 1 to 1024"));
        }
        let key = r.agent_header().to_ascii_lowercase();
        if let Some(j) = fields.insert(key, i) {
            return Err(Issue::new(
                rpath().key("field"),
                format!(
                    "`{}` gives the same agent header as reserved_data[{j}] (`{}`)",
                    r.field, c.reserved_data[j].field
                ),
            ));
        }
    }

    let mut queue_names: HashMap<&str, usize> = HashMap::new();
    for (i, q) in c.queues.iter().enumerate() {
        let qpath = || root().key("queues").index(i);
        if q.name.is_empty() {
            return Err(Issue::new(
                qpath().key("name"),
                "queue name must not be empty",
            ));
        }
        if queue_names.insert(&q.name, i).is_some() {
            return Err(Issue::new(
                qpath().key("name"),
                format!("queue `{}` appears twice", q.name),
            ));
        }
        for (j, n) in q.numbers.iter().enumerate() {
            let path = qpath().key("numbers").index(j);
            check_number(n, &path)?;
            if let Some(prev) = numbers.insert(n, path.clone()) {
                return Err(Issue::new(
                    path,
                    format!("number `{n}` is already used by {prev}"),
                ));
            }
        }
        if q.agents.is_empty() {
            return Err(Issue::new(
                qpath().key("agents"),
                format!("queue `{}` has no agents", q.name),
            ));
        }
        for (j, a) in q.agents.iter().enumerate() {
            let known = match q.channel {
                crate::model::Channel::Voice => agent_ids.contains_key(a.as_str()),
                crate::model::Channel::Chat => c.users.iter().any(|u| &u.name == a),
            };
            if !known {
                let table = match q.channel {
                    crate::model::Channel::Voice => "[[agents]]",
                    crate::model::Channel::Chat => "[[users]] (chat queues list user names)",
                };
                return Err(Issue::new(
                    qpath().key("agents").index(j),
                    format!("agent `{a}` is not defined in {table}"),
                ));
            }
        }
        if q.channel == crate::model::Channel::Chat && !q.numbers.is_empty() {
            return Err(Issue::new(
                qpath().key("numbers"),
                "a chat queue takes no phone numbers",
            ));
        }
        if q.abandon_after.is_zero() {
            return Err(Issue::new(
                qpath().key("abandon_after"),
                "must be longer than 0s",
            ));
        }
        if q.max_wait.is_zero() {
            return Err(Issue::new(
                qpath().key("max_wait"),
                "must be longer than 0s",
            ));
        }
        check_audio(&q.announcement, qpath().key("announcement"))?;
        check_audio(&q.hold_audio, qpath().key("hold_audio"))?;
        check_audio(
            &q.after_hours_announcement,
            qpath().key("after_hours_announcement"),
        )?;
        check_after_hours(c, q, &qpath)?;
    }
    for (i, r) in c.routes.iter().enumerate() {
        let rpath = || root().key("routes").index(i);
        check_audio(&r.announcement, rpath().key("announcement"))?;
        check_audio(&r.hold_audio, rpath().key("hold_audio"))?;
    }

    let mut user_names: HashMap<&str, usize> = HashMap::new();
    let mut tokens: HashMap<&str, usize> = HashMap::new();
    for (i, u) in c.users.iter().enumerate() {
        let upath = || root().key("users").index(i);
        if user_names.insert(&u.name, i).is_some() {
            return Err(Issue::new(
                upath().key("name"),
                format!("user `{}` appears twice", u.name),
            ));
        }
        if u.token.len() < 8 {
            return Err(Issue::new(
                upath().key("token"),
                "token must be at least 8 characters",
            ));
        }
        if tokens.insert(&u.token, i).is_some() {
            // Do not echo the token itself.
            return Err(Issue::new(
                upath().key("token"),
                "token is shared with another user",
            ));
        }
    }
    Ok(())
}

/// An audio file named in config must be a readable file (it is decoded at load).
fn check_audio(file: &Option<std::path::PathBuf>, path: FieldPath) -> Result<(), Issue> {
    let Some(f) = file else { return Ok(()) };
    match std::fs::metadata(f) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Issue::new(path, format!("`{}` is not a file", f.display()))),
        Err(e) => Err(Issue::new(
            path,
            format!("cannot read `{}`: {e}", f.display()),
        )),
    }
}

fn check_number(n: &str, path: &FieldPath) -> Result<(), Issue> {
    let body = n.strip_suffix('*').unwrap_or(n);
    if n.is_empty() || (n != "*" && body.is_empty()) {
        return Err(Issue::new(path.clone(), "number must not be empty"));
    }
    if body.contains('*') {
        return Err(Issue::new(
            path.clone(),
            format!("`{n}`: `*` is only allowed at the end (prefix)"),
        ));
    }
    if body
        .chars()
        .any(|c| c.is_whitespace() || c == '@' || c == ':' || c == ';')
    {
        return Err(Issue::new(
            path.clone(),
            format!("`{n}` is not a valid user part"),
        ));
    }
    Ok(())
}

/// Every SIP target is reachable: the edge listens on its transport in its address
/// family (the Via and Contact the edge sends name that listen address, so the
/// peer's requests come back to it).
fn check_target_transports(c: &Config) -> Result<(), Issue> {
    use crate::model::AfterHours;
    let root = FieldPath::default;
    let routes = c
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (root().key("routes").index(i).key("target"), &r.target));
    let agents = c.agents.iter().enumerate().filter_map(|(i, a)| {
        Some((
            root().key("agents").index(i).key("contact"),
            a.contact.as_ref()?,
        ))
    });
    let users = c.users.iter().enumerate().filter_map(|(i, u)| {
        Some((
            root().key("users").index(i).key("contact"),
            u.contact.as_ref()?,
        ))
    });
    let forwards = c
        .queues
        .iter()
        .enumerate()
        .filter_map(|(i, q)| match &q.after_hours {
            Some(AfterHours::Forward(t)) => {
                Some((root().key("queues").index(i).key("after_hours"), t))
            }
            _ => None,
        });
    for (path, t) in routes.chain(agents).chain(users).chain(forwards) {
        let listens = c
            .sip
            .listen
            .iter()
            .any(|l| l.transport == t.transport && l.addr.is_ipv4() == t.addr.is_ipv4());
        if !listens {
            let family = if t.addr.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(Issue::new(
                path,
                format!(
                    "`{}` is reached over {}, but no {family} `{}:` listen address is configured",
                    t.uri,
                    t.transport,
                    t.transport.as_str().to_ascii_lowercase()
                ),
            ));
        }
    }
    Ok(())
}

/// A queue's `hours` and `after_hours`: the hours exist, the action fits the
/// channel, a target queue exists with the same channel, voice announce and
/// voicemail have their announcement.
fn check_after_hours(
    c: &crate::model::Config,
    q: &crate::model::Queue,
    qpath: &dyn Fn() -> FieldPath,
) -> Result<(), Issue> {
    use crate::model::{AfterHours, Channel};
    if let Some(h) = &q.hours {
        if !c.hours.iter().any(|x| &x.name == h) {
            return Err(Issue::new(
                qpath().key("hours"),
                format!("hours `{h}` are not defined in [[hours]]"),
            ));
        }
    } else if q.after_hours.is_some() {
        return Err(Issue::new(
            qpath().key("after_hours"),
            "needs `hours` (when the queue is open)",
        ));
    }
    let Some(h) = &q.hours else { return Ok(()) };
    let action = q.after_hours.clone().unwrap_or(AfterHours::Announce);
    match (&action, q.channel) {
        (AfterHours::Queue(t), _) => {
            let target = c.queues.iter().find(|x| &x.name == t);
            if target.is_none_or(|x| x.channel != q.channel || x.name == q.name) {
                return Err(Issue::new(
                    qpath().key("after_hours"),
                    format!("`queue:{t}` must name another queue of the same channel"),
                ));
            }
        }
        (AfterHours::Forward(_), Channel::Chat) => {
            return Err(Issue::new(
                qpath().key("after_hours"),
                "a chat queue cannot forward to a SIP target",
            ));
        }
        (AfterHours::Announce | AfterHours::Voicemail, Channel::Voice)
            if q.after_hours_announcement.is_none() =>
        {
            return Err(Issue::new(
                qpath().key("after_hours_announcement"),
                format!(
                    "queue `{}` keeps hours `{h}`: what does a caller hear when closed?",
                    q.name
                ),
            ));
        }
        _ => {}
    }
    if q.voicemail_max.is_zero() {
        return Err(Issue::new(
            qpath().key("voicemail_max"),
            "must be longer than 0s",
        ));
    }
    Ok(())
}

fn check_cluster(cl: &crate::model::ClusterConfig) -> Result<(), Issue> {
    let at = || FieldPath::default().key("cluster");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name_ok(&cl.node) {
        return Err(Issue::new(
            at().key("node"),
            "must be 1 to 64 letters, digits, `-` or `_`",
        ));
    }
    if cl.nats.is_empty() {
        return Err(Issue::new(at().key("nats"), "at least one NATS server URL"));
    }
    // The client signs in once, with the credentials of the URLs
    // (`user:password@` or `token@`): every URL carrying some must carry the same.
    let mut seen: Option<&str> = None;
    for (i, u) in cl.nats.iter().enumerate() {
        let (bare, creds) = crate::values::nats_url_parts(u);
        let ok = bare
            .strip_prefix("nats://")
            .or_else(|| bare.strip_prefix("tls://"))
            .is_some_and(|hostport| {
                hostport
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
            });
        if !ok {
            return Err(Issue::new(
                at().key("nats").index(i),
                "must be nats://HOST:PORT (or tls://HOST:PORT)",
            ));
        }
        if let Some(c) = creds {
            if seen.is_some_and(|s| s != c) {
                return Err(Issue::new(
                    at().key("nats").index(i),
                    "carries other credentials than an earlier URL: the edge signs in to NATS with one",
                ));
            }
            seen = Some(c);
        }
    }
    let ways = [
        ("nats", seen.is_some()),
        ("nats_nkey", cl.nats_nkey.is_some()),
        ("nats_creds", cl.nats_creds.is_some()),
    ];
    if let [_, (second, _), ..] = ways.iter().filter(|(_, on)| *on).collect::<Vec<_>>()[..] {
        return Err(Issue::new(
            at().key(second),
            "one way of signing in to NATS: credentials in the URLs, nats_nkey or nats_creds",
        ));
    }
    if cl.advertise_sip.port() == 0 || cl.advertise_sip.ip().is_unspecified() {
        return Err(Issue::new(
            at().key("advertise_sip"),
            "must be an address other nodes can reach: a specific IP and a port",
        ));
    }
    for (key, addr) in [
        ("advertise_http", cl.advertise_http),
        ("advertise_https", cl.advertise_https),
    ] {
        if addr.is_some_and(|a| a.port() == 0 || a.ip().is_unspecified()) {
            return Err(Issue::new(
                at().key(key),
                "must be an address other nodes can reach: a specific IP and a port",
            ));
        }
    }
    if !(1..=5).contains(&cl.replicas) {
        return Err(Issue::new(at().key("replicas"), "must be 1 to 5"));
    }
    if cl.node_lease < std::time::Duration::from_secs(2) {
        return Err(Issue::new(at().key("node_lease"), "must be at least 2s"));
    }
    if cl.nats_grace.is_zero() {
        return Err(Issue::new(at().key("nats_grace"), "must be more than 0s"));
    }
    Ok(())
}
