//! The fault proxy: forwards AWS SDK calls to the emulator and applies the rules of the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{Body, Bytes};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::fault::{Fault, Trigger, When, error_response, service_error};
use crate::op::{Op, OpMatch, Service, identify};
use crate::serve::{self, NoAnswer, Server, Verdict};
use crate::sqs;

/// What the proxy saw of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls received (every SDK attempt is a call).
    pub calls: u64,
    /// Calls a rule's fault was applied to (delays included).
    pub faults: u64,
    /// SQS messages refused for their characters (a batch counts each refused entry).
    pub rejected: u64,
}

/// A fault-injecting proxy in front of the emulator, bound to 127.0.0.1 on a free port; stops when
/// dropped. Point the SDK's endpoint at [`FaultProxy::url`].
#[derive(Debug)]
pub struct FaultProxy {
    server: Server,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    upstream: String,
    client: reqwest::Client,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Rule>,
    stats: BTreeMap<Op, OpStats>,
}

#[derive(Debug)]
struct Rule {
    selector: OpMatch,
    fault: Fault,
    trigger: Trigger,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (the emulator's URL, e.g. `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            // Loopback only: an HTTP(S)_PROXY of the environment must not capture the emulator.
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client,
            inner: Mutex::default(),
        });
        let handler_state = state.clone();
        let server = serve::start(false, move |req| handle(handler_state.clone(), req)).await?;
        Ok(Self { server, state })
    }

    /// The URL to give the SDK as its endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Adds a rule: calls selected by `ops` get `fault` `when` it says. Rules are tried in the order
    /// they were added; the first that fires for a call decides it. Panics when the fault cannot be
    /// expressed in the service's protocol (e.g. a transaction cancellation for SQS).
    pub fn fail(&self, ops: impl Into<OpMatch>, fault: Fault, when: When) {
        let selector = ops.into();
        assert!(
            fault.supported_by(selector.service()),
            "{fault:?} cannot be answered by {}",
            selector.service()
        );
        self.state.lock().rules.push(Rule {
            selector,
            fault,
            trigger: Trigger::new(when),
        });
    }

    /// Removes every rule (counters are kept).
    pub fn clear_rules(&self) {
        self.state.lock().rules.clear();
    }

    /// Calls received for `op`.
    pub fn calls(&self, op: &Op) -> u64 {
        self.op_stats(op).calls
    }

    /// Faults applied to calls of `op`.
    pub fn faults(&self, op: &Op) -> u64 {
        self.op_stats(op).faults
    }

    /// What the proxy saw of `op`.
    pub fn op_stats(&self, op: &Op) -> OpStats {
        self.state.lock().stats.get(op).copied().unwrap_or_default()
    }

    /// What the proxy saw, per operation.
    pub fn stats(&self) -> BTreeMap<Op, OpStats> {
        self.state.lock().stats.clone()
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the counters from the others.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call and picks the fault of the first rule that fires, if any.
    fn decide(&self, op: &Op) -> Option<Fault> {
        let mut inner = self.lock();
        inner.stats.entry(op.clone()).or_default().calls += 1;
        // Every selecting rule counts the call (so `Nth` means the Nth call it selects, whatever
        // the other rules did with it); the first that fires decides.
        let mut fault = None;
        for rule in inner.rules.iter_mut().filter(|r| r.selector.matches(op)) {
            if rule.trigger.fires() && fault.is_none() {
                fault = Some(rule.fault.clone());
            }
        }
        if fault.is_some() {
            inner.stats.entry(op.clone()).or_default().faults += 1;
        }
        fault
    }

    fn count_rejected(&self, op: &Op, n: usize) {
        self.lock().stats.entry(op.clone()).or_default().rejected += n as u64;
    }

    /// Sends the request on to the emulator and returns its answer.
    async fn forward(&self, parts: &Parts, body: Bytes) -> Response<Body> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = parts.headers.clone();
        for hop in [
            "host",
            "content-length",
            "connection",
            "transfer-encoding",
            "expect",
        ] {
            headers.remove(hop);
        }
        let sent = self
            .client
            .request(parts.method.clone(), format!("{}{path}", self.upstream))
            .headers(headers)
            .body(body)
            .send()
            .await;
        let upstream = match sent {
            Ok(r) => r,
            Err(e) => return bad_gateway(&e.to_string()),
        };
        let status = upstream.status();
        let mut headers = upstream.headers().clone();
        let bytes = match upstream.bytes().await {
            Ok(b) => b,
            Err(e) => return bad_gateway(&e.to_string()),
        };
        for hop in ["content-length", "connection", "transfer-encoding"] {
            headers.remove(hop);
        }
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// Forwards an SQS call after SQS's character check, which moto lacks.
    async fn forward_sqs(&self, op: &Op, parts: &Parts, body: Bytes) -> Response<Body> {
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            return self.forward(parts, body).await;
        };
        match op.name.as_str() {
            "SendMessage" => {
                if let Some(c) = sqs::check_send_message(&request) {
                    self.count_rejected(op, 1);
                    return service_error(
                        &Service::Sqs,
                        StatusCode::BAD_REQUEST,
                        "InvalidMessageContents",
                        &sqs::invalid_contents_message(c),
                    );
                }
                self.forward(parts, body).await
            }
            "SendMessageBatch" => {
                let Some(split) = sqs::split_batch(&request) else {
                    return self.forward(parts, body).await;
                };
                self.count_rejected(op, split.failed.len());
                let upstream = if split.accepted_count == 0 {
                    None
                } else {
                    let response = self
                        .forward(parts, Bytes::from(split.accepted.to_string()))
                        .await;
                    if !response.status().is_success() {
                        // A whole-request error (missing queue, ...) is the answer as it is.
                        return response;
                    }
                    let bytes = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
                        Ok(b) => b,
                        Err(e) => return bad_gateway(&e.to_string()),
                    };
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) => Some(v),
                        Err(e) => return bad_gateway(&format!("emulator batch answer: {e}")),
                    }
                };
                let merged = sqs::merge_batch_result(upstream, split.failed);
                let mut response = Response::new(Body::from(merged.to_string()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-amz-json-1.0"),
                );
                response
            }
            _ => self.forward(parts, body).await,
        }
    }
}

fn bad_gateway(reason: &str) -> Response<Body> {
    tracing::warn!(reason, "fault proxy could not reach the emulator");
    let mut response = Response::new(Body::from(format!(
        "fault proxy: emulator unreachable: {reason}"
    )));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Verdict {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), usize::MAX)
        .await
        .map_err(|_| NoAnswer)?;
    let Some(op) = identify(&parts.method, parts.uri.path(), &parts.headers, &body) else {
        return Ok(state.forward(&parts, body).await);
    };
    let fault = state.decide(&op);
    match &fault {
        Some(Fault::Drop) => return Err(NoAnswer),
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(f) => {
            if let Some(response) = error_response(f, &op.service, &body) {
                return Ok(response);
            }
        }
        None => {}
    }
    let response = if op.service == Service::Sqs {
        state.forward_sqs(&op, &parts, body).await
    } else {
        state.forward(&parts, body).await
    };
    if fault == Some(Fault::ForwardThenDrop) {
        return Err(NoAnswer);
    }
    Ok(response)
}
