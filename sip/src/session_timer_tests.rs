use super::*;

fn headers(lines: &[(&str, &str)]) -> Headers {
    let mut h = Headers::default();
    for (n, v) in lines {
        h.push(match n.to_ascii_lowercase().as_str() {
            "supported" => Header::Supported(rsip::headers::Supported::new(*v)),
            "allow" => Header::Allow(rsip::headers::Allow::new(*v)),
            _ => Header::Other((*n).into(), (*v).into()),
        });
    }
    h
}

const EDGE: Settings = Settings {
    session_expires: 1800,
    min_se: 90,
};

#[test]
fn session_expires_values() {
    assert_eq!(
        SessionExpires::parse("1800;refresher=uac"),
        Some(SessionExpires {
            delta: 1800,
            refresher: Some(Refresher::Uac)
        })
    );
    assert_eq!(
        SessionExpires::parse(" 90 ; REFRESHER = UAS ; x=1"),
        Some(SessionExpires {
            delta: 90,
            refresher: Some(Refresher::Uas)
        })
    );
    assert_eq!(SessionExpires::parse("abc"), None);
    assert_eq!(SessionExpires::parse("100;refresher=both"), None);
    assert_eq!(
        session_expires(&headers(&[("x", "300")]))
            .unwrap()
            .unwrap()
            .delta,
        300
    );
    assert!(session_expires(&headers(&[("Session-Expires", "soon")])).is_err());
}

#[test]
fn a_uas_grants_what_rfc_4028_section_9_says() {
    // Too brief: 422 with our Min-SE.
    let h = headers(&[("Session-Expires", "60"), ("Supported", "timer")]);
    assert_eq!(EDGE.grant(&h), Ok(Grant::TooBrief(90)));
    // A capable peer that asks to refresh does; the interval is capped at ours.
    let h = headers(&[
        ("Session-Expires", "3600;refresher=uac"),
        ("Supported", "100rel, timer"),
    ]);
    assert_eq!(
        EDGE.grant(&h),
        Ok(Grant::On(Negotiated {
            interval: 1800,
            edge_refreshes: false
        }))
    );
    // ...but never below the request's Min-SE.
    let h = headers(&[
        ("Session-Expires", "3600"),
        ("Min-SE", "2400"),
        ("Supported", "timer"),
    ]);
    assert_eq!(
        EDGE.grant(&h),
        Ok(Grant::On(Negotiated {
            interval: 2400,
            edge_refreshes: false
        }))
    );
    // A peer without timer support (a proxy asked for the timer) cannot refresh.
    let h = headers(&[("Session-Expires", "600;refresher=uac")]);
    assert_eq!(
        EDGE.grant(&h),
        Ok(Grant::On(Negotiated {
            interval: 600,
            edge_refreshes: true
        }))
    );
    // No timer asked for: the edge still runs one (to find vanished peers) and
    // refreshes it itself unless the peer can.
    assert_eq!(
        EDGE.grant(&headers(&[])),
        Ok(Grant::On(Negotiated {
            interval: 1800,
            edge_refreshes: true
        }))
    );
    assert_eq!(
        EDGE.grant(&headers(&[
            ("Supported", "timer"),
            ("Session-Expires", "900;refresher=uas")
        ])),
        Ok(Grant::On(Negotiated {
            interval: 900,
            edge_refreshes: true
        }))
    );
    // Off at the edge: nothing is granted, whatever is asked.
    let off = Settings {
        session_expires: 0,
        min_se: 90,
    };
    assert_eq!(
        off.grant(&headers(&[("Session-Expires", "10")])),
        Ok(Grant::Off)
    );
    assert!(off.request_headers(1800, None).is_empty());
}

#[test]
fn a_uac_learns_the_timer_from_the_2xx() {
    assert_eq!(from_answer(&headers(&[])), None);
    assert_eq!(
        from_answer(&headers(&[("Session-Expires", "1200;refresher=uas")])),
        Some(Negotiated {
            interval: 1200,
            edge_refreshes: false
        })
    );
    assert_eq!(
        from_answer(&headers(&[("Session-Expires", "1200;refresher=uac")])),
        Some(Negotiated {
            interval: 1200,
            edge_refreshes: true
        })
    );
}

#[test]
fn refresh_at_half_and_expiry_before_the_interval() {
    let n = Negotiated {
        interval: 1800,
        edge_refreshes: true,
    };
    assert_eq!(n.refresh_after(), Duration::from_secs(900));
    assert_eq!(n.expire_after(), Duration::from_secs(1768));
    let short = Negotiated {
        interval: 90,
        edge_refreshes: false,
    };
    assert_eq!(short.expire_after(), Duration::from_secs(60));
    assert_eq!(short.in_response().refresher, Some(Refresher::Uac));
    assert_eq!(n.in_request().refresher, Some(Refresher::Uac));
    assert_eq!(n.in_response().refresher, Some(Refresher::Uas));
    assert!(allows_update(&headers(&[("Allow", "INVITE, ACK, UPDATE")])));
    assert!(!allows_update(&headers(&[("Allow", "INVITE, ACK")])));
}
