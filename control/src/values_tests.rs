//! Unit tests of `values.rs`.

use super::*;

#[test]
fn listen_addresses() {
    let l: ListenAddr = "udp:127.0.0.1:5060".parse().unwrap();
    assert_eq!(l.transport, Transport::Udp);
    assert_eq!(l.addr, "127.0.0.1:5060".parse().unwrap());
    let l: ListenAddr = "tcp:[::1]:5070".parse().unwrap();
    assert_eq!(l.transport, Transport::Tcp);
    let l: ListenAddr = "TLS:127.0.0.1:5061".parse().unwrap();
    assert_eq!(l.transport, Transport::Tls);
    assert!(l.transport.is_reliable());
    assert_eq!(l.to_string(), "tls:127.0.0.1:5061");
    assert!("sctp:127.0.0.1:5060".parse::<ListenAddr>().is_err());
    assert!("udp:localhost".parse::<ListenAddr>().is_err());
}

#[test]
fn port_ranges() {
    let r: PortRange = "20000-29999".parse().unwrap();
    assert_eq!((r.first, r.last), (20000, 29999));
    assert!("20000-20001".parse::<PortRange>().is_err());
    assert!("x-y".parse::<PortRange>().is_err());
}

#[test]
fn targets() {
    let t: SipTarget = "sip:service@127.0.0.1:5090".parse().unwrap();
    assert_eq!(t.addr, "127.0.0.1:5090".parse().unwrap());
    assert_eq!(t.user.as_deref(), Some("service"));
    assert_eq!(t.transport, Transport::Udp);
    let t: SipTarget = "sip:1001@127.0.0.1;transport=tcp".parse().unwrap();
    assert_eq!(t.addr.port(), 5060);
    assert_eq!(t.transport, Transport::Tcp);
    assert!("sip:a@pbx.example.com".parse::<SipTarget>().is_err());
    assert!("http://x".parse::<SipTarget>().is_err());
}

#[test]
fn tls_targets_default_to_5061() {
    let t: SipTarget = "sips:1001@127.0.0.1".parse().unwrap();
    assert_eq!((t.transport, t.addr.port()), (Transport::Tls, 5061));
    assert_eq!(t.uri, "sips:1001@127.0.0.1");
    let t: SipTarget = "sip:1001@127.0.0.1;transport=tls".parse().unwrap();
    assert_eq!((t.transport, t.addr.port()), (Transport::Tls, 5061));
    let t: SipTarget = "sip:1001@127.0.0.1:6061;transport=tls".parse().unwrap();
    assert_eq!(t.addr.port(), 6061);
    // sips: with transport=tcp is TLS over TCP (RFC 3261 §26.2.2); UDP cannot carry it.
    let t: SipTarget = "sips:1001@127.0.0.1;transport=tcp".parse().unwrap();
    assert_eq!(t.transport, Transport::Tls);
    let e = "sips:1001@127.0.0.1;transport=udp"
        .parse::<SipTarget>()
        .unwrap_err();
    assert!(e.contains("with sips:"), "{e}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("50MB").unwrap(), 50_000_000);
    assert_eq!(parse_size("64KiB").unwrap(), 65_536);
    assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("512").unwrap(), 512);
    assert!(parse_size("5XB").is_err());
    assert!(parse_size("0MB").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
    assert!(parse_duration("soon").is_err());
}
