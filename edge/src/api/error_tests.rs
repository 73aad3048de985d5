//! Unit tests of `error.rs`.

use super::*;

#[test]
fn command_and_chat_errors_get_their_status() {
    assert_eq!(
        ApiError::from(CommandError::NoCall).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ApiError::from(CommandError::NoPorts).status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        ApiError::from(ChatError::Ended).status,
        StatusCode::CONFLICT
    );
    let e = ApiError::from(ChatError::NotYours);
    assert_eq!(e.status, StatusCode::FORBIDDEN);
    assert_eq!(e.message, "this chat is not yours");
}
