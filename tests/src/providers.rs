//! Provider HTTP APIs as local servers answering as the provider documents: [`FakeProvider`]
//! serves every call through a test's answer function (seeing the call's method, path,
//! headers, body and number) on a loopback port, counts the calls, and can be slowed down;
//! [`sendgrid`] has SendGrid's documented answers. Point the provider's `*_BASE_URL` at
//! [`FakeProvider::base_url`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

/// One call a fake provider received.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body.
    pub body: Bytes,
    /// Its number: 1 for the first call.
    pub n: u32,
}

impl ProviderCall {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A provider API on a loopback port (see the module docs).
#[derive(Debug, Clone)]
pub struct FakeProvider {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    calls: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU64>,
}

impl FakeProvider {
    /// Serves every call with `answer`.
    pub async fn serve<F>(answer: F) -> Self
    where
        F: Fn(&ProviderCall) -> Response + Send + Sync + 'static,
    {
        let calls = Arc::new(AtomicU32::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let answer = Arc::new(answer);
        let (c, d) = (calls.clone(), delay_ms.clone());
        let app = axum::Router::new().fallback(move |request: Request| {
            let (c, d, answer) = (c.clone(), d.clone(), answer.clone());
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let call = ProviderCall {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                    n,
                };
                let response = answer(&call);
                let delay = d.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}"),
            calls,
            delay_ms,
        }
    }

    /// How many calls it received.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers every later call only after `delay` (e.g. to outlast the client's timeout).
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// SendGrid's documented answers of `POST /v3/mail/send`.
pub mod sendgrid {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};

    /// 202 Accepted with the message id in `X-Message-Id`.
    pub fn accepted(message_id: &str) -> Response {
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Ok(value) = HeaderValue::from_str(message_id) {
            response.headers_mut().insert("x-message-id", value);
        }
        response
    }

    /// `status` (a 5xx) with SendGrid's error body.
    pub fn server_error(status: StatusCode) -> Response {
        let body = r#"{"errors":[{"field":null,"message":"Internal server error","help":null}]}"#;
        (status, body).into_response()
    }

    /// 429 with SendGrid's error body and `Retry-After: <seconds>`.
    pub fn throttled(retry_after_secs: u32) -> Response {
        let body = r#"{"errors":[{"field":null,"message":"too many requests","help":null}]}"#;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after_secs));
        response
    }
}
