//! The app-webhook POST on reqwest, behind the core's [`AppWebhookSender`] port: a 10 s timeout,
//! no redirects followed, the answer read as Standard Webhooks senders read it.

use std::time::{Duration, SystemTime};

use mailgate_core::ports::{AppWebhookSender, BoxFuture, SignedWebhook, WebhookAnswer as Answer};
use mailgate_services::app_delivery::MAX_RETRY_DELAY;
use reqwest::StatusCode;

/// How long one POST may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads an HTTP answer: success is 2xx only (3xx is a failure: redirects are not followed).
pub fn classify_answer(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Answer {
    if status.is_success() {
        return Answer::Delivered;
    }
    if status == StatusCode::GONE {
        return Answer::Gone;
    }
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && let Some(wait) = mailgate_providers::send::retry_after(headers, now)
    {
        return Answer::RetryAfter(wait.min(MAX_RETRY_DELAY));
    }
    Answer::Failed(format!("HTTP {}", status.as_u16()))
}

/// The function cannot be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// POSTs signed app webhooks with reqwest: a 10 s timeout, no redirects.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender(mailgate_providers::http_client::LazyHttpClient);

impl HttpWebhookSender {
    /// The sender with its HTTP client, built on the first POST (not at cold start; it trusts
    /// the system's roots, read once per process). Cannot fail here any more; the `Result`
    /// stays for its callers.
    pub fn new() -> Result<Self, WiringError> {
        Ok(Self(mailgate_providers::http_client::LazyHttpClient::new(
            |builder| {
                builder
                    .timeout(REQUEST_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("mailgate-dispatcher/", env!("CARGO_PKG_VERSION")))
            },
        )))
    }
}

impl AppWebhookSender for HttpWebhookSender {
    fn post<'a>(&'a self, request: &'a SignedWebhook, now: SystemTime) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let client = match self.0.get() {
                Ok(client) => client,
                Err(_) => return Answer::Failed("the HTTP client could not be built".to_owned()),
            };
            let sent = client
                .post(request.url.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", &request.webhook_id)
                .header("webhook-timestamp", request.timestamp.to_string())
                .header("webhook-signature", &request.signature)
                .body(request.body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => classify_answer(response.status(), response.headers(), now),
                // Named without the URL (it may carry tokens).
                Err(err) if err.is_timeout() => Answer::Failed("timed out".to_owned()),
                Err(err) if err.is_connect() => Answer::Failed("could not connect".to_owned()),
                Err(_) => Answer::Failed("request failed".to_owned()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::UNIX_EPOCH;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_2xx_is_success_and_410_is_gone() {
        let now = SystemTime::now();
        assert_eq!(
            classify_answer(StatusCode::NO_CONTENT, &headers(None), now),
            Answer::Delivered
        );
        assert_eq!(
            classify_answer(StatusCode::FOUND, &headers(None), now),
            Answer::Failed("HTTP 302".into())
        );
        assert_eq!(
            classify_answer(StatusCode::GONE, &headers(None), now),
            Answer::Gone
        );
        assert_eq!(
            classify_answer(StatusCode::BAD_REQUEST, &headers(Some("5")), now),
            Answer::Failed("HTTP 400".into())
        );
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            classify_answer(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("7")), now),
            Answer::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify_answer(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("Sun, 06 Nov 1994 08:49:47 GMT")),
                now
            ),
            Answer::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            classify_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(Some("999999")),
                now
            ),
            Answer::RetryAfter(MAX_RETRY_DELAY)
        );
        assert_eq!(
            classify_answer(StatusCode::SERVICE_UNAVAILABLE, &headers(None), now),
            Answer::Failed("HTTP 503".into())
        );
    }
}
