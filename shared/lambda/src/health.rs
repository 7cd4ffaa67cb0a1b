//! Health checks: the resources a function needs, checked at most once per
//! [`HEALTH_CACHE_TTL`] (the public route must not turn every anonymous GET into several AWS
//! calls), answered publicly with the verdict only and in full to a key with the `read` scope.
//!
//! The full report names tables and queue URLs (which carry the AWS account id) and SDK error
//! text: never for an anonymous caller.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use mailgate_aws::{AwsClients, HealthReport, ResourceNames, check_resources};
use serde::Serialize;

/// How long one check of the resources answers health requests.
pub const HEALTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// A function's resource check, cached for [`HEALTH_CACHE_TTL`].
#[derive(Debug)]
pub struct HealthCheck {
    clients: AwsClients,
    names: ResourceNames,
    cache: Mutex<Option<(Instant, Arc<HealthReport>)>>,
}

impl HealthCheck {
    /// Checks `names` with `clients`.
    pub fn new(clients: AwsClients, names: ResourceNames) -> Self {
        Self {
            clients,
            names,
            cache: Mutex::new(None),
        }
    }

    /// The report: the cached one while it is fresh, else a new check.
    pub async fn report(&self) -> Arc<HealthReport> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((at, report)) = cached
            && at.elapsed() < HEALTH_CACHE_TTL
        {
            return report;
        }
        let report =
            Arc::new(check_resources(&self.clients.dynamodb, &self.clients.sqs, &self.names).await);
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), report.clone()));
        report
    }
}

#[derive(Serialize)]
struct HealthBody<'a> {
    function: &'a str,
    status: &'static str,
    #[serde(flatten)]
    report: &'a HealthReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<HealthError>,
}

#[derive(Serialize)]
struct PublicHealthBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<HealthError>,
}

#[derive(Serialize)]
struct HealthError {
    code: &'static str,
    message: String,
}

/// The verdict alone, for anyone: 200 `{"status": "healthy"}`, or 503 `{"status":
/// "unhealthy", "error": {"code": "dependencies_unavailable", …}}` naming nothing.
pub fn public_health_response(report: &HealthReport) -> Response<Body> {
    if report.healthy {
        crate::http::json_response(
            StatusCode::OK,
            &PublicHealthBody {
                status: "healthy",
                error: None,
            },
        )
    } else {
        tracing::warn!(problems = ?report.problems(), "health check failed");
        crate::http::json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &PublicHealthBody {
                status: "unhealthy",
                error: Some(HealthError {
                    code: "dependencies_unavailable",
                    message: "not ready: a table or queue this function needs is unavailable"
                        .to_owned(),
                }),
            },
        )
    }
}

/// The full report for `function` (for a key with the `read` scope): 200 with every check when
/// every resource is there, 503 with the report and an error naming what is missing otherwise.
pub fn health_response(function: &str, report: &HealthReport) -> Response<Body> {
    let (status, label, error) = if report.healthy {
        (StatusCode::OK, "healthy", None)
    } else {
        let problems = report.problems();
        tracing::warn!(?problems, "health check failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            Some(HealthError {
                code: "dependencies_unavailable",
                message: format!("not ready: {}", problems.join(", ")),
            }),
        )
    };
    crate::http::json_response(
        status,
        &HealthBody {
            function,
            status: label,
            report,
            error,
        },
    )
}
