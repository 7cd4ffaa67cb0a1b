//! Authentication of send-API requests: `Authorization: Bearer <key>` → the key stored under its
//! hash → the scope the route needs. The decision itself is the core's
//! ([`mailgate_core::api_key::authorize`]); this module reads the header, looks the key up and
//! answers refusals with the JSON error shape (401 with `WWW-Authenticate`, or 403).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{ApiKeyStoreError, DynamoDbApiKeys};
use mailgate_core::api_key::{authorize, parse_authorization};
use mailgate_core::{AuthFailure, AuthenticatedKey, Requirement};
use mailgate_lambda::http::ApiError;

/// Checks API keys against the api-keys table.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: DynamoDbApiKeys,
}

impl Authenticator {
    /// Authenticates against `keys`.
    pub fn new(keys: DynamoDbApiKeys) -> Self {
        Self { keys }
    }

    /// The caller's key if it is valid and meets `requirement`; otherwise the response to send.
    pub async fn authenticate(
        &self,
        request: &Request,
        requirement: Requirement,
    ) -> Result<AuthenticatedKey, Response<Body>> {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let secret = parse_authorization(header).map_err(|f| denied(&f))?;
        let hash = secret.hash();
        let found = self.keys.find(&hash).await.map_err(|e| unavailable(&e))?;
        let key = authorize(&hash, found.as_ref(), requirement).map_err(|f| {
            tracing::info!(
                code = f.code(),
                key_id = found.as_ref().map_or("-", |r| r.id.as_str()),
                "request refused"
            );
            denied(&f)
        })?;
        tracing::debug!(key_id = %key.id, "request authenticated");
        Ok(key)
    }
}

/// The response refusing a request: the error shape, plus the `WWW-Authenticate` challenge of
/// RFC 6750 (401: which error; 403: which scope).
pub fn denied(failure: &AuthFailure) -> Response<Body> {
    let status = StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = ApiError::new(status, failure.code(), failure.to_string()).into_response();
    let challenge = match failure {
        AuthFailure::MissingApiKey => "Bearer".to_owned(),
        AuthFailure::MalformedApiKey(_) => r#"Bearer error="invalid_request""#.to_owned(),
        AuthFailure::InvalidApiKey => r#"Bearer error="invalid_token""#.to_owned(),
        AuthFailure::InsufficientScope { needed } => {
            format!(r#"Bearer error="insufficient_scope", scope="{needed}""#)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The key store failed: the cause is logged, the caller gets an opaque answer it may retry.
fn unavailable(err: &ApiKeyStoreError) -> Response<Body> {
    tracing::error!(error = %err, "could not look up an API key");
    match err {
        ApiKeyStoreError::Corrupt { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the API key could not be checked; try again",
        ),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::Scope;

    #[test]
    fn refusals_carry_their_status_code_and_challenge() {
        let r = denied(&AuthFailure::MissingApiKey);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");

        let r = denied(&AuthFailure::InvalidApiKey);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );

        let r = denied(&AuthFailure::InsufficientScope {
            needed: Scope::SuppressionsWrite,
        });
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="suppressions:write""#
        );
        match r.body() {
            Body::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t).unwrap();
                assert_eq!(v["error"]["code"], "insufficient_scope");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("suppressions:write")
                );
            }
            other => panic!("unexpected body {other:?}"),
        }
    }
}
