//! Unit tests of `wav.rs`.

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
    assert_eq!(repair(&mut c, 8000, 2, len).unwrap(), 3);
    let bytes = c.into_inner();
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 12);
    assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 12);
    assert!(repair(&mut io::Cursor::new(vec![0u8; 10]), 8000, 2, 10).is_err());
}

#[test]
fn mono_keeps_the_left_channel_and_says_so_in_the_header() {
    let mut w = StereoWav::mono(io::Cursor::new(Vec::new()), 8000).unwrap();
    w.write(&[1, 2, 3], &[9, 9, 9]).unwrap();
    let b = w.finish().unwrap().into_inner();
    assert_eq!(b.len(), 44 + 6);
    assert_eq!(u16::from_le_bytes([b[22], b[23]]), 1, "channels");
    assert_eq!(
        u32::from_le_bytes([b[28], b[29], b[30], b[31]]),
        16000,
        "byte rate"
    );
    assert_eq!(u16::from_le_bytes([b[32], b[33]]), 2, "block align");
    assert_eq!(u32::from_le_bytes([b[40], b[41], b[42], b[43]]), 6);
    assert_eq!(&b[44..], &[1, 0, 2, 0, 3, 0]);
    // A mono file left by a crash: 3 whole frames and a torn byte.
    let mut torn = b.clone();
    torn[40..44].fill(0);
    torn.push(7);
    let len = torn.len() as u64;
    let mut c = io::Cursor::new(torn);
    assert_eq!(repair(&mut c, 8000, 1, len).unwrap(), 3);
}
