//! The sending port every provider implements, and what the HTTP providers share: the secret
//! newtype, the reqwest client built from configured timeouts, and the evidence readers
//! (transport flags, `Retry-After`, the answer's status and body).
//!
//! Failures are [`SendFailure`]s built from evidence only: the HTTP status, the provider's
//! documented error code or body, rate-limit headers, and reqwest's `is_connect()` /
//! `is_timeout()` flags. A timeout once the request has left is
//! [`TransportFault::TimeoutAfterSend`] (ambiguous: it may have been accepted); a connect failure
//! is [`TransportFault::Connect`] (nothing left: fail over).

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use mailgate_core::{SendFailure, TransportFault};

use crate::http_client::LazyHttpClient;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

pub use mailgate_core::ports::{Accepted, EmailProvider};

/// A credential (API key, server token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential as configured (surrounding whitespace removed).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().trim().to_owned())
    }

    /// The credential itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How long a provider call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Establishing the connection (TCP + TLS). A timeout here means nothing was sent.
    pub connect: Duration,
    /// The whole request, from start to the end of the answer. A timeout after the connection
    /// was made may mean the provider accepted the message.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    /// 3 s to connect, 10 s in all: well inside the send path's request budget.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(10),
        }
    }
}

/// The HTTP client could not be built (TLS backend initialisation).
#[derive(Debug, thiserror::Error)]
#[error("the HTTP client for provider sends could not be built: {0}")]
pub struct HttpClientError(#[source] reqwest::Error);

/// The reqwest client provider sends use: the configured timeouts, no redirects (a redirect from
/// a send endpoint is a configuration error, not something to follow with a message body).
/// Built on the first send, not at cold start, and shared by every provider with the same
/// timeouts (one client, one connection pool, the system's roots read once). Building cannot
/// fail here any more (a client that cannot be built fails its first send as a connect fault);
/// the `Result` stays for the senders' constructors.
pub fn http_client(timeouts: &HttpTimeouts) -> Result<LazyHttpClient, HttpClientError> {
    static CLIENTS: Mutex<Vec<(HttpTimeouts, LazyHttpClient)>> = Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, client)) = clients.iter().find(|(t, _)| t == timeouts) {
        return Ok(client.clone());
    }
    let t = *timeouts;
    let client = LazyHttpClient::new(move |builder| {
        builder
            .connect_timeout(t.connect)
            .timeout(t.request)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailgate/", env!("CARGO_PKG_VERSION")))
    });
    clients.push((*timeouts, client.clone()));
    Ok(client)
}

/// The built client of a sender, or the failure of a call that never left: nothing was sent,
/// so the send path may try the next provider.
pub(crate) fn ready(client: &LazyHttpClient) -> Result<&reqwest::Client, SendFailure> {
    client
        .get()
        .map_err(|_| SendFailure::transport(TransportFault::Connect))
}

/// `base` + `path`, without doubling or dropping the `/` between them.
pub(crate) fn endpoint(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The transport fault reqwest reports, from its flags alone.
///
/// | flags | fault |
/// |---|---|
/// | `is_connect()` and `is_timeout()` | timeout before sending |
/// | `is_connect()` | connect |
/// | `is_timeout()` | timeout after sending (the request had a connection) |
/// | anything else | other (where it failed is not known) |
pub fn transport_fault(error: &reqwest::Error) -> TransportFault {
    match (error.is_connect(), error.is_timeout()) {
        (true, true) => TransportFault::TimeoutBeforeSend,
        (true, false) => TransportFault::Connect,
        (false, true) => TransportFault::TimeoutAfterSend,
        (false, false) => TransportFault::Other,
    }
}

/// A failed `send()` (no answer at all) as evidence.
pub(crate) fn request_failure(error: &reqwest::Error) -> SendFailure {
    SendFailure::transport(transport_fault(error))
}

/// What came back from a provider: status, headers and the whole body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The generic evidence of this answer: its status and any `Retry-After`.
    pub fn failure(&self) -> SendFailure {
        let failure = SendFailure::http(self.status.as_u16());
        match retry_after(&self.headers, SystemTime::now()) {
            Some(delay) => failure.with_retry_after(delay),
            None => failure,
        }
    }
}

/// The most of a provider's answer that is read: every documented answer (an id, an error list)
/// is a few KB; a misbehaving endpoint must not fill the function's memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Sends a request and reads the answer (its first [`MAX_ANSWER_BYTES`]). A body that cannot be
/// read keeps the status with the transport fault (a 2xx whose body was lost is an unreadable
/// success: ambiguous).
pub(crate) async fn execute(request: reqwest::RequestBuilder) -> Result<Answer, SendFailure> {
    let mut response = request.send().await.map_err(|e| request_failure(&e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_ANSWER_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(SendFailure {
                    status: Some(status.as_u16()),
                    transport: Some(transport_fault(&e)),
                    ..SendFailure::default()
                });
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The `Retry-After` header: delay-seconds or an HTTP date (relative to `now`; a date in the past
/// is no wait).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(until(at, now))
}

/// The time from `now` until `at`, zero when it has passed.
pub(crate) fn until(at: SystemTime, now: SystemTime) -> Duration {
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// An RFC 1123 / RFC 2822 date (`Sun, 06 Nov 1994 08:49:37 GMT`, `… +0000`, or `… UTC` as
/// Mailgun writes it).
pub(crate) fn parse_http_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let normalised = match value
        .strip_suffix(" UTC")
        .or_else(|| value.strip_suffix(" GMT"))
    {
        Some(stem) => format!("{stem} +0000"),
        None => value.to_owned(),
    };
    let at = OffsetDateTime::parse(&normalised, &Rfc2822).ok()?;
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A header's value as text, if present and readable.
pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(retry_after).unwrap(),
        );
        h
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let s = Secret::new(" SG.very-secret \n");
        assert_eq!(s.expose(), "SG.very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(!format!("{s}").contains("very-secret"));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn mailgun_style_utc_dates_parse() {
        let at = parse_http_date("Mon, 20 Dec 2021 20:33:21 UTC").unwrap();
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_640_032_401
        );
    }

    #[test]
    fn endpoints_join_with_exactly_one_slash() {
        assert_eq!(
            endpoint("http://127.0.0.1:1/", "/email"),
            "http://127.0.0.1:1/email"
        );
        assert_eq!(
            endpoint("https://api.sendgrid.com", "v3/mail/send"),
            "https://api.sendgrid.com/v3/mail/send"
        );
    }

    #[test]
    fn default_timeouts_fit_the_request_budget() {
        let t = HttpTimeouts::default();
        assert!(t.connect < t.request);
        assert!(t.request <= Duration::from_secs(10));
        http_client(&t).unwrap();
    }
}
