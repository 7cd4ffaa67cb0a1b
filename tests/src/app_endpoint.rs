//! The team's own app as the dispatcher's counterpart in tests: a loopback axum server at
//! `/hooks/mailgate` that answers with scripted responses (then 204) and checks every delivery
//! with the independent `standardwebhooks` crate against each configured secret (never with
//! our own signing code).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

/// One request the app received, with what the independent verifier said of it.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as sent.
    pub body: Bytes,
    /// Per configured secret, in order: did `standardwebhooks` verify the request with it?
    pub verified: Vec<bool>,
}

impl ReceivedWebhook {
    /// The value of header `name`; panics when it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .expect("a text header")
    }
}

/// A scripted answer: status and extra headers.
type Answer = (u16, Vec<(&'static str, String)>);

/// The team's app (see the module docs).
#[derive(Debug, Default)]
pub struct AppEndpoint {
    secrets: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<ReceivedWebhook>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppEndpoint {
    /// Starts the app on 127.0.0.1; it and its hook URL.
    pub async fn start() -> (Arc<Self>, String) {
        let app = Arc::new(Self::default());
        let router = axum::Router::new()
            .route("/hooks/mailgate", axum::routing::post(hook))
            .with_state(Arc::clone(&app));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!(
            "http://{}/hooks/mailgate",
            listener.local_addr().expect("a bound address")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        (app, url)
    }

    /// Verifies every later request with each of `secrets` (`whsec_…`).
    pub fn verify_with(&self, secrets: &[String]) {
        *lock(&self.secrets) = secrets.to_vec();
    }

    /// Answers the next unanswered request with `status` and `headers`.
    pub fn answer(&self, status: u16, headers: &[(&'static str, &str)]) {
        lock(&self.script).push_back((
            status,
            headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ));
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        lock(&self.received).clone()
    }
}

async fn hook(State(app): State<Arc<AppEndpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    let verified = lock(&app.secrets)
        .iter()
        .map(|secret| {
            standardwebhooks::Webhook::new(secret)
                .is_ok_and(|webhook| webhook.verify(&body, &headers).is_ok())
        })
        .collect();
    lock(&app.received).push(ReceivedWebhook {
        headers,
        body,
        verified,
    });
    let (status, extra) = lock(&app.script).pop_front().unwrap_or((204, Vec::new()));
    let mut response = Response::builder().status(status);
    for (k, v) in extra {
        response = response.header(k, v);
    }
    response
        .body(axum::body::Body::empty())
        .expect("a valid response")
}
