//! Amazon SNS HTTPS deliveries (how SES feedback reaches us): verifying them and confirming the
//! subscription.
//!
//! SNS signs a canonical "string to sign" built from selected fields of the JSON body (unescaped
//! values, a fixed key list per message type, each as `Key\nvalue\n`) with RSA PKCS#1 v1.5 over
//! SHA-1 (`SignatureVersion` 1) or SHA-256 (2). The public key is in the X.509 certificate at
//! `SigningCertURL`, which we fetch only from an SNS host ([`SnsUrl`]) and cache by URL.
//!
//! [`SnsVerifier::verify`] checks, in this order: the body parses, the URLs pass the rule, the
//! topic is allowed, the `Timestamp` is within the tolerance, the certificate is available (cache
//! or fetch) and currently valid, and the signature verifies. A transient failure to *fetch*
//! (5xx, timeout, connection error) is [`SnsVerifyError::Unavailable`], which callers must answer
//! with a 5xx: SNS treats 4xx as delivered and would drop the message. A certificate the SNS host
//! says does not exist (404 or 403) is a rejection, [`WebhookRejection::CertificateNotFound`]:
//! SNS never names a certificate it does not serve, so the delivery is forged, and the URL is
//! remembered for [`MISSING_CERT_TTL_SECS`] so repeats cost no fetch.

mod http;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
    RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::DecodePem;
use mailgate_core::Clock;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_cert::Certificate;
use x509_cert::der::Encode;

pub use self::http::{ReqwestSnsHttp, SnsHttp, SnsHttpError};
pub use self::url::SnsUrl;
use crate::verify::WebhookRejection;

/// How many signing certificates the verifier keeps. SNS signs with one certificate per region at
/// a time, so a handful covers rotation; the cap only bounds what odd traffic can make us keep.
pub const CERT_CACHE_CAPACITY: usize = 16;

/// How long a signing-certificate URL the SNS host answered 404/403 for is answered from memory
/// as [`WebhookRejection::CertificateNotFound`], without fetching. Forged deliveries naming a
/// made-up `.pem` on a real SNS host then cost one fetch per URL per window; the window is short
/// enough that a certificate SNS publishes later is picked up soon after.
pub const MISSING_CERT_TTL_SECS: i64 = 600;
/// How many missing-certificate URLs are remembered: enough for a burst of forgeries, bounded
/// so made-up URLs cannot grow memory (expired entries go first, then everything).
pub const MISSING_CERT_CACHE_CAPACITY: usize = 256;

/// The `Type` of an SNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnsMessageType {
    /// A published message (for SES: a bounce, complaint or delivery event in `Message`).
    Notification,
    /// Sent once when the subscription is created; GET its `SubscribeURL` to confirm.
    SubscriptionConfirmation,
    /// Sent when the subscription is deleted.
    UnsubscribeConfirmation,
}

impl SnsMessageType {
    /// The `Type` value as SNS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnsMessageType::Notification => "Notification",
            SnsMessageType::SubscriptionConfirmation => "SubscriptionConfirmation",
            SnsMessageType::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "Notification" => Some(SnsMessageType::Notification),
            "SubscriptionConfirmation" => Some(SnsMessageType::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Some(SnsMessageType::UnsubscribeConfirmation),
            _ => None,
        }
    }
}

impl fmt::Display for SnsMessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `SignatureVersion` of an SNS message: which digest the RSA signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnsSignatureVersion {
    /// `"1"`: RSA PKCS#1 v1.5 with SHA-1 (the topic default).
    V1,
    /// `"2"`: RSA PKCS#1 v1.5 with SHA-256 (set the topic's `SignatureVersion` to 2).
    V2,
}

impl SnsSignatureVersion {
    /// The `SignatureVersion` value as SNS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnsSignatureVersion::V1 => "1",
            SnsSignatureVersion::V2 => "2",
        }
    }
}

/// A verifier that could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSnsConfig {
    /// No topic ARN was allowed: verification never silently turns off.
    #[error("at least one SNS topic ARN must be allowed")]
    NoTopics,
    /// An allowed topic is not of the form `arn:<partition>:sns:<region>:<account>:<name>`.
    #[error("allowed SNS topic #{index} is not an SNS topic ARN")]
    InvalidTopicArn {
        /// The topic's position in the configured list (0-based).
        index: usize,
    },
}

/// Why an SNS delivery was not accepted, split by what the caller must answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsVerifyError {
    /// Forged, malformed, from another topic, pointing at an untrusted URL, or outside the time
    /// window: answer 4xx (SNS will not retry it, which is what we want).
    #[error("SNS delivery rejected: {0}")]
    Rejected(#[from] WebhookRejection),
    /// A fetch from SNS (signing certificate or `SubscribeURL`) failed: answer 5xx so SNS retries.
    #[error("SNS unavailable: {0}")]
    Unavailable(#[source] SnsHttpError),
    /// [`SnsVerifier::confirm_subscription`] was given a message that is not a
    /// `SubscriptionConfirmation`: a caller bug, nothing was fetched.
    #[error("not a SubscriptionConfirmation")]
    NotSubscriptionConfirmation,
}

impl SnsVerifyError {
    /// The rejection, when this is one.
    pub fn rejection(&self) -> Option<WebhookRejection> {
        match self {
            SnsVerifyError::Rejected(r) => Some(*r),
            _ => None,
        }
    }

    /// Whether SNS should deliver again (answer 5xx) rather than be told the message was handled.
    pub fn is_transient(&self) -> bool {
        matches!(self, SnsVerifyError::Unavailable(_))
    }
}

/// An SNS message whose signature, certificate, topic and timestamp all checked out. Only
/// [`SnsVerifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSns {
    message_type: SnsMessageType,
    message_id: String,
    topic_arn: String,
    message: String,
    subject: Option<String>,
    timestamp: OffsetDateTime,
    subscribe_url: Option<SnsUrl>,
    token: Option<String>,
    signature_version: SnsSignatureVersion,
}

impl VerifiedSns {
    /// The message `Type`.
    pub fn message_type(&self) -> SnsMessageType {
        self.message_type
    }

    /// SNS's `MessageId`: the same on every retry, so it is the dedupe key.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The topic the message was published to (one of the allowed ones).
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The `Message`, unescaped. For SES notifications it is itself a JSON document.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Subject` of a notification published with one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// When SNS published the message (the same on every retry).
    pub fn timestamp(&self) -> OffsetDateTime {
        self.timestamp
    }

    /// The validated `SubscribeURL` of a subscription or unsubscribe confirmation.
    pub fn subscribe_url(&self) -> Option<&SnsUrl> {
        self.subscribe_url.as_ref()
    }

    /// The `Token` of a subscription or unsubscribe confirmation.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The signature version that verified.
    pub fn signature_version(&self) -> SnsSignatureVersion {
        self.signature_version
    }
}

/// Verifies SNS HTTPS deliveries for an allowlist of topics and confirms their subscriptions.
/// Build it once at cold start: it caches signing certificates by URL.
pub struct SnsVerifier {
    topics: Vec<String>,
    tolerance_secs: i64,
    http: Arc<dyn SnsHttp>,
    certs: Mutex<HashMap<SnsUrl, Arc<SigningCert>>>,
    /// Certificate URLs the SNS host said do not exist, with the Unix second they are asked again.
    missing: Mutex<HashMap<SnsUrl, i64>>,
}

impl fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("topics", &self.topics)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

impl SnsVerifier {
    /// A verifier accepting messages from `allowed_topic_arns` (blank entries are ignored; none at
    /// all is an error) whose `Timestamp` is within `tolerance_secs` of the clock either way.
    ///
    /// SNS re-delivers a message with its original `Timestamp`, so the tolerance must cover the
    /// topic's delivery-retry window (the default policy retries for about a minute; a custom one
    /// for up to an hour) plus clock skew.
    pub fn new(
        allowed_topic_arns: &[&str],
        tolerance_secs: i64,
        http: Arc<dyn SnsHttp>,
    ) -> Result<Self, InvalidSnsConfig> {
        let mut topics = Vec::new();
        for (index, arn) in allowed_topic_arns.iter().enumerate() {
            let arn = arn.trim();
            if arn.is_empty() {
                continue;
            }
            if !is_topic_arn(arn) {
                return Err(InvalidSnsConfig::InvalidTopicArn { index });
            }
            topics.push(arn.to_owned());
        }
        if topics.is_empty() {
            return Err(InvalidSnsConfig::NoTopics);
        }
        Ok(Self {
            topics,
            tolerance_secs,
            http,
            certs: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies one delivery on its raw body bytes. Nothing is fetched unless the body parses, its
    /// URLs pass the SNS rule, its topic is allowed and its `Timestamp` is in the window. A
    /// certificate outside its validity window at `clock`, or not an RSA certificate, is
    /// [`WebhookRejection::BadSignature`]: no acceptable key made the signature.
    pub async fn verify(
        &self,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<VerifiedSns, SnsVerifyError> {
        let message = ParsedMessage::parse(body)?;
        let cert_url = SnsUrl::signing_cert(&message.signing_cert_url)?;
        let subscribe_url = match &message.signed {
            SignedFields::Confirmation { subscribe_url, .. } => {
                Some(SnsUrl::subscribe(subscribe_url)?)
            }
            SignedFields::Notification { .. } => None,
        };
        if !self.topics.contains(&message.topic_arn) {
            return Err(WebhookRejection::TopicNotAllowed.into());
        }
        let timestamp = self.check_timestamp(&message.timestamp, clock)?;
        let cert = self.signing_cert(&cert_url, clock.unix_seconds()).await?;
        if !cert.is_valid_at(clock.unix_seconds()) {
            return Err(WebhookRejection::BadSignature.into());
        }
        cert.verify(
            message.signature_version,
            message.string_to_sign().as_bytes(),
            &message.signature,
        )?;
        let message_type = message.message_type();
        let (subject, token) = match message.signed {
            SignedFields::Notification { subject } => (subject, None),
            SignedFields::Confirmation { token, .. } => (None, Some(token)),
        };
        Ok(VerifiedSns {
            message_type,
            message_id: message.message_id,
            topic_arn: message.topic_arn,
            message: message.message,
            subject,
            timestamp,
            subscribe_url,
            token,
            signature_version: message.signature_version,
        })
    }

    /// Confirms the subscription a verified `SubscriptionConfirmation` asks for, by GETting its
    /// `SubscribeURL` (which passed the SNS host rule when the message was verified).
    pub async fn confirm_subscription(&self, verified: &VerifiedSns) -> Result<(), SnsVerifyError> {
        if verified.message_type != SnsMessageType::SubscriptionConfirmation {
            return Err(SnsVerifyError::NotSubscriptionConfirmation);
        }
        let url = verified
            .subscribe_url
            .as_ref()
            .ok_or(SnsVerifyError::Rejected(WebhookRejection::Missing))?;
        self.http
            .get(url)
            .await
            .map_err(SnsVerifyError::Unavailable)?;
        Ok(())
    }

    fn check_timestamp(
        &self,
        timestamp: &str,
        clock: &dyn Clock,
    ) -> Result<OffsetDateTime, WebhookRejection> {
        let ts =
            OffsetDateTime::parse(timestamp, &Rfc3339).map_err(|_| WebhookRejection::Malformed)?;
        let age = clock.now() - ts;
        let tolerance = time::Duration::seconds(self.tolerance_secs);
        if age > tolerance {
            Err(WebhookRejection::Stale)
        } else if -age > tolerance {
            Err(WebhookRejection::Future)
        } else {
            Ok(ts)
        }
    }

    /// The certificate at `url`, from the cache or fetched (and then cached). A URL the SNS host
    /// answers 404 or 403 for is a rejection ([`WebhookRejection::CertificateNotFound`]),
    /// remembered for [`MISSING_CERT_TTL_SECS`]; other fetch failures (5xx, timeouts, connection
    /// errors) are [`SnsVerifyError::Unavailable`] and not remembered.
    async fn signing_cert(
        &self,
        url: &SnsUrl,
        now_secs: i64,
    ) -> Result<Arc<SigningCert>, SnsVerifyError> {
        if let Some(cert) = self.cache().get(url) {
            return Ok(Arc::clone(cert));
        }
        if lock(&self.missing)
            .get(url)
            .is_some_and(|&until| now_secs < until)
        {
            return Err(WebhookRejection::CertificateNotFound.into());
        }
        let pem = match self.http.get(url).await {
            Ok(pem) => pem,
            // SNS serves its certificates from its own hosts; "not there" or "forbidden" for a
            // `.pem` on one of them means the URL was made up, which no retry will change.
            Err(SnsHttpError::Status(404 | 403)) => {
                let mut missing = lock(&self.missing);
                if missing.len() >= MISSING_CERT_CACHE_CAPACITY {
                    missing.retain(|_, until| now_secs < *until);
                    if missing.len() >= MISSING_CERT_CACHE_CAPACITY {
                        missing.clear();
                    }
                }
                missing.insert(url.clone(), now_secs + MISSING_CERT_TTL_SECS);
                return Err(WebhookRejection::CertificateNotFound.into());
            }
            Err(e) => return Err(SnsVerifyError::Unavailable(e)),
        };
        // What an SNS host serves at a `.pem` URL and is not an RSA certificate cannot vouch for
        // any signature; it is not cached, so a later delivery fetches again.
        let cert = Arc::new(SigningCert::from_pem(&pem).ok_or(WebhookRejection::BadSignature)?);
        let mut cache = self.cache();
        if cache.len() >= CERT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(url.clone(), Arc::clone(&cert));
        Ok(cert)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<SnsUrl, Arc<SigningCert>>> {
        lock(&self.certs)
    }
}

/// Locks a cache map. The maps are valid after any panic (changes are single calls), so a
/// poisoned lock is used.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `arn:<partition>:sns:<region>:<12-digit account>:<topic name>`.
fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "sns", region, account, name]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
    )
}

/// A parsed signing certificate: its RSA key, ready for each signature version, and validity
/// window (Unix seconds, inclusive).
///
/// The key is read and checked with RustCrypto (`x509-cert`, `rsa`) and verified with AWS-LC,
/// which every function already links (rustls under the AWS SDK): its assembly RSA makes the
/// per-request check several times cheaper than `rsa`'s (issue 14). Keys from 1,024 bits are
/// accepted, as `rsa` accepted them (AWS's certificates are 2,048-bit).
struct SigningCert {
    sha1: ParsedPublicKey,
    sha256: ParsedPublicKey,
    not_before: i64,
    not_after: i64,
}

impl SigningCert {
    fn from_pem(pem: &[u8]) -> Option<Self> {
        let cert = Certificate::from_pem(pem).ok()?;
        let tbs = &cert.tbs_certificate;
        let spki = tbs.subject_public_key_info.to_der().ok()?;
        RsaPublicKey::from_public_key_der(&spki).ok()?;
        let sha1 =
            ParsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY, &spki).ok()?;
        let sha256 =
            ParsedPublicKey::new(&RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, &spki).ok()?;
        let secs = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        Some(Self {
            sha1,
            sha256,
            not_before: secs(tbs.validity.not_before),
            not_after: secs(tbs.validity.not_after),
        })
    }

    fn is_valid_at(&self, unix_seconds: i64) -> bool {
        (self.not_before..=self.not_after).contains(&unix_seconds)
    }

    fn verify(
        &self,
        version: SnsSignatureVersion,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), WebhookRejection> {
        let key = match version {
            SnsSignatureVersion::V1 => &self.sha1,
            SnsSignatureVersion::V2 => &self.sha256,
        };
        let verified = key.verify_sig(signed, signature);
        verified.map_err(|_| WebhookRejection::BadSignature)
    }
}

/// The JSON body as SNS sends it. Unknown fields are ignored; a duplicated field is an error
/// (serde refuses it), so no field can be read one way here and another way elsewhere.
#[derive(Deserialize)]
struct RawMessage {
    #[serde(rename = "Type")]
    message_type: Option<String>,
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "TopicArn")]
    topic_arn: Option<String>,
    #[serde(rename = "Subject")]
    subject: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    #[serde(rename = "Timestamp")]
    timestamp: Option<String>,
    #[serde(rename = "SignatureVersion")]
    signature_version: Option<String>,
    #[serde(rename = "Signature")]
    signature: Option<String>,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: Option<String>,
}

/// A message with every field its type requires, not yet verified.
#[derive(Debug)]
struct ParsedMessage {
    signed: SignedFields,
    message_id: String,
    topic_arn: String,
    message: String,
    timestamp: String,
    signature_version: SnsSignatureVersion,
    signature: Vec<u8>,
    signing_cert_url: String,
}

/// The fields that only some message types sign.
#[derive(Debug)]
enum SignedFields {
    Notification {
        subject: Option<String>,
    },
    Confirmation {
        message_type: SnsMessageType,
        subscribe_url: String,
        token: String,
    },
}

impl ParsedMessage {
    fn parse(body: &[u8]) -> Result<Self, WebhookRejection> {
        let raw: RawMessage =
            serde_json::from_slice(body).map_err(|_| WebhookRejection::Malformed)?;
        let required = |field: Option<String>| field.ok_or(WebhookRejection::Missing);
        let message_type = SnsMessageType::parse(&required(raw.message_type)?)
            .ok_or(WebhookRejection::Malformed)?;
        let signature_version = match required(raw.signature_version)?.as_str() {
            "1" => SnsSignatureVersion::V1,
            "2" => SnsSignatureVersion::V2,
            _ => return Err(WebhookRejection::UnsupportedVersion),
        };
        let signature = required(raw.signature)?;
        if signature.is_empty() {
            return Err(WebhookRejection::Missing);
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| WebhookRejection::Malformed)?;
        let signed = match message_type {
            SnsMessageType::Notification => SignedFields::Notification {
                subject: raw.subject,
            },
            SnsMessageType::SubscriptionConfirmation | SnsMessageType::UnsubscribeConfirmation => {
                SignedFields::Confirmation {
                    message_type,
                    subscribe_url: required(raw.subscribe_url)?,
                    token: required(raw.token)?,
                }
            }
        };
        Ok(Self {
            signed,
            message_id: required(raw.message_id)?,
            topic_arn: required(raw.topic_arn)?,
            message: required(raw.message)?,
            timestamp: required(raw.timestamp)?,
            signature_version,
            signature,
            signing_cert_url: required(raw.signing_cert_url)?,
        })
    }

    fn message_type(&self) -> SnsMessageType {
        match &self.signed {
            SignedFields::Notification { .. } => SnsMessageType::Notification,
            SignedFields::Confirmation { message_type, .. } => *message_type,
        }
    }

    /// `Key\nvalue\n` for each key the type signs, in byte order, with the unescaped values
    /// (PROVIDERS.md §1.3). `Subject` is signed only when the notification has one.
    fn string_to_sign(&self) -> String {
        let message_type = self.message_type().as_str();
        let fields: Vec<(&str, &str)> = match &self.signed {
            SignedFields::Notification { subject } => {
                let mut fields = vec![
                    ("Message", &*self.message),
                    ("MessageId", &*self.message_id),
                ];
                if let Some(subject) = subject {
                    fields.push(("Subject", subject));
                }
                fields.extend([
                    ("Timestamp", &*self.timestamp),
                    ("TopicArn", &*self.topic_arn),
                    ("Type", message_type),
                ]);
                fields
            }
            SignedFields::Confirmation {
                subscribe_url,
                token,
                ..
            } => vec![
                ("Message", &self.message),
                ("MessageId", &self.message_id),
                ("SubscribeURL", subscribe_url),
                ("Timestamp", &self.timestamp),
                ("Token", token),
                ("TopicArn", &self.topic_arn),
                ("Type", message_type),
            ],
        };
        let mut out = String::new();
        for (key, value) in fields {
            out.push_str(key);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{SnsTestMessage, SnsTestSigner, StaticSnsHttp, sns_timestamp};
    use super::*;
    use mailgate_core::FixedClock;
    use serde_json::{Value, json};
    use time::macros::datetime;

    // PROVIDERS.md §9.3: aws/aws-php-sns-message-validator's functional test data (real SNS
    // messages and the real, since expired, AWS signing certificate).
    const VECTORS: &str = include_str!("../../tests/fixtures/sns_vectors.json");
    const OFFICIAL_CERT_URL: &str = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:mailgate-ses-events";
    const NOW: OffsetDateTime = datetime!(2026-03-02 10:00:00.250 UTC);

    fn vectors() -> (String, Vec<Value>) {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let pem = v["certificate_pem"].as_str().unwrap().to_owned();
        (pem, v["messages"].as_array().unwrap().clone())
    }

    fn body(message: &Value) -> Vec<u8> {
        serde_json::to_vec(message).unwrap()
    }

    /// A verifier for the four vector topics whose fetcher serves `cert_pem` at the vectors' URL.
    fn official(cert_pem: &str) -> (SnsVerifier, Arc<StaticSnsHttp>) {
        let (_, messages) = vectors();
        let topics: Vec<&str> = messages
            .iter()
            .map(|m| m["TopicArn"].as_str().unwrap())
            .collect();
        let http = Arc::new(StaticSnsHttp::new().with_response(OFFICIAL_CERT_URL, cert_pem));
        (SnsVerifier::new(&topics, 300, http.clone()).unwrap(), http)
    }

    /// One second after `message` was published.
    fn just_after(message: &Value) -> FixedClock {
        let ts = OffsetDateTime::parse(message["Timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
        FixedClock::new(ts + time::Duration::seconds(1))
    }

    /// A verifier for [`TOPIC`] with a fetcher serving `signer`'s certificate.
    fn own(signer: &SnsTestSigner) -> (SnsVerifier, Arc<StaticSnsHttp>) {
        let http = Arc::new(StaticSnsHttp::serving(signer));
        (SnsVerifier::new(&[TOPIC], 300, http.clone()).unwrap(), http)
    }

    fn rejection(result: Result<VerifiedSns, SnsVerifyError>) -> WebhookRejection {
        result.unwrap_err().rejection().expect("a rejection")
    }

    #[tokio::test]
    async fn the_four_official_aws_vectors_verify() {
        let (pem, messages) = vectors();
        let (verifier, http) = official(&pem);
        let expected = [
            (SnsSignatureVersion::V1, None),
            (SnsSignatureVersion::V2, None),
            (SnsSignatureVersion::V1, Some("Hello world")),
            (SnsSignatureVersion::V2, Some("Hello world")),
        ];
        for (message, (version, subject)) in messages.iter().zip(expected) {
            let verified = verifier
                .verify(&body(message), &just_after(message))
                .await
                .unwrap();
            assert_eq!(verified.message_type(), SnsMessageType::Notification);
            assert_eq!(
                verified.message_id(),
                message["MessageId"].as_str().unwrap()
            );
            assert_eq!(verified.topic_arn(), message["TopicArn"].as_str().unwrap());
            assert_eq!(verified.message(), "Hello world");
            assert_eq!(verified.subject(), subject);
            assert_eq!(verified.signature_version(), version);
            assert_eq!(verified.subscribe_url(), None);
            assert_eq!(
                sns_timestamp(verified.timestamp()),
                message["Timestamp"].as_str().unwrap()
            );
        }
        assert_eq!(http.fetch_count(OFFICIAL_CERT_URL), 1);
    }

    #[test]
    fn the_string_to_sign_is_the_documented_one() {
        let (_, messages) = vectors();
        let first = ParsedMessage::parse(&body(&messages[0])).unwrap();
        assert_eq!(
            first.string_to_sign(),
            "Message\nHello world\nMessageId\n792cda85-518f-5dd3-9163-81d851212f3a\nTimestamp\n2022-07-28T21:23:58.317Z\nTopicArn\narn:aws:sns:us-east-2:295079676684:publish-and-verify-892f85fe-4836-424d-8188-ab85bef0f362\nType\nNotification\n"
        );
        let third = ParsedMessage::parse(&body(&messages[2])).unwrap();
        assert_eq!(
            third.string_to_sign(),
            "Message\nHello world\nMessageId\n11405cc3-9ac7-56d5-b45d-079e8f7a8edf\nSubject\nHello world\nTimestamp\n2022-07-28T22:53:49.654Z\nTopicArn\narn:aws:sns:us-east-2:295079676684:publish-and-verify-6e11fed2-fcdf-4c52-9dc4-36ef43f37f84\nType\nNotification\n"
        );
        // The AWS docs' SubscriptionConfirmation example: SubscribeURL and Token are signed.
        let confirmation = json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Message": "You have chosen to subscribe.\nVisit the SubscribeURL.",
            "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2012-04-26T20:45:04.751Z",
            "SignatureVersion": "1",
            "Signature": "AAAA",
            "SigningCertURL": "https://sns.us-west-2.amazonaws.com/x.pem",
            "Subject": "ignored on confirmations"
        });
        assert_eq!(
            ParsedMessage::parse(&body(&confirmation))
                .unwrap()
                .string_to_sign(),
            "Message\nYou have chosen to subscribe.\nVisit the SubscribeURL.\nMessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\nSubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2012-04-26T20:45:04.751Z\nToken\n2336412f37\nTopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nSubscriptionConfirmation\n"
        );
    }

    #[tokio::test]
    async fn a_null_subject_counts_as_absent() {
        let (pem, messages) = vectors();
        let (verifier, _) = official(&pem);
        let mut message = messages[0].clone();
        message["Subject"] = Value::Null;
        let verified = verifier
            .verify(&body(&message), &just_after(&message))
            .await
            .unwrap();
        assert_eq!(verified.subject(), None);
    }

    #[tokio::test]
    async fn a_tampered_message_subject_or_signature_is_a_bad_signature() {
        let (pem, messages) = vectors();
        let (verifier, _) = official(&pem);
        let m = &messages[2];
        let clock = just_after(m);
        for (key, value) in [
            ("Message", json!("Hello world!")),
            ("Subject", json!("Hello World")),
            ("MessageId", json!("11405cc3-9ac7-56d5-b45d-079e8f7a8ede")),
            ("Timestamp", json!("2022-07-28T22:53:49.655Z")),
            ("Type", json!("SubscriptionConfirmation")),
            ("SignatureVersion", json!("2")),
        ] {
            let mut tampered = m.clone();
            tampered[key] = value;
            if key == "Type" {
                tampered["Token"] = json!("t");
                tampered["SubscribeURL"] = json!("https://sns.us-east-2.amazonaws.com/?a=b");
            }
            assert_eq!(
                rejection(verifier.verify(&body(&tampered), &clock).await),
                WebhookRejection::BadSignature,
                "{key}"
            );
        }
        let mut subject_dropped = m.clone();
        subject_dropped.as_object_mut().unwrap().remove("Subject");
        assert_eq!(
            rejection(verifier.verify(&body(&subject_dropped), &clock).await),
            WebhookRejection::BadSignature
        );
        // Flip one bit of the signature.
        let mut signature = STANDARD.decode(m["Signature"].as_str().unwrap()).unwrap();
        signature[100] ^= 0x01;
        let mut tampered = m.clone();
        tampered["Signature"] = json!(STANDARD.encode(&signature));
        assert_eq!(
            rejection(verifier.verify(&body(&tampered), &clock).await),
            WebhookRejection::BadSignature
        );
        // A signature of the wrong length.
        let mut short = m.clone();
        short["Signature"] = json!(STANDARD.encode(&signature[..255]));
        assert_eq!(
            rejection(verifier.verify(&body(&short), &clock).await),
            WebhookRejection::BadSignature
        );
    }

    #[tokio::test]
    async fn the_official_messages_do_not_verify_under_another_certificate() {
        let (_, messages) = vectors();
        let signer = SnsTestSigner::new().with_validity(
            datetime!(2022-01-01 00:00 UTC),
            datetime!(2023-01-01 00:00 UTC),
        );
        let (verifier, _) = official(signer.certificate_pem());
        for m in &messages {
            assert_eq!(
                rejection(verifier.verify(&body(m), &just_after(m)).await),
                WebhookRejection::BadSignature
            );
        }
    }

    #[tokio::test]
    async fn a_message_signed_by_another_key_is_a_bad_signature() {
        let signer = SnsTestSigner::new();
        let impostor = SnsTestSigner::new().with_fresh_key();
        let (verifier, _) = own(&signer);
        let forged = impostor.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW));
        assert_eq!(
            rejection(verifier.verify(&forged, &FixedClock::new(NOW)).await),
            WebhookRejection::BadSignature
        );
    }

    #[tokio::test]
    async fn signature_versions_other_than_1_and_2_are_unsupported() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let clock = FixedClock::new(NOW);
        for version in ["3", "0", "", "v2", " 2"] {
            let message =
                SnsTestMessage::notification(TOPIC, "{}", NOW).with_signature_version(version);
            assert_eq!(
                rejection(verifier.verify(&signer.sign(&message), &clock).await),
                WebhookRejection::UnsupportedVersion,
                "{version:?}"
            );
        }
        assert!(http.fetched().is_empty());
        for version in ["1", "2"] {
            let message =
                SnsTestMessage::notification(TOPIC, "{}", NOW).with_signature_version(version);
            assert!(
                verifier
                    .verify(&signer.sign(&message), &clock)
                    .await
                    .is_ok()
            );
        }
    }

    #[tokio::test]
    async fn untrusted_signing_cert_urls_are_refused_without_fetching() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        for url in [
            "https://sns.amazonaws.com.evil.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://127.0.0.1/x.pem",
            "not a url",
        ] {
            http.set(url, Ok(signer.certificate_pem().as_bytes().to_vec()));
            let message = SnsTestMessage::notification(TOPIC, "{}", NOW).with_signing_cert_url(url);
            assert_eq!(
                rejection(
                    verifier
                        .verify(&signer.sign(&message), &FixedClock::new(NOW))
                        .await
                ),
                WebhookRejection::UntrustedUrl,
                "{url}"
            );
        }
        assert!(http.fetched().is_empty());
    }

    #[tokio::test]
    async fn a_topic_outside_the_allowlist_is_refused_without_fetching() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let other = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic";
        let message = SnsTestMessage::notification(other, "{}", NOW);
        assert_eq!(
            rejection(
                verifier
                    .verify(&signer.sign(&message), &FixedClock::new(NOW))
                    .await
            ),
            WebhookRejection::TopicNotAllowed
        );
        assert!(http.fetched().is_empty());
    }

    #[tokio::test]
    async fn stale_and_future_timestamps_are_refused_without_fetching() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let message = signer.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW));
        let late = FixedClock::new(NOW + time::Duration::milliseconds(300_001));
        assert_eq!(
            rejection(verifier.verify(&message, &late).await),
            WebhookRejection::Stale
        );
        let early = FixedClock::new(NOW - time::Duration::milliseconds(300_001));
        assert_eq!(
            rejection(verifier.verify(&message, &early).await),
            WebhookRejection::Future
        );
        let mut bad = SnsTestMessage::notification(TOPIC, "{}", NOW);
        bad.timestamp = "1772445600".to_owned();
        assert_eq!(
            rejection(
                verifier
                    .verify(&signer.sign(&bad), &FixedClock::new(NOW))
                    .await
            ),
            WebhookRejection::Malformed
        );
        assert!(http.fetched().is_empty());
        // The edges of the window are inside it.
        for edge in [
            NOW + time::Duration::seconds(300),
            NOW - time::Duration::seconds(300),
        ] {
            assert!(
                verifier
                    .verify(&message, &FixedClock::new(edge))
                    .await
                    .is_ok()
            );
        }
    }

    #[tokio::test]
    async fn the_certificate_is_fetched_once_for_two_messages() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let clock = FixedClock::new(NOW);
        for text in ["first", "second"] {
            let message = SnsTestMessage::notification(TOPIC, text, NOW);
            let verified = verifier
                .verify(&signer.sign(&message), &clock)
                .await
                .unwrap();
            assert_eq!(verified.message(), text);
        }
        assert_eq!(http.fetched(), vec![signer.cert_url().to_owned()]);
    }

    #[tokio::test]
    async fn an_expired_or_not_yet_valid_certificate_is_rejected() {
        // The official certificate expired at the end of 2022-08-17.
        let (pem, messages) = vectors();
        let topics = [messages[0]["TopicArn"].as_str().unwrap()];
        let http = Arc::new(StaticSnsHttp::new().with_response(OFFICIAL_CERT_URL, pem));
        let month = 31 * 24 * 3600;
        let verifier = SnsVerifier::new(&topics, month, http).unwrap();
        let after_expiry = FixedClock::new(datetime!(2022-08-18 00:00 UTC));
        assert_eq!(
            rejection(verifier.verify(&body(&messages[0]), &after_expiry).await),
            WebhookRejection::BadSignature
        );
        let last_valid_second = FixedClock::new(datetime!(2022-08-17 23:59:59 UTC));
        assert!(
            verifier
                .verify(&body(&messages[0]), &last_valid_second)
                .await
                .is_ok()
        );

        let expired = SnsTestSigner::new().with_validity(
            datetime!(2025-01-01 00:00 UTC),
            datetime!(2026-01-01 00:00 UTC),
        );
        let not_yet = SnsTestSigner::new().with_validity(
            datetime!(2027-01-01 00:00 UTC),
            datetime!(2028-01-01 00:00 UTC),
        );
        for signer in [expired, not_yet] {
            let (verifier, _) = own(&signer);
            let message = signer.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW));
            assert_eq!(
                rejection(verifier.verify(&message, &FixedClock::new(NOW)).await),
                WebhookRejection::BadSignature
            );
        }
    }

    #[tokio::test]
    async fn a_certificate_that_cannot_be_fetched_is_unavailable_and_fetched_again_later() {
        let signer = SnsTestSigner::new();
        let http =
            Arc::new(StaticSnsHttp::new().with_failure(signer.cert_url(), SnsHttpError::Timeout));
        let verifier = SnsVerifier::new(&[TOPIC], 300, http.clone()).unwrap();
        let message = signer.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW));
        let clock = FixedClock::new(NOW);
        let error = verifier.verify(&message, &clock).await.unwrap_err();
        assert_eq!(error, SnsVerifyError::Unavailable(SnsHttpError::Timeout));
        assert!(error.is_transient());
        assert_eq!(error.rejection(), None);
        // A server error and a refused connection are no different: not cached, fetched again.
        for transient in [SnsHttpError::Status(503), SnsHttpError::Connect] {
            http.set(signer.cert_url(), Err(transient.clone()));
            let error = verifier.verify(&message, &clock).await.unwrap_err();
            assert_eq!(error, SnsVerifyError::Unavailable(transient));
        }
        http.set(signer.cert_url(), Ok(signer.certificate_pem().into()));
        assert!(verifier.verify(&message, &clock).await.is_ok());
        assert_eq!(http.fetch_count(signer.cert_url()), 4);
    }

    #[tokio::test]
    async fn a_missing_certificate_is_rejected_and_not_fetched_again_for_a_while() {
        for status in [404, 403] {
            let signer = SnsTestSigner::new();
            // A made-up `.pem` on a real SNS host: the host answers 404 (403 from S3-style hosts).
            let forged = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-madeup.pem";
            let http =
                Arc::new(StaticSnsHttp::new().with_failure(forged, SnsHttpError::Status(status)));
            let verifier = SnsVerifier::new(&[TOPIC], 300, http.clone()).unwrap();
            let message = signer.sign(
                &SnsTestMessage::notification(TOPIC, "{}", NOW).with_signing_cert_url(forged),
            );
            let clock = FixedClock::new(NOW);
            for _ in 0..3 {
                let error = verifier.verify(&message, &clock).await.unwrap_err();
                assert!(!error.is_transient(), "{status}: {error:?}");
                assert_eq!(
                    error.rejection(),
                    Some(WebhookRejection::CertificateNotFound),
                    "{status}"
                );
            }
            // Repeats within the window cost no fetch.
            assert_eq!(http.fetch_count(forged), 1, "{status}");
            // After the window the URL is asked again (a certificate may have been published).
            let later = NOW + time::Duration::minutes(11);
            clock.advance(time::Duration::minutes(11));
            let message = signer.sign(
                &SnsTestMessage::notification(TOPIC, "{}", later).with_signing_cert_url(forged),
            );
            let error = verifier.verify(&message, &clock).await.unwrap_err();
            assert!(!error.is_transient(), "{status}");
            assert_eq!(http.fetch_count(forged), 2, "{status}");
        }
    }

    #[tokio::test]
    async fn a_certificate_that_does_not_parse_is_rejected_and_not_cached() {
        let signer = SnsTestSigner::new();
        let http = Arc::new(StaticSnsHttp::new().with_response(signer.cert_url(), "<html>"));
        let verifier = SnsVerifier::new(&[TOPIC], 300, http.clone()).unwrap();
        let message = signer.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW));
        let clock = FixedClock::new(NOW);
        let error = verifier.verify(&message, &clock).await.unwrap_err();
        assert_eq!(error.rejection(), Some(WebhookRejection::BadSignature));
        assert!(!error.is_transient());
        http.set(signer.cert_url(), Ok(signer.certificate_pem().into()));
        assert!(verifier.verify(&message, &clock).await.is_ok());
        assert_eq!(http.fetch_count(signer.cert_url()), 2);
    }

    #[tokio::test]
    async fn the_certificate_cache_is_capped() {
        let signer = SnsTestSigner::new();
        let http = Arc::new(StaticSnsHttp::new());
        let verifier = SnsVerifier::new(&[TOPIC], 300, http.clone()).unwrap();
        let clock = FixedClock::new(NOW);
        for i in 0..CERT_CACHE_CAPACITY + 3 {
            let url = format!("https://sns.us-east-1.amazonaws.com/cert-{i}.pem");
            http.set(&url, Ok(signer.certificate_pem().into()));
            let message =
                SnsTestMessage::notification(TOPIC, "{}", NOW).with_signing_cert_url(&url);
            assert!(
                verifier
                    .verify(&signer.sign(&message), &clock)
                    .await
                    .is_ok()
            );
            assert!(verifier.cache().len() <= CERT_CACHE_CAPACITY);
        }
    }

    #[tokio::test]
    async fn messages_of_all_three_types_from_the_test_signer_verify() {
        let signer = SnsTestSigner::new();
        let (verifier, _) = own(&signer);
        let clock = FixedClock::new(NOW);
        let messages = [
            SnsTestMessage::notification(
                TOPIC,
                "{\"eventType\":\"Bounce\",\"x\":\"a\\\"b\\nc\u{e9}\"}",
                NOW,
            )
            .with_subject("Amazon SES Email Event Notification"),
            SnsTestMessage::notification(TOPIC, "line one\nline two \u{1f4e7}", NOW)
                .with_signature_version("1"),
            SnsTestMessage::subscription_confirmation(TOPIC, NOW),
            SnsTestMessage::subscription_confirmation(TOPIC, NOW).with_signature_version("1"),
            SnsTestMessage::unsubscribe_confirmation(TOPIC, NOW),
        ];
        for m in messages {
            let verified = verifier.verify(&signer.sign(&m), &clock).await.unwrap();
            assert_eq!(verified.message_type(), m.message_type);
            assert_eq!(verified.message_id(), m.message_id);
            assert_eq!(verified.topic_arn(), TOPIC);
            assert_eq!(verified.message(), m.message);
            assert_eq!(verified.subject(), m.subject.as_deref());
            assert_eq!(verified.timestamp(), NOW);
            assert_eq!(verified.signature_version().as_str(), m.signature_version);
            if m.message_type == SnsMessageType::Notification {
                assert_eq!(verified.subscribe_url(), None);
                assert_eq!(verified.token(), None);
            } else {
                assert_eq!(verified.subscribe_url().unwrap().as_str(), m.subscribe_url);
                assert_eq!(verified.token(), Some(m.token.as_str()));
            }
        }
    }

    #[tokio::test]
    async fn confirming_a_subscription_fetches_exactly_the_subscribe_url() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let message = SnsTestMessage::subscription_confirmation(TOPIC, NOW);
        http.set(
            &message.subscribe_url,
            Ok(b"<ConfirmSubscriptionResponse/>".to_vec()),
        );
        let verified = verifier
            .verify(&signer.sign(&message), &FixedClock::new(NOW))
            .await
            .unwrap();
        assert_eq!(http.fetched(), vec![signer.cert_url().to_owned()]);
        verifier.confirm_subscription(&verified).await.unwrap();
        assert_eq!(
            http.fetched(),
            vec![signer.cert_url().to_owned(), message.subscribe_url.clone()]
        );
        // SNS down while confirming: transient, so SNS sends the confirmation again.
        http.set(&message.subscribe_url, Err(SnsHttpError::Status(503)));
        assert_eq!(
            verifier.confirm_subscription(&verified).await,
            Err(SnsVerifyError::Unavailable(SnsHttpError::Status(503)))
        );
    }

    #[tokio::test]
    async fn a_subscribe_url_on_another_host_is_refused_without_fetching() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        for url in [
            "https://evil.example/?Action=ConfirmSubscription",
            "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription",
        ] {
            for message in [
                SnsTestMessage::subscription_confirmation(TOPIC, NOW),
                SnsTestMessage::unsubscribe_confirmation(TOPIC, NOW),
            ] {
                let message = message.with_subscribe_url(url);
                assert_eq!(
                    rejection(
                        verifier
                            .verify(&signer.sign(&message), &FixedClock::new(NOW))
                            .await
                    ),
                    WebhookRejection::UntrustedUrl,
                    "{url}"
                );
            }
        }
        assert!(http.fetched().is_empty());
    }

    #[tokio::test]
    async fn only_a_subscription_confirmation_can_be_confirmed() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let clock = FixedClock::new(NOW);
        for message in [
            SnsTestMessage::notification(TOPIC, "{}", NOW),
            SnsTestMessage::unsubscribe_confirmation(TOPIC, NOW),
        ] {
            let verified = verifier
                .verify(&signer.sign(&message), &clock)
                .await
                .unwrap();
            assert_eq!(
                verifier.confirm_subscription(&verified).await,
                Err(SnsVerifyError::NotSubscriptionConfirmation)
            );
        }
        assert_eq!(http.fetched(), vec![signer.cert_url().to_owned()]);
    }

    #[tokio::test]
    async fn bodies_that_are_not_complete_sns_messages_are_malformed_or_missing() {
        let signer = SnsTestSigner::new();
        let (verifier, http) = own(&signer);
        let clock = FixedClock::new(NOW);
        let good: Value =
            serde_json::from_slice(&signer.sign(&SnsTestMessage::notification(TOPIC, "{}", NOW)))
                .unwrap();
        let confirmation: Value = serde_json::from_slice(
            &signer.sign(&SnsTestMessage::subscription_confirmation(TOPIC, NOW)),
        )
        .unwrap();
        let without = |message: &Value, key: &str| {
            let mut m = message.clone();
            m.as_object_mut().unwrap().remove(key);
            body(&m)
        };
        let with = |key: &str, value: Value| {
            let mut m = good.clone();
            m[key] = value;
            body(&m)
        };
        let cases: Vec<(Vec<u8>, WebhookRejection)> = vec![
            (b"not json".to_vec(), WebhookRejection::Malformed),
            (b"".to_vec(), WebhookRejection::Malformed),
            (b"[]".to_vec(), WebhookRejection::Malformed),
            (vec![0xff, 0xfe], WebhookRejection::Malformed),
            (with("Type", json!("Publish")), WebhookRejection::Malformed),
            (with("Message", json!(42)), WebhookRejection::Malformed),
            (with("Signature", json!("%%%")), WebhookRejection::Malformed),
            (with("Signature", json!("")), WebhookRejection::Missing),
            (without(&good, "Type"), WebhookRejection::Missing),
            (without(&good, "MessageId"), WebhookRejection::Missing),
            (without(&good, "TopicArn"), WebhookRejection::Missing),
            (without(&good, "Message"), WebhookRejection::Missing),
            (without(&good, "Timestamp"), WebhookRejection::Missing),
            (without(&good, "Signature"), WebhookRejection::Missing),
            (
                without(&good, "SignatureVersion"),
                WebhookRejection::Missing,
            ),
            (without(&good, "SigningCertURL"), WebhookRejection::Missing),
            (without(&confirmation, "Token"), WebhookRejection::Missing),
            (
                without(&confirmation, "SubscribeURL"),
                WebhookRejection::Missing,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                rejection(verifier.verify(&body, &clock).await),
                expected,
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        // A key given twice could be read one way here and another way elsewhere.
        let text = String::from_utf8(body(&good)).unwrap();
        let duplicated = text.replacen("{", "{\"Message\":\"other\",", 1);
        assert_eq!(
            rejection(verifier.verify(duplicated.as_bytes(), &clock).await),
            WebhookRejection::Malformed
        );
        assert!(http.fetched().is_empty());
        // Unknown fields are tolerated.
        assert!(
            verifier
                .verify(&with("Extra", json!({"a": 1})), &clock)
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_verifier_needs_at_least_one_valid_topic() {
        let http: Arc<dyn SnsHttp> = Arc::new(StaticSnsHttp::new());
        assert_eq!(
            SnsVerifier::new(&[], 300, http.clone()).unwrap_err(),
            InvalidSnsConfig::NoTopics
        );
        assert_eq!(
            SnsVerifier::new(&[" ", ""], 300, http.clone()).unwrap_err(),
            InvalidSnsConfig::NoTopics
        );
        for bad in [
            "mailgate-ses-events",
            "arn:aws:sqs:us-east-1:123456789012:queue",
            "arn:aws:sns:us-east-1:1234:topic",
            "arn:aws:sns:us-east-1:123456789012:",
            "arn:aws:sns:us-east-1:123456789012:topic:subscription-id",
        ] {
            assert_eq!(
                SnsVerifier::new(&[TOPIC, bad], 300, http.clone()).unwrap_err(),
                InvalidSnsConfig::InvalidTopicArn { index: 1 },
                "{bad}"
            );
        }
        assert!(
            SnsVerifier::new(
                &[TOPIC, "", "arn:aws-cn:sns:cn-north-1:123456789012:t"],
                300,
                http
            )
            .is_ok()
        );
    }

    #[test]
    fn verification_can_run_on_a_multi_threaded_runtime() {
        fn assert_send<T: Send>(_: &T) {}
        let signer = SnsTestSigner::new();
        let (verifier, _) = own(&signer);
        let clock = FixedClock::new(NOW);
        let verify = verifier.verify(b"{}", &clock);
        assert_send(&verify);
    }
}
