//! Process-wide counters that the RTP relay tasks update (batched), and the
//! Prometheus text rendering of those plus the SIP core's counters.

use b2bua::CallStats;
use sip::endpoint::{Stats, METHOD_NAMES};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub rtp_packets: AtomicU64,
    pub rtp_bytes: AtomicU64,
    pub rtp_dropped: AtomicU64,
    pub relays_active: AtomicU64,
    pub monitors_active: AtomicU64,
    pub recordings_active: AtomicU64,
    pub recording_failures: AtomicU64,
    pub media_bind_failures: AtomicU64,
    pub sip_send_failures: AtomicU64,
    pub sip_inbound_dropped: AtomicU64,
    pub tcp_connections: AtomicU64,
    /// SIP TCP connections refused: over the total, over the source's share.
    pub tcp_refused_total: AtomicU64,
    pub tcp_refused_per_source: AtomicU64,
    /// SIP TCP connections closed idle, or with a message not completed in time.
    pub tcp_timeouts_idle: AtomicU64,
    pub tcp_timeouts_message: AtomicU64,
    /// SIP TLS handshakes that failed or did not finish in time.
    pub tls_handshake_failures: AtomicU64,
    /// HTTPS (and wss) handshakes that failed or did not finish in time.
    pub https_handshake_failures: AtomicU64,
    /// SIP WebSockets open, and upgrades refused for lacking the `sip` subprotocol.
    pub sip_ws_connections: AtomicU64,
    pub sip_ws_refused: AtomicU64,
    /// WebRTC legs: ready (DTLS done, fingerprint matched), failed (handshake,
    /// timeout, fingerprint), and packets refused (STUN checks that fail, SRTP that
    /// fails authentication or replay, media before the keys).
    pub webrtc_connected: AtomicU64,
    pub webrtc_failed: AtomicU64,
    pub webrtc_stun_refused: AtomicU64,
    pub webrtc_srtp_refused: AtomicU64,
    pub webrtc_not_ready: AtomicU64,
    /// HTTP connections open, and refused over [http] max_connections.
    pub http_connections: AtomicU64,
    pub http_refused: AtomicU64,
    /// Attachment uploads refused: too large (413), too many at once (503).
    pub uploads_too_large: AtomicU64,
    pub uploads_busy: AtomicU64,
    pub config_reloads: AtomicU64,
    pub config_reload_failures: AtomicU64,
    /// Chats refused at start because their queue (and any after_hours queue) was closed.
    pub chats_after_hours: AtomicU64,
    /// New chats refused because the node drains or is held (cluster without NATS).
    pub chats_refused_busy: AtomicU64,
}

/// What the SIP core reports when asked.
#[derive(Debug, Clone, Default)]
pub struct CoreStats {
    pub sip: Stats,
    pub calls: CallStats,
    pub active_calls: usize,
    /// Live registrations (bindings) of agents' phones.
    pub registered: usize,
    /// Agents per state now.
    pub agents: Vec<(&'static str, usize)>,
    pub ports_in_use: usize,
    pub ports_capacity: usize,
    /// Conferences now by their number of parties.
    pub conferences: Vec<(usize, usize)>,
    /// Draining: new calls and registrations refused.
    pub draining: bool,
    /// Held (a cluster node without NATS): new calls and registrations refused.
    pub held: bool,
}

/// One metric without labels: HELP, TYPE and its value.
fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// The HELP and TYPE lines of a metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(m: &Metrics, core: &CoreStats) -> String {
    let mut o = String::with_capacity(4096);
    metric(
        &mut o,
        "edge_calls_active",
        "Calls in progress.",
        "gauge",
        core.active_calls,
    );
    metric(
        &mut o,
        "edge_calls_started_total",
        "Calls accepted for routing.",
        "counter",
        core.calls.started,
    );
    metric(
        &mut o,
        "edge_calls_answered_total",
        "Calls answered by the callee.",
        "counter",
        core.calls.answered,
    );
    header(
        &mut o,
        "edge_calls_ended_total",
        "Ended calls by final status sent to the caller (200 = answered).",
        "counter",
    );
    let mut by: Vec<_> = core.calls.ended_by_status.iter().collect();
    by.sort();
    for (code, n) in by {
        let _ = writeln!(o, "edge_calls_ended_total{{status=\"{code}\"}} {n}");
    }
    metric(
        &mut o,
        "edge_calls_rejected_overload_total",
        "INVITEs refused with 503 (max_calls or no RTP ports).",
        "counter",
        core.calls.rejected_overload,
    );
    metric(
        &mut o,
        "edge_calls_rejected_draining_total",
        "New INVITEs and REGISTERs refused with 503 while the edge drains.",
        "counter",
        core.calls.rejected_draining,
    );
    metric(
        &mut o,
        "edge_calls_rejected_held_total",
        "New INVITEs and REGISTERs refused with 503 while the node is held (cluster without NATS).",
        "counter",
        core.calls.rejected_held,
    );
    header(
        &mut o,
        "edge_cluster_claims_total",
        "Cluster mode: claims of agents before an offer, by outcome (taken: another node held the agent).",
        "counter",
    );
    for r in b2bua::ClaimResult::ALL {
        let _ = writeln!(
            o,
            "edge_cluster_claims_total{{outcome=\"{}\"}} {}",
            r.as_str(),
            core.calls.claims[r as usize]
        );
    }
    metric(
        &mut o,
        "edge_cluster_fifo_holdbacks_total",
        "Times this node held a free agent back for another node's call of the queue that had waited longer (cluster mode).",
        "counter",
        core.calls.fifo_holdbacks,
    );
    metric(
        &mut o,
        "edge_draining",
        "1 while the edge drains (OPTIONS 503, no new calls), else 0.",
        "gauge",
        core.draining as u64,
    );
    metric(
        &mut o,
        "edge_held",
        "1 while a cluster node holds new work because it cannot reach NATS, else 0.",
        "gauge",
        core.held as u64,
    );
    metric(
        &mut o,
        "edge_rtp_ports_skipped_total",
        "RTP port pairs skipped because another program held them.",
        "counter",
        core.calls.ports_skipped,
    );
    metric(
        &mut o,
        "edge_calls_media_timeouts_total",
        "Answered calls ended because no RTP came from either party ([media] rtp_timeout).",
        "counter",
        core.calls.media_timeouts,
    );
    metric(
        &mut o,
        "edge_calls_max_duration_total",
        "Calls ended at [sip] max_call_duration.",
        "counter",
        core.calls.max_duration,
    );
    metric(
        &mut o,
        "edge_sip_registrations",
        "Live registrations (bindings) of agents' phones.",
        "gauge",
        core.registered,
    );
    header(
        &mut o,
        "edge_agents",
        "Agents per state now (ready, not_ready, busy, wrap_up, logged_out).",
        "gauge",
    );
    for (state, n) in &core.agents {
        let _ = writeln!(o, "edge_agents{{state=\"{state}\"}} {n}");
    }
    header(
        &mut o,
        "edge_agent_state_changes_total",
        "Agent state changes by the state entered.",
        "counter",
    );
    let mut by: Vec<_> = core.calls.agent_changes.iter().collect();
    by.sort();
    for (state, n) in by {
        let _ = writeln!(o, "edge_agent_state_changes_total{{state=\"{state}\"}} {n}");
    }
    header(
        &mut o,
        "edge_calls_after_hours_total",
        "Calls for a closed queue by the after_hours action taken (announce, voicemail, queue, forward).",
        "counter",
    );
    let mut by: Vec<_> = core.calls.after_hours.iter().collect();
    by.sort();
    for (action, n) in by {
        let _ = writeln!(o, "edge_calls_after_hours_total{{action=\"{action}\"}} {n}");
    }
    header(
        &mut o,
        "edge_call_transfers_total",
        "Call transfers by kind (blind, consult, replaces; conference: parties added) and outcome (completed, queued, recalled, requeued, failed, abandoned, cancelled, added).",
        "counter",
    );
    let mut by: Vec<_> = core.calls.transfers.iter().collect();
    by.sort();
    for (key, n) in by {
        // Consultations count as `consult_<outcome>`, INVITEs with Replaces as
        // `replaces_<outcome>`.
        let (kind, outcome) = match key.split_once('_') {
            Some((kind @ ("consult" | "replaces" | "conference"), outcome)) => (kind, outcome),
            _ => ("blind", *key),
        };
        let _ = writeln!(
            o,
            "edge_call_transfers_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    header(
        &mut o,
        "edge_conferences",
        "Calls with conference members now, by their number of parties (customer and agent included).",
        "gauge",
    );
    for (parties, n) in &core.conferences {
        let _ = writeln!(o, "edge_conferences{{parties=\"{parties}\"}} {n}");
    }
    header(
        &mut o,
        "edge_call_transfers_started_total",
        "Call transfers started, by who asked (refer: the agent's phone; api).",
        "counter",
    );
    let mut by: Vec<_> = core.calls.transfers_by.iter().collect();
    by.sort();
    for (who, n) in by {
        let _ = writeln!(o, "edge_call_transfers_started_total{{by=\"{who}\"}} {n}");
    }
    metric(
        &mut o,
        "edge_voicemails_total",
        "Voicemails recorded after hours (handed to the recording spool).",
        "counter",
        core.calls.voicemails,
    );
    metric(
        &mut o,
        "edge_calls_reserved_data_refused_total",
        "Reserved data headers dropped: empty, over max_length, or with control characters.",
        "counter",
        core.calls.reserved_refused,
    );
    metric(
        &mut o,
        "edge_agents_no_answer_total",
        "Agents put not_ready (reason no_answer) after max_no_answer offers in a row rang out.",
        "counter",
        core.calls.no_answer_not_ready,
    );
    metric(
        &mut o,
        "edge_sip_auth_failures_total",
        "REGISTERs with a wrong digest response (or for no agent).",
        "counter",
        core.calls.auth_failures,
    );
    metric(
        &mut o,
        "edge_sip_auth_blocks_total",
        "Sources blocked for too many failed authentications ([sip] auth_max_failures).",
        "counter",
        core.calls.auth_blocks,
    );
    metric(
        &mut o,
        "edge_sip_auth_blocked_total",
        "REGISTERs refused 403 unchecked because their source was blocked.",
        "counter",
        core.calls.auth_blocked,
    );
    let _ = writeln!(
        o,
        "# HELP edge_cluster_sip_hops_total Cluster mode: SIP messages relayed through this node to and from phones registered on it (the node hop), and hop messages refused or dropped.\n\
         # TYPE edge_cluster_sip_hops_total counter\n\
         edge_cluster_sip_hops_total{{outcome=\"relayed\"}} {}\n\
         edge_cluster_sip_hops_total{{outcome=\"refused\"}} {}",
        core.calls.hop_relayed, core.calls.hop_refused
    );
    metric(
        &mut o,
        "edge_calls_shed_total",
        "New INVITEs refused 503 + Retry-After because they waited over 200 ms in the edge's queue (overload).",
        "counter",
        core.calls.shed,
    );
    metric(
        &mut o,
        "edge_calls_session_expired_total",
        "Answered calls ended because a leg's session timer (RFC 4028) ran out or its refresh failed.",
        "counter",
        core.calls.session_expired,
    );

    header(
        &mut o,
        "edge_sip_requests_total",
        "SIP requests by direction and method.",
        "counter",
    );
    for (i, name) in METHOD_NAMES.iter().enumerate() {
        for (dir, v) in [
            ("in", core.sip.requests_in[i]),
            ("out", core.sip.requests_out[i]),
        ] {
            if v > 0 {
                let _ = writeln!(
                    o,
                    "edge_sip_requests_total{{direction=\"{dir}\",method=\"{name}\"}} {v}"
                );
            }
        }
    }
    header(
        &mut o,
        "edge_sip_responses_total",
        "SIP responses by direction and class.",
        "counter",
    );
    for c in 0..6 {
        for (dir, v) in [
            ("in", core.sip.responses_in[c]),
            ("out", core.sip.responses_out[c]),
        ] {
            let _ = writeln!(
                o,
                "edge_sip_responses_total{{direction=\"{dir}\",class=\"{}xx\"}} {v}",
                c + 1
            );
        }
    }
    metric(
        &mut o,
        "edge_sip_retransmissions_total",
        "Retransmissions absorbed or answered.",
        "counter",
        core.sip.retransmissions,
    );
    metric(
        &mut o,
        "edge_sip_malformed_total",
        "SIP messages that could not be parsed.",
        "counter",
        core.sip.malformed,
    );
    metric(
        &mut o,
        "edge_sip_refused_total",
        "Requests refused before any TU saw them (416 scheme, 420 extension).",
        "counter",
        core.sip.refused,
    );
    metric(
        &mut o,
        "edge_sip_strangers_total",
        "INVITEs from sources that are no trunk, refused (403) or dropped statelessly.",
        "counter",
        core.calls.strangers,
    );
    metric(
        &mut o,
        "edge_sip_rate_limited_total",
        "SIP messages dropped unread from a source over [sip] rate_limit.",
        "counter",
        core.calls.rate_limited,
    );
    metric(
        &mut o,
        "edge_sip_rate_limit_blocks_total",
        "Times a source went over [sip] rate_limit and was blocked.",
        "counter",
        core.calls.rate_limit_blocks,
    );
    metric(
        &mut o,
        "edge_sip_transactions",
        "Live SIP transactions.",
        "gauge",
        core.sip.transactions,
    );
    metric(
        &mut o,
        "edge_sip_send_failures_total",
        "SIP messages that could not be sent.",
        "counter",
        m.sip_send_failures.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_sip_inbound_dropped_total",
        "SIP messages dropped because the core queue was full.",
        "counter",
        m.sip_inbound_dropped.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_sip_tcp_connections",
        "Open SIP TCP connections.",
        "gauge",
        m.tcp_connections.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_http_connections",
        "Open HTTP connections (upgraded WebSockets not included).",
        "gauge",
        m.http_connections.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_http_refused_total",
        "HTTP connections refused over [http] max_connections.",
        "counter",
        m.http_refused.load(Relaxed),
    );
    header(
        &mut o,
        "edge_http_uploads_refused_total",
        "Attachment uploads refused: too large, or too many at once.",
        "counter",
    );
    for (reason, v) in [
        ("too_large", m.uploads_too_large.load(Relaxed)),
        ("busy", m.uploads_busy.load(Relaxed)),
    ] {
        let _ = writeln!(
            o,
            "edge_http_uploads_refused_total{{reason=\"{reason}\"}} {v}"
        );
    }
    header(
        &mut o,
        "edge_sip_tcp_refused_total",
        "SIP TCP connections refused by limit (total, per source).",
        "counter",
    );
    for (limit, v) in [
        ("total", m.tcp_refused_total.load(Relaxed)),
        ("per_source", m.tcp_refused_per_source.load(Relaxed)),
    ] {
        let _ = writeln!(o, "edge_sip_tcp_refused_total{{limit=\"{limit}\"}} {v}");
    }
    header(
        &mut o,
        "edge_sip_tcp_timeouts_total",
        "SIP TCP connections closed by timeout (idle, message not completed).",
        "counter",
    );
    for (kind, v) in [
        ("idle", m.tcp_timeouts_idle.load(Relaxed)),
        ("message", m.tcp_timeouts_message.load(Relaxed)),
    ] {
        let _ = writeln!(o, "edge_sip_tcp_timeouts_total{{kind=\"{kind}\"}} {v}");
    }

    metric(
        &mut o,
        "edge_rtp_relayed_packets_total",
        "RTP/RTCP packets relayed.",
        "counter",
        m.rtp_packets.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_rtp_relayed_bytes_total",
        "RTP/RTCP bytes relayed.",
        "counter",
        m.rtp_bytes.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_rtp_dropped_packets_total",
        "RTP datagrams dropped (foreign source, malformed, no destination, send failure).",
        "counter",
        m.rtp_dropped.load(Relaxed),
    );
    for (name, help, v) in [
        (
            "edge_webrtc_legs_connected_total",
            "WebRTC legs whose DTLS handshake completed with the SDP fingerprint.",
            &m.webrtc_connected,
        ),
        (
            "edge_webrtc_legs_failed_total",
            "WebRTC legs whose DTLS failed, timed out, or showed another certificate.",
            &m.webrtc_failed,
        ),
        (
            "edge_webrtc_stun_refused_total",
            "STUN on WebRTC ports refused (wrong user, integrity, fingerprint).",
            &m.webrtc_stun_refused,
        ),
        (
            "edge_webrtc_srtp_refused_total",
            "SRTP/SRTCP packets dropped for failed authentication or replay.",
            &m.webrtc_srtp_refused,
        ),
        (
            "edge_webrtc_not_ready_total",
            "Media to or from a WebRTC leg before its keys were ready: dropped.",
            &m.webrtc_not_ready,
        ),
    ] {
        metric(&mut o, name, help, "counter", v.load(Relaxed));
    }
    metric(
        &mut o,
        "edge_rtp_relays_active",
        "Calls with an open RTP relay.",
        "gauge",
        m.relays_active.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_monitors_active",
        "Supervisor legs being mixed for (listen, whisper or barge).",
        "gauge",
        m.monitors_active.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_recordings_active",
        "Calls being recorded now.",
        "gauge",
        m.recordings_active.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_recording_failures_total",
        "Calls that should have been recorded but whose file could not be created.",
        "counter",
        m.recording_failures.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_rtp_ports_in_use",
        "RTP/RTCP port pairs in use.",
        "gauge",
        core.ports_in_use,
    );
    metric(
        &mut o,
        "edge_rtp_ports_capacity",
        "RTP/RTCP port pairs in the pool.",
        "gauge",
        core.ports_capacity,
    );
    metric(
        &mut o,
        "edge_media_bind_failures_total",
        "RTP sockets that could not be bound.",
        "counter",
        m.media_bind_failures.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_sip_tls_handshake_failures_total",
        "SIP TLS connections closed because their handshake failed or timed out.",
        "counter",
        m.tls_handshake_failures.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_https_handshake_failures_total",
        "HTTPS/wss TLS handshakes that failed or did not finish within [http] header_timeout.",
        "counter",
        m.https_handshake_failures.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_sip_ws_connections",
        "SIP WebSockets (/ws/sip) open now.",
        "gauge",
        m.sip_ws_connections.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_sip_ws_refused_total",
        "WebSocket upgrades on /ws/sip refused because the client did not ask for the `sip` subprotocol.",
        "counter",
        m.sip_ws_refused.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_chats_after_hours_total",
        "Chats started in a closed queue that got the after-hours message and ended.",
        "counter",
        m.chats_after_hours.load(Relaxed),
    );
    metric(
        &mut o,
        "edge_chats_refused_busy_total",
        "New chats refused (WebSocket close 1013) because the node drains or is held.",
        "counter",
        m.chats_refused_busy.load(Relaxed),
    );
    header(
        &mut o,
        "edge_config_reloads_total",
        "Configuration reloads by result.",
        "counter",
    );
    let _ = writeln!(
        o,
        "edge_config_reloads_total{{result=\"ok\"}} {}",
        m.config_reloads.load(Relaxed)
    );
    let _ = writeln!(
        o,
        "edge_config_reloads_total{{result=\"rejected\"}} {}",
        m.config_reload_failures.load(Relaxed)
    );
    o
}

/// Append the recording upload metrics.
pub fn render_uploads(o: &mut String, up: &storage::uploader::Uploader) {
    let m = &up.metrics;
    let (depth, oldest) = up.queue();
    metric(
        o,
        "edge_recordings_queue_depth",
        "Recordings waiting for or in upload.",
        "gauge",
        depth,
    );
    metric(
        o,
        "edge_recordings_oldest_pending_seconds",
        "Age of the oldest recording not yet uploaded.",
        "gauge",
        format_args!("{:.3}", oldest),
    );
    metric(
        o,
        "edge_recordings_uploaded_total",
        "Recordings uploaded and deleted locally.",
        "counter",
        m.uploaded.load(Relaxed),
    );
    metric(
        o,
        "edge_recordings_upload_bytes_total",
        "Chunk bytes acknowledged by the target.",
        "counter",
        m.bytes_uploaded.load(Relaxed),
    );
    metric(
        o,
        "edge_recordings_upload_attempts_total",
        "Upload requests made.",
        "counter",
        m.attempts.load(Relaxed),
    );
    header(
        o,
        "edge_recordings_upload_failures_total",
        "Failed upload requests by reason.",
        "counter",
    );
    for (reason, n) in m.failures.lock().iter() {
        let _ = writeln!(
            o,
            "edge_recordings_upload_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
    metric(
        o,
        "edge_recordings_expired_total",
        "Local recordings deleted by the retention bound.",
        "counter",
        m.expired.load(Relaxed),
    );
    metric(
        o,
        "edge_recordings_spool_errors_total",
        "Spool write/delete errors (disk full, unwritable).",
        "counter",
        m.spool_errors.load(Relaxed),
    );
}
