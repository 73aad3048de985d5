//! RFC 4733 telephone-events: payloads for sending a digit and a receiver that
//! reports each digit once.

/// Event code of a DTMF character (0-9, *, #, A-D).
pub fn event_code(c: char) -> Option<u8> {
    Some(match c {
        '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (c as u8 - b'A'),
        'a'..='d' => 12 + (c as u8 - b'a'),
        _ => return None,
    })
}

pub fn event_char(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// The 4-byte event payload.
pub fn payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        event,
        if end { 0x80 } else { 0 } | (volume & 0x3F),
        d[0],
        d[1],
    ]
}

/// Reports each received event once (on its first end packet), ignoring the
/// retransmitted end packets of the same event (same RTP timestamp).
#[derive(Debug, Default)]
pub struct Receiver {
    last_ended_ts: Option<u32>,
}

impl Receiver {
    pub fn on_payload(&mut self, rtp_ts: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 || payload[1] & 0x80 == 0 {
            return None;
        }
        if self.last_ended_ts == Some(rtp_ts) {
            return None;
        }
        self.last_ended_ts = Some(rtp_ts);
        event_char(payload[0])
    }
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
