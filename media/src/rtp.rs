//! RTP (RFC 3550) fixed header parsing and writing, and the one-byte header
//! extension (RFC 8285) that carries a sender's wall-clock send time, used by
//! `loadtest` to measure one-way delay when both ends share a clock.

/// Extension element id carrying the 64-bit send time in microseconds since the
/// Unix epoch.
pub const SEND_TIME_EXT_ID: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed RTP packet: header, payload range and the send time if present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket {
    pub header: RtpHeader,
    pub payload_offset: usize,
    pub payload_len: usize,
    pub send_time_us: Option<u64>,
}

/// Parse an RTP packet. `None` for anything that is not RTP version 2 or is
/// truncated. RTCP (payload types 200–204 with the marker bit) is rejected too.
pub fn parse(buf: &[u8]) -> Option<RtpPacket> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let pt = buf[1] & 0x7F;
    if (72..=76).contains(&pt) {
        return None; // RTCP SR/RR/SDES/BYE/APP share the port under rtcp-mux
    }
    let cc = (buf[0] & 0x0F) as usize;
    let mut off = 12 + cc * 4;
    if buf.len() < off {
        return None;
    }
    let mut send_time_us = None;
    if buf[0] & 0x10 != 0 {
        if buf.len() < off + 4 {
            return None;
        }
        let profile = u16::from_be_bytes([buf[off], buf[off + 1]]);
        let words = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
        let ext_end = off + 4 + words * 4;
        if buf.len() < ext_end {
            return None;
        }
        if profile == 0xBEDE {
            let mut i = off + 4;
            while i < ext_end {
                let b = buf[i];
                if b == 0 {
                    i += 1;
                    continue;
                }
                let id = b >> 4;
                let len = (b & 0x0F) as usize + 1;
                if id == 15 || i + 1 + len > ext_end {
                    break;
                }
                if id == SEND_TIME_EXT_ID && len == 8 {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&buf[i + 1..i + 9]);
                    send_time_us = Some(u64::from_be_bytes(t));
                }
                i += 1 + len;
            }
        }
        off = ext_end;
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = *buf.last()? as usize;
        if pad == 0 || pad > end - off {
            return None;
        }
        end -= pad;
    }
    Some(RtpPacket {
        header: RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: pt,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        },
        payload_offset: off,
        payload_len: end - off,
        send_time_us,
    })
}

/// Write a header (with the send-time extension when `send_time_us` is given)
/// into `buf`; returns the header length. `buf` must hold at least 24 bytes.
pub fn write_header(buf: &mut [u8], h: &RtpHeader, send_time_us: Option<u64>) -> usize {
    buf[0] = 0x80 | if send_time_us.is_some() { 0x10 } else { 0 };
    buf[1] = h.payload_type & 0x7F | if h.marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&h.sequence.to_be_bytes());
    buf[4..8].copy_from_slice(&h.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
    match send_time_us {
        None => 12,
        Some(t) => {
            // 0xBEDE, length 3 words: [id=1,len=8-1][8 bytes][3 bytes padding]
            buf[12..14].copy_from_slice(&0xBEDEu16.to_be_bytes());
            buf[14..16].copy_from_slice(&3u16.to_be_bytes());
            buf[16] = (SEND_TIME_EXT_ID << 4) | 7;
            buf[17..25].copy_from_slice(&t.to_be_bytes());
            buf[25..28].fill(0);
            28
        }
    }
}

#[cfg(test)]
#[path = "rtp_tests.rs"]
mod tests;
