//! G.711 µ-law and A-law (ITU-T G.711) sample conversion.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Linear 16-bit PCM → µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    if s > CLIP {
        s = CLIP;
    }
    s += BIAS;
    // Segment: position of the highest set bit among bits 7..14.
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// µ-law → linear 16-bit PCM.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let s = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if sign != 0 {
        -s as i16
    } else {
        s as i16
    }
}

/// Linear 16-bit PCM → A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0x00
    };
    if s > 32767 {
        s = 32767;
    }
    let out = if s < 256 {
        (s >> 4) as u8
    } else {
        let mut exponent = 1;
        while exponent < 7 && s >= (256 << exponent) {
            exponent += 1;
        }
        let mantissa = (s >> (exponent + 3)) & 0x0F;
        ((exponent << 4) | mantissa) as u8
    };
    (out | sign) ^ 0x55
}

/// A-law → linear 16-bit PCM.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let sign = a & 0x80;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let s = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        s as i16
    } else {
        -s as i16
    }
}

#[cfg(test)]
#[path = "g711_tests.rs"]
mod tests;
