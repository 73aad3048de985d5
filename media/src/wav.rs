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
mod tests {
    use super::*;

    #[test]
    fn writes_a_valid_stereo_wav() {
        let mut w = StereoWav::new(io::Cursor::new(Vec::new()), 8000).unwrap();
        w.write(&[1, 2, 3], &[-1, -2, -3]).unwrap();
        w.write(&[4], &[-4]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 16);
        assert_eq!(u16::from_le_bytes(bytes[22..24].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 8000);
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 16);
        let samples: Vec<i16> = bytes[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(samples, vec![1, -1, 2, -2, 3, -3, 4, -4]);
    }

    #[test]
    fn repair_patches_sizes_of_an_unfinished_file() {
        let mut w = StereoWav::new(io::Cursor::new(Vec::new()), 8000).unwrap();
        w.write(&[1, 2, 3], &[-1, -2, -3]).unwrap();
        // Killed: header sizes still zero; a torn half frame at the end.
        let mut c = w.w;
        c.write_all(&[9, 9]).unwrap();
        let len = c.get_ref().len() as u64;
        assert_eq!(
            u32::from_le_bytes(c.get_ref()[40..44].try_into().unwrap()),
            0
        );
        assert_eq!(repair(&mut c, 8000, len).unwrap(), 3);
        let bytes = c.into_inner();
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 12);
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 12);
        assert!(repair(&mut io::Cursor::new(vec![0u8; 10]), 8000, 10).is_err());
    }
}
