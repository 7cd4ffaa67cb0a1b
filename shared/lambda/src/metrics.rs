//! Metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout: Lambda ships stdout to
//! CloudWatch Logs, which extracts the metrics, so no API call sits on the request path.

/// The CloudWatch namespace of every mailgate metric.
pub const NAMESPACE: &str = "Mailgate";

/// One EMF document: a single count-or-value metric with its dimensions.
pub fn emf_line(
    metric: &str,
    unit: &str,
    value: f64,
    dimensions: &[(&str, &str)],
    timestamp_ms: i64,
) -> String {
    let mut doc = serde_json::Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    doc.insert(
        "_aws".to_owned(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": [{"Name": metric, "Unit": unit}],
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).to_owned(), serde_json::Value::String((*v).to_owned()));
    }
    doc.insert(metric.to_owned(), serde_json::json!(value));
    serde_json::Value::Object(doc).to_string()
}

/// Emits a count of `value` for `metric` with `dimensions`.
pub fn count(metric: &str, value: u64, dimensions: &[(&str, &str)]) {
    measure(metric, "Count", value as f64, dimensions);
}

/// Emits one `value` in `unit` (a CloudWatch unit such as `Milliseconds`) for `metric`.
pub fn measure(metric: &str, unit: &str, value: f64, dimensions: &[(&str, &str)]) {
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let line = emf_line(metric, unit, value, dimensions, now_ms);
    // `println!` so test harnesses capture it; Lambda sends stdout to CloudWatch Logs.
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_names_its_metric_dimensions_and_value() {
        let line = emf_line(
            "WebhookVerificationFailures",
            "Count",
            1.0,
            &[("Provider", "sendgrid"), ("Reason", "bad_signature")],
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let spec = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "Mailgate");
        assert_eq!(
            spec["Dimensions"][0],
            serde_json::json!(["Provider", "Reason"])
        );
        assert_eq!(spec["Metrics"][0]["Name"], "WebhookVerificationFailures");
        assert_eq!(v["Provider"], "sendgrid");
        assert_eq!(v["Reason"], "bad_signature");
        assert_eq!(v["WebhookVerificationFailures"], 1.0);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
