//! Accepting messages: the service behind `POST /v1/messages` and `POST /v1/messages/batch`.
//!
//! The order of work for one message: validate (the first error as `error`, all of them as
//! `errors`), check suppressions, then record the message and claim the `Idempotency-Key` in ONE
//! write ([`MessageStore::create_and_claim`]), deliver, and record the outcome and the key's
//! stored response in ONE write. Validation and the suppression check only read, so running them
//! before the claim changes nothing a duplicate could observe (and a request they refuse is
//! answered from its key first when the key already holds an answer: a retry of a request that
//! succeeded is replayed, never refused because time or the suppression list moved); the claim
//! is still the one
//! conditional write that decides between concurrent duplicates (a refused claim never reaches a
//! provider: in flight, the stored answer replayed, or a mismatch). Only accepted sends are
//! remembered: a refused request never claims the key, so a corrected retry proceeds at once.
//!
//! On the warm path nothing is read before that write: it carries the suppression check itself
//! ([`MessageStore::create_guarded`]: a check per recipient's suppression items, and one on the
//! API key when the caller's key came from the container's cache), so a synchronous send makes
//! one round trip before the provider. A check that does not hold writes nothing; the
//! suppressions are then read and screened as before and the write made again (still checking
//! the key), and a key that fails its check is answered `KeyUnconfirmed` for the caller to read.
//!
//! A batch keeps the claim-first protocol (one key for many message creations): claim, process,
//! then complete (when anything was accepted) or release.
//!
//! | situation | outcome |
//! |---|---|
//! | key completed with the same body (checked first on a refusal) | `Replayed` (the stored answer) |
//! | body not valid | `Invalid` (400 or 422 by the errors) |
//! | a `live` key sending to the simulator's domain | `Invalid` (422 `simulator_requires_test_key`) |
//! | every `to` recipient suppressed | `AllSuppressed` (422) |
//! | key completed with the same body | `Replayed` (the stored answer) |
//! | key used with another body | `KeyMismatch` (422) |
//! | key held by a request in flight | `KeyInFlight` (409) |
//! | the cached API key failed the write's check | `KeyUnconfirmed` (read the key) |
//! | a store failed before anything was accepted | `Unavailable` (503) |
//! | accepted | `Accepted` (202), with the delivery's state |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ports::{
    AcceptGuards, GuardedCreate, IdempotencyStore, KeyClaimRequest, KeyCompletion, KeyGuard,
    MessageStore, RandomSource, SendControls, SendQueue, Sleeper, SuppressionCheck,
};
use mailgate_core::sandbox::check_environment;
use mailgate_core::send_request::{FieldError, response_status};
use mailgate_core::{
    AuthenticatedKey, BatchSendRequest, Claim, ClaimOutcome, Clock, EmailAddress, MessageCategory,
    MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId, RequestFingerprint,
    SendLimits, SendRequest, StoreError, StoredResponse, Suppression, SuppressionReason,
    UnixMillis, UnsubscribeLinks, ValidatedSend, initial_state,
};
use serde_json::{Value, json};

use crate::delivery::{Delivery, DeliveryError, MessageDelivery};
use crate::send::SendReport;

/// How long a claim holds the key beyond the send budget: the function's remaining time after
/// the send (the template's function timeout is 30 s).
pub const LEASE_MARGIN: Duration = Duration::from_secs(20);
/// How many times the create-and-claim write is tried when the claim was refused by a record
/// that is gone by the time it is read (released, lapsed, or a transaction conflict).
const CLAIM_ATTEMPTS: u32 = 5;

/// An `Idempotency-Key` request: the key scoped to the API key, and the body's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    /// `<api key id>#<Idempotency-Key>`.
    pub scoped_key: String,
    /// The request body's fingerprint.
    pub fingerprint: RequestFingerprint,
}

impl KeyedRequest {
    /// The id of the message at `index` of this request: derived from the key and the body,
    /// so a retry of the same request after its claim lapsed (the first attempt's function
    /// died) finds the messages it recorded instead of recording and sending them again.
    pub fn message_id(&self, index: usize) -> MessageId {
        MessageId::derived(
            format!(
                "{}\n{}\n{index}",
                self.scoped_key,
                self.fingerprint.as_str()
            )
            .as_bytes(),
        )
    }
}

/// What the service needs to know of its configuration.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// The time budget of one synchronous send.
    pub send_budget: Duration,
    /// How long a completed key replays its answer.
    pub idempotency_retention: Duration,
    /// Size and count limits of a request.
    pub limits: SendLimits,
    /// How one-click unsubscribe links are made (`UNSUBSCRIBE_BASE_URL`,
    /// `UNSUBSCRIBE_SIGNING_KEYS`, `UNSUBSCRIBE_MAILTO`); without them, messages that need one
    /// (bulk, or `"unsubscribe": true`) are refused with `unsubscribe_not_configured`.
    pub unsubscribe: Option<UnsubscribeLinks>,
    /// How reply addresses are made for `"track_replies": true` (`INBOUND_DOMAIN`, signed with
    /// `UNSUBSCRIBE_SIGNING_KEYS`); without them such messages are refused with
    /// `track_replies_not_configured`.
    pub replies: Option<mailgate_core::ReplyAddresses>,
}

/// 422: a message needs a one-click unsubscribe link and this deployment has none configured.
pub use mailgate_core::send_request::code::UNSUBSCRIBE_NOT_CONFIGURED;

/// Adds mailgate's one-click unsubscribe headers to a message that wants them (recipient index 0:
/// such a message has one recipient, see `unsubscribe_one_recipient`).
fn attach_unsubscribe(
    links: Option<&UnsubscribeLinks>,
    email: &mut OutboundEmail,
) -> Result<(), FieldError> {
    if !email.one_click {
        return Ok(());
    }
    let Some(links) = links else {
        return Err(FieldError::new(
            UNSUBSCRIBE_NOT_CONFIGURED,
            "category",
            "this message needs a one-click unsubscribe link (bulk mail, or `unsubscribe`: true) \
             and this deployment sets no UNSUBSCRIBE_BASE_URL and UNSUBSCRIBE_SIGNING_KEYS",
        ));
    };
    email.headers.extend(links.headers(&email.message_id, 0));
    Ok(())
}

/// 422: `"track_replies": true` and this deployment has no reply addresses configured.
pub use mailgate_core::send_request::code::TRACK_REPLIES_NOT_CONFIGURED;

/// Sets the signed reply address `reply+<token>@<INBOUND_DOMAIN>` as the `Reply-To` of a
/// message that asks for `"track_replies": true`, so a reply threads to it whatever the
/// provider does to its `Message-ID`.
fn attach_reply_address(
    replies: Option<&mailgate_core::ReplyAddresses>,
    valid: &mut mailgate_core::send_request::ValidatedSend,
) -> Result<(), FieldError> {
    if !valid.track_replies {
        return Ok(());
    }
    let not_configured = || {
        FieldError::new(
            TRACK_REPLIES_NOT_CONFIGURED,
            "track_replies",
            "`track_replies` needs a domain whose mail mailgate receives; this deployment sets \
             no INBOUND_DOMAIN (and UNSUBSCRIBE_SIGNING_KEYS to sign reply addresses)",
        )
    };
    let replies = replies.ok_or_else(not_configured)?;
    let address = mailgate_core::EmailAddress::parse(&replies.address(&valid.email.message_id))
        .map_err(|_| not_configured())?;
    valid.email.reply_to = Some(address);
    Ok(())
}

/// The answer to an accepted message (the 202 body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedMessage {
    /// Our id for it.
    pub id: MessageId,
    /// Its state after this request.
    pub status: MessageState,
    /// The provider that took it, may have it, or was tried last.
    pub provider: Option<ProviderId>,
    /// That provider's id for it, when it took it.
    pub provider_message_id: Option<String>,
    /// The recipients dropped because they are suppressed.
    pub suppressed: Vec<(EmailAddress, Suppression)>,
    /// The send's report, when a provider was tried in this request.
    pub report: Option<SendReport>,
}

impl AcceptedMessage {
    /// The 202 body: `{"id", "status", "provider", "provider_message_id", "suppressed"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "status": self.status.as_str(),
            "provider": self.provider.map(|p| p.as_str()),
            "provider_message_id": self.provider_message_id,
            "suppressed": suppressed_json(&self.suppressed),
        })
    }
}

/// What became of a request.
#[derive(Debug, Clone)]
pub enum AcceptOutcome {
    /// Accepted (202).
    Accepted(AcceptedMessage),
    /// A batch was answered (202 when anything was accepted, 422 when nothing was valid) with
    /// its `results` body; its messages were queued, none sent in this request.
    Batch {
        /// Whether any message was accepted.
        any_accepted: bool,
        /// `{"results": [...]}`.
        body: Value,
    },
    /// The body is not valid: every error, the first one leading.
    Invalid(Vec<FieldError>),
    /// Every `to` recipient is suppressed: nothing was sent.
    AllSuppressed(Vec<(EmailAddress, Suppression)>),
    /// The key completed with the same body: its stored answer.
    Replayed(StoredResponse),
    /// The key was used with a different body.
    KeyMismatch,
    /// Another request holds the key.
    KeyInFlight {
        /// Seconds until its claim lapses.
        retry_after_secs: u64,
    },
    /// The cached API key given was not confirmed by the write (it is gone, revoked or
    /// changed): nothing was written; check the key with a read and answer as it says.
    KeyUnconfirmed,
    /// A store failed before anything was accepted (nothing to undo).
    Unavailable {
        /// Which store, as people name it (`message store`, `suppression list`, …).
        what: &'static str,
        /// Its failure.
        error: StoreError,
    },
}

impl AcceptOutcome {
    /// The HTTP status this outcome is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AcceptOutcome::Accepted(_) => 202,
            AcceptOutcome::Batch { any_accepted, .. } => {
                if *any_accepted {
                    202
                } else {
                    422
                }
            }
            AcceptOutcome::Invalid(errors) => response_status(errors),
            AcceptOutcome::AllSuppressed(_) | AcceptOutcome::KeyMismatch => 422,
            AcceptOutcome::Replayed(stored) => stored.status,
            AcceptOutcome::KeyInFlight { .. } => 409,
            AcceptOutcome::KeyUnconfirmed => 401,
            AcceptOutcome::Unavailable { .. } => 503,
        }
    }

    fn of_refused_claim(outcome: ClaimOutcome) -> Self {
        match outcome {
            ClaimOutcome::Replay(stored) => AcceptOutcome::Replayed(stored),
            ClaimOutcome::Mismatch => AcceptOutcome::KeyMismatch,
            ClaimOutcome::InFlight { retry_after_secs } => {
                AcceptOutcome::KeyInFlight { retry_after_secs }
            }
            // Not a refusal; never passed here.
            ClaimOutcome::Claimed(_) => AcceptOutcome::Unavailable {
                what: "idempotency store",
                error: StoreError::new(
                    mailgate_core::StoreErrorKind::Other,
                    "claim",
                    "a claim was taken for a refusal",
                ),
            },
        }
    }
}

/// A field error as the API shows it: `{"code", "message", "field"?}`.
pub fn field_error_json(e: &FieldError) -> Value {
    let mut v = json!({"code": e.code, "message": e.message});
    if let Some(field) = e.field_path() {
        v["field"] = json!(field);
    }
    v
}

/// The body of a validation failure: the first error as `error`, every error as `errors`.
pub fn invalid_json(errors: &[FieldError]) -> Value {
    json!({
        "error": errors.first().map(field_error_json),
        "errors": errors.iter().map(field_error_json).collect::<Vec<_>>(),
    })
}

/// The body of `all_recipients_suppressed`.
pub fn all_suppressed_json(list: &[(EmailAddress, Suppression)]) -> Value {
    json!({
        "code": "all_recipients_suppressed",
        "message": "every `to` recipient is on the suppression list; nothing was sent",
        "field": "to",
        "suppressed": suppressed_json(list),
    })
}

fn suppressed_json(list: &[(EmailAddress, Suppression)]) -> Vec<Value> {
    list.iter()
        .map(|(a, s)| json!({"address": a.as_str(), "reason": s.reason.as_str()}))
        .collect()
}

/// The answer as stored under its key for replay.
pub fn stored_response(status: u16, body: &Value) -> StoredResponse {
    StoredResponse {
        status,
        body: body.to_string(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
    }
}

/// The most item checks the write recording a message carries (a transaction holds 100
/// items: the claim, the summary and the content take three).
const MAX_GUARD_CHECKS: usize = 97;

/// Why [`MessageIntake::create`] recorded nothing.
enum NotCreated {
    /// The request's answer (a refused claim, the message recorded before, unavailable).
    Answer(AcceptOutcome),
    /// A guard of the write did not hold: nothing was written.
    Unconfirmed,
}

/// What [`MessageIntake::accept_with_cached_key`] did.
#[derive(Debug, Clone)]
pub struct Accepting {
    /// The outcome.
    pub outcome: AcceptOutcome,
    /// Whether the write recording the message confirmed the cached key given.
    pub key_confirmed: bool,
}

/// A message after the suppression check: what is left to send and what was dropped.
enum Screened {
    /// At least one `to` recipient remains.
    Send {
        email: Box<OutboundEmail>,
        suppressed: Vec<(EmailAddress, Suppression)>,
    },
    /// Every `to` recipient is suppressed.
    AllSuppressed(Vec<(EmailAddress, Suppression)>),
}

/// Drops suppressed recipients from `email` (`found` is the check's answer, `on_topic` the
/// entries scoped to the message's topic). An unsubscribe stops bulk mail only: transactional
/// mail (a receipt, a password reset) is stopped by bounces, complaints and the rest, never by
/// an unsubscribe, and a topic-scoped unsubscribe stops bulk mail on its topic only.
fn screen(
    mut email: OutboundEmail,
    found: &HashMap<EmailAddress, Suppression>,
    on_topic: &HashMap<EmailAddress, Suppression>,
) -> Screened {
    let mut suppressed = Vec::new();
    let transactional = email.category == MessageCategory::Transactional;
    let applies = |a: &EmailAddress| {
        let topic = (!transactional).then(|| on_topic.get(a)).flatten();
        found.get(a).or(topic)
    };
    let mut keep = |list: &mut Vec<EmailAddress>| {
        list.retain(|a| match applies(a) {
            Some(s) if transactional && s.reason == SuppressionReason::Unsubscribe => true,
            Some(s) => {
                suppressed.push((a.clone(), s.clone()));
                false
            }
            None => true,
        })
    };
    keep(&mut email.to);
    keep(&mut email.cc);
    keep(&mut email.bcc);
    if email.to.is_empty() {
        Screened::AllSuppressed(suppressed)
    } else {
        Screened::Send {
            email: Box::new(email),
            suppressed,
        }
    }
}

/// The ports the service works with.
#[derive(Clone)]
pub struct AcceptPorts {
    /// Messages (and keys claimed with them).
    pub messages: Arc<dyn MessageStore>,
    /// Keys on their own (the batch's claim).
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The suppression list.
    pub suppressions: Arc<dyn SuppressionCheck>,
    /// The pause switch.
    pub controls: Arc<dyn SendControls>,
    /// The send queue (the batch's messages).
    pub queue: Arc<dyn SendQueue>,
    /// Templates a request may send with.
    pub templates: Arc<dyn mailgate_core::ports::TemplateStore>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Waiting between claim attempts.
    pub sleeper: Arc<dyn Sleeper>,
    /// The jitter of those waits.
    pub random: Arc<dyn RandomSource>,
}

/// Accepts messages and delivers them.
pub struct MessageIntake {
    templates: crate::templates::Templates,
    sender_gate: Option<Arc<crate::domains::SenderDomainGate>>,
    ports: AcceptPorts,
    delivery: Arc<MessageDelivery>,
    settings: AcceptSettings,
}

impl std::fmt::Debug for MessageIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageIntake")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MessageIntake {
    /// The service over `ports`, delivering through `delivery`.
    pub fn new(
        ports: AcceptPorts,
        delivery: Arc<MessageDelivery>,
        settings: AcceptSettings,
    ) -> Self {
        Self {
            templates: crate::templates::Templates::new(
                ports.templates.clone(),
                ports.clock.clone(),
            ),
            sender_gate: None,
            ports,
            delivery,
            settings,
        }
    }

    /// The same, refusing up front (422 `sender_domain_unverified`) a message whose sender SES
    /// has not verified when SES is the only provider that could carry it.
    pub fn with_sender_gate(mut self, gate: Arc<crate::domains::SenderDomainGate>) -> Self {
        self.sender_gate = Some(gate);
        self
    }

    /// The sender check of one validated message (nothing without a gate, and nothing for a
    /// test key: its mail goes to the sandbox simulator, never to SES).
    async fn check_sender(
        &self,
        environment: mailgate_core::KeyEnvironment,
        valid: &ValidatedSend,
    ) -> Result<(), FieldError> {
        match &self.sender_gate {
            Some(gate) if environment == mailgate_core::KeyEnvironment::Live => {
                gate.check(&valid.email.from.address, valid.provider).await
            }
            _ => Ok(()),
        }
    }

    /// Renders the template `request` names (at `field`) into its subject and bodies: the
    /// template and version used, or the answer when that fails.
    async fn render_template(
        &self,
        environment: mailgate_core::KeyEnvironment,
        request: &mut SendRequest,
        field: &str,
    ) -> Result<Option<mailgate_core::template::TemplateRef>, AcceptOutcome> {
        let Some(used) = request.template().cloned() else {
            return Ok(None);
        };
        let rendered = match self.templates.resolve(environment, &used, field).await {
            Ok(r) => r,
            Err(f) if f.status == 503 => {
                return Err(AcceptOutcome::Unavailable {
                    what: "template store",
                    error: StoreError::new(
                        mailgate_core::StoreErrorKind::Transient,
                        "templates",
                        f.message,
                    ),
                });
            }
            Err(f) => {
                return Err(AcceptOutcome::Invalid(vec![FieldError::new(
                    f.code,
                    f.field.unwrap_or_else(|| field.to_owned()),
                    f.message,
                )]));
            }
        };
        request
            .apply_template(rendered.content)
            .map_err(|e| AcceptOutcome::Invalid(vec![e]))?;
        Ok(Some(mailgate_core::template::TemplateRef {
            id: rendered.id,
            version: rendered.version,
        }))
    }

    /// The settings.
    pub fn settings(&self) -> &AcceptSettings {
        &self.settings
    }

    fn lease(&self) -> Duration {
        self.settings.send_budget + LEASE_MARGIN
    }

    /// Whether bulk mail is held now; an unreadable switch holds it (fails safe: a paused
    /// message is released later, a sent one cannot be recalled).
    async fn bulk_paused(&self) -> bool {
        match self.ports.controls.bulk_paused().await {
            Ok(paused) => paused,
            Err(err) => {
                tracing::error!(error = %err, "could not read the bulk pause switch; holding bulk mail");
                true
            }
        }
    }

    /// Whether a reputation guardrail holds bulk mail from the message's sending domain (through
    /// its requested provider, else through any); an unreadable switch holds it (fails safe).
    async fn guardrail_paused(&self, valid: &ValidatedSend) -> bool {
        let domain = valid.email.from.address.domain().to_lowercase();
        match self
            .ports
            .controls
            .bulk_paused_for(&domain, valid.provider)
            .await
        {
            Ok(paused) => paused,
            Err(err) => {
                tracing::error!(error = %err, "could not read the guardrail switch; holding bulk mail");
                true
            }
        }
    }

    /// The state a valid message starts in (the pause switch and the guardrails are read for
    /// bulk mail only).
    async fn start_state(&self, valid: &ValidatedSend, now: UnixMillis) -> MessageState {
        let send_at = valid.send_at.map(UnixMillis::from);
        let bulk_now =
            valid.email.category == MessageCategory::Bulk && send_at.is_none_or(|at| at <= now);
        let paused = bulk_now && (self.bulk_paused().await || self.guardrail_paused(valid).await);
        initial_state(valid.email.category, send_at, now, paused)
    }

    /// Suppression check of every recipient of `emails` at once.
    async fn check_suppressions<'e>(
        &self,
        emails: impl Iterator<Item = &'e OutboundEmail>,
        now: time::OffsetDateTime,
    ) -> Result<HashMap<EmailAddress, Suppression>, AcceptOutcome> {
        let addresses: Vec<EmailAddress> = emails.flat_map(|e| e.recipients().cloned()).collect();
        self.ports
            .suppressions
            .check(&addresses, now)
            .await
            .map_err(|error| AcceptOutcome::Unavailable {
                what: "suppression list",
                error,
            })
    }

    /// The topic-scoped suppressions of the recipients of the bulk messages among `emails`, by
    /// topic (transactional mail and bulk mail without a topic need none).
    async fn check_topics<'e>(
        &self,
        emails: impl Iterator<Item = &'e OutboundEmail>,
        now: time::OffsetDateTime,
    ) -> Result<HashMap<String, HashMap<EmailAddress, Suppression>>, AcceptOutcome> {
        let mut by_topic: HashMap<String, Vec<EmailAddress>> = HashMap::new();
        for email in emails.filter(|e| e.category == MessageCategory::Bulk) {
            if let Some(topic) = &email.topic {
                by_topic
                    .entry(topic.clone())
                    .or_default()
                    .extend(email.recipients().cloned());
            }
        }
        let mut found = HashMap::new();
        for (topic, addresses) in by_topic {
            let hits = self
                .ports
                .suppressions
                .check_topic(&addresses, &topic, now)
                .await
                .map_err(|error| AcceptOutcome::Unavailable {
                    what: "suppression list",
                    error,
                })?;
            found.insert(topic, hits);
        }
        Ok(found)
    }

    /// Records the message, claiming the key in the same write when there is one (stored
    /// completed with `known` when the answer is known already), checking `guards` in that
    /// write when given. `Ok(None)` when recorded without a key; `Err` says why not: the answer
    /// (a refused claim, or unavailable), or a guard that did not hold.
    async fn create(
        &self,
        record: &MessageRecord,
        email: &OutboundEmail,
        provider: Option<ProviderId>,
        keyed: Option<&KeyedRequest>,
        known: Option<&StoredResponse>,
        guards: Option<&AcceptGuards>,
    ) -> Result<Option<Claim>, NotCreated> {
        let unavailable =
            |what, error| NotCreated::Answer(AcceptOutcome::Unavailable { what, error });
        let messages = &self.ports.messages;
        let Some(keyed) = keyed else {
            let created = match guards {
                Some(guards) => {
                    match messages
                        .create_guarded(record, email, provider, None, guards)
                        .await
                    {
                        Ok(GuardedCreate::Recorded(_)) => Ok(()),
                        Ok(GuardedCreate::KeyHeld | GuardedCreate::Unconfirmed) => {
                            return Err(NotCreated::Unconfirmed);
                        }
                        Err(err) => Err(err),
                    }
                }
                None => messages.create(record, email, provider).await,
            };
            return match created {
                Ok(()) => Ok(None),
                Err(err) => Err(unavailable("message store", err)),
            };
        };
        // The message of this key and body is recorded already: an earlier attempt of this
        // request recorded it, and its claim lapsed before it answered (its function died).
        // Its message is answered as it stands; it is never recorded or sent again.
        let recorded_before = |err: StoreError| async move {
            if err.kind() != mailgate_core::StoreErrorKind::ConditionFailed {
                return Err(unavailable("message store", err));
            }
            match messages.get(&record.id).await {
                Ok(Some(existing)) => Err(NotCreated::Answer(AcceptOutcome::Accepted(
                    AcceptedMessage {
                        id: existing.record.id.clone(),
                        status: existing.record.state,
                        provider: existing.record.provider,
                        provider_message_id: existing.record.provider_message_id.clone(),
                        suppressed: Vec::new(),
                        report: None,
                    },
                ))),
                Ok(None) => Err(unavailable("message store", err)),
                Err(e) => Err(unavailable("message store", e)),
            }
        };
        let retention = self.settings.idempotency_retention;
        for attempt in 0..CLAIM_ATTEMPTS {
            let key = KeyClaimRequest {
                scoped_key: keyed.scoped_key.clone(),
                fingerprint: keyed.fingerprint.clone(),
                now: self.ports.clock.now(),
                lease: self.lease(),
                completed: known.map(|k| (k.clone(), retention)),
            };
            let created = match guards {
                Some(guards) => {
                    messages
                        .create_guarded(record, email, provider, Some(&key), guards)
                        .await
                }
                None => messages
                    .create_and_claim(record, email, provider, &key)
                    .await
                    .map(|claim| {
                        claim.map_or(GuardedCreate::KeyHeld, |c| GuardedCreate::Recorded(Some(c)))
                    }),
            };
            match created {
                Ok(GuardedCreate::Recorded(claim)) => return Ok(claim),
                Ok(GuardedCreate::KeyHeld) => {}
                Ok(GuardedCreate::Unconfirmed) => return Err(NotCreated::Unconfirmed),
                Err(err) => return recorded_before(err).await,
            }
            // The slow path: what holds the key?
            match self
                .ports
                .idempotency
                .refused(
                    &keyed.scoped_key,
                    &keyed.fingerprint,
                    self.ports.clock.now(),
                )
                .await
            {
                Ok(Some(outcome)) => {
                    return Err(NotCreated::Answer(AcceptOutcome::of_refused_claim(outcome)));
                }
                // Gone meanwhile (or a conflict with a claim that did not land): claim again
                // after a short, growing, jittered pause.
                Ok(None) => {
                    let jitter = (self.ports.random.unit() * 20.0) as u64;
                    let pause = 10 * u64::from(attempt + 1) + jitter;
                    self.ports.sleeper.sleep(Duration::from_millis(pause)).await;
                }
                Err(err) => return Err(unavailable("idempotency store", err)),
            }
        }
        Err(unavailable(
            "idempotency store",
            StoreError::new(
                mailgate_core::StoreErrorKind::Transient,
                "create_and_claim",
                "the idempotency key kept changing",
            ),
        ))
    }

    /// Reads the suppressions of `email`'s recipients (unscoped, and on its topic) and drops
    /// the suppressed ones: the message left to send with what was dropped, or the answer.
    async fn screen_with_reads(
        &self,
        email: OutboundEmail,
        now: time::OffsetDateTime,
    ) -> Result<(Box<OutboundEmail>, Vec<(EmailAddress, Suppression)>), AcceptOutcome> {
        let found = self
            .check_suppressions(std::iter::once(&email), now)
            .await?;
        let mut on_topics = self.check_topics(std::iter::once(&email), now).await?;
        let on_topic = email
            .topic
            .as_ref()
            .and_then(|t| on_topics.remove(t))
            .unwrap_or_default();
        match screen(email, &found, &on_topic) {
            Screened::Send { email, suppressed } => Ok((email, suppressed)),
            Screened::AllSuppressed(list) => Err(AcceptOutcome::AllSuppressed(list)),
        }
    }

    /// One message: validate, screen, record (and claim the key), deliver (and record the
    /// outcome with the key's answer). A request refused before the claim (invalid now, or every
    /// recipient suppressed now) whose key already holds an answer gets that answer instead:
    /// validation, suppressions and time may have changed since the first request succeeded,
    /// and a client told 422 would send again without the key.
    pub async fn accept(
        &self,
        key: &AuthenticatedKey,
        body: &[u8],
        keyed: Option<KeyedRequest>,
    ) -> AcceptOutcome {
        self.accept_with_cached_key(key, None, body, keyed)
            .await
            .outcome
    }

    /// [`accept`](Self::accept) for a caller whose key came from this container's cache, not
    /// from a read: `key_guard` names it, and the write that records the message confirms it
    /// is still valid (a revocation is refused by that write). Whether the outcome confirmed
    /// the key is said: when it did not (anything but a message recorded by this request),
    /// the caller must check the key with a read before answering.
    pub async fn accept_with_cached_key(
        &self,
        key: &AuthenticatedKey,
        key_guard: Option<&KeyGuard>,
        body: &[u8],
        keyed: Option<KeyedRequest>,
    ) -> Accepting {
        let lookup = keyed.clone();
        let (outcome, key_confirmed) = self.accept_new(key, key_guard, body, keyed).await;
        let outcome = match (&outcome, lookup) {
            (AcceptOutcome::Invalid(_) | AcceptOutcome::AllSuppressed(_), Some(keyed)) => {
                match self
                    .ports
                    .idempotency
                    .refused(
                        &keyed.scoped_key,
                        &keyed.fingerprint,
                        self.ports.clock.now(),
                    )
                    .await
                {
                    Ok(Some(earlier)) => AcceptOutcome::of_refused_claim(earlier),
                    Ok(None) => outcome,
                    // Unknown whether it succeeded before: a retry is safe, a refusal is not.
                    Err(error) => AcceptOutcome::Unavailable {
                        what: "idempotency store",
                        error,
                    },
                }
            }
            _ => outcome,
        };
        Accepting {
            outcome,
            key_confirmed: key_guard.is_some() && key_confirmed,
        }
    }

    /// [`accept`](Self::accept) for a request whose key holds no answer yet; with whether the
    /// message was recorded by this request (so the guards of its write held).
    async fn accept_new(
        &self,
        key: &AuthenticatedKey,
        key_guard: Option<&KeyGuard>,
        body: &[u8],
        keyed: Option<KeyedRequest>,
    ) -> (AcceptOutcome, bool) {
        let now = self.ports.clock.now();
        let mut request = match SendRequest::from_json(body) {
            Ok(r) => r,
            Err(e) => return (AcceptOutcome::Invalid(vec![e]), false),
        };
        let template = match self
            .render_template(key.environment, &mut request, "template")
            .await
        {
            Ok(t) => t,
            Err(outcome) => return (outcome, false),
        };
        let id = keyed
            .as_ref()
            .map_or_else(MessageId::generate, |k| k.message_id(0));
        let mut valid = match request.validate(&self.settings.limits, now, id) {
            Ok(v) => v,
            Err(errors) => return (AcceptOutcome::Invalid(errors), false),
        };
        if let Err(error) = attach_unsubscribe(self.settings.unsubscribe.as_ref(), &mut valid.email)
            .and_then(|()| check_environment(key.environment, &valid.email))
        {
            return (AcceptOutcome::Invalid(vec![error]), false);
        }
        if let Err(error) = self.check_sender(key.environment, &valid).await {
            return (AcceptOutcome::Invalid(vec![error]), false);
        }
        if let Err(error) = attach_reply_address(self.settings.replies.as_ref(), &mut valid) {
            return (AcceptOutcome::Invalid(vec![error]), false);
        }
        let now_ms = UnixMillis::from(now);
        let state = self.start_state(&valid, now_ms).await;
        let ValidatedSend {
            email,
            send_at,
            provider,
            ..
        } = valid;
        // The warm path reads nothing before the write that records the message: that write
        // checks the cached API key and every recipient's suppression items itself. When a
        // check does not hold (or the checks would not fit one transaction) the suppressions
        // are read and screened as they always were, the key still checked in the write.
        let transactional = email.category == MessageCategory::Transactional;
        let key_only = key_guard.map(|k| AcceptGuards {
            api_key: Some(k.clone()),
            recipients: Vec::new(),
            topic: None,
            unsubscribe_passes: transactional,
            now,
        });
        let mut guards = Some(AcceptGuards {
            api_key: key_guard.cloned(),
            recipients: email.recipients().cloned().collect(),
            topic: email.topic.clone().filter(|_| !transactional),
            unsubscribe_passes: transactional,
            now,
        })
        .filter(|g| g.item_checks() <= MAX_GUARD_CHECKS);
        let (mut email, mut suppressed) = if guards.is_some() {
            (Box::new(email), Vec::new())
        } else {
            guards.clone_from(&key_only);
            match self.screen_with_reads(email, now).await {
                Ok(screened) => screened,
                Err(outcome) => return (outcome, false),
            }
        };
        let (record, held, claim) = loop {
            let dropped: Vec<EmailAddress> = suppressed.iter().map(|(a, _)| a.clone()).collect();
            let mut record = MessageRecord::new(
                &email,
                key.id.clone(),
                key.environment,
                state,
                now_ms,
                send_at.map(UnixMillis::from),
                &dropped,
            );
            record.template = template.clone();
            if state == MessageState::Queued {
                // Sent now, by this request: recorded `sending` under a lease as long as the
                // key's, so a worker never takes it meanwhile, and a function that dies after
                // the provider call leaves a lease that lapses into a visible `unknown` (the
                // sweeper), never a `queued` message that could be sent again.
                record.state = MessageState::Sending;
                record.sending_until = Some(now_ms.saturating_add(self.lease()));
            }
            // A held message's answer is known now: its key is stored completed with it.
            let held = (state != MessageState::Queued).then(|| AcceptedMessage {
                id: record.id.clone(),
                status: state,
                provider: None,
                provider_message_id: None,
                suppressed: suppressed.clone(),
                report: None,
            });
            let known = held.as_ref().map(|h| stored_response(202, &h.to_json()));
            match self
                .create(
                    &record,
                    &email,
                    provider,
                    keyed.as_ref(),
                    known.as_ref(),
                    guards.as_ref(),
                )
                .await
            {
                Ok(claim) => break (record, held, claim),
                Err(NotCreated::Answer(AcceptOutcome::Accepted(mut earlier))) => {
                    earlier.suppressed = suppressed;
                    return (AcceptOutcome::Accepted(earlier), false);
                }
                Err(NotCreated::Answer(outcome)) => return (outcome, false),
                Err(NotCreated::Unconfirmed) => match guards.take() {
                    // A recipient may be suppressed (or the key changed): read and screen.
                    Some(g) if !g.recipients.is_empty() => {
                        guards.clone_from(&key_only);
                        match self.screen_with_reads(*email, now).await {
                            Ok((e, s)) => (email, suppressed) = (e, s),
                            Err(outcome) => return (outcome, false),
                        }
                    }
                    // Only the key was checked: it is gone, revoked or changed.
                    _ => return (AcceptOutcome::KeyUnconfirmed, false),
                },
            }
        };
        let answer = |status: MessageState,
                      provider: Option<ProviderId>,
                      pmid: Option<String>,
                      report: Option<SendReport>| AcceptedMessage {
            id: record.id.clone(),
            status,
            provider,
            provider_message_id: pmid,
            suppressed: suppressed.clone(),
            report,
        };
        let of_delivery = |d: &Delivery| {
            answer(
                d.state,
                d.provider,
                d.provider_message_id.clone(),
                Some(d.report.clone()),
            )
        };
        if let Some(held) = held {
            return (AcceptOutcome::Accepted(held), true);
        }
        let retention = self.settings.idempotency_retention;
        let clock = self.ports.clock.clone();
        let complete = |d: &Delivery| {
            let claim = claim.as_ref()?;
            Some(KeyCompletion {
                claim: claim.clone(),
                response: stored_response(202, &of_delivery(d).to_json()),
                now: clock.now(),
                retention,
            })
        };
        let outcome = match self
            .delivery
            .deliver_linked(
                &record,
                &email,
                provider,
                self.settings.send_budget,
                Some(&complete),
            )
            .await
        {
            Ok(d) => AcceptOutcome::Accepted(of_delivery(&d)),
            Err(DeliveryError::Record {
                source, delivery, ..
            }) => {
                // The provider call happened: answering an error would invite a second send.
                tracing::error!(message_id = %record.id, error = %source, "could not record the send outcome");
                let accepted = of_delivery(&delivery);
                if let Some(claim) = &claim
                    && let Err(err) = self
                        .ports
                        .idempotency
                        .complete(
                            claim,
                            &stored_response(202, &accepted.to_json()),
                            self.ports.clock.now(),
                            retention,
                        )
                        .await
                {
                    tracing::error!(error = %err, "could not store the idempotent response");
                }
                AcceptOutcome::Accepted(accepted)
            }
            Err(DeliveryError::Enqueue { source, delivery }) => {
                // Deferred and recorded `queued` (with the key's answer) but not on the send
                // queue: the message is accepted and watched, and the sweeper puts it on the
                // queue (`requeue_stalled`). Answering an error would invite a second message.
                tracing::error!(message_id = %record.id, error = %source, "could not put a deferred message on the send queue; the sweeper will");
                AcceptOutcome::Accepted(of_delivery(&delivery))
            }
            Err(err) => {
                // Nothing was sent and nothing recorded after the message (a load failure
                // cannot happen on this path): forget the answer so a retry proceeds.
                if let Some(claim) = &claim
                    && let Err(e) = self.ports.idempotency.discard(claim).await
                {
                    tracing::error!(error = %e, "could not discard the idempotent response");
                }
                let error = match err {
                    DeliveryError::Load(e) => e,
                    other => StoreError::new(
                        mailgate_core::StoreErrorKind::Other,
                        "deliver",
                        other.to_string(),
                    ),
                };
                AcceptOutcome::Unavailable {
                    what: "message store",
                    error,
                }
            }
        };
        (outcome, true)
    }

    /// A batch: with a key, claim it first, then process, then complete (anything accepted)
    /// or release.
    pub async fn accept_batch(
        &self,
        key: &AuthenticatedKey,
        body: &[u8],
        keyed: Option<KeyedRequest>,
    ) -> AcceptOutcome {
        let Some(keyed) = keyed else {
            return self.accept_many(key, body, None).await;
        };
        let store = &self.ports.idempotency;
        let claim = match store
            .claim(
                &keyed.scoped_key,
                &keyed.fingerprint,
                self.ports.clock.now(),
                self.lease(),
            )
            .await
        {
            Ok(ClaimOutcome::Claimed(claim)) => claim,
            Ok(refused) => return AcceptOutcome::of_refused_claim(refused),
            Err(error) => {
                return AcceptOutcome::Unavailable {
                    what: "idempotency store",
                    error,
                };
            }
        };
        let outcome = self.accept_many(key, body, Some(&keyed)).await;
        if let AcceptOutcome::Batch {
            any_accepted: true,
            body,
        } = &outcome
        {
            if let Err(err) = store
                .complete(
                    &claim,
                    &stored_response(202, body),
                    self.ports.clock.now(),
                    self.settings.idempotency_retention,
                )
                .await
            {
                // The messages are accepted; the record lapses with its lease and a retry after
                // that sends again. Logged for the operator.
                tracing::error!(error = %err, "could not store the idempotent response");
            }
        } else if let Err(err) = store.release(&claim).await {
            tracing::warn!(error = %err, "could not release an idempotency claim; it lapses with its lease");
        }
        outcome
    }

    /// A batch: validate each message, screen, record and put every queued one on the send
    /// queue. With a key, the messages' ids derive from it: a retry after the first attempt's
    /// claim lapsed finds the messages that attempt recorded and answers them as they stand.
    async fn accept_many(
        &self,
        key: &AuthenticatedKey,
        body: &[u8],
        keyed: Option<&KeyedRequest>,
    ) -> AcceptOutcome {
        let now = self.ports.clock.now();
        let mut request = match BatchSendRequest::from_json(body) {
            Ok(r) => r,
            Err(e) => return AcceptOutcome::Invalid(vec![e]),
        };
        let mut templates: Vec<
            Result<Option<mailgate_core::template::TemplateRef>, Vec<FieldError>>,
        > = Vec::new();
        for (i, item) in request.messages_mut().iter_mut().enumerate() {
            let field = format!("messages[{i}].template");
            templates.push(
                match self.render_template(key.environment, item, &field).await {
                    Ok(t) => Ok(t),
                    Err(AcceptOutcome::Invalid(errors)) => Err(errors),
                    Err(other) => return other,
                },
            );
        }
        let mut next = 0usize;
        let next_id = || {
            next += 1;
            keyed.map_or_else(MessageId::generate, |k| k.message_id(next - 1))
        };
        let items = match request.validate_batch(&self.settings.limits, now, next_id) {
            Ok(items) => items,
            Err(errors) => return AcceptOutcome::Invalid(errors),
        };
        let found = match self
            .check_suppressions(items.iter().flatten().map(|v| &v.email), now)
            .await
        {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let on_topics = match self
            .check_topics(items.iter().flatten().map(|v| &v.email), now)
            .await
        {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let none = HashMap::new();
        let now_ms = UnixMillis::from(now);
        let mut results: Vec<Value> = Vec::with_capacity(items.len());
        let mut accepted: Vec<(usize, MessageRecord, Box<OutboundEmail>, Option<ProviderId>)> =
            Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let template = match templates.get(index) {
                Some(Err(errors)) => {
                    let mut result = invalid_json(errors);
                    result["index"] = json!(index);
                    results.push(result);
                    continue;
                }
                Some(Ok(t)) => t.clone(),
                None => None,
            };
            let item = item.and_then(|mut v| {
                attach_unsubscribe(self.settings.unsubscribe.as_ref(), &mut v.email)
                    .and_then(|()| check_environment(key.environment, &v.email))
                    .map_err(|e| vec![e.prefixed(&format!("messages[{index}]"))])?;
                attach_reply_address(self.settings.replies.as_ref(), &mut v)
                    .map_err(|e| vec![e.prefixed(&format!("messages[{index}]"))])?;
                Ok(v)
            });
            let valid = match item {
                Ok(v) => match self.check_sender(key.environment, &v).await {
                    Ok(()) => v,
                    Err(e) => {
                        let mut result = invalid_json(&[e.prefixed(&format!("messages[{index}]"))]);
                        result["index"] = json!(index);
                        results.push(result);
                        continue;
                    }
                },
                Err(errors) => {
                    let mut result = invalid_json(&errors);
                    result["index"] = json!(index);
                    results.push(result);
                    continue;
                }
            };
            let state = self.start_state(&valid, now_ms).await;
            let ValidatedSend {
                email,
                send_at,
                provider,
                ..
            } = valid;
            let on_topic = email
                .topic
                .as_ref()
                .and_then(|t| on_topics.get(t))
                .unwrap_or(&none);
            match screen(email, &found, on_topic) {
                Screened::AllSuppressed(list) => {
                    let mut error = all_suppressed_json(&list);
                    error["field"] = json!(format!("messages[{index}].to"));
                    results.push(json!({"index": index, "error": error}));
                }
                Screened::Send { email, suppressed } => {
                    let dropped: Vec<EmailAddress> =
                        suppressed.iter().map(|(a, _)| a.clone()).collect();
                    let mut record = MessageRecord::new(
                        &email,
                        key.id.clone(),
                        key.environment,
                        state,
                        now_ms,
                        send_at.map(UnixMillis::from),
                        &dropped,
                    );
                    record.template = template;
                    results.push(json!({
                        "index": index,
                        "id": record.id.as_str(),
                        "status": state.as_str(),
                        "suppressed": suppressed_json(&suppressed),
                    }));
                    accepted.push((index, record, email, provider));
                }
            }
        }
        let messages = &self.ports.messages;
        let mut queued: Vec<MessageId> = Vec::new();
        let created = futures::future::join_all(
            accepted
                .iter()
                .map(|(_, record, email, provider)| messages.create(record, email, *provider)),
        )
        .await;
        for ((index, record, _, _), outcome) in accepted.iter().zip(created) {
            let outcome = match outcome {
                // Recorded already: by an earlier attempt of this keyed request, or by this
                // very write when its answer was lost and the SDK retried it.
                Err(err) if err.kind() == mailgate_core::StoreErrorKind::ConditionFailed => {
                    match messages.get(&record.id).await {
                        Ok(Some(existing)) => {
                            if let Some(slot) = results.get_mut(*index) {
                                slot["status"] = json!(existing.record.state.as_str());
                            }
                            // A message an earlier attempt recorded but never enqueued is found
                            // by the sweeper; one this attempt recorded is enqueued now.
                            if keyed.is_none() && existing.record.state == MessageState::Queued {
                                queued.push(record.id.clone());
                            }
                            continue;
                        }
                        Ok(None) => Err(err),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            match outcome {
                Ok(()) if record.state == MessageState::Queued => queued.push(record.id.clone()),
                Ok(()) => {}
                Err(err) => {
                    tracing::error!(message_id = %record.id, error = %err, "could not record a batch message");
                    if let Some(slot) = results.get_mut(*index) {
                        *slot = json!({"index": index, "error": {
                            "code": "service_unavailable",
                            "message": "the message could not be recorded; send it again",
                        }});
                    }
                }
            }
        }
        if let Err(error) = self.ports.queue.enqueue_all(&queued).await {
            // Every one of them is recorded `queued` and watched: the sweeper puts whatever
            // did not reach the queue on it (`requeue_stalled`). Answering an error would
            // invite the client to send them all again.
            tracing::error!(error = %error, messages = queued.len(), "could not put every batch message on the send queue; the sweeper will");
        }
        let any_accepted = results.iter().any(|r| r.get("id").is_some());
        AcceptOutcome::Batch {
            any_accepted,
            body: json!({ "results": results }),
        }
    }
}

#[cfg(test)]
mod tests_support {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::collections::HashMap;
    use std::sync::Arc;
    pub use std::sync::atomic::Ordering;

    pub use mailgate_core::{
        ApiKeyId, ApiKeyLabel, FailoverPolicy, FixedClock, KeyEnvironment, RequestFingerprint,
        Scopes, SendFailure, StoreErrorKind, Suppression, SuppressionReason, TransportFault,
    };

    pub use super::*;
    use crate::send::SendService;
    pub use crate::testing::{
        FixedRandom, MemoryControls, MemoryHealth, MemoryIdempotency, MemoryMessages,
        MemorySendQueue, MemorySuppressions, MemoryTemplates, RecordingSleeper, ScriptedProvider,
        Step, fails,
    };

    const T0: i64 = 1_790_000_000;
    /// A test-only unsubscribe signing key.
    pub const TEST_UNSUBSCRIBE_KEY: &str = "test-only-unsubscribe-signing-key-0123456789";
    pub use mailgate_core::UnsubscribeKeys;
    pub const BODY: &str = r#"{"from":"news@example.com","to":["jane@example.org"],"cc":["joe@example.org"],"subject":"Hi","text":"Hello"}"#;

    pub struct Harness {
        pub intake: MessageIntake,
        pub messages: Arc<MemoryMessages>,
        pub idempotency: Arc<MemoryIdempotency>,
        pub suppressions: Arc<MemorySuppressions>,
        pub controls: Arc<MemoryControls>,
        pub queue: Arc<MemorySendQueue>,
        pub templates: Arc<MemoryTemplates>,
        pub provider: Arc<ScriptedProvider>,
        pub clock: Arc<FixedClock>,
        pub key: AuthenticatedKey,
    }

    pub fn harness(script: Vec<Step>) -> Harness {
        let clock = Arc::new(FixedClock::at_unix(T0));
        let idempotency = Arc::new(MemoryIdempotency::default());
        let messages = Arc::new(MemoryMessages::with_idempotency(idempotency.clone()));
        let queue = Arc::new(MemorySendQueue::default());
        let provider = Arc::new(ScriptedProvider::new(
            mailgate_core::ProviderId::Sendgrid,
            clock.clone(),
            script,
        ));
        let service = SendService::new(
            vec![provider.clone() as Arc<dyn mailgate_core::ports::EmailProvider>],
            "sendgrid".parse().unwrap(),
            FailoverPolicy::default(),
            Arc::new(MemoryHealth::new(HashMap::new(), 5)),
        )
        .unwrap()
        .with_clock(clock.clone())
        .with_sleeper(Arc::new(RecordingSleeper::new(clock.clone())))
        .with_random(Arc::new(FixedRandom(0.5)));
        let delivery = Arc::new(
            MessageDelivery::new(messages.clone(), queue.clone(), Arc::new(service))
                .with_clock(clock.clone()),
        );
        let suppressions = Arc::new(MemorySuppressions::default());
        let controls = Arc::new(MemoryControls::default());
        let templates = Arc::new(MemoryTemplates::default());
        let ports = AcceptPorts {
            messages: messages.clone(),
            idempotency: idempotency.clone(),
            suppressions: suppressions.clone(),
            controls: controls.clone(),
            queue: queue.clone(),
            templates: templates.clone(),
            clock: clock.clone(),
            sleeper: Arc::new(RecordingSleeper::new(clock.clone())),
            random: Arc::new(FixedRandom(0.5)),
        };
        let settings = AcceptSettings {
            send_budget: Duration::from_secs(10),
            idempotency_retention: Duration::from_secs(24 * 3600),
            limits: SendLimits::default(),
            unsubscribe: Some(
                UnsubscribeLinks::new(
                    "https://unsubscribe.example.test",
                    None,
                    UnsubscribeKeys::parse(TEST_UNSUBSCRIBE_KEY).unwrap(),
                )
                .unwrap(),
            ),
            replies: Some(mailgate_core::ReplyAddresses::new(
                "inbound.example.test",
                UnsubscribeKeys::parse(TEST_UNSUBSCRIBE_KEY).unwrap(),
            )),
        };
        Harness {
            intake: MessageIntake::new(ports, delivery, settings),
            messages,
            idempotency,
            suppressions,
            controls,
            queue,
            templates,
            provider,
            clock,
            key: AuthenticatedKey {
                id: ApiKeyId::generate(),
                label: ApiKeyLabel::parse("tests").unwrap(),
                environment: KeyEnvironment::Live,
                scopes: Scopes::all(),
            },
        }
    }

    pub fn keyed(h: &Harness, key: &str, body: &str) -> Option<KeyedRequest> {
        Some(KeyedRequest {
            scoped_key: format!("{}#{key}", h.key.id.as_str()),
            fingerprint: RequestFingerprint::of_body(body.as_bytes()).unwrap(),
        })
    }

    pub fn accepted(outcome: AcceptOutcome) -> AcceptedMessage {
        match outcome {
            AcceptOutcome::Accepted(a) => a,
            other => panic!("expected an accepted message, got {other:?}"),
        }
    }

    pub fn address(a: &str) -> EmailAddress {
        EmailAddress::parse(a).unwrap()
    }

    pub fn suppress(h: &Harness, a: &str) {
        h.suppressions.put(Suppression::new(
            &address(a),
            SuppressionReason::HardBounce,
            h.clock.now(),
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::tests_support::*;

    #[tokio::test]
    async fn a_valid_message_is_recorded_sent_through_the_provider_and_answered_202() {
        let h = harness(vec![]);
        let outcome = h.intake.accept(&h.key, BODY.as_bytes(), None).await;
        assert_eq!(outcome.status(), 202);
        let a = accepted(outcome);
        assert_eq!(a.status, MessageState::Sent);
        assert_eq!(a.provider_message_id.as_deref(), Some("sendgrid-id"));
        let stored = h.messages.message(&a.id).unwrap();
        assert_eq!(stored.record.state, MessageState::Sent);
        assert_eq!(stored.attempts.len(), 1);
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn an_invalid_body_stores_nothing_and_names_the_field() {
        let h = harness(vec![]);
        let outcome = h
            .intake
            .accept(&h.key, br#"{"from":"news@example.com","to":[]}"#, None)
            .await;
        let AcceptOutcome::Invalid(errors) = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(!errors.is_empty());
        assert!(h.messages.all().is_empty());
        assert_eq!(h.provider.calls(), 0);
    }

    #[tokio::test]
    async fn suppressed_recipients_are_dropped_and_all_suppressed_is_refused() {
        let h = harness(vec![]);
        suppress(&h, "joe@example.org");
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), None).await);
        assert_eq!(a.suppressed.len(), 1);
        assert_eq!(a.suppressed[0].0, address("joe@example.org"));
        let stored = h.messages.message(&a.id).unwrap();
        assert!(stored.content.cc.is_empty());

        suppress(&h, "jane@example.org");
        let outcome = h.intake.accept(&h.key, BODY.as_bytes(), None).await;
        assert!(matches!(&outcome, AcceptOutcome::AllSuppressed(list) if list.len() == 2));
        assert_eq!(outcome.status(), 422);
        assert_eq!(h.messages.all().len(), 1);
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn a_retry_with_the_key_replays_the_stored_answer_without_a_second_send() {
        let h = harness(vec![]);
        let first = accepted(
            h.intake
                .accept(&h.key, BODY.as_bytes(), keyed(&h, "k1", BODY))
                .await,
        );
        let again = h
            .intake
            .accept(&h.key, BODY.as_bytes(), keyed(&h, "k1", BODY))
            .await;
        let AcceptOutcome::Replayed(stored) = again else {
            panic!("{again:?}")
        };
        assert_eq!(stored.status, 202);
        let body: Value = serde_json::from_str(&stored.body).unwrap();
        assert_eq!(body, first.to_json());
        assert_eq!(h.provider.calls(), 1);
        assert_eq!(h.messages.all().len(), 1);
    }

    #[tokio::test]
    async fn the_same_key_with_another_body_is_a_mismatch_and_one_in_flight_is_409() {
        let h = harness(vec![]);
        accepted(
            h.intake
                .accept(&h.key, BODY.as_bytes(), keyed(&h, "k1", BODY))
                .await,
        );
        let other = BODY.replace("Hello", "Hello again");
        let outcome = h
            .intake
            .accept(&h.key, other.as_bytes(), keyed(&h, "k1", &other))
            .await;
        assert!(matches!(outcome, AcceptOutcome::KeyMismatch));

        // Another request holds k2 (claimed, not completed).
        let held = keyed(&h, "k2", BODY).unwrap();
        h.idempotency
            .try_claim(&KeyClaimRequest {
                scoped_key: held.scoped_key.clone(),
                fingerprint: held.fingerprint.clone(),
                now: h.clock.now(),
                lease: Duration::from_secs(30),
                completed: None,
            })
            .unwrap();
        let outcome = h.intake.accept(&h.key, BODY.as_bytes(), Some(held)).await;
        assert!(matches!(
            outcome,
            AcceptOutcome::KeyInFlight { retry_after_secs } if retry_after_secs == 30
        ));
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn a_store_failing_before_anything_is_accepted_is_unavailable_and_sends_nothing() {
        for (operation, keyed_request) in [
            ("check", false),
            ("create", false),
            ("create_and_claim", true),
        ] {
            let h = harness(vec![]);
            match operation {
                "check" => h
                    .suppressions
                    .faults
                    .fail_next("check", StoreErrorKind::Transient),
                _ => h
                    .messages
                    .faults
                    .fail_next(operation, StoreErrorKind::Throttled),
            }
            let key = keyed_request.then(|| keyed(&h, "k", BODY)).flatten();
            let outcome = h.intake.accept(&h.key, BODY.as_bytes(), key).await;
            assert_eq!(outcome.status(), 503, "{operation}");
            assert!(h.messages.all().is_empty(), "{operation}");
            assert_eq!(h.provider.calls(), 0, "{operation}");
        }
    }

    #[tokio::test]
    async fn a_refused_claim_whose_holder_cannot_be_read_is_unavailable() {
        let h = harness(vec![]);
        accepted(
            h.intake
                .accept(&h.key, BODY.as_bytes(), keyed(&h, "k", BODY))
                .await,
        );
        h.idempotency
            .faults
            .fail_next("refused", StoreErrorKind::Transient);
        let outcome = h
            .intake
            .accept(&h.key, BODY.as_bytes(), keyed(&h, "k", BODY))
            .await;
        assert!(matches!(
            outcome,
            AcceptOutcome::Unavailable {
                what: "idempotency store",
                ..
            }
        ));
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn an_outcome_that_cannot_be_recorded_is_still_answered_202_and_the_key_completed() {
        let h = harness(vec![]);
        h.messages
            .faults
            .fail_next("record_outcome", StoreErrorKind::Transient);
        let key = keyed(&h, "k", BODY);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), key).await);
        assert_eq!(a.status, MessageState::Sent);
        let record = h.idempotency.record(&scoped).unwrap();
        assert!(matches!(
            record.state,
            mailgate_core::IdempotencyState::Completed { .. }
        ));
    }

    #[tokio::test]
    async fn a_deferred_send_that_cannot_be_enqueued_is_accepted_queued_and_watched() {
        let h = harness(vec![fails(SendFailure::http(503)); 8]);
        h.queue
            .faults
            .fail_next("enqueue", StoreErrorKind::Transient);
        let key = keyed(&h, "k", BODY);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), key.clone()).await);
        assert_eq!(a.status, MessageState::Queued);
        // Recorded queued (the watch queue's sweeper enqueues it), nothing on the queue, and
        // the key answers the same on a retry: no second message.
        let stored = h.messages.all();
        assert_eq!(stored[0].record.state, MessageState::Queued);
        assert!(h.queue.entries().is_empty());
        assert!(matches!(
            h.idempotency.record(&scoped).unwrap().state,
            mailgate_core::IdempotencyState::Completed { .. }
        ));
        let again = h.intake.accept(&h.key, BODY.as_bytes(), key).await;
        assert!(matches!(again, AcceptOutcome::Replayed(_)), "{again:?}");
        assert_eq!(h.messages.all().len(), 1);
    }

    #[tokio::test]
    async fn a_sync_send_is_recorded_sending_under_a_lease_before_the_provider_call() {
        let h = harness(vec![]);
        let seen = h.messages.clone();
        h.provider.before_call(move || {
            let all = seen.all();
            assert_eq!(all.len(), 1);
            assert_eq!(all[0].record.state, MessageState::Sending);
            assert!(all[0].record.sending_until.is_some());
        });
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn a_retry_after_the_claim_lapsed_answers_the_recorded_message_and_sends_nothing() {
        let h = harness(vec![]);
        // The first attempt recorded the message and died before recording the outcome: the
        // key's claim lapses with it.
        h.messages
            .faults
            .fail_next("record_outcome", StoreErrorKind::Transient);
        h.idempotency
            .faults
            .fail_next("complete", StoreErrorKind::Transient);
        let key = keyed(&h, "k", BODY);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let first = accepted(h.intake.accept(&h.key, BODY.as_bytes(), key.clone()).await);
        assert_eq!(h.provider.calls(), 1);
        h.idempotency.forget(&scoped);
        let again = accepted(h.intake.accept(&h.key, BODY.as_bytes(), key).await);
        assert_eq!(again.id, first.id, "the same message");
        assert_eq!(again.status, MessageState::Sending);
        assert_eq!(h.provider.calls(), 1, "never sent twice");
        assert_eq!(h.messages.all().len(), 1);
    }

    #[tokio::test]
    async fn an_ambiguous_provider_answer_is_accepted_as_unknown() {
        let h = harness(vec![fails(SendFailure::transport(
            TransportFault::TimeoutAfterSend,
        ))]);
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Unknown);
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn bulk_mail_is_held_while_paused_or_when_the_switch_cannot_be_read() {
        let bulk = BULK;
        let h = harness(vec![]);
        h.controls.bulk_paused.store(true, Ordering::SeqCst);
        let a = accepted(h.intake.accept(&h.key, bulk.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Paused);
        let h = harness(vec![]);
        h.controls
            .faults
            .fail_next("bulk_paused", StoreErrorKind::Transient);
        let key = keyed(&h, "k", bulk);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let a = accepted(h.intake.accept(&h.key, bulk.as_bytes(), key).await);
        assert_eq!(a.status, MessageState::Paused);
        assert_eq!(h.provider.calls(), 0);
        // Its answer is known at once: the key is stored completed with the message.
        assert!(matches!(
            h.idempotency.record(&scoped).unwrap().state,
            mailgate_core::IdempotencyState::Completed { .. }
        ));
        // Transactional mail is never held.
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
    }

    const BULK: &str = r#"{"from":"news@example.com","to":["jane@example.org"],"subject":"Hi","text":"Hello","category":"bulk","topic":"news"}"#;

    #[tokio::test]
    async fn bulk_mail_carries_a_signed_one_click_link_for_its_recipient() {
        let h = harness(vec![]);
        let a = accepted(h.intake.accept(&h.key, BULK.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        let stored = h.messages.message(&a.id).unwrap();
        assert_eq!(stored.record.topic.as_deref(), Some("news"));
        let header = |name: &str| {
            stored
                .content
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let link = header("List-Unsubscribe").unwrap();
        let token = link
            .strip_prefix("<https://unsubscribe.example.test/")
            .and_then(|t| t.strip_suffix('>'))
            .unwrap();
        let keys = UnsubscribeKeys::parse(TEST_UNSUBSCRIBE_KEY).unwrap();
        let named = keys.verify(token).unwrap();
        assert_eq!((named.message_id, named.recipient_index), (a.id, 0));
        assert_eq!(
            header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );

        // Transactional mail gets the link only when asked for.
        let a = accepted(h.intake.accept(&h.key, BODY.as_bytes(), None).await);
        let stored = h.messages.message(&a.id).unwrap();
        assert!(stored.content.headers.is_empty());
        let asked = r#"{"from":"a@example.com","to":["b@example.org"],"subject":"Hi","text":"Hello","unsubscribe":true}"#;
        let a = accepted(h.intake.accept(&h.key, asked.as_bytes(), None).await);
        let stored = h.messages.message(&a.id).unwrap();
        assert_eq!(stored.content.headers.len(), 2);
    }

    #[tokio::test]
    async fn an_unsubscribe_stops_bulk_mail_but_never_transactional_mail() {
        let h = harness(vec![]);
        let jane = address("jane@example.org");
        h.suppressions.put(Suppression::new(
            &jane,
            SuppressionReason::Unsubscribe,
            h.clock.now(),
        ));
        match h.intake.accept(&h.key, BULK.as_bytes(), None).await {
            AcceptOutcome::AllSuppressed(list) => assert_eq!(list[0].0, jane),
            other => panic!("expected all suppressed, got {other:?}"),
        }
        let single = r#"{"from":"a@example.com","to":["jane@example.org"],"subject":"Receipt","text":"Paid"}"#;
        let a = accepted(h.intake.accept(&h.key, single.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        assert!(a.suppressed.is_empty());
        // A complaint stops transactional mail too.
        h.suppressions.put(Suppression::new(
            &jane,
            SuppressionReason::Complaint,
            h.clock.now(),
        ));
        assert!(matches!(
            h.intake.accept(&h.key, single.as_bytes(), None).await,
            AcceptOutcome::AllSuppressed(_)
        ));
    }

    #[tokio::test]
    async fn a_topic_unsubscribe_stops_bulk_mail_on_that_topic_only() {
        let h = harness(vec![]);
        let jane = address("jane@example.org");
        h.suppressions.put(
            Suppression::new(&jane, SuppressionReason::Unsubscribe, h.clock.now())
                .on_topic(Some("news".into())),
        );
        // BULK is on `news`.
        assert!(matches!(
            h.intake.accept(&h.key, BULK.as_bytes(), None).await,
            AcceptOutcome::AllSuppressed(_)
        ));
        let other = BULK.replace(r#""topic":"news""#, r#""topic":"offers""#);
        let a = accepted(h.intake.accept(&h.key, other.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        let untopical = BULK.replace(r#","topic":"news""#, "");
        let a = accepted(h.intake.accept(&h.key, untopical.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        // In a batch too: the `news` item is refused, the `offers` one queued.
        let outcome = h
            .intake
            .accept_batch(&h.key, batch(&[BULK, &other]).as_bytes(), None)
            .await;
        let AcceptOutcome::Batch { body, .. } = outcome else {
            panic!("expected a batch answer, got {outcome:?}");
        };
        assert_eq!(
            body["results"][0]["error"]["code"], "all_recipients_suppressed",
            "{body}"
        );
        assert_eq!(body["results"][1]["status"], "queued", "{body}");
    }

    #[tokio::test]
    async fn without_unsubscribe_settings_bulk_mail_is_refused_and_nothing_stored() {
        let mut h = harness(vec![]);
        let settings = AcceptSettings {
            unsubscribe: None,
            ..h.intake.settings().clone()
        };
        h.intake = MessageIntake::new(h.intake.ports.clone(), h.intake.delivery.clone(), settings);
        match h.intake.accept(&h.key, BULK.as_bytes(), None).await {
            AcceptOutcome::Invalid(errors) => {
                assert_eq!(errors[0].code, UNSUBSCRIBE_NOT_CONFIGURED);
                assert_eq!(errors[0].status(), 422);
            }
            other => panic!("expected 422, got {other:?}"),
        }
        assert!(h.messages.all().is_empty());
        assert_eq!(h.provider.calls(), 0);
    }

    fn batch(items: &[&str]) -> String {
        format!(r#"{{"messages":[{}]}}"#, items.join(","))
    }

    const ITEM: &str =
        r#"{"from":"news@example.com","to":["jane@example.org"],"subject":"Hi","text":"Hello"}"#;
    const BAD_ITEM: &str = r#"{"from":"news@example.com","to":[],"subject":"Hi","text":"Hello"}"#;

    #[tokio::test]
    async fn a_batch_queues_its_valid_messages_and_reports_each_item() {
        let h = harness(vec![]);
        let body = batch(&[ITEM, BAD_ITEM]);
        let outcome = h.intake.accept_batch(&h.key, body.as_bytes(), None).await;
        assert_eq!(outcome.status(), 202);
        let AcceptOutcome::Batch { body, .. } = outcome else {
            panic!()
        };
        let results = body["results"].as_array().unwrap();
        assert_eq!(results[0]["status"], "queued");
        assert!(results[1]["error"].is_object());
        assert_eq!(h.queue.entries().len(), 1);
        assert_eq!(h.provider.calls(), 0);

        let body = batch(&[BAD_ITEM]);
        let outcome = h.intake.accept_batch(&h.key, body.as_bytes(), None).await;
        assert_eq!(outcome.status(), 422);
    }

    #[tokio::test]
    async fn a_live_key_sending_to_the_simulator_is_refused_422_and_nothing_is_stored() {
        let h = harness(vec![]);
        let body = r#"{"from":"news@example.com","to":["jane@example.org"],
            "cc":["bounced+1@simulator.mailgate.invalid"],"subject":"Hi","text":"Hello"}"#;
        let AcceptOutcome::Invalid(errors) = h.intake.accept(&h.key, body.as_bytes(), None).await
        else {
            panic!("expected a refusal")
        };
        assert_eq!(errors[0].code, "simulator_requires_test_key");
        assert_eq!(errors[0].field, "cc[0]");
        assert_eq!(response_status(&errors), 422);
        assert!(h.messages.all().is_empty());
        assert_eq!(h.provider.calls(), 0);

        let to_simulator = r#"{"from":"news@example.com","to":["delivered@simulator.mailgate.invalid"],"subject":"Hi","text":"Hello"}"#;
        let body = batch(&[ITEM, to_simulator]);
        let AcceptOutcome::Batch { body, .. } =
            h.intake.accept_batch(&h.key, body.as_bytes(), None).await
        else {
            panic!()
        };
        let results = body["results"].as_array().unwrap();
        assert_eq!(results[0]["status"], "queued");
        assert_eq!(results[1]["error"]["code"], "simulator_requires_test_key");
        assert_eq!(results[1]["error"]["field"], "messages[1].to[0]");
    }

    #[tokio::test]
    async fn a_keyed_batch_replays_and_one_that_cannot_be_enqueued_is_accepted_and_watched() {
        let h = harness(vec![]);
        let body = batch(&[ITEM]);
        let first = h
            .intake
            .accept_batch(&h.key, body.as_bytes(), keyed(&h, "b", &body))
            .await;
        let again = h
            .intake
            .accept_batch(&h.key, body.as_bytes(), keyed(&h, "b", &body))
            .await;
        let (AcceptOutcome::Batch { body: first, .. }, AcceptOutcome::Replayed(stored)) =
            (first, again)
        else {
            panic!()
        };
        assert_eq!(serde_json::from_str::<Value>(&stored.body).unwrap(), first);
        assert_eq!(h.queue.entries().len(), 1);

        h.queue
            .faults
            .fail_next("enqueue_all", StoreErrorKind::Transient);
        let key = keyed(&h, "b2", &body);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let outcome = h.intake.accept_batch(&h.key, body.as_bytes(), key).await;
        // Recorded and watched: accepted, the key completed, the sweeper enqueues them.
        assert_eq!(outcome.status(), 202);
        assert!(matches!(
            h.idempotency.record(&scoped).unwrap().state,
            mailgate_core::IdempotencyState::Completed { .. }
        ));
        assert_eq!(h.queue.entries().len(), 1, "nothing more reached the queue");
    }

    #[tokio::test]
    async fn a_keyed_batch_retried_after_its_claim_lapsed_keeps_its_ids_and_records_only_the_rest()
    {
        let h = harness(vec![]);
        let second = ITEM.replace("jane@", "joe@");
        let body = batch(&[ITEM, &second]);
        // The first attempt's store fails for the first message and records the second; the
        // function dies before answering: its claim lapses.
        h.messages
            .faults
            .fail_next("create", StoreErrorKind::Transient);
        let key = keyed(&h, "b", &body);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let AcceptOutcome::Batch { body: first, .. } = h
            .intake
            .accept_batch(&h.key, body.as_bytes(), key.clone())
            .await
        else {
            panic!()
        };
        assert_eq!(h.messages.all().len(), 1);
        h.idempotency.forget(&scoped);
        let AcceptOutcome::Batch { body: again, .. } =
            h.intake.accept_batch(&h.key, body.as_bytes(), key).await
        else {
            panic!()
        };
        assert!(first["results"][0]["error"].is_object(), "{first}");
        assert_eq!(again["results"][1]["id"], first["results"][1]["id"]);
        assert!(again["results"][0]["id"].is_string(), "{again}");
        assert_eq!(
            h.messages.all().len(),
            2,
            "the second is not recorded twice"
        );
        let first_id = first["results"][1]["id"].as_str().unwrap().to_owned();
        let pointers: Vec<String> = h
            .queue
            .entries()
            .iter()
            .map(|(id, _)| id.as_str().to_owned())
            .collect();
        assert_eq!(
            pointers.iter().filter(|p| **p == first_id).count(),
            1,
            "the message the first attempt enqueued is not enqueued again: {pointers:?}"
        );
        assert_eq!(pointers.len(), 2);
    }
}

#[cfg(test)]
mod templated {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::tests_support::*;
    use crate::templates::Templates;

    async fn template(h: &Harness) -> String {
        let t = Templates::new(h.templates.clone(), h.clock.clone());
        let created = t
            .create(
                h.key.environment,
                br#"{"name":"Receipt","subject":"Order {{ order }}","html":"<p>{{ name }}</p>","text":"Hi {{ name }}"}"#,
            )
            .await
            .unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_send_with_a_template_stores_and_sends_the_rendering_and_keeps_the_version() {
        let h = harness(vec![]);
        let id = template(&h).await;
        let body = format!(
            r#"{{"from":"news@example.com","to":["jane@example.org"],"template":{{"id":"{id}","data":{{"order":7,"name":"<Jane>"}}}}}}"#
        );
        let a = accepted(h.intake.accept(&h.key, body.as_bytes(), None).await);
        assert_eq!(a.status, MessageState::Sent);
        let stored = &h.messages.all()[0];
        assert_eq!(stored.content.subject, "Order 7");
        assert_eq!(stored.content.html.as_deref(), Some("<p>&lt;Jane&gt;</p>"));
        assert_eq!(stored.content.text.as_deref(), Some("Hi <Jane>"));
        let used = stored.record.template.clone().unwrap();
        assert_eq!((used.id.as_str(), used.version), (id.as_str(), 1));
    }

    #[tokio::test]
    async fn a_template_missing_data_or_given_with_a_subject_is_refused_and_nothing_is_sent() {
        let h = harness(vec![]);
        let id = template(&h).await;
        let body = format!(
            r#"{{"from":"news@example.com","to":["jane@example.org"],"template":{{"id":"{id}","data":{{}}}}}}"#
        );
        let outcome = h.intake.accept(&h.key, body.as_bytes(), None).await;
        let AcceptOutcome::Invalid(errors) = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(outcome.status(), 422);
        assert_eq!(errors[0].code, "template_render_failed");
        assert!(errors[0].message.contains("`name`") && errors[0].message.contains("`order`"));
        let body = format!(
            r#"{{"from":"news@example.com","to":["jane@example.org"],"subject":"x","template":{{"id":"{id}","data":{{"order":1,"name":"a"}}}}}}"#
        );
        let outcome = h.intake.accept(&h.key, body.as_bytes(), None).await;
        let AcceptOutcome::Invalid(errors) = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            ("template_conflict", "subject")
        );
        // A batch item with a bad template fails alone.
        let ok = format!(
            r#"{{"from":"news@example.com","to":["jane@example.org"],"template":{{"id":"{id}","data":{{"order":1,"name":"a"}}}}}}"#
        );
        let bad = r#"{"from":"news@example.com","to":["jane@example.org"],"template":{"id":"tpl_00000000000000000000000000"}}"#;
        let batch = format!(r#"{{"messages":[{ok},{bad}]}}"#);
        let AcceptOutcome::Batch { body, .. } =
            h.intake.accept_batch(&h.key, batch.as_bytes(), None).await
        else {
            panic!()
        };
        assert_eq!(body["results"][0]["status"], "queued");
        assert_eq!(body["results"][1]["error"]["code"], "template_not_found");
        assert_eq!(
            body["results"][1]["error"]["field"],
            "messages[1].template.id"
        );
        assert_eq!(h.provider.calls(), 0);
    }
}

#[cfg(test)]
mod replay_first {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::tests_support::*;

    #[tokio::test]
    async fn a_retry_after_success_is_replayed_even_when_its_recipient_was_suppressed_meanwhile() {
        let h = harness(vec![]);
        let first = accepted(
            h.intake
                .accept(&h.key, BODY.as_bytes(), keyed(&h, "k1", BODY))
                .await,
        );
        suppress(&h, "jane@example.org");
        suppress(&h, "joe@example.org");
        let again = h
            .intake
            .accept(&h.key, BODY.as_bytes(), keyed(&h, "k1", BODY))
            .await;
        let AcceptOutcome::Replayed(stored) = again else {
            panic!("expected the stored 202, got {again:?}")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&stored.body).unwrap(),
            first.to_json()
        );
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn a_retry_after_success_is_replayed_even_when_its_send_at_has_passed() {
        let h = harness(vec![]);
        let at = h.clock.now() + time::Duration::minutes(5);
        let body = BODY.replace(
            r#""text":"Hello""#,
            &format!(
                r#""text":"Hello","send_at":"{}""#,
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            ),
        );
        let first = accepted(
            h.intake
                .accept(&h.key, body.as_bytes(), keyed(&h, "k2", &body))
                .await,
        );
        assert_eq!(first.status, MessageState::Scheduled);
        h.clock.advance(time::Duration::minutes(10));
        let again = h
            .intake
            .accept(&h.key, body.as_bytes(), keyed(&h, "k2", &body))
            .await;
        assert!(
            matches!(&again, AcceptOutcome::Replayed(stored) if stored.status == 202),
            "expected the stored 202, got {again:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_request_with_a_key_in_flight_is_409_not_the_refusal() {
        let h = harness(vec![]);
        let held = keyed(&h, "k3", BODY).unwrap();
        h.idempotency
            .try_claim(&KeyClaimRequest {
                scoped_key: held.scoped_key.clone(),
                fingerprint: held.fingerprint.clone(),
                now: h.clock.now(),
                lease: Duration::from_secs(30),
                completed: None,
            })
            .unwrap();
        suppress(&h, "jane@example.org");
        suppress(&h, "joe@example.org");
        let outcome = h.intake.accept(&h.key, BODY.as_bytes(), Some(held)).await;
        assert!(
            matches!(outcome, AcceptOutcome::KeyInFlight { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_with_a_fresh_key_is_still_the_refusal_and_claims_nothing() {
        let h = harness(vec![]);
        suppress(&h, "jane@example.org");
        suppress(&h, "joe@example.org");
        let key = keyed(&h, "k4", BODY);
        let scoped = key.as_ref().unwrap().scoped_key.clone();
        let outcome = h.intake.accept(&h.key, BODY.as_bytes(), key).await;
        assert!(
            matches!(outcome, AcceptOutcome::AllSuppressed(_)),
            "{outcome:?}"
        );
        assert!(h.idempotency.record(&scoped).is_none());
    }
}

#[cfg(test)]
mod guarded_tests {
    //! The warm path: no read before the write that records the message, whose guards (the
    //! cached key, the recipients' suppressions) the store checks; the reads only when a
    //! guard does not hold.
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::sync::Arc;

    use super::tests_support::*;
    use crate::testing::MemoryApiKeys;
    use mailgate_core::{ApiKeyRecord, ApiKeySecret, Scope};

    const BULK: &str = r#"{"from":"news@example.com","to":["jane@example.org"],"subject":"Hi","text":"Hello","category":"bulk","topic":"news"}"#;

    /// A harness whose message store checks guards, and the cached key's guard.
    fn guarded_harness() -> (Harness, Arc<MemoryApiKeys>, KeyGuard) {
        let h = harness(vec![]);
        let keys = Arc::new(MemoryApiKeys::default());
        let secret = ApiKeySecret::generate(KeyEnvironment::Test);
        let record = ApiKeyRecord::new(
            &secret,
            ApiKeyLabel::parse("cached").unwrap(),
            KeyEnvironment::Test,
            Scopes::parse_list("send").unwrap(),
            h.clock.now(),
        );
        let guard = KeyGuard {
            hash: record.hash,
            id: record.id.clone(),
            environment: record.environment,
            scope: Scope::Send,
        };
        keys.insert(record);
        h.messages.guard_with(h.suppressions.clone(), keys.clone());
        (h, keys, guard)
    }

    fn no_reads(h: &Harness) {
        h.suppressions
            .faults
            .fail_next("check", StoreErrorKind::Transient);
        h.suppressions
            .faults
            .fail_next("check_topic", StoreErrorKind::Transient);
    }

    #[tokio::test]
    async fn the_warm_path_reads_no_suppression_and_confirms_the_cached_key_in_its_write() {
        let (h, _, guard) = guarded_harness();
        // A suppression read would fail the request: the guarded write stands in for it.
        no_reads(&h);
        let accepting = h
            .intake
            .accept_with_cached_key(
                &h.key,
                Some(&guard),
                BODY.as_bytes(),
                keyed(&h, "warm", BODY),
            )
            .await;
        assert!(accepting.key_confirmed);
        let a = accepted(accepting.outcome);
        assert_eq!(a.status, MessageState::Sent);
        assert_eq!(h.messages.guarded_creates.load(Ordering::SeqCst), 1);
        assert_eq!(h.provider.calls(), 1);
        // Without a cached key nothing is confirmed (nothing needed it).
        let fresh = h
            .intake
            .accept_with_cached_key(&h.key, None, BODY.as_bytes(), None)
            .await;
        assert!(!fresh.key_confirmed);
        assert_eq!(fresh.outcome.status(), 202);
    }

    #[tokio::test]
    async fn a_suppressed_recipient_fails_the_guard_and_is_screened_by_the_reads() {
        let (h, _, guard) = guarded_harness();
        suppress(&h, "joe@example.org");
        let accepting = h
            .intake
            .accept_with_cached_key(&h.key, Some(&guard), BODY.as_bytes(), None)
            .await;
        assert!(accepting.key_confirmed, "the second write checks the key");
        let a = accepted(accepting.outcome);
        assert_eq!(a.suppressed.len(), 1);
        assert_eq!(a.suppressed[0].0, address("joe@example.org"));
        assert_eq!(h.messages.guarded_creates.load(Ordering::SeqCst), 2);
        let stored = h.messages.message(&a.id).unwrap();
        assert!(stored.content.cc.is_empty());
        suppress(&h, "jane@example.org");
        let outcome = h
            .intake
            .accept_with_cached_key(&h.key, Some(&guard), BODY.as_bytes(), None)
            .await;
        assert!(matches!(outcome.outcome, AcceptOutcome::AllSuppressed(_)));
        assert!(!outcome.key_confirmed);
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn the_guards_judge_unsubscribes_topics_and_expiry_as_the_reads_do() {
        let single = r#"{"from":"a@example.com","to":["jane@example.org"],"subject":"Receipt","text":"Paid"}"#;
        let other_topic = BULK.replace(r#""topic":"news""#, r#""topic":"offers""#);
        let jane = address("jane@example.org");
        let now = || FixedClock::at_unix(1_790_000_000).now();
        let cases: Vec<(&str, Suppression, &str)> = vec![
            (
                "an unsubscribe, transactional",
                Suppression::new(&jane, SuppressionReason::Unsubscribe, now()),
                single,
            ),
            (
                "an unsubscribe, bulk",
                Suppression::new(&jane, SuppressionReason::Unsubscribe, now()),
                BULK,
            ),
            (
                "a topic unsubscribe, bulk on it",
                Suppression::new(&jane, SuppressionReason::Unsubscribe, now())
                    .on_topic(Some("news".into())),
                BULK,
            ),
            (
                "a topic unsubscribe, bulk on another",
                Suppression::new(&jane, SuppressionReason::Unsubscribe, now())
                    .on_topic(Some("news".into())),
                &other_topic,
            ),
            (
                "a topic unsubscribe, transactional",
                Suppression::new(&jane, SuppressionReason::Unsubscribe, now())
                    .on_topic(Some("news".into())),
                single,
            ),
            (
                "a complaint, transactional",
                Suppression::new(&jane, SuppressionReason::Complaint, now()),
                single,
            ),
            (
                "an expired bounce",
                Suppression::new(
                    &jane,
                    SuppressionReason::HardBounce,
                    now() - time::Duration::hours(2),
                )
                .expiring_at(now() - time::Duration::hours(1))
                .unwrap(),
                single,
            ),
        ];
        for (case, entry, body) in cases {
            // The reads' answer (no guard store linked) against the guarded write's.
            let read = harness(vec![]);
            read.suppressions.put(entry.clone());
            let by_reads = read.intake.accept(&read.key, body.as_bytes(), None).await;
            let (h, _, guard) = guarded_harness();
            h.suppressions.put(entry);
            let by_guards = h
                .intake
                .accept_with_cached_key(&h.key, Some(&guard), body.as_bytes(), None)
                .await;
            assert_eq!(
                by_guards.outcome.status(),
                by_reads.status(),
                "{case}: {:?} vs {by_reads:?}",
                by_guards.outcome
            );
            // A message the guards let through was written once, with no read.
            if by_reads.status() == 202 {
                assert_eq!(
                    h.messages.guarded_creates.load(Ordering::SeqCst),
                    1,
                    "{case}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_revoked_cached_key_is_unconfirmed_and_nothing_is_written_or_sent() {
        let (h, keys, guard) = guarded_harness();
        keys.revoke(&guard.hash, h.clock.now());
        for keyed_request in [None, keyed(&h, "revoked", BODY)] {
            let accepting = h
                .intake
                .accept_with_cached_key(&h.key, Some(&guard), BODY.as_bytes(), keyed_request)
                .await;
            assert!(
                matches!(accepting.outcome, AcceptOutcome::KeyUnconfirmed),
                "{:?}",
                accepting.outcome
            );
            assert!(!accepting.key_confirmed);
        }
        assert!(h.messages.all().is_empty());
        assert!(
            h.idempotency
                .record(&keyed(&h, "revoked", BODY).unwrap().scoped_key)
                .is_none()
        );
        assert_eq!(h.provider.calls(), 0);
        // So is a key whose scope was taken away, or that moved to another environment.
        let (h, keys, guard) = guarded_harness();
        let mut record = keys.record(&guard.hash).unwrap();
        record.environment = KeyEnvironment::Live;
        let moved = Arc::new(MemoryApiKeys::default());
        moved.insert(record);
        h.messages.guard_with(h.suppressions.clone(), moved);
        let accepting = h
            .intake
            .accept_with_cached_key(&h.key, Some(&guard), BODY.as_bytes(), None)
            .await;
        assert!(matches!(accepting.outcome, AcceptOutcome::KeyUnconfirmed));
        assert_eq!(h.provider.calls(), 0);
    }
}
