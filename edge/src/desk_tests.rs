//! Unit tests of `desk.rs`.

use super::*;

#[test]
fn chat_keys_and_file_tokens_are_fresh_os_randomness() {
    let a = keys();
    let b = keys();
    assert_ne!(a.token, b.token);
    assert_ne!(a.id, b.id);
    assert_ne!(a.token[..8], a.id[..]);
    let t = secret_token();
    assert_eq!(t.len(), 32);
    assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(t, secret_token());
}
