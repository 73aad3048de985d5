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
