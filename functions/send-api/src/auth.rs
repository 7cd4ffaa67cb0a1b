//! Authentication of send-API requests: this module reads the `Authorization` header, calls
//! the authentication service ([`mailgate_services::auth`]) and answers refusals with the JSON
//! error shape (401 with `WWW-Authenticate`, or 403; 503 when the key store fails).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::{AuthFailure, AuthenticatedKey, Requirement};
use mailgate_lambda::http::ApiError;
use mailgate_services::auth::{AuthError, Authentication};

/// The caller's key if it is valid and meets `requirement`; otherwise the response to send.
pub async fn authenticate(
    auth: &Authentication,
    request: &Request,
    requirement: Requirement,
) -> Result<AuthenticatedKey, Response<Body>> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    auth.authenticate(header, requirement)
        .await
        .map_err(refusal)
}

/// The response to an authentication that did not succeed.
pub fn refusal(error: AuthError) -> Response<Body> {
    match error {
        AuthError::Refused(failure) => denied(&failure),
        AuthError::Store(e) => {
            crate::answers::store_failed(&e, "could not look up an API key", "the API key store")
        }
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
