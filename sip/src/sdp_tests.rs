//! Unit tests of `sdp.rs`.

use super::*;

const OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp:6001\r\na=sendrecv\r\n\
m=video 6002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

#[test]
fn reads_audio_target_and_direction() {
    let s = Sdp::parse(OFFER.as_bytes()).unwrap();
    assert_eq!(s.telephone_event_pt(), Some(101));
    let none = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 0 8");
    assert_eq!(
        Sdp::parse(none.as_bytes()).unwrap().telephone_event_pt(),
        None
    );
    assert_eq!(
        s.audio_target().unwrap(),
        Some("10.0.0.1:6000".parse().unwrap())
    );
    assert_eq!(s.audio_direction(), Direction::SendRecv);
    let hold = OFFER.replace("a=sendrecv", "a=sendonly");
    assert_eq!(
        Sdp::parse(hold.as_bytes()).unwrap().audio_direction(),
        Direction::SendOnly
    );
    let old_hold = OFFER.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
    assert_eq!(
        Sdp::parse(old_hold.as_bytes())
            .unwrap()
            .audio_target()
            .unwrap(),
        None
    );
}

#[test]
fn rewrite_anchors_audio_keeps_codecs_refuses_other_streams() {
    let s = Sdp::parse(OFFER.as_bytes()).unwrap();
    let out = s.rewrite("127.0.0.1".parse().unwrap(), 20000);
    assert!(
        out.contains("o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"),
        "{out}"
    );
    assert!(out.contains("c=IN IP4 127.0.0.1\r\n"));
    assert!(!out.contains("10.0.0.1"), "{out}");
    assert!(out.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"));
    for kept in [
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=sendrecv",
    ] {
        assert!(out.contains(kept), "{kept} kept");
    }
    assert!(!out.contains("a=rtcp:"));
    assert!(
        out.contains("m=video 0 RTP/AVP 96\r\n"),
        "video refused: {out}"
    );
    // The rewritten SDP parses and points at the edge.
    let back = Sdp::parse(out.as_bytes()).unwrap();
    assert_eq!(
        back.audio_target().unwrap(),
        Some("127.0.0.1:20000".parse().unwrap())
    );
}

#[test]
fn hold_address_survives_rewrite() {
    let old_hold = OFFER.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
    let out = Sdp::parse(old_hold.as_bytes())
        .unwrap()
        .rewrite("127.0.0.1".parse().unwrap(), 20000);
    assert!(out.contains("c=IN IP4 0.0.0.0"), "{out}");
}

#[test]
fn rejects_bad_sdp() {
    assert_eq!(Sdp::parse(b"hello").unwrap_err(), SdpError::Line(1));
    assert_eq!(Sdp::parse(b"s=x\r\n").unwrap_err(), SdpError::NoVersion);
    assert!(matches!(
        Sdp::parse(b"v=0\r\nc=IN IP4 nowhere\r\n").unwrap_err(),
        SdpError::Address(_)
    ));
    assert_eq!(
        Sdp::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").unwrap_err(),
        SdpError::Media(2)
    );
    let no_audio = Sdp::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5 RTP/AVP 96\r\n").unwrap();
    assert_eq!(no_audio.audio_target().unwrap_err(), SdpError::NoAudio);
}

#[test]
fn the_edges_own_answer_takes_the_first_g711_codec_and_refuses_other_streams() {
    let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
m=video 5000 RTP/AVP 96\r\n";
    let s = Sdp::parse(offer.as_bytes()).unwrap();
    let a = s
        .answer_g711("127.0.0.1".parse().unwrap(), 20000, 7)
        .unwrap();
    let ans = Sdp::parse(a.as_bytes()).unwrap();
    assert_eq!(ans.first_g711_pt(), Some(8), "{a}");
    assert_eq!(ans.telephone_event_pt(), Some(101));
    assert_eq!(
        ans.audio_target().unwrap(),
        Some("127.0.0.1:20000".parse().unwrap())
    );
    assert!(a.contains("m=video 0 RTP/AVP 96\r\n"), "{a}");
    let g722 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n";
    let s = Sdp::parse(g722.as_bytes()).unwrap();
    assert!(s
        .answer_g711("127.0.0.1".parse().unwrap(), 20000, 7)
        .is_none());
}

/// What Chromium offers for an audio-only call (trimmed of nothing that matters).
const CHROMIUM_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 3c1f\r\n\
m=audio 50123 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 127.0.0.1\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 50123 typ host generation 0\r\n\
a=ice-ufrag:Ab1c\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\n\
a=msid:3c1f 9d2e\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\na=ssrc:1234 cname:x\r\n";

#[test]
fn reads_a_browser_offer_and_turns_it_into_plain_g711() {
    let s = Sdp::parse(CHROMIUM_OFFER.as_bytes()).unwrap();
    let w = s.webrtc().unwrap().expect("a WebRTC stream");
    assert_eq!(w.ufrag, "Ab1c");
    assert_eq!(w.pwd, "abcdefghijklmnopqrstuvwx");
    assert!(w.fingerprint.starts_with("0A:1B"));
    assert_eq!(w.setup, "actpass");
    assert!(s.has_g711());
    assert_eq!(s.telephone_event_pt(), Some(126));
    let plain = s.rewrite("192.0.2.7".parse().unwrap(), 40000);
    assert!(
        plain.contains("m=audio 40000 RTP/AVP 0 8 126\r\n"),
        "{plain}"
    );
    for gone in [
        "ice-",
        "fingerprint",
        "setup",
        "mid:",
        "BUNDLE",
        "rtcp-mux",
        "msid",
        "ssrc",
        "extmap",
        "opus",
        "G722",
        "candidate",
        "rtcp-fb",
        "48000",
    ] {
        assert!(!plain.contains(gone), "{gone} left in {plain}");
    }
    assert!(plain.contains("a=rtpmap:126 telephone-event/8000\r\n"));
    assert!(plain.contains("c=IN IP4 192.0.2.7\r\n"));
    // Parses again as plain RTP.
    assert_eq!(Sdp::parse(plain.as_bytes()).unwrap().webrtc(), Ok(None));
}

#[test]
fn offers_a_browser_ice_lite_dtls_and_only_g711() {
    let s = Sdp::parse(OFFER.as_bytes()).unwrap();
    let local = WebRtcLocal {
        ufrag: "edgeu",
        pwd: "edgepassword0123456789ab",
        fingerprint: "AA:BB",
        setup: "actpass",
    };
    let out = s.rewrite_webrtc("127.0.0.1".parse().unwrap(), 40002, &local);
    for want in [
        "a=ice-lite\r\n",
        "a=group:BUNDLE 0\r\n",
        "m=audio 40002 UDP/TLS/RTP/SAVPF 0 8 101\r\n",
        "a=mid:0\r\n",
        "a=ice-ufrag:edgeu\r\n",
        "a=ice-pwd:edgepassword0123456789ab\r\n",
        "a=fingerprint:sha-256 AA:BB\r\n",
        "a=setup:actpass\r\n",
        "a=rtcp-mux\r\n",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40002 typ host\r\n",
        "a=rtpmap:0 PCMU/8000\r\n",
        "a=fmtp:101 0-15\r\n",
        "m=video 0 RTP/AVP 96\r\n",
    ] {
        assert!(out.contains(want), "{want:?} missing from {out}");
    }
    assert!(!out.contains("a=rtcp:6001"));
    let back = Sdp::parse(out.as_bytes())
        .unwrap()
        .webrtc()
        .unwrap()
        .unwrap();
    assert_eq!(back.ufrag, "edgeu");
    assert_eq!(back.fingerprint, "AA:BB");
    // A static PCMU without an rtpmap line gets one (browsers want it spelled out).
    let bare = OFFER.replace("a=rtpmap:0 PCMU/8000\r\n", "");
    let out = Sdp::parse(bare.as_bytes()).unwrap().rewrite_webrtc(
        "127.0.0.1".parse().unwrap(),
        40002,
        &local,
    );
    assert!(out.contains("a=rtpmap:0 PCMU/8000\r\n"));
}

#[test]
fn a_secure_stream_without_ice_or_fingerprint_is_refused() {
    let no_pwd = CHROMIUM_OFFER.replace("a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n", "");
    let s = Sdp::parse(no_pwd.as_bytes()).unwrap();
    assert_eq!(s.webrtc(), Err(SdpError::WebRtc("no a=ice-pwd")));
    let sha1 = CHROMIUM_OFFER.replace("sha-256", "sha-1");
    let s = Sdp::parse(sha1.as_bytes()).unwrap();
    assert_eq!(
        s.webrtc(),
        Err(SdpError::WebRtc("no a=fingerprint:sha-256"))
    );
    let opus_only = CHROMIUM_OFFER.replace(" 111 63 9 0 8 13 110 126", " 111 63");
    assert!(!Sdp::parse(opus_only.as_bytes()).unwrap().has_g711());
}
