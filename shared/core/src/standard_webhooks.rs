//! Webhooks to the team's own app, signed per Standard Webhooks v1: the `whsec_` secret, the
//! `webhook-signature` header, the JSON body of an app webhook, the stable `webhook-id`, the
//! endpoint's URL and event filter, and the secret-rotation rule.
//!
//! Everything here is pure: the endpoints store (`mailgate-aws`) persists [`Endpoint`]s, the
//! fan-out turns [`DeliveryEvent`]s into bodies and ids, and the dispatcher signs the exact body
//! bytes it sends with every secret [`Endpoint::signing_secrets`] returns. The signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}` and the signature is standard base64 of its
//! HMAC-SHA256 under the decoded secret, as the spec and its reference libraries define it.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

use crate::{DeliveryEvent, EndpointId, EventKind, MessageId, UnixMillis};

/// The prefix of a symmetric Standard Webhooks secret as shown to users.
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest key the spec allows (24 bytes).
pub const MIN_SECRET_BYTES: usize = 24;

/// The longest key the spec allows (64 bytes).
pub const MAX_SECRET_BYTES: usize = 64;

/// The size of the keys we generate.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// How long a replaced secret keeps signing after a rotation, so the app can switch over with
/// no delivery failing verification.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Reads base64 with or without its padding: secrets pasted from other tools often lose it (the
/// reference Python library pads them back the same way).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a string is not a `whsec_` secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWebhookSecret {
    /// It does not start with `whsec_`.
    #[error("a webhook secret starts with \"whsec_\"")]
    MissingPrefix,
    /// The part after the prefix is not standard base64.
    #[error("the part after \"whsec_\" is not standard base64")]
    NotBase64,
    /// The decoded key is shorter or longer than the spec allows.
    #[error(
        "a webhook secret decodes to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, this one to {0}"
    )]
    Length(usize),
}

/// A symmetric (`v1`) signing secret. Its `Debug` form never shows the key; [`Self::expose`] is
/// for the one place that must print or store it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// A new random secret of [`GENERATED_SECRET_BYTES`] bytes.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// Parses `whsec_<base64>` (padding optional), checking the key length.
    pub fn parse(input: &str) -> Result<Self, InvalidWebhookSecret> {
        let encoded = input
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(InvalidWebhookSecret::MissingPrefix)?;
        let key = LENIENT_BASE64
            .decode(encoded)
            .map_err(|_| InvalidWebhookSecret::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(InvalidWebhookSecret::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// The secret in its `whsec_<base64>` form: printed once when created or rotated, and
    /// stored, because signing needs the key itself.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The base64 HMAC-SHA256 of `{msg_id}.{timestamp}.{body}` (no `v1,` prefix).
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        // HMAC accepts a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// The `webhook-signature` header value: `v1,<signature>` for every secret, joined by spaces
/// (several during a rotation, newest first).
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|s| format!("v1,{}", s.sign(msg_id, timestamp_secs, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The key that identifies a delivery event across providers: `<provider>#<event key>` (an
/// event key is unique only within its provider).
pub fn app_event_key(event: &DeliveryEvent) -> String {
    format!("{}#{}", event.provider, event.key)
}

/// The `webhook-id` of the delivery of the event with key `event_key` (see [`app_event_key`])
/// to `endpoint`: `msg_` and the first 32 hex digits of SHA-256 over both. Derived rather than
/// random so a redelivered event (SQS at-least-once, a replayed DLQ) keeps its id and the app
/// can dedupe on it; it never contains a `.`, which the spec forbids.
pub fn webhook_message_id(endpoint: &EndpointId, event_key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(endpoint.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(event_key.as_bytes());
    let digest = hex::encode(hash.finalize());
    format!("msg_{}", &digest[..32])
}

fn rfc3339(at: UnixMillis) -> Value {
    match at.to_datetime().format(&Rfc3339) {
        Ok(text) => Value::String(text),
        // Only instants outside years 0–9999 cannot be written; the number still says when.
        Err(_) => json!(at.as_i64()),
    }
}

/// The message of ours an event was correlated to, as its app webhook names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelatedMessage {
    /// Our id.
    pub id: MessageId,
    /// The caller's `correlation_id` given at send time, if any.
    pub correlation_id: Option<String>,
}

impl From<MessageId> for CorrelatedMessage {
    fn from(id: MessageId) -> Self {
        Self {
            id,
            correlation_id: None,
        }
    }
}

/// The JSON body of the app webhook for `event`:
/// `{"type": "email.<kind>", "timestamp": "<RFC 3339 of the event>", "data": {...}}`.
///
/// `message_id` is our message the event belongs to when the processor correlated it (the
/// event's own echo of our id is used otherwise), and `correlation_id` the caller's own id
/// given at send time (null when none was given or the event matched none of our messages). `data.bounce` is present for `bounced` events
/// only, with the classification mailgate acted on. Addresses appear only here, in the body
/// sent to the team's own app over HTTPS.
pub fn app_webhook_body(event: &DeliveryEvent, message: Option<&CorrelatedMessage>) -> String {
    let message_id = message.map(|m| &m.id).or(event.message_id.as_ref());
    let mut data = json!({
        "message_id": message_id.map(MessageId::as_str),
        "correlation_id": message.and_then(|m| m.correlation_id.as_deref()),
        "recipient": event.recipient.as_ref().map(|r| r.as_str()),
        "provider": event.provider.as_str(),
        "provider_message_id": event.provider_message_id,
        "occurred_at": event.occurred_at.map(rfc3339),
        "received_at": rfc3339(event.received_at),
        "url": event.url,
        "detail": event.detail,
        "provider_type": event.provider_type,
    });
    if let (Some(verdict), Value::Object(map)) = (event.bounce_classification(), &mut data) {
        let report = event.bounce.clone().unwrap_or_default();
        map.insert(
            "bounce".to_owned(),
            json!({
                "kind": verdict.kind,
                "cause": verdict.cause,
                "suppress": verdict.suppress,
                "status": report.status.map(|s| s.to_string()),
                "reply_code": report.reply_code,
                "diagnostic": report.diagnostic,
                "provider_type": report.provider_type,
            }),
        );
    }
    json!({
        "type": event.kind.webhook_type(),
        "timestamp": rfc3339(event.at()),
        "data": data,
    })
    .to_string()
}

/// An event-type name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {name:?}; valid types are {}", valid_types().join(", "))]
pub struct UnknownEventType {
    /// The name as given.
    pub name: String,
}

/// Every app-webhook type name (`email.sent`, `email.delivered`, …).
pub fn valid_types() -> Vec<String> {
    EventKind::ALL.iter().map(|k| k.webhook_type()).collect()
}

/// Which event types an endpoint receives: empty means every event about a message; otherwise
/// exactly the named `email.<kind>` types. `email.account_notice` and `email.unknown` (events
/// about no message, or of a type we do not know) are sent only when named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    kinds: Vec<EventKind>,
}

impl EndpointFilter {
    /// The filter that takes every message event.
    pub fn all() -> Self {
        Self::default()
    }

    /// A filter of exactly these kinds (sorted, without repeats).
    pub fn of(kinds: impl IntoIterator<Item = EventKind>) -> Self {
        let mut kinds: Vec<EventKind> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| EventKind::ALL.iter().position(|a| a == k));
        kinds.dedup();
        Self { kinds }
    }

    /// Parses a comma-separated list of type names (`email.delivered,email.bounced`); blank
    /// means all. Every name must be an exact type name.
    pub fn parse_list(input: &str) -> Result<Self, UnknownEventType> {
        let kinds = input
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(Self::parse_type)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(kinds))
    }

    /// Parses one type name (`email.<kind>`).
    pub fn parse_type(name: &str) -> Result<EventKind, UnknownEventType> {
        name.strip_prefix("email.")
            .and_then(|kind| kind.parse::<EventKind>().ok())
            .ok_or_else(|| UnknownEventType {
                name: name.to_owned(),
            })
    }

    /// Whether an event of `kind` goes to an endpoint with this filter.
    pub fn matches(&self, kind: EventKind) -> bool {
        if self.kinds.is_empty() {
            !matches!(kind, EventKind::AccountNotice | EventKind::Unknown)
        } else {
            self.kinds.contains(&kind)
        }
    }

    /// Whether it takes every message event.
    pub fn is_all(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The type names, in the stable order of [`EventKind::ALL`] (empty for all).
    pub fn type_names(&self) -> Vec<String> {
        self.kinds.iter().map(|k| k.webhook_type()).collect()
    }
}

impl fmt::Display for EndpointFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kinds.is_empty() {
            f.write_str("*")
        } else {
            f.write_str(&self.type_names().join(","))
        }
    }
}

/// Why a URL is not accepted for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpointUrl {
    /// It does not parse as an absolute URL.
    #[error("{0:?} is not an absolute URL")]
    NotAUrl(String),
    /// Neither `https` nor `http`.
    #[error("the URL scheme must be https, not {0:?}")]
    UnsupportedScheme(String),
    /// Plain `http` to a host that is not this machine.
    #[error(
        "plain http is accepted only to a loopback host (localhost, 127.0.0.1, [::1]) for local \
         use; use https for {0:?}"
    )]
    PlainHttpNotLoopback(String),
    /// It carries a user name or password, which would be stored and listed in the clear.
    #[error("the URL must not contain credentials; authenticate requests with the signature")]
    HasCredentials,
}

/// An endpoint's URL: `https`, or `http` to a loopback host for local use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(url::Url);

impl EndpointUrl {
    /// Parses and checks a URL.
    pub fn parse(input: &str) -> Result<Self, InvalidEndpointUrl> {
        let url = url::Url::parse(input.trim())
            .map_err(|_| InvalidEndpointUrl::NotAUrl(input.to_owned()))?;
        let host = url
            .host()
            .ok_or_else(|| InvalidEndpointUrl::NotAUrl(input.to_owned()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(InvalidEndpointUrl::HasCredentials);
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match host {
                    url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                    url::Host::Ipv4(ip) => ip.is_loopback(),
                    url::Host::Ipv6(ip) => ip.is_loopback(),
                };
                if !loopback {
                    return Err(InvalidEndpointUrl::PlainHttpNotLoopback(host.to_string()));
                }
            }
            other => return Err(InvalidEndpointUrl::UnsupportedScheme(other.to_owned())),
        }
        Ok(Self(url))
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme and host only, for logs (paths may carry tokens).
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}/…",
            self.0.scheme(),
            self.0.host_str().unwrap_or("?")
        )
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// One of an endpoint's secrets; a replaced one carries the instant it stops signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSecret {
    /// The key.
    pub secret: WebhookSecret,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When it stops signing (`None` for the current secret).
    pub expires_at: Option<UnixMillis>,
}

impl EndpointSecret {
    /// Whether it still signs at `now`.
    pub fn is_valid_at(&self, now: UnixMillis) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// One of the team's webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where deliveries are POSTed.
    pub url: EndpointUrl,
    /// Which event types it receives.
    pub filter: EndpointFilter,
    /// Its secrets, newest first.
    pub secrets: Vec<EndpointSecret>,
    /// Whether deliveries go to it (a `410 Gone` answer turns it off).
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: UnixMillis,
}

impl Endpoint {
    /// A new enabled endpoint with a new secret, returned alongside so it can be shown once.
    pub fn new(url: EndpointUrl, filter: EndpointFilter, now: UnixMillis) -> (Self, WebhookSecret) {
        let secret = WebhookSecret::generate();
        let endpoint = Self {
            id: EndpointId::generate(),
            url,
            filter,
            secrets: vec![EndpointSecret {
                secret: secret.clone(),
                created_at: now,
                expires_at: None,
            }],
            enabled: true,
            disabled_reason: None,
            created_at: now,
        };
        (endpoint, secret)
    }

    /// The secrets that sign a delivery at `now`, newest first.
    pub fn signing_secrets(&self, now: UnixMillis) -> Vec<&WebhookSecret> {
        self.secrets
            .iter()
            .filter(|s| s.is_valid_at(now))
            .map(|s| &s.secret)
            .collect()
    }

    /// This endpoint without the secrets that expired by `now`.
    pub fn without_expired_secrets(mut self, now: UnixMillis) -> Self {
        self.secrets.retain(|s| s.is_valid_at(now));
        self
    }

    /// The endpoint after rotating to `new` at `now`: `new` first; every secret still valid
    /// keeps signing for [`ROTATION_GRACE`] (or less, if it was already due to expire); expired
    /// ones are dropped.
    pub fn rotated(&self, new: WebhookSecret, now: UnixMillis) -> Self {
        let grace_end = now.saturating_add(ROTATION_GRACE);
        let mut secrets = vec![EndpointSecret {
            secret: new,
            created_at: now,
            expires_at: None,
        }];
        secrets.extend(self.secrets.iter().filter(|s| s.is_valid_at(now)).map(|s| {
            EndpointSecret {
                expires_at: Some(s.expires_at.map_or(grace_end, |e| e.min(grace_end))),
                ..s.clone()
            }
        }));
        Self {
            secrets,
            ..self.clone()
        }
    }

    /// Whether an event of `kind` is delivered to it now.
    pub fn accepts(&self, kind: EventKind) -> bool {
        self.enabled && self.filter.matches(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BounceReport, EmailAddress, EnhancedStatus, EventSource, ProviderId, classify_bounce,
    };

    #[test]
    fn signs_vector_a_from_the_reference_library() {
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let header = signature_header(
            [&secret],
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(header, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn signs_vector_b_from_the_svix_docs() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn sends_one_signature_per_secret_during_a_rotation() {
        let a = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let b = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header([&b, &a], "msg_x", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], format!("v1,{}", b.sign("msg_x", 1, b"{}")));
        assert_eq!(parts[1], format!("v1,{}", a.sign("msg_x", 1, b"{}")));
        assert_eq!(signature_header([], "msg_x", 1, b"{}"), "");
    }

    #[test]
    fn secrets_parse_generate_and_never_show_themselves_in_debug() {
        let s = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(&s.expose()).unwrap(), s);
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(format!("{s:?}"), "WebhookSecret(whsec_…)");
        // Padding is optional.
        let unpadded = s.expose().trim_end_matches('=').to_owned();
        assert_eq!(WebhookSecret::parse(&unpadded).unwrap(), s);
        assert_eq!(
            WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
            Err(InvalidWebhookSecret::MissingPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!!"),
            Err(InvalidWebhookSecret::NotBase64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(InvalidWebhookSecret::Length(5))
        );
    }

    fn event(kind: EventKind) -> DeliveryEvent {
        DeliveryEvent {
            key: "sg-1".into(),
            kind,
            provider_type: "bounce".into(),
            provider: ProviderId::Sendgrid,
            recipient: Some(EmailAddress::parse("jane@example.com").unwrap()),
            provider_message_id: Some("pm-1".into()),
            message_id: None,
            occurred_at: Some(UnixMillis(1_795_442_400_000)),
            received_at: UnixMillis(1_795_442_401_500),
            bounce: Some(BounceReport {
                status: Some(EnhancedStatus::parse("5.1.1").unwrap()),
                reply_code: Some(550),
                diagnostic: Some("550 5.1.1 user unknown".into()),
                provider_type: Some("bounce".into()),
                ..Default::default()
            }),
            url: None,
            detail: None,
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: "sendgrid#r".into(),
                index: 0,
                recipient_index: 0,
            },
        }
    }

    #[test]
    fn a_bounce_body_carries_the_type_time_and_classification() {
        let id = MessageId::generate();
        let message = CorrelatedMessage {
            id: id.clone(),
            correlation_id: Some("order-42".into()),
        };
        let body: Value = serde_json::from_str(&app_webhook_body(
            &event(EventKind::Bounced),
            Some(&message),
        ))
        .unwrap();
        assert_eq!(body["type"], "email.bounced");
        assert_eq!(body["timestamp"], "2026-11-23T14:00:00Z");
        let data = &body["data"];
        assert_eq!(data["message_id"], id.as_str());
        assert_eq!(data["correlation_id"], "order-42");
        assert_eq!(data["recipient"], "jane@example.com");
        assert_eq!(data["provider"], "sendgrid");
        assert_eq!(data["provider_message_id"], "pm-1");
        assert_eq!(data["received_at"], "2026-11-23T14:00:01.5Z");
        assert_eq!(data["bounce"]["kind"], "hard");
        assert_eq!(data["bounce"]["cause"], "user_unknown");
        assert_eq!(data["bounce"]["suppress"], true);
        assert_eq!(data["bounce"]["status"], "5.1.1");
        assert_eq!(data["bounce"]["reply_code"], 550);
        let verdict = classify_bounce(&crate::BounceEvidence {
            diagnostic: Some("550 5.1.1 user unknown"),
            status: EnhancedStatus::parse("5.1.1").ok(),
            reply_code: Some(550),
        });
        assert_eq!(data["bounce"]["suppress"], verdict.suppress);
    }

    #[test]
    fn other_bodies_have_no_bounce_and_fall_back_to_the_event_s_own_message_id() {
        let mut e = event(EventKind::Delivered);
        e.occurred_at = None;
        let own = MessageId::generate();
        e.message_id = Some(own.clone());
        let body: Value = serde_json::from_str(&app_webhook_body(&e, None)).unwrap();
        assert_eq!(body["type"], "email.delivered");
        assert_eq!(body["timestamp"], "2026-11-23T14:00:01.5Z");
        assert_eq!(body["data"]["message_id"], own.as_str());
        assert!(body["data"]["correlation_id"].is_null());
        assert!(body["data"]["occurred_at"].is_null());
        assert!(body["data"].get("bounce").is_none());
    }

    #[test]
    fn webhook_ids_are_stable_per_endpoint_and_event_and_differ_otherwise() {
        let ep = EndpointId::generate();
        let other = EndpointId::generate();
        let key = app_event_key(&event(EventKind::Delivered));
        assert_eq!(key, "sendgrid#sg-1");
        let id = webhook_message_id(&ep, &key);
        assert_eq!(id, webhook_message_id(&ep, &key));
        assert_ne!(id, webhook_message_id(&other, &key));
        assert_ne!(id, webhook_message_id(&ep, "sendgrid#sg-2"));
        assert!(id.starts_with("msg_"));
        assert_eq!(id.len(), 4 + 32);
        assert!(!id.contains('.'));
    }

    #[test]
    fn filters_take_exact_type_names_and_list_the_valid_ones_on_error() {
        let f = EndpointFilter::parse_list("email.bounced, email.delivered,email.bounced").unwrap();
        assert_eq!(f.to_string(), "email.delivered,email.bounced");
        assert!(f.matches(EventKind::Bounced));
        assert!(!f.matches(EventKind::Opened));
        let err = EndpointFilter::parse_list("email.delivered,delivered").unwrap_err();
        assert_eq!(err.name, "delivered");
        assert!(err.to_string().contains("email.rendering_failed"));
        assert!(EndpointFilter::parse_list("email.bogus").is_err());
    }

    #[test]
    fn an_empty_filter_takes_message_events_but_not_notices_unless_named() {
        let all = EndpointFilter::parse_list("").unwrap();
        assert!(all.is_all());
        assert_eq!(all.to_string(), "*");
        assert!(all.matches(EventKind::Delivered));
        assert!(!all.matches(EventKind::AccountNotice));
        assert!(!all.matches(EventKind::Unknown));
        let named = EndpointFilter::parse_list("email.account_notice").unwrap();
        assert!(named.matches(EventKind::AccountNotice));
    }

    #[test]
    fn urls_must_be_https_or_loopback_http_without_credentials() {
        assert!(EndpointUrl::parse("https://app.example.com/hooks/mailgate").is_ok());
        assert!(EndpointUrl::parse("http://127.0.0.1:8080/hook").is_ok());
        assert!(EndpointUrl::parse("http://localhost/hook").is_ok());
        assert!(EndpointUrl::parse("http://[::1]:9/x").is_ok());
        assert!(matches!(
            EndpointUrl::parse("http://app.example.com/hook"),
            Err(InvalidEndpointUrl::PlainHttpNotLoopback(_))
        ));
        assert!(matches!(
            EndpointUrl::parse("ftp://example.com/"),
            Err(InvalidEndpointUrl::UnsupportedScheme(_))
        ));
        assert!(matches!(
            EndpointUrl::parse("not a url"),
            Err(InvalidEndpointUrl::NotAUrl(_))
        ));
        assert_eq!(
            EndpointUrl::parse("https://u:p@example.com/"),
            Err(InvalidEndpointUrl::HasCredentials)
        );
        assert_eq!(
            EndpointUrl::parse("https://app.example.com/hooks/tok123")
                .unwrap()
                .redacted(),
            "https://app.example.com/…"
        );
    }

    #[test]
    fn rotation_puts_the_new_secret_first_and_keeps_the_old_one_for_a_day() {
        let t0 = UnixMillis(1_000_000);
        let (ep, first) = Endpoint::new(
            EndpointUrl::parse("https://a.example/").unwrap(),
            EndpointFilter::all(),
            t0,
        );
        let second = WebhookSecret::generate();
        let rotated = ep.rotated(second.clone(), t0);
        assert_eq!(rotated.signing_secrets(t0), vec![&second, &first]);
        let day = ROTATION_GRACE.as_millis() as i64;
        assert_eq!(
            rotated.signing_secrets(UnixMillis(t0.0 + day - 1)),
            vec![&second, &first]
        );
        let later = UnixMillis(t0.0 + day);
        assert_eq!(rotated.signing_secrets(later), vec![&second]);
        // Rotating again after the grace drops the expired secret.
        let third = WebhookSecret::generate();
        let again = rotated.rotated(third.clone(), later);
        assert_eq!(again.secrets.len(), 2);
        assert_eq!(again.signing_secrets(later), vec![&third, &second]);
        assert_eq!(rotated.without_expired_secrets(later).secrets.len(), 1);
    }

    #[test]
    fn a_disabled_endpoint_accepts_nothing() {
        let (mut ep, _) = Endpoint::new(
            EndpointUrl::parse("https://a.example/").unwrap(),
            EndpointFilter::all(),
            UnixMillis(0),
        );
        assert!(ep.accepts(EventKind::Delivered));
        ep.enabled = false;
        assert!(!ep.accepts(EventKind::Delivered));
    }
}
