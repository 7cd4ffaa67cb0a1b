//! The HTTP answer to a health check: 200 with the report when every resource is there, 503 with
//! the report and an error naming what is missing otherwise.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use mailgate_aws::HealthReport;
use serde::Serialize;

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
struct HealthError {
    code: &'static str,
    message: String,
}

/// Renders a health report for `function`.
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
