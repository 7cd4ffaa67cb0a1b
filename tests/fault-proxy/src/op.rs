//! Which AWS operation a request is: from `X-Amz-Target` (JSON protocols), the REST method and path
//! (SESv2), or the `Action` form parameter (query protocol).

use std::fmt;

use http::{HeaderMap, Method};

/// The AWS service a request is for, as far as the proxy needs to know it to answer in its protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// DynamoDB, `awsJson1_0` (`X-Amz-Target: DynamoDB_20120810.<Op>`).
    DynamoDb,
    /// SQS, `awsJson1_0` in query-compatible mode (`X-Amz-Target: AmazonSQS.<Op>`).
    Sqs,
    /// SES v2, `restJson1` (identified by method and path under `/v2/email/`).
    SesV2,
    /// Any other service, identified by its SigV4 signing name (query protocol: `Action`).
    Other(String),
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::DynamoDb => f.write_str("dynamodb"),
            Service::Sqs => f.write_str("sqs"),
            Service::SesV2 => f.write_str("sesv2"),
            Service::Other(name) => f.write_str(name),
        }
    }
}

/// One AWS operation, e.g. DynamoDB `PutItem`; the key of rules and counters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Op {
    /// The service.
    pub service: Service,
    /// The operation name as AWS spells it (`TransactWriteItems`, `SendMessageBatch`, `SendEmail`).
    pub name: String,
}

impl Op {
    /// A DynamoDB operation.
    pub fn dynamodb(name: &str) -> Self {
        Self::new(Service::DynamoDb, name)
    }

    /// An SQS operation.
    pub fn sqs(name: &str) -> Self {
        Self::new(Service::Sqs, name)
    }

    /// An SES v2 operation.
    pub fn sesv2(name: &str) -> Self {
        Self::new(Service::SesV2, name)
    }

    /// An operation of any service.
    pub fn new(service: Service, name: &str) -> Self {
        Self {
            service,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.name)
    }
}

/// Which requests a rule applies to: one operation, or every operation of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpMatch {
    /// Exactly this operation.
    Op(Op),
    /// Every operation of this service.
    AnyOf(Service),
}

impl OpMatch {
    /// Whether `op` is selected.
    pub fn matches(&self, op: &Op) -> bool {
        match self {
            OpMatch::Op(o) => o == op,
            OpMatch::AnyOf(s) => &op.service == s,
        }
    }

    /// The service every selected operation belongs to.
    pub fn service(&self) -> &Service {
        match self {
            OpMatch::Op(o) => &o.service,
            OpMatch::AnyOf(s) => s,
        }
    }
}

impl From<Op> for OpMatch {
    fn from(op: Op) -> Self {
        OpMatch::Op(op)
    }
}

impl From<Service> for OpMatch {
    fn from(service: Service) -> Self {
        OpMatch::AnyOf(service)
    }
}

/// Identifies the operation of a request; `None` when nothing says which it is.
pub fn identify(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Op> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, name) = target.split_once('.')?;
        let service = match prefix {
            p if p.starts_with("DynamoDB_") => Service::DynamoDb,
            "AmazonSQS" => Service::Sqs,
            _ => Service::Other(signing_name(headers).unwrap_or_else(|| prefix.to_owned())),
        };
        return Some(Op::new(service, name));
    }
    if let Some(rest) = path.strip_prefix("/v2/email/") {
        return Some(Op::new(Service::SesV2, &sesv2_operation(method, rest)));
    }
    let form = std::str::from_utf8(body).ok()?;
    let action = form
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "Action")
        .map(|(_, v)| v)?;
    let service = match signing_name(headers).as_deref() {
        Some("sqs") => Service::Sqs,
        Some(name) => Service::Other(name.to_owned()),
        None => Service::Other("query".to_owned()),
    };
    Some(Op::new(service, action))
}

/// The service of the SigV4 credential scope (`Credential=<key>/<date>/<region>/<service>/aws4_request`).
fn signing_name(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// SESv2 operation names by REST route (the ones mailgate and its tooling use, plus their
/// neighbours); any other route is named `<METHOD> /v2/email/<path>` so it can still be targeted.
fn sesv2_operation(method: &Method, rest: &str) -> String {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let name = match (method.as_str(), segments.as_slice()) {
        ("POST", ["outbound-emails"]) => "SendEmail",
        ("POST", ["outbound-bulk-emails"]) => "SendBulkEmail",
        ("GET", ["account"]) => "GetAccount",
        ("PUT", ["account", "sending"]) => "PutAccountSendingAttributes",
        ("POST", ["identities"]) => "CreateEmailIdentity",
        ("GET", ["identities"]) => "ListEmailIdentities",
        ("GET", ["identities", _]) => "GetEmailIdentity",
        ("DELETE", ["identities", _]) => "DeleteEmailIdentity",
        ("POST", ["configuration-sets"]) => "CreateConfigurationSet",
        ("GET", ["configuration-sets"]) => "ListConfigurationSets",
        ("GET", ["configuration-sets", _]) => "GetConfigurationSet",
        ("DELETE", ["configuration-sets", _]) => "DeleteConfigurationSet",
        ("POST", ["configuration-sets", _, "event-destinations"]) => {
            "CreateConfigurationSetEventDestination"
        }
        ("GET", ["configuration-sets", _, "event-destinations"]) => {
            "GetConfigurationSetEventDestinations"
        }
        ("PUT", ["suppression", "addresses"]) => "PutSuppressedDestination",
        ("GET", ["suppression", "addresses"]) => "ListSuppressedDestinations",
        ("GET", ["suppression", "addresses", _]) => "GetSuppressedDestination",
        ("DELETE", ["suppression", "addresses", _]) => "DeleteSuppressedDestination",
        _ => return format!("{method} /v2/email/{rest}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn json_targets_name_dynamodb_and_sqs_operations() {
        let h = headers(&[("x-amz-target", "DynamoDB_20120810.TransactWriteItems")]);
        assert_eq!(
            identify(&Method::POST, "/", &h, b"{}"),
            Some(Op::dynamodb("TransactWriteItems"))
        );
        let h = headers(&[("x-amz-target", "AmazonSQS.SendMessageBatch")]);
        assert_eq!(
            identify(&Method::POST, "/", &h, b"{}"),
            Some(Op::sqs("SendMessageBatch"))
        );
    }

    #[test]
    fn sesv2_routes_name_their_operation() {
        let h = HeaderMap::new();
        assert_eq!(
            identify(&Method::POST, "/v2/email/outbound-emails", &h, b"{}"),
            Some(Op::sesv2("SendEmail"))
        );
        assert_eq!(
            identify(&Method::GET, "/v2/email/identities/example.com", &h, b""),
            Some(Op::sesv2("GetEmailIdentity"))
        );
        assert_eq!(
            identify(&Method::PATCH, "/v2/email/whatever", &h, b""),
            Some(Op::sesv2("PATCH /v2/email/whatever"))
        );
    }

    #[test]
    fn query_actions_take_the_service_from_the_credential_scope() {
        let h = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00",
        )]);
        assert_eq!(
            identify(
                &Method::POST,
                "/",
                &h,
                b"Action=SendMessage&MessageBody=hi&Version=2012-11-05"
            ),
            Some(Op::sqs("SendMessage"))
        );
        assert_eq!(identify(&Method::GET, "/", &HeaderMap::new(), b""), None);
    }
}
