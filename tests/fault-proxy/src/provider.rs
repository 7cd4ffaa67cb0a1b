//! Provider fakes that misbehave on the wire, for the provider HTTP clients' failure paths: a
//! server that never answers, one that resets the connection once it has read the request, and
//! one that answers only after a delay (longer than the client's timeout, typically).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};

use crate::serve::{self, NoAnswer, Server};

/// How a [`MisbehavingProvider`] treats every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads the request and never answers (the connection stays open until the fake stops).
    Hang,
    /// Reads the request, then resets the connection (TCP RST) without answering.
    ResetAfterRequest,
    /// Reads the request, waits `delay`, then answers `status` with the JSON `body`.
    SlowAnswer {
        /// How long to wait before answering.
        delay: Duration,
        /// The answer's status.
        status: u16,
        /// The answer's JSON body.
        body: String,
    },
}

/// A local HTTP server on 127.0.0.1 that misbehaves; stops when dropped.
#[derive(Debug)]
pub struct MisbehavingProvider {
    server: Server,
    requests: Arc<AtomicU64>,
}

impl MisbehavingProvider {
    /// Starts a fake that behaves as `misbehaviour` says for every request.
    pub async fn start(misbehaviour: Misbehaviour) -> std::io::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let seen = requests.clone();
        let reset = misbehaviour == Misbehaviour::ResetAfterRequest;
        let server = serve::start(reset, move |req| {
            let misbehaviour = misbehaviour.clone();
            let seen = seen.clone();
            async move {
                // The whole request is read first: the client has sent everything it will send.
                let _ = axum::body::to_bytes(Body::new(req.into_body()), usize::MAX).await;
                seen.fetch_add(1, Ordering::SeqCst);
                match misbehaviour {
                    Misbehaviour::Hang => std::future::pending().await,
                    Misbehaviour::ResetAfterRequest => Err(NoAnswer),
                    Misbehaviour::SlowAnswer {
                        delay,
                        status,
                        body,
                    } => {
                        tokio::time::sleep(delay).await;
                        let mut response = Response::new(Body::from(body));
                        *response.status_mut() =
                            StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        Ok(response)
                    }
                }
            }
        })
        .await?;
        Ok(Self { server, requests })
    }

    /// A fake that never answers.
    pub async fn hanging() -> std::io::Result<Self> {
        Self::start(Misbehaviour::Hang).await
    }

    /// A fake that resets the connection after reading the request.
    pub async fn resetting() -> std::io::Result<Self> {
        Self::start(Misbehaviour::ResetAfterRequest).await
    }

    /// A fake that answers `status` with `body` after `delay`.
    pub async fn slow(delay: Duration, status: u16, body: &str) -> std::io::Result<Self> {
        Self::start(Misbehaviour::SlowAnswer {
            delay,
            status,
            body: body.to_owned(),
        })
        .await
    }

    /// The base URL to configure as the provider's API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Requests read completely so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}
