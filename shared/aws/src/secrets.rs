//! Configuration values held as references to SSM Parameter Store or Secrets Manager, resolved
//! once at cold start.
//!
//! Locally a variable such as `SENDGRID_WEBHOOK_PUBLIC_KEYS` holds its value. Deployed, the same
//! variable holds `ssm:<parameter-name>` or `secretsmanager:<secret-id>`, and
//! [`resolve_references`] swaps in the stored value before the function parses its configuration.
//! Anything else is a literal and passes through unchanged.
//!
//! Values never reach a log line, a `Debug` rendering or an error: logs say which variable was
//! resolved from which kind of reference, errors name the variable, the reference and the reason.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::get_parameter::GetParameterError;

/// The SSM client that resolves references, re-exported so callers need not depend on the crate.
pub use aws_sdk_ssm::Client as SsmClient;

/// The parameter path under which SSM serves Secrets Manager secrets.
///
/// `GetParameter` on `/aws/reference/secretsmanager/<secret-id>` (with `WithDecryption=true`)
/// returns the secret's `SecretString`; this is documented AWS behaviour ("Referencing AWS Secrets
/// Manager secrets from Parameter Store parameters" in the Systems Manager user guide). Reading
/// secrets this way spares every function a second SDK crate; the role still needs
/// `secretsmanager:GetSecretValue` on the secret besides `ssm:GetParameter`.
pub const SECRETS_MANAGER_PARAMETER_PREFIX: &str = "/aws/reference/secretsmanager/";

/// Where a configuration value lives when it is not written out in the variable itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// An SSM parameter (`String`, `StringList` or `SecureString`), by name, path or ARN.
    Ssm(String),
    /// A Secrets Manager secret, by secret id, read through SSM. Prefer the secret's name: the
    /// emulator (moto) resolves names only, not ARNs, under the reference path.
    SecretsManager(String),
}

/// A value that starts like a reference but names nothing, e.g. `ssm:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{prefix}` is followed by no parameter or secret name")]
pub struct EmptyReference {
    /// The prefix that was found.
    pub prefix: &'static str,
}

impl Reference {
    /// The prefix of an SSM parameter reference.
    pub const SSM_PREFIX: &'static str = "ssm:";
    /// The prefix of a Secrets Manager secret reference.
    pub const SECRETS_MANAGER_PREFIX: &'static str = "secretsmanager:";

    /// Reads a configuration value: `Ok(None)` for a literal, `Ok(Some(..))` for a reference.
    ///
    /// Prefixes are matched exactly (lower case) after trimming surrounding whitespace; a literal
    /// that happens to start with `ssm:` (say, Basic credentials for a user named `ssm`) is taken
    /// for a reference and fails to resolve at cold start rather than being used silently.
    pub fn parse(value: &str) -> Result<Option<Self>, EmptyReference> {
        let trimmed = value.trim();
        let (prefix, make): (&'static str, fn(String) -> Self) =
            if trimmed.starts_with(Self::SSM_PREFIX) {
                (Self::SSM_PREFIX, Self::Ssm)
            } else if trimmed.starts_with(Self::SECRETS_MANAGER_PREFIX) {
                (Self::SECRETS_MANAGER_PREFIX, Self::SecretsManager)
            } else {
                return Ok(None);
            };
        let name = trimmed[prefix.len()..].trim();
        if name.is_empty() {
            Err(EmptyReference { prefix })
        } else {
            Ok(Some(make(name.to_owned())))
        }
    }

    /// The kind of store, for logs: `ssm` or `secretsmanager`.
    pub fn kind(&self) -> &'static str {
        match self {
            Reference::Ssm(_) => "ssm",
            Reference::SecretsManager(_) => "secretsmanager",
        }
    }

    /// The `Name` to ask SSM's `GetParameter` for.
    pub fn parameter_name(&self) -> String {
        match self {
            Reference::Ssm(name) => name.clone(),
            Reference::SecretsManager(id) => format!("{SECRETS_MANAGER_PARAMETER_PREFIX}{id}"),
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Reference::Ssm(_) => "parameter",
            Reference::SecretsManager(_) => "secret",
        }
    }
}

impl fmt::Display for Reference {
    /// The reference as written in configuration, e.g. `ssm:/mailgate/prod/x`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Ssm(name) => write!(f, "{}{name}", Self::SSM_PREFIX),
            Reference::SecretsManager(id) => write!(f, "{}{id}", Self::SECRETS_MANAGER_PREFIX),
        }
    }
}

/// Why one reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// `ssm:` or `secretsmanager:` with nothing after it.
    Empty,
    /// No such parameter or secret (or no such version of it).
    NotFound {
        /// `parameter` or `secret`.
        what: &'static str,
    },
    /// The caller may not read or decrypt it, or its credentials were refused.
    AccessDenied {
        /// The AWS error code, e.g. `AccessDeniedException`.
        code: String,
        /// AWS's message (names the principal and the resource, never a value).
        message: Option<String>,
    },
    /// SSM (or the emulator) could not be reached, or did not answer in time.
    Unreachable {
        /// The transport error.
        detail: String,
    },
    /// SSM answered without a value.
    NoValue,
    /// Another error answered by SSM: throttling past the SDK's retries, an internal error, a
    /// KMS key that is not usable, an invalid name.
    Service {
        /// The AWS error code, when there is one.
        code: Option<String>,
        /// The error with its context.
        detail: String,
    },
    /// The request could not be built (e.g. no region or credentials) or the answer not read.
    Other {
        /// The error with its context.
        detail: String,
    },
}

impl FailureReason {
    /// Whether trying again later may succeed (the endpoint, throttling, a server-side fault);
    /// a missing parameter or a denied read needs an operator.
    pub fn is_transient(&self) -> bool {
        match self {
            FailureReason::Unreachable { .. } => true,
            FailureReason::Service {
                code: Some(code), ..
            } => matches!(
                code.as_str(),
                "ThrottlingException" | "InternalServerError" | "ServiceUnavailable"
            ),
            _ => false,
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Empty => f.write_str("the reference names no parameter or secret"),
            FailureReason::NotFound { what } => write!(f, "{what} not found"),
            FailureReason::AccessDenied { code, message } => {
                write!(f, "access denied ({code})")?;
                if let Some(message) = message {
                    write!(f, ": {message}")?;
                }
                f.write_str(
                    " — the role needs ssm:GetParameter, kms:Decrypt for a SecureString and \
                     secretsmanager:GetSecretValue for a secret",
                )
            }
            FailureReason::Unreachable { detail } => {
                write!(f, "SSM endpoint unreachable: {detail}")
            }
            FailureReason::NoValue => f.write_str("SSM answered without a value"),
            FailureReason::Service { detail, .. } => write!(f, "SSM refused the read: {detail}"),
            FailureReason::Other { detail } => write!(f, "{detail}"),
        }
    }
}

/// One configuration variable whose reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceFailure {
    /// The variable, e.g. `SENDGRID_WEBHOOK_PUBLIC_KEYS`.
    pub variable: String,
    /// The reference as configured, e.g. `ssm:/mailgate/prod/sendgrid-webhook-public-keys`.
    pub reference: String,
    /// Why it failed.
    pub reason: FailureReason,
}

impl fmt::Display for ReferenceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.variable, self.reference, self.reason)
    }
}

/// Every variable whose reference did not resolve, in the order the names were given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SecretError {
    failures: Vec<ReferenceFailure>,
}

impl SecretError {
    /// The failures, one per variable.
    pub fn failures(&self) -> &[ReferenceFailure] {
        &self.failures
    }

    /// Whether every failure may pass on its own (a later cold start may succeed).
    pub fn is_transient(&self) -> bool {
        self.failures.iter().all(|f| f.reason.is_transient())
    }
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration references did not resolve: ")?;
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// The values of the requested variables that are set, references replaced by what they name.
///
/// `Debug` shows the variable names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    values: HashMap<String, String>,
}

impl Resolved {
    /// The value of `variable`, if it was requested and set.
    pub fn get(&self, variable: &str) -> Option<&str> {
        self.values.get(variable).map(String::as_str)
    }

    /// The variables that have a value, sorted.
    pub fn variables(&self) -> Vec<&str> {
        let mut names: Vec<_> = self.values.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The number of variables with a value.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no requested variable was set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values, by variable name.
    pub fn into_map(self) -> HashMap<String, String> {
        self.values
    }

    /// A configuration lookup: resolved variables first, `fallback` for every other name.
    pub fn lookup_or(
        self,
        fallback: impl Fn(&str) -> Option<String>,
    ) -> impl Fn(&str) -> Option<String> {
        move |name| self.values.get(name).cloned().or_else(|| fallback(name))
    }

    /// A configuration lookup: resolved variables first, the process environment for every other
    /// name.
    pub fn lookup_or_env(self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        move |name| {
            self.values
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        }
    }
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("variables", &self.variables())
            .finish_non_exhaustive()
    }
}

/// Resolves `names` from the process environment; see [`resolve_references`].
pub async fn resolve_from_env(client: &SsmClient, names: &[&str]) -> Result<Resolved, SecretError> {
    resolve_references(client, names, |name| std::env::var(name).ok()).await
}

/// Reads each of `names` through `lookup` and replaces every reference by the value it names.
///
/// Unset variables are left out; literals pass through unchanged; references are fetched
/// concurrently with `GetParameter` (`WithDecryption=true`), each distinct reference once however
/// many variables hold it. SSM is not called at all when no variable holds a reference. Any
/// failure fails the whole resolution, listing every variable that did not resolve.
pub async fn resolve_references(
    client: &SsmClient,
    names: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Resolved, SecretError> {
    let mut values = HashMap::new();
    let mut failures = Vec::new();
    // Each distinct reference with the variables that hold it, in first-seen order.
    let mut wanted: Vec<(Reference, Vec<&str>)> = Vec::new();
    let mut seen = HashSet::new();
    for &name in names {
        if !seen.insert(name) {
            continue;
        }
        let Some(value) = lookup(name) else {
            continue;
        };
        match Reference::parse(&value) {
            Ok(None) => {
                values.insert(name.to_owned(), value);
            }
            Ok(Some(reference)) => match wanted.iter_mut().find(|(r, _)| *r == reference) {
                Some((_, variables)) => variables.push(name),
                None => wanted.push((reference, vec![name])),
            },
            Err(EmptyReference { prefix }) => failures.push(ReferenceFailure {
                variable: name.to_owned(),
                reference: prefix.to_owned(),
                reason: FailureReason::Empty,
            }),
        }
    }

    let fetched =
        futures::future::join_all(wanted.iter().map(|(reference, _)| fetch(client, reference)))
            .await;
    for ((reference, variables), result) in wanted.into_iter().zip(fetched) {
        match result {
            Ok(value) => {
                for variable in variables {
                    tracing::info!(
                        variable,
                        source = reference.kind(),
                        "configuration value resolved from a reference"
                    );
                    values.insert(variable.to_owned(), value.clone());
                }
            }
            Err(reason) => {
                for variable in variables {
                    failures.push(ReferenceFailure {
                        variable: variable.to_owned(),
                        reference: reference.to_string(),
                        reason: reason.clone(),
                    });
                }
            }
        }
    }

    if failures.is_empty() {
        Ok(Resolved { values })
    } else {
        failures.sort_by_key(|f| names.iter().position(|n| *n == f.variable));
        Err(SecretError { failures })
    }
}

async fn fetch(client: &SsmClient, reference: &Reference) -> Result<String, FailureReason> {
    let output = client
        .get_parameter()
        .name(reference.parameter_name())
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| classify(&err, reference))?;
    output
        .parameter
        .and_then(|p| p.value)
        .ok_or(FailureReason::NoValue)
}

fn classify(err: &SdkError<GetParameterError>, reference: &Reference) -> FailureReason {
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            if e.is_parameter_not_found() || e.is_parameter_version_not_found() {
                FailureReason::NotFound {
                    what: reference.noun(),
                }
            } else {
                classify_code(e.code(), e.message(), || error_chain(err))
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => FailureReason::Unreachable {
            detail: error_chain(err),
        },
        _ => FailureReason::Other {
            detail: error_chain(err),
        },
    }
}

/// The error and its sources, by `Display` only (the SDK's `DisplayErrorContext` appends a
/// `Debug` dump that buries the cause).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sorts an error answered by SSM by its code; access errors are not modelled on `GetParameter`,
/// so the code is the evidence.
fn classify_code(
    code: Option<&str>,
    message: Option<&str>,
    detail: impl FnOnce() -> String,
) -> FailureReason {
    match code {
        Some(
            code @ ("AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "ExpiredTokenException"),
        ) => FailureReason::AccessDenied {
            code: code.to_owned(),
            message: message.map(str::to_owned),
        },
        _ => FailureReason::Service {
            code: code.map(str::to_owned),
            detail: detail(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(value: &str) -> Option<Reference> {
        Reference::parse(value).unwrap()
    }

    /// A client whose every call fails: proves a code path makes no call.
    fn offline_client() -> SsmClient {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
            .region(aws_sdk_ssm::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        SsmClient::from_conf(config)
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn configuration_values_that_are_not_references_are_literals() {
        for literal in [
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T==",
            "postmark:s3cret,ops:other",
            "arn:aws:sns:us-east-1:123456789012:ses-events",
            "SSM:/upper/case/is/literal",
            "secretsmanager",
            "x-ssm:/not/at/the/start",
            "",
        ] {
            assert_eq!(Reference::parse(literal), Ok(None), "{literal}");
        }
    }

    #[test]
    fn an_ssm_reference_names_the_parameter_as_written() {
        let r = parse("ssm:/mailgate/prod/sendgrid-webhook-public-keys").unwrap();
        assert_eq!(
            r,
            Reference::Ssm("/mailgate/prod/sendgrid-webhook-public-keys".to_owned())
        );
        assert_eq!(
            r.parameter_name(),
            "/mailgate/prod/sendgrid-webhook-public-keys"
        );
        assert_eq!(r.kind(), "ssm");
        assert_eq!(
            r.to_string(),
            "ssm:/mailgate/prod/sendgrid-webhook-public-keys"
        );

        assert_eq!(
            parse("ssm:plain-name").unwrap().parameter_name(),
            "plain-name"
        );
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/mailgate/prod/x";
        assert_eq!(parse(&format!("ssm:{arn}")).unwrap().parameter_name(), arn);
    }

    #[test]
    fn a_secrets_manager_reference_is_read_through_the_reserved_ssm_path() {
        let r = parse("secretsmanager:mailgate/prod/mailgun-signing-keys").unwrap();
        assert_eq!(
            r,
            Reference::SecretsManager("mailgate/prod/mailgun-signing-keys".to_owned())
        );
        assert_eq!(
            r.parameter_name(),
            "/aws/reference/secretsmanager/mailgate/prod/mailgun-signing-keys"
        );
        assert_eq!(r.kind(), "secretsmanager");
        assert_eq!(
            r.to_string(),
            "secretsmanager:mailgate/prod/mailgun-signing-keys"
        );

        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mailgate-x-AbCdEf";
        assert_eq!(
            parse(&format!("secretsmanager:{arn}"))
                .unwrap()
                .parameter_name(),
            format!("/aws/reference/secretsmanager/{arn}")
        );
    }

    #[test]
    fn surrounding_whitespace_does_not_hide_a_reference() {
        assert_eq!(
            parse("  ssm:/mailgate/x \n"),
            Some(Reference::Ssm("/mailgate/x".to_owned()))
        );
        assert_eq!(
            parse("secretsmanager:  id"),
            Some(Reference::SecretsManager("id".to_owned()))
        );
    }

    #[test]
    fn a_reference_that_names_nothing_is_invalid() {
        assert_eq!(
            Reference::parse("ssm:"),
            Err(EmptyReference { prefix: "ssm:" })
        );
        assert_eq!(
            Reference::parse("secretsmanager:   "),
            Err(EmptyReference {
                prefix: "secretsmanager:"
            })
        );
    }

    #[test]
    fn access_errors_are_sorted_by_their_code() {
        let denied = classify_code(
            Some("AccessDeniedException"),
            Some("User: arn:aws:sts::1:assumed-role/fn is not authorized"),
            || unreachable!("no detail needed"),
        );
        assert_eq!(
            denied,
            FailureReason::AccessDenied {
                code: "AccessDeniedException".to_owned(),
                message: Some("User: arn:aws:sts::1:assumed-role/fn is not authorized".to_owned()),
            }
        );
        assert!(!denied.is_transient());
        assert!(matches!(
            classify_code(Some("UnrecognizedClientException"), None, String::new),
            FailureReason::AccessDenied { .. }
        ));

        let throttled = classify_code(Some("ThrottlingException"), None, || "slow down".to_owned());
        assert_eq!(
            throttled,
            FailureReason::Service {
                code: Some("ThrottlingException".to_owned()),
                detail: "slow down".to_owned()
            }
        );
        assert!(throttled.is_transient());
        assert!(!classify_code(Some("InvalidKeyId"), None, String::new).is_transient());
    }

    #[tokio::test]
    async fn literals_and_unset_variables_resolve_without_calling_ssm() {
        let resolved = resolve_references(
            &offline_client(),
            &[
                "SENDGRID_WEBHOOK_PUBLIC_KEYS",
                "MAILGUN_WEBHOOK_SIGNING_KEYS",
                "EMPTY",
            ],
            env(&[
                ("SENDGRID_WEBHOOK_PUBLIC_KEYS", "key-one,key-two"),
                ("EMPTY", ""),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(
            resolved.get("SENDGRID_WEBHOOK_PUBLIC_KEYS"),
            Some("key-one,key-two")
        );
        assert_eq!(resolved.get("EMPTY"), Some(""));
        assert_eq!(resolved.get("MAILGUN_WEBHOOK_SIGNING_KEYS"), None);
        assert_eq!(
            resolved.variables(),
            ["EMPTY", "SENDGRID_WEBHOOK_PUBLIC_KEYS"]
        );
    }

    #[tokio::test]
    async fn an_empty_reference_fails_naming_its_variable_without_calling_ssm() {
        let err = resolve_references(
            &offline_client(),
            &["SNS_ALLOWED_TOPIC_ARNS", "MAILGUN_WEBHOOK_SIGNING_KEYS"],
            env(&[
                ("SNS_ALLOWED_TOPIC_ARNS", "ssm:"),
                ("MAILGUN_WEBHOOK_SIGNING_KEYS", "literal-key"),
            ]),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.failures(),
            [ReferenceFailure {
                variable: "SNS_ALLOWED_TOPIC_ARNS".to_owned(),
                reference: "ssm:".to_owned(),
                reason: FailureReason::Empty,
            }]
        );
        assert!(!err.to_string().contains("literal-key"));
    }

    #[test]
    fn an_error_lists_every_variable_with_its_reference_and_reason() {
        let err = SecretError {
            failures: vec![
                ReferenceFailure {
                    variable: "SENDGRID_WEBHOOK_PUBLIC_KEYS".to_owned(),
                    reference: "ssm:/mailgate/prod/keys".to_owned(),
                    reason: FailureReason::NotFound { what: "parameter" },
                },
                ReferenceFailure {
                    variable: "POSTMARK_WEBHOOK_CREDENTIALS".to_owned(),
                    reference: "secretsmanager:mailgate/postmark".to_owned(),
                    reason: FailureReason::Unreachable {
                        detail: "connection refused".to_owned(),
                    },
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "configuration references did not resolve: \
             SENDGRID_WEBHOOK_PUBLIC_KEYS (ssm:/mailgate/prod/keys): parameter not found; \
             POSTMARK_WEBHOOK_CREDENTIALS (secretsmanager:mailgate/postmark): \
             SSM endpoint unreachable: connection refused"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn resolved_values_never_show_in_debug() {
        let resolved = Resolved {
            values: HashMap::from([(
                "MAILGUN_WEBHOOK_SIGNING_KEYS".to_owned(),
                "hunter2".to_owned(),
            )]),
        };
        let shown = format!("{resolved:?}");
        assert!(shown.contains("MAILGUN_WEBHOOK_SIGNING_KEYS"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_lookup_prefers_resolved_values_and_falls_back_for_other_names() {
        let resolved = Resolved {
            values: HashMap::from([(
                "MAILGUN_WEBHOOK_SIGNING_KEYS".to_owned(),
                "resolved".to_owned(),
            )]),
        };
        let lookup = resolved.lookup_or(env(&[
            ("MAILGUN_WEBHOOK_SIGNING_KEYS", "ssm:/mailgate/x"),
            ("RECEIPTS_TABLE", "receipts"),
        ]));
        assert_eq!(
            lookup("MAILGUN_WEBHOOK_SIGNING_KEYS").as_deref(),
            Some("resolved")
        );
        assert_eq!(lookup("RECEIPTS_TABLE").as_deref(), Some("receipts"));
        assert_eq!(lookup("UNSET"), None);
    }

    #[test]
    fn the_environment_lookup_falls_back_to_the_process_environment() {
        // PATH is set in any environment that runs tests; nothing here sets variables.
        let lookup = Resolved::default().lookup_or_env();
        assert_eq!(lookup("PATH"), std::env::var("PATH").ok());
        assert_eq!(lookup("MAILGATE_SECRETS_TEST_SURELY_UNSET_VARIABLE"), None);
    }
}
