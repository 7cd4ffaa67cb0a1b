//! JSON responses, including the error body every mailgate endpoint answers with:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

/// A machine-readable error answered to an HTTP caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable, snake_case code for programs.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// The request field at fault, e.g. `to[2]`, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// The same error, pointing at a request field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The JSON response for this error.
    pub fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: &'a ApiError,
        }
        json_response(self.status, &Envelope { error: &self })
    }
}

/// A JSON response with the given status. Serialisation of our own types cannot fail; if it ever
/// did, the caller gets an opaque 500 rather than a panic.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(text) => (status, text),
        Err(err) => {
            tracing::error!(error = %err, "could not serialise a response body");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":{"code":"internal_error","message":"internal error"}}"#.to_owned(),
            )
        }
    };
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn errors_have_the_documented_shape() {
        let r = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_address", "bad")
            .with_field("to[2]")
            .into_response();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(&r),
            serde_json::json!({"error": {"code": "invalid_address", "message": "bad", "field": "to[2]"}})
        );
    }

    #[test]
    fn field_is_omitted_when_absent() {
        let r = ApiError::new(StatusCode::NOT_FOUND, "not_found", "no route").into_response();
        assert_eq!(
            body_json(&r),
            serde_json::json!({"error": {"code": "not_found", "message": "no route"}})
        );
    }
}
