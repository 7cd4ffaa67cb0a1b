//! The HTTP port of SNS verification: GETs of signing certificates and `SubscribeURL`s, only ever
//! to an [`SnsUrl`], and its `reqwest` adapter (https only, no redirects, short timeout, size cap).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::SnsUrl;

/// Fetches from SNS. Object-safe so the verifier holds an `Arc<dyn SnsHttp>` and tests can serve
/// certificates locally, while the URL rule stays enforced by the [`SnsUrl`] type.
pub trait SnsHttp: Send + Sync {
    /// GETs `url` and returns the body of a 2xx response; anything else is an error.
    fn get<'a>(&'a self, url: &'a SnsUrl) -> BoxFuture<'a, Result<Vec<u8>, SnsHttpError>>;
}

/// Why a fetch from SNS failed. The caller answers 5xx so that SNS delivers again, except for a
/// signing certificate the host answers 404 or 403 for, which the verifier treats as a forgery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsHttpError {
    /// No complete response within the timeout.
    #[error("SNS request timed out")]
    Timeout,
    /// The connection (DNS, TCP or TLS) could not be made.
    #[error("could not connect to SNS")]
    Connect,
    /// SNS answered with a non-2xx status (redirects included: they are not followed).
    #[error("SNS answered HTTP {0}")]
    Status(u16),
    /// The response body is larger than the cap.
    #[error("SNS response exceeds {0} bytes")]
    TooLarge(usize),
    /// Any other transport failure, with the client's description.
    #[error("SNS request failed: {0}")]
    Transport(String),
}

/// [`SnsHttp`] over `reqwest`: https only, no redirects, [`Self::TIMEOUT`] per request and
/// [`Self::MAX_BODY_BYTES`] per response. Build it once at cold start and share it.
#[derive(Debug, Clone)]
pub struct ReqwestSnsHttp {
    client: crate::http_client::LazyHttpClient,
}

impl ReqwestSnsHttp {
    /// The whole-request timeout. SNS gives up on us after about 15 s, so a fetch must be quicker.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// The response cap. A signing certificate is about 2 KiB and a confirmation reply less.
    pub const MAX_BODY_BYTES: usize = 64 * 1024;

    /// The client, built on its first fetch (not at cold start: most requests find the
    /// certificate cached). Cannot fail here any more; the `Result` stays for its callers.
    pub fn new() -> Result<Self, SnsHttpError> {
        let client = crate::http_client::LazyHttpClient::new(|builder| {
            builder
                .https_only(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Self::TIMEOUT)
                .connect_timeout(Self::TIMEOUT)
        });
        Ok(Self { client })
    }

    async fn fetch(&self, url: &SnsUrl) -> Result<Vec<u8>, SnsHttpError> {
        let client = self
            .client
            .get()
            .map_err(|e| SnsHttpError::Transport(e.to_string()))?;
        let mut response = client.get(url.as_str()).send().await.map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(SnsHttpError::Status(status.as_u16()));
        }
        let mut body = Vec::new();
        if let Some(len) = response.content_length() {
            // An announced length over the cap is refused before reading anything.
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            append_capped(&mut body, len, &[], Self::MAX_BODY_BYTES)?;
        }
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            append_capped(&mut body, 0, &chunk, Self::MAX_BODY_BYTES)?;
        }
        Ok(body)
    }
}

impl SnsHttp for ReqwestSnsHttp {
    fn get<'a>(&'a self, url: &'a SnsUrl) -> BoxFuture<'a, Result<Vec<u8>, SnsHttpError>> {
        self.fetch(url).boxed()
    }
}

/// Appends `chunk` unless the body (plus `announced` bytes still to come) would exceed `cap`.
fn append_capped(
    body: &mut Vec<u8>,
    announced: usize,
    chunk: &[u8],
    cap: usize,
) -> Result<(), SnsHttpError> {
    let total = body
        .len()
        .saturating_add(announced)
        .saturating_add(chunk.len());
    if total > cap {
        return Err(SnsHttpError::TooLarge(cap));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// Classifies a `reqwest` failure by its own flags.
fn classify(error: reqwest::Error) -> SnsHttpError {
    if error.is_timeout() {
        SnsHttpError::Timeout
    } else if error.is_connect() {
        SnsHttpError::Connect
    } else {
        // Without the URL: a SubscribeURL carries the subscription's confirmation token.
        SnsHttpError::Transport(error.without_url().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reqwest_adapter_builds() {
        assert!(ReqwestSnsHttp::new().is_ok());
    }

    #[test]
    fn bodies_over_the_cap_are_refused() {
        let mut body = Vec::new();
        append_capped(&mut body, 0, &[1; 60], 64).unwrap();
        append_capped(&mut body, 0, &[2; 4], 64).unwrap();
        assert_eq!(body.len(), 64);
        assert_eq!(
            append_capped(&mut body, 0, &[3], 64),
            Err(SnsHttpError::TooLarge(64))
        );
        assert_eq!(body.len(), 64);
        assert_eq!(
            append_capped(&mut Vec::new(), usize::MAX, &[], 64),
            Err(SnsHttpError::TooLarge(64))
        );
    }
}
