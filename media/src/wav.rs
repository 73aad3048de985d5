//! A streaming stereo 16-bit PCM WAV writer: the header is written first with zero
//! sizes and patched when the recording is finished.

use std::io::{self, Seek, SeekFrom, Write};

/// A 16-bit PCM WAV being written: stereo (calls: customer left, agent right) or
/// mono (voicemail: the left channel only).
pub struct StereoWav<W: Write + Seek> {
    w: W,
    rate: u32,
    channels: u16,
    frames: u64,
    buf: Vec<u8>,
}

impl<W: Write + Seek> StereoWav<W> {
    pub fn new(w: W, rate: u32) -> io::Result<Self> {
        Self::with_channels(w, rate, 2)
    }

    /// A mono file: [`StereoWav::write`] keeps `left` only.
    pub fn mono(w: W, rate: u32) -> io::Result<Self> {
        Self::with_channels(w, rate, 1)
    }

    fn with_channels(mut w: W, rate: u32, channels: u16) -> io::Result<Self> {
        w.write_all(&header(rate, 0, channels))?;
        Ok(StereoWav {
            w,
            rate,
            channels,
            frames: 0,
            buf: Vec::with_capacity(4 * 320),
        })
    }

    /// Append interleaved samples: `left[i], right[i]` (mono: `left[i]`).
    pub fn write(&mut self, left: &[i16], right: &[i16]) -> io::Result<()> {
        self.buf.clear();
        if self.channels == 1 {
            for l in left {
                self.buf.extend_from_slice(&l.to_le_bytes());
            }
            self.frames += left.len() as u64;
            return self.w.write_all(&self.buf);
        }
        for (l, r) in left.iter().zip(right) {
            self.buf.extend_from_slice(&l.to_le_bytes());
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.frames += left.len().min(right.len()) as u64;
        self.w.write_all(&self.buf)
    }

    /// Patch the sizes and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let data = self.frames * 2 * u64::from(self.channels);
        if data > u32::MAX as u64 - 36 {
            return Err(io::Error::other("recording too long for a WAV file"));
        }
        self.w.seek(SeekFrom::Start(0))?;
        self.w
            .write_all(&header(self.rate, data as u32, self.channels))?;
        self.w.seek(SeekFrom::End(0))?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Rewrite the header of a 16-bit WAV of `channels` (1 or 2) that [`StereoWav`] was
/// writing when the process died (`file_len` bytes on disk, header sizes still zero).
/// Returns the whole frames the file holds; the caller truncates the file to
/// `44 + frames * 2 * channels` bytes (a torn last frame is dropped).
pub fn repair<W: Write + Seek>(
    w: &mut W,
    rate: u32,
    channels: u16,
    file_len: u64,
) -> io::Result<u64> {
    if file_len < 44 {
        return Err(io::Error::other("shorter than a WAV header"));
    }
    let size = 2 * u64::from(channels.clamp(1, 2));
    let frames = ((file_len - 44) / size).min((u32::MAX as u64 - 36) / size);
    w.seek(SeekFrom::Start(0))?;
    w.write_all(&header(rate, (frames * size) as u32, channels.clamp(1, 2)))?;
    w.flush()?;
    Ok(frames)
}

fn header(rate: u32, data: u32, channels: u16) -> [u8; 44] {
    let block = 2 * channels;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

#[cfg(test)]
#[path = "wav_tests.rs"]
mod tests;
