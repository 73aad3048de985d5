//! The error of every API request: a status and a message, sent as the documented
//! JSON body `{"error": "...", "status": N}`. The chat service's and the call
//! commands' errors convert with the status their meaning calls for.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use b2bua::CommandError;
use chat::ChatError;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.message, "status": self.status.as_u16() })),
        )
            .into_response()
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        e.into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let status = match e {
            CommandError::NoCall
            | CommandError::NoMonitor
            | CommandError::NoParticipant
            | CommandError::NoTarget(_) => StatusCode::NOT_FOUND,
            CommandError::NotAnswered
            | CommandError::NotRecording
            | CommandError::Conflict(_)
            | CommandError::Closed(_) => StatusCode::CONFLICT,
            CommandError::NotYours | CommandError::Forbidden(_) => StatusCode::FORBIDDEN,
            CommandError::NoPorts => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> ApiError {
        let status = match e {
            ChatError::NoChat | ChatError::NoQueue => StatusCode::NOT_FOUND,
            ChatError::NotYours | ChatError::NotOffered | ChatError::NotConsulting => {
                StatusCode::FORBIDDEN
            }
            ChatError::BadText | ChatError::BadField(..) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A JSON error response (for handlers that answer with a `Response`).
pub fn error(status: StatusCode, msg: &str) -> Response {
    ApiError::new(status, msg).into_response()
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
