//! The SDP offer/answer loadtest puts in its INVITEs and 200s: G.711 µ-law and
//! A-law plus telephone-event.

use std::net::IpAddr;

pub fn offer(ip: IpAddr, port: u16, session: u64) -> String {
    let ipv = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=loadtest {session} {session} IN {ipv} {ip}\r\ns=loadtest\r\nc=IN {ipv} {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}
