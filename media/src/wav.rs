//! A streaming stereo 16-bit PCM WAV writer: the header is written first with zero
//! sizes and patched when the recording is finished.

use std::io::{self, Seek, SeekFrom, Write};

pub struct StereoWav<W: Write + Seek> {
    w: W,
    rate: u32,
    frames: u64,
    buf: Vec<u8>,
}

impl<W: Write + Seek> StereoWav<W> {
    pub fn new(mut w: W, rate: u32) -> io::Result<Self> {
        w.write_all(&header(rate, 0))?;
        Ok(StereoWav {
            w,
            rate,
            frames: 0,
            buf: Vec::with_capacity(4 * 320),
        })
    }

    /// Append interleaved samples: `left[i], right[i]`.
    pub fn write(&mut self, left: &[i16], right: &[i16]) -> io::Result<()> {
        self.buf.clear();
        for (l, r) in left.iter().zip(right) {
            self.buf.extend_from_slice(&l.to_le_bytes());
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.frames += left.len().min(right.len()) as u64;
        self.w.write_all(&self.buf)
    }

    /// Patch the sizes and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let data = self.frames * 4;
        if data > u32::MAX as u64 - 36 {
            return Err(io::Error::other("recording too long for a WAV file"));
        }
        self.w.seek(SeekFrom::Start(0))?;
        self.w.write_all(&header(self.rate, data as u32))?;
        self.w.seek(SeekFrom::End(0))?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Rewrite the header of a stereo 16-bit WAV that [`StereoWav`] was writing when the
/// process died (`file_len` bytes on disk, header sizes still zero). Returns the
/// whole stereo frames the file holds; the caller truncates the file to
/// `44 + frames * 4` bytes (a torn last frame is dropped).
pub fn repair<W: Write + Seek>(w: &mut W, rate: u32, file_len: u64) -> io::Result<u64> {
    if file_len < 44 {
        return Err(io::Error::other("shorter than a WAV header"));
    }
    let frames = ((file_len - 44) / 4).min((u32::MAX as u64 - 36) / 4);
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header(rate, (frames * 4) as u32))?;
    w.flush()?;
    Ok(frames)
}

fn header(rate: u32, data: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // stereo
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 4).to_le_bytes());
    h[32..34].copy_from_slice(&4u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

#[cfg(test)]
#[path = "wav_tests.rs"]
mod tests;
