//! `unsubscribe`: the one-click unsubscribe endpoint (RFC 8058) on a public function URL, the
//! target of the `List-Unsubscribe` header mailgate puts on bulk mail.
//!
//! | request | answer |
//! |---|---|
//! | `POST /<token>` with the form body `List-Unsubscribe=One-Click`, valid token | 200, recorded once (a repeat is 200 too) |
//! | `POST` with another body | 400 `not_one_click`, nothing changes |
//! | `POST` or `GET` with a bad or tampered token | 400 `invalid_token`, nothing changes |
//! | `GET /<token>` | a small HTML page whose button POSTs the same form (a GET alone never unsubscribes: mail scanners follow links) |
//! | a store failed | 503 (the mailbox provider retries) |
//!
//! No answer sets a cookie or redirects (RFC 8058 §3.2). The token is the last path segment, so
//! the same handler serves `https://<function url>/<token>` and the local
//! `http://127.0.0.1:9000/lambda-url/unsubscribe/<token>`.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{AwsClients, ConfigError, DynamoDbMessages, Queue, ResourceNames, Table};
use mailgate_core::unsubscribe::{self, ONE_CLICK_POST_VALUE, is_one_click_form, token_from_path};
use mailgate_core::{Clock, SoftBounceRule, SystemClock, UnsubscribeKeys};
use mailgate_lambda::events::Tally;
use mailgate_services::unsubscribe::{OneClickUnsubscribe, UnsubscribeOutcome};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "unsubscribe";
/// The tables it reads and writes (the event path's).
pub const TABLES: &[Table] = &[
    Table::Messages,
    Table::Receipts,
    Table::Dedupe,
    Table::Suppressions,
    Table::Endpoints,
];
/// The queues it writes (app-webhook deliveries; events are applied in place).
pub const QUEUES: &[Queue] = &[Queue::Events, Queue::Outbound];

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// The keys tokens are verified with (`UNSUBSCRIBE_SIGNING_KEYS`).
    pub keys: UnsubscribeKeys,
}

impl Config {
    /// Reads the configuration through `lookup`; every problem at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let names = ResourceNames::from_lookup(TABLES, QUEUES, &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let keys = match unsubscribe::keys_from_lookup(&lookup) {
            Ok(Some(keys)) => Some(keys),
            Ok(None) => {
                problems.push(format!("{} is not set", unsubscribe::SIGNING_KEYS_VAR));
                None
            }
            Err(e) => {
                problems.push(e);
                None
            }
        };
        match (names, keys) {
            (Some(names), Some(keys)) if problems.is_empty() => Ok(Self { names, keys }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Cold start: resolves the signing keys (`ssm:`/`secretsmanager:` references when deployed),
/// loads the configuration, wires the service and serves requests.
pub async fn run() -> Result<(), lambda_http::Error> {
    mailgate_lambda::init_tracing();
    let sdk = mailgate_aws::function_sdk_config();
    let secrets = mailgate_aws::resolve_from_env(
        &mailgate_aws::SsmClient::new(&sdk),
        &[unsubscribe::SIGNING_KEYS_VAR],
    )
    .await?;
    let config = Config::from_lookup(secrets.lookup_or_env())?;
    let function = UnsubscribeFunction::new(config, AwsClients::new(&sdk));
    let function = &function;
    lambda_http::run(lambda_http::service_fn(
        move |request: Request| async move {
            Ok::<_, lambda_http::Error>(function.handle(request).await)
        },
    ))
    .await
}

/// The function with its service.
#[derive(Debug, Clone)]
pub struct UnsubscribeFunction {
    service: OneClickUnsubscribe,
    tally: Arc<Tally>,
}

impl UnsubscribeFunction {
    /// Wires the function on the real adapters.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// The same function reading time from `clock` (tests).
    pub fn with_clock(config: Config, clients: AwsClients, clock: Arc<dyn Clock>) -> Self {
        // Soft bounces never reach this function; the rule is the event path's default.
        let applier = mailgate_lambda::events::event_applier(
            &clients,
            &config.names,
            SoftBounceRule::default(),
            clock.clone(),
        );
        let db = clients.dynamodb_tables(&config.names);
        let messages = Arc::new(DynamoDbMessages::on(db.table(Table::Messages)));
        Self {
            service: OneClickUnsubscribe::new(config.keys, messages, applier, clock),
            tally: Arc::new(Tally::default()),
        }
    }

    /// The metric counts of this instance so far (tests read them).
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let token = token_from_path(request.uri().path()).unwrap_or_default();
        match *request.method() {
            Method::POST => {
                if !is_one_click(request.body()) {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "not_one_click: the body must be the form List-Unsubscribe=One-Click\n",
                    );
                }
                self.post(token).await
            }
            Method::GET | Method::HEAD => {
                if self.service.verifies(token) {
                    html(StatusCode::OK, &confirm_page())
                } else {
                    html(StatusCode::BAD_REQUEST, INVALID_PAGE)
                }
            }
            _ => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed: use POST (one click) or GET (the page)\n",
                );
                response.headers_mut().insert(
                    header::ALLOW,
                    header::HeaderValue::from_static("GET, HEAD, POST"),
                );
                response
            }
        }
    }

    async fn post(&self, token: &str) -> Response<Body> {
        let before = self.tally.snapshot();
        let outcome = self.service.unsubscribe(token).await;
        let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::OK);
        let response = match &outcome {
            UnsubscribeOutcome::Unsubscribed(report) => {
                self.tally.count(report);
                self.tally.add(
                    "OneClickUnsubscribes",
                    report.provider.as_str(),
                    report.category.as_str(),
                );
                text(status, "You are unsubscribed.\n")
            }
            UnsubscribeOutcome::AlreadyDone(_) => text(status, "You are unsubscribed.\n"),
            UnsubscribeOutcome::BadToken => {
                tracing::warn!(
                    "unsubscribe refused: a token we did not sign or that names nothing"
                );
                text(
                    status,
                    "invalid_token: this unsubscribe link is not valid\n",
                )
            }
            UnsubscribeOutcome::Unavailable(error) => {
                tracing::error!(error = %error, "unsubscribe could not be recorded");
                text(status, "service_unavailable: try again shortly\n")
            }
        };
        self.tally.emit_since(&before);
        response
    }
}

/// Whether the request's form body is RFC 8058's one-click form.
fn is_one_click(body: &Body) -> bool {
    match body {
        Body::Text(t) => is_one_click_form(t.as_bytes()),
        Body::Binary(b) => is_one_click_form(b),
        _ => false,
    }
}

const INVALID_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Unsubscribe</title></head><body><p>This unsubscribe link is not valid.</p></body></html>";

/// The page a person sees when following the link: one button that POSTs the one-click form to
/// this same URL.
fn confirm_page() -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title></head><body>\
<form method=\"post\"><p>Stop receiving these emails?</p>\
<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"{}\">\
<button type=\"submit\">Unsubscribe</button></form></body></html>",
        ONE_CLICK_POST_VALUE.trim_start_matches("List-Unsubscribe=")
    )
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

fn html(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body.to_owned())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Nothing to cache: the page reflects a one-time action.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_one_click_form_counts() {
        assert!(is_one_click(&Body::Text(
            "List-Unsubscribe=One-Click".into()
        )));
        assert!(is_one_click(&Body::Binary(
            b"List-Unsubscribe=One-Click\r\n".to_vec()
        )));
        assert!(!is_one_click(&Body::Text(
            "List-Unsubscribe=one-click".into()
        )));
        assert!(!is_one_click(&Body::Empty));
    }

    #[test]
    fn the_page_posts_the_one_click_form() {
        let page = confirm_page();
        assert!(page.contains("method=\"post\""));
        assert!(page.contains("name=\"List-Unsubscribe\" value=\"One-Click\""));
    }

    #[test]
    fn the_keys_are_required() {
        let err = Config::from_lookup(|_| None).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.contains("UNSUBSCRIBE_SIGNING_KEYS")),
            "{err:?}"
        );
    }
}
