//! Test doubles for SNS deliveries, for this crate's tests and other crates' (feature `testing`):
//! [`SnsTestSigner`] signs complete SNS bodies with a runtime RSA key and a self-signed
//! certificate, and [`StaticSnsHttp`] serves fixed responses and records what was fetched.
//!
//! The signer builds its string to sign independently of the verifier (from the keys present in
//! the body, the way the AWS PHP validator does), so a test that passes cross-checks the two.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::FutureExt;
use futures::future::BoxFuture;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use sha1::Sha1;
use sha2::Sha256;
use time::OffsetDateTime;
use time::macros::{datetime, format_description};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::der::asn1::GeneralizedTime;
use x509_cert::der::pem::LineEnding;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use super::{SnsHttp, SnsHttpError, SnsMessageType, SnsUrl};

/// The `SigningCertURL` a signer uses unless told otherwise.
pub const TEST_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-mailgate-test.pem";

/// RSA key size, as SNS uses.
const KEY_BITS: usize = 2048;

/// Numbers test message ids, tokens and certificate serials so that each is unique in a process.
static COUNTER: AtomicU64 = AtomicU64::new(1);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// One RSA key per process: keygen is the slow part, and most tests need only *a* key.
fn shared_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(generate_key)
}

fn generate_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).expect("RSA key generation")
}

/// Signs SNS messages the way SNS does, with its own key and a self-signed certificate for
/// `CN=sns.amazonaws.com` that it serves at [`Self::cert_url`] (see [`StaticSnsHttp::serving`]).
///
/// Signers made with [`Self::new`] share one key per process, so they differ only in their
/// certificate; use [`Self::with_fresh_key`] when a test needs a key no other signer has.
#[derive(Clone)]
pub struct SnsTestSigner {
    key: RsaPrivateKey,
    cert_url: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    certificate_pem: String,
}

impl std::fmt::Debug for SnsTestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsTestSigner")
            .field("cert_url", &self.cert_url)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Default for SnsTestSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl SnsTestSigner {
    /// A signer on the process-wide key, serving its certificate at [`TEST_CERT_URL`], valid from
    /// 2000 to 2100.
    pub fn new() -> Self {
        let not_before = datetime!(2000-01-01 00:00 UTC);
        let not_after = datetime!(2100-01-01 00:00 UTC);
        let key = shared_key().clone();
        let certificate_pem = self_signed(&key, not_before, not_after);
        Self {
            key,
            cert_url: TEST_CERT_URL.to_owned(),
            not_before,
            not_after,
            certificate_pem,
        }
    }

    /// The same signer with a key of its own (a second or so of keygen).
    pub fn with_fresh_key(mut self) -> Self {
        self.key = generate_key();
        self.certificate_pem = self_signed(&self.key, self.not_before, self.not_after);
        self
    }

    /// The same signer with a certificate valid only between `not_before` and `not_after`
    /// (both after 1970).
    pub fn with_validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self.certificate_pem = self_signed(&self.key, not_before, not_after);
        self
    }

    /// The same signer naming another `SigningCertURL` in what it signs.
    pub fn with_cert_url(mut self, cert_url: &str) -> Self {
        cert_url.clone_into(&mut self.cert_url);
        self
    }

    /// The `SigningCertURL` its messages carry.
    pub fn cert_url(&self) -> &str {
        &self.cert_url
    }

    /// Its certificate, PEM-encoded, as SNS serves one.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A complete SNS JSON body for `message`, signed: `SignatureVersion` `"1"` with SHA-1,
    /// anything else with SHA-256 (so unsupported versions still carry a real signature).
    pub fn sign(&self, message: &SnsTestMessage) -> Vec<u8> {
        let mut fields = serde_json::Map::new();
        let mut put = |key: &str, value: &str| {
            fields.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
        };
        put("Type", message.message_type.as_str());
        put("MessageId", &message.message_id);
        put("TopicArn", &message.topic_arn);
        put("Message", &message.message);
        put("Timestamp", &message.timestamp);
        match message.message_type {
            SnsMessageType::Notification => {
                if let Some(subject) = &message.subject {
                    put("Subject", subject);
                }
                put("UnsubscribeURL", &message.unsubscribe_url);
            }
            SnsMessageType::SubscriptionConfirmation | SnsMessageType::UnsubscribeConfirmation => {
                put("Token", &message.token);
                put("SubscribeURL", &message.subscribe_url);
            }
        }
        let signed = string_to_sign(&fields);
        let signature = if message.signature_version == "1" {
            SigningKey::<Sha1>::new(self.key.clone())
                .sign(signed.as_bytes())
                .to_vec()
        } else {
            SigningKey::<Sha256>::new(self.key.clone())
                .sign(signed.as_bytes())
                .to_vec()
        };
        let cert_url = message
            .signing_cert_url
            .clone()
            .unwrap_or_else(|| self.cert_url.clone());
        let mut put = |key: &str, value: &str| {
            fields.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
        };
        put("SignatureVersion", &message.signature_version);
        put("Signature", &STANDARD.encode(signature));
        put("SigningCertURL", &cert_url);
        serde_json::to_vec_pretty(&fields).expect("a JSON object of strings serializes")
    }
}

/// The AWS PHP validator's construction: every signable key present, in byte order.
fn string_to_sign(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    const SIGNABLE: [&str; 8] = [
        "Message",
        "MessageId",
        "Subject",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ];
    let mut out = String::new();
    for key in SIGNABLE {
        if let Some(value) = fields.get(key).and_then(|v| v.as_str()) {
            out.push_str(key);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

fn self_signed(
    key: &RsaPrivateKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> String {
    let signer = SigningKey::<Sha256>::new(key.clone());
    let subject = Name::from_str("CN=sns.amazonaws.com").expect("a valid distinguished name");
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).expect("an RSA SPKI");
    let time = |t: OffsetDateTime| {
        let since_epoch =
            Duration::from_secs(u64::try_from(t.unix_timestamp()).expect("after 1970"));
        Time::from(GeneralizedTime::from_unix_duration(since_epoch).expect("a representable time"))
    };
    let validity = Validity {
        not_before: time(not_before),
        not_after: time(not_after),
    };
    let serial = SerialNumber::from(next());
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
        .expect("a certificate builder")
        .build::<rsa::pkcs1v15::Signature>()
        .expect("a signed certificate")
        .to_pem(LineEnding::LF)
        .expect("a PEM certificate")
}

/// The fields of one SNS message before signing. Fields a type does not carry are ignored when
/// signing (`Subject`/`UnsubscribeURL` for notifications, `Token`/`SubscribeURL` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsTestMessage {
    /// `Type`.
    pub message_type: SnsMessageType,
    /// `MessageId`.
    pub message_id: String,
    /// `TopicArn`.
    pub topic_arn: String,
    /// `Subject` (notifications only).
    pub subject: Option<String>,
    /// `Message`.
    pub message: String,
    /// `Timestamp`, RFC 3339 with milliseconds as SNS writes it.
    pub timestamp: String,
    /// `SignatureVersion`, as a string so tests can send versions SNS never would.
    pub signature_version: String,
    /// `Token` (confirmations only).
    pub token: String,
    /// `SubscribeURL` (confirmations only).
    pub subscribe_url: String,
    /// `UnsubscribeURL` (notifications only; not signed).
    pub unsubscribe_url: String,
    /// A `SigningCertURL` other than the signer's.
    pub signing_cert_url: Option<String>,
}

impl SnsTestMessage {
    /// A notification of `message` on `topic_arn` published at `timestamp`, signature version 2.
    pub fn notification(topic_arn: &str, message: &str, timestamp: OffsetDateTime) -> Self {
        Self::of(SnsMessageType::Notification, topic_arn, message, timestamp)
    }

    /// The confirmation SNS sends when a subscription to `topic_arn` is created.
    pub fn subscription_confirmation(topic_arn: &str, timestamp: OffsetDateTime) -> Self {
        let message = format!(
            "You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
        );
        Self::of(
            SnsMessageType::SubscriptionConfirmation,
            topic_arn,
            &message,
            timestamp,
        )
    }

    /// The confirmation SNS sends when a subscription to `topic_arn` is deleted.
    pub fn unsubscribe_confirmation(topic_arn: &str, timestamp: OffsetDateTime) -> Self {
        let message = format!(
            "You have chosen to deactivate subscription {topic_arn}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55.\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message."
        );
        Self::of(
            SnsMessageType::UnsubscribeConfirmation,
            topic_arn,
            &message,
            timestamp,
        )
    }

    fn of(
        message_type: SnsMessageType,
        topic_arn: &str,
        message: &str,
        timestamp: OffsetDateTime,
    ) -> Self {
        let n = next();
        let region = topic_arn.split(':').nth(3).unwrap_or("us-east-1");
        let token = format!("2336412f37fb687f5d51e6e241d{n:013x}");
        Self {
            message_type,
            message_id: format!("00000000-0000-4000-8000-{n:012x}"),
            topic_arn: topic_arn.to_owned(),
            subject: None,
            message: message.to_owned(),
            timestamp: sns_timestamp(timestamp),
            signature_version: "2".to_owned(),
            subscribe_url: format!(
                "https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic_arn}&Token={token}"
            ),
            token,
            unsubscribe_url: format!(
                "https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:c9135db0-26c4-47ec-8998-413945fb5a96"
            ),
            signing_cert_url: None,
        }
    }

    /// With this `MessageId`.
    pub fn with_message_id(mut self, message_id: &str) -> Self {
        message_id.clone_into(&mut self.message_id);
        self
    }

    /// With this `Subject`.
    pub fn with_subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// With this `SignatureVersion` (`"1"`, `"2"`, or anything a test needs).
    pub fn with_signature_version(mut self, version: &str) -> Self {
        version.clone_into(&mut self.signature_version);
        self
    }

    /// With this `SubscribeURL`.
    pub fn with_subscribe_url(mut self, url: &str) -> Self {
        url.clone_into(&mut self.subscribe_url);
        self
    }

    /// With this `SigningCertURL` instead of the signer's.
    pub fn with_signing_cert_url(mut self, url: &str) -> Self {
        self.signing_cert_url = Some(url.to_owned());
        self
    }
}

/// `2012-04-26T20:45:04.751Z`: UTC with milliseconds, as SNS writes `Timestamp`.
pub fn sns_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .expect("a UTC date formats")
}

/// [`SnsHttp`] from a fixed map of URL → response, recording every URL requested. A URL with no
/// response answers [`SnsHttpError::Status`] 404.
#[derive(Debug, Default)]
pub struct StaticSnsHttp {
    responses: Mutex<HashMap<String, Result<Vec<u8>, SnsHttpError>>>,
    fetched: Mutex<Vec<String>>,
}

impl StaticSnsHttp {
    /// Serves nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `signer`'s certificate at its `SigningCertURL`.
    pub fn serving(signer: &SnsTestSigner) -> Self {
        Self::new().with_response(signer.cert_url(), signer.certificate_pem())
    }

    /// Also answers `url` with `body`.
    pub fn with_response(self, url: &str, body: impl Into<Vec<u8>>) -> Self {
        self.set(url, Ok(body.into()));
        self
    }

    /// Also answers `url` with `error`.
    pub fn with_failure(self, url: &str, error: SnsHttpError) -> Self {
        self.set(url, Err(error));
        self
    }

    /// Answers `url` with `response` from now on. `url` is normalised as [`SnsUrl`] would be when
    /// it passes the rule, so `https://host:443/x` and `https://host/x` are the same entry.
    pub fn set(&self, url: &str, response: Result<Vec<u8>, SnsHttpError>) {
        let key = normalise(url);
        lock(&self.responses).insert(key, response);
    }

    /// Every URL requested so far, in order.
    pub fn fetched(&self) -> Vec<String> {
        lock(&self.fetched).clone()
    }

    /// How many times `url` was requested.
    pub fn fetch_count(&self, url: &str) -> usize {
        let key = normalise(url);
        lock(&self.fetched).iter().filter(|u| **u == key).count()
    }
}

impl SnsHttp for StaticSnsHttp {
    fn get<'a>(&'a self, url: &'a SnsUrl) -> BoxFuture<'a, Result<Vec<u8>, SnsHttpError>> {
        lock(&self.fetched).push(url.as_str().to_owned());
        let response = lock(&self.responses)
            .get(url.as_str())
            .cloned()
            .unwrap_or(Err(SnsHttpError::Status(404)));
        futures::future::ready(response).boxed()
    }
}

fn normalise(url: &str) -> String {
    SnsUrl::subscribe(url).map_or_else(|_| url.to_owned(), |u| u.as_str().to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
