//! Bearer-token authentication and role checks (agent < supervisor < admin). Tokens
//! are never logged.

use super::state::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use control::Role;

pub use super::error::error;

/// Check the bearer token and the role; the token itself is never logged.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    at_least: Role,
) -> Result<String, Response> {
    authorize_user(state, headers, at_least).map(|u| u.name)
}

/// The signed-in user (name and role) when the token allows `at_least`.
pub fn authorize_user(
    state: &AppState,
    headers: &HeaderMap,
    at_least: Role,
) -> Result<control::User, Response> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(error(StatusCode::UNAUTHORIZED, "missing bearer token"));
    };
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Authorization must be 'Bearer <token>'",
        ));
    };
    let snap = state.snapshot.load();
    let Some(user) = snap.user_by_token(token) else {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid token"));
    };
    if !user.has_role(at_least) {
        tracing::info!(user = %user.name, "forbidden: role too low");
        return Err(error(
            StatusCode::FORBIDDEN,
            "your role does not allow this",
        ));
    }
    Ok(user.clone())
}

/// The body length a request declares (`Content-Length`), if it declares a valid one:
/// checked against a limit before any body byte is read.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
