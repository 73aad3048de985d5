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
    assert_eq!(repair(&mut c, 8000, len).unwrap(), 3);
    let bytes = c.into_inner();
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 12);
    assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 12);
    assert!(repair(&mut io::Cursor::new(vec![0u8; 10]), 8000, 10).is_err());
}
