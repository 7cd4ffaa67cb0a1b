//! Sender domains: the service behind `/v1/domains` (create the SES identity with Easy DKIM and
//! answer the DNS records to publish; read its status with a live DNS check of every record;
//! list; delete), and the send path's up-front check that a sender's domain is a verified
//! identity when SES is the only provider that could carry the message.
//!
//! | request | outcome |
//! |---|---|
//! | `domain` / `mail_from_subdomain` not valid | 400 `invalid_domain` / `invalid_mail_from_subdomain` |
//! | body not JSON, unknown field | 400 `malformed_json`, `unknown_field`, `invalid_type` |
//! | create | 201: the identity's status and the records to publish |
//! | create, MAIL FROM refused by an emulator without the operation | 501 `mail_from_unsupported` (the identity exists) |
//! | get / delete of a domain that is no identity | 404 `not_found` |
//! | SES throttled or failing | 503 `service_unavailable` (retry); other SES refusals 502 `ses_error` |
//!
//! The send check ([`SenderDomainGate`]) caches each domain's verdict for a short time
//! ([`IDENTITY_CACHE_TTL`]) so a send makes no SES call while the verdict is fresh, and lets a
//! send through when SES cannot be asked (the provider's own answer then decides).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_core::ports::{DnsLookup, IdentityStatus, MailFromError, SenderIdentities};
use mailgate_core::send_request::{FieldError, parse_json};
use mailgate_core::sender_domain::{
    CheckStatus, SENDER_DOMAIN_UNVERIFIED, SenderDomain, check_record, expected_records, ses_only,
};
use mailgate_core::{Clock, EmailAddress, ProviderId, StoreError, UnixMillis};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long the send check trusts what SES said about a sender's identity.
pub const IDENTITY_CACHE_TTL: Duration = Duration::from_secs(300);
/// How many verdicts one instance keeps before starting afresh.
const MAX_CACHED_VERDICTS: usize = 10_000;

/// A refused domain request: status, machine-readable code, message and the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainFailure {
    /// The HTTP status.
    pub status: u16,
    /// The error code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The field at fault, if one is.
    pub field: Option<String>,
}

impl DomainFailure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn of_field(e: &FieldError) -> Self {
        Self {
            status: e.status(),
            code: e.code,
            message: e.message.clone(),
            field: e.field_path().map(str::to_owned),
        }
    }

    fn of_domain(e: mailgate_core::sender_domain::DomainError) -> Self {
        Self {
            status: 400,
            code: e.code,
            message: e.message,
            field: Some(e.field.to_owned()),
        }
    }

    fn ses(err: &StoreError) -> Self {
        tracing::error!(error = %err, "SES identity call failed");
        if err.is_retryable() {
            DomainFailure::new(
                503,
                "service_unavailable",
                "SES is unavailable or throttling; try again",
            )
        } else {
            DomainFailure::new(
                502,
                "ses_error",
                format!("SES refused {}: see the logs", err.operation()),
            )
        }
    }

    fn not_found(domain: &SenderDomain) -> Self {
        DomainFailure::new(
            404,
            "not_found",
            format!(
                "{domain} is not a sender domain (no SES identity); create it with POST /v1/domains"
            ),
        )
    }

    /// The error body: `{"error": {"code", "message", "field"?}}`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDomain {
    domain: String,
    #[serde(default)]
    mail_from_subdomain: Option<String>,
}

/// The sender-domain service.
#[derive(Clone)]
pub struct SenderDomains {
    identities: Arc<dyn SenderIdentities>,
    dns: Arc<dyn DnsLookup>,
    region: String,
}

impl std::fmt::Debug for SenderDomains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderDomains")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The note when SES gave no DKIM tokens.
const NO_DKIM_TOKENS: &str = "SES reported no Easy DKIM tokens for this identity, so no DKIM \
     CNAME can be listed or checked yet; ask again later (the local emulator, moto, never reports \
     any)";

impl SenderDomains {
    /// The service over SES identities and a DNS resolver; `region` is SES's (the MAIL FROM MX
    /// points at its feedback endpoint).
    pub fn new(
        identities: Arc<dyn SenderIdentities>,
        dns: Arc<dyn DnsLookup>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            identities,
            dns,
            region: region.into(),
        }
    }

    fn view(&self, domain: &SenderDomain, status: &IdentityStatus) -> Value {
        let records = expected_records(
            domain,
            &status.dkim_tokens,
            status.mail_from_domain.as_deref(),
            &self.region,
        );
        let mut notes = Vec::new();
        if status.dkim_tokens.is_empty() {
            notes.push(NO_DKIM_TOKENS.to_owned());
        }
        json!({
            "domain": domain,
            "verification_status": status.verification_status,
            "verified_for_sending": status.can_send(),
            "dkim": {
                "status": status.dkim_status,
                "signing_enabled": status.dkim_signing_enabled,
                "tokens": status.dkim_tokens.len(),
            },
            "mail_from": status.mail_from_domain.as_ref().map(|d| json!({
                "domain": d,
                "status": status.mail_from_status,
            })),
            "records": records,
            "notes": notes,
        })
    }

    /// `POST /v1/domains`: creates the identity (an existing one is kept) and sets its custom
    /// MAIL FROM domain when asked; the identity's status and the records to publish.
    pub async fn create(&self, body: &[u8]) -> Result<Value, DomainFailure> {
        let raw: Value = parse_json(body).map_err(|e| DomainFailure::of_field(&e))?;
        if let Some(unknown) = raw.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["domain", "mail_from_subdomain"].contains(&k.as_str()))
        }) {
            return Err(DomainFailure::of_field(&FieldError::new(
                mailgate_core::send_request::code::UNKNOWN_FIELD,
                unknown.clone(),
                format!("unknown field `{unknown}`; the fields are domain and mail_from_subdomain"),
            )));
        }
        let request: CreateDomain = parse_json(body).map_err(|e| DomainFailure::of_field(&e))?;
        let domain = SenderDomain::parse(&request.domain).map_err(DomainFailure::of_domain)?;
        let mail_from = request
            .mail_from_subdomain
            .as_deref()
            .map(|s| domain.mail_from(s))
            .transpose()
            .map_err(DomainFailure::of_domain)?;
        let mut status = self
            .identities
            .create_domain(&domain)
            .await
            .map_err(|e| DomainFailure::ses(&e))?;
        if let Some(mail_from) = &mail_from {
            match self.identities.set_mail_from(&domain, mail_from).await {
                Ok(()) => {
                    status.mail_from_domain = Some(mail_from.clone());
                    status
                        .mail_from_status
                        .get_or_insert_with(|| "PENDING".to_owned());
                }
                Err(MailFromError::Unsupported(why)) => {
                    return Err(DomainFailure::new(
                        501,
                        "mail_from_unsupported",
                        format!(
                            "the identity {domain} was created, but the custom MAIL FROM domain \
                             {mail_from} could not be set: {why}; create it without \
                             mail_from_subdomain here (real SES supports it)"
                        ),
                    ));
                }
                Err(MailFromError::Store(e)) => return Err(DomainFailure::ses(&e)),
            }
        }
        Ok(self.view(&domain, &status))
    }

    /// `GET /v1/domains/{domain}`: SES's status of the identity, and the DNS check of every
    /// record it needs.
    pub async fn check(&self, domain: &str) -> Result<Value, DomainFailure> {
        let domain = SenderDomain::parse(domain).map_err(DomainFailure::of_domain)?;
        let status = self
            .identities
            .get(domain.as_str())
            .await
            .map_err(|e| DomainFailure::ses(&e))?
            .ok_or_else(|| DomainFailure::not_found(&domain))?;
        let mut view = self.view(&domain, &status);
        let records = expected_records(
            &domain,
            &status.dkim_tokens,
            status.mail_from_domain.as_deref(),
            &self.region,
        );
        let observed =
            futures::future::join_all(records.iter().map(|r| self.dns.lookup(&r.name, r.kind)))
                .await;
        let checks: Vec<_> = records
            .iter()
            .zip(&observed)
            .map(|(r, o)| check_record(r, o))
            .collect();
        let mut problems: Vec<String> = checks
            .iter()
            .filter(|c| c.status != CheckStatus::Ok)
            .map(|c| c.message.clone())
            .collect();
        if !status.can_send() {
            problems.insert(
                0,
                format!(
                    "SES has not verified {domain} yet (verification {}): it does once the \
                     DKIM CNAMEs are published and visible",
                    status
                        .verification_status
                        .as_deref()
                        .unwrap_or("status unknown")
                ),
            );
        }
        if status.dkim_tokens.is_empty() {
            problems.push(NO_DKIM_TOKENS.to_owned());
        }
        view["ready"] = json!(problems.is_empty());
        view["checks"] = json!(checks);
        view["problems"] = json!(problems);
        Ok(view)
    }

    /// `GET /v1/domains`: the domain identities.
    pub async fn list(&self) -> Result<Value, DomainFailure> {
        let all = self
            .identities
            .list()
            .await
            .map_err(|e| DomainFailure::ses(&e))?;
        let domains: Vec<Value> = all
            .into_iter()
            .filter(|i| i.identity_type == "DOMAIN")
            .map(|i| {
                json!({
                    "domain": i.name,
                    "verification_status": i.verification_status,
                    "sending_enabled": i.sending_enabled,
                })
            })
            .collect();
        Ok(json!({ "domains": domains }))
    }

    /// `DELETE /v1/domains/{domain}`: deletes the identity.
    pub async fn delete(&self, domain: &str) -> Result<(), DomainFailure> {
        let domain = SenderDomain::parse(domain).map_err(DomainFailure::of_domain)?;
        self.identities
            .get(domain.as_str())
            .await
            .map_err(|e| DomainFailure::ses(&e))?
            .ok_or_else(|| DomainFailure::not_found(&domain))?;
        self.identities
            .delete(&domain)
            .await
            .map_err(|e| DomainFailure::ses(&e))
    }
}

/// The send path's check that a sender may send through SES, with a cache of SES's verdicts.
pub struct SenderDomainGate {
    identities: Arc<dyn SenderIdentities>,
    configured: Vec<ProviderId>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    verdicts: Mutex<HashMap<String, (UnixMillis, bool)>>,
}

impl std::fmt::Debug for SenderDomainGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderDomainGate")
            .field("configured", &self.configured)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SenderDomainGate {
    /// The check for a deployment whose providers are `configured` (in order).
    pub fn new(
        identities: Arc<dyn SenderIdentities>,
        configured: impl IntoIterator<Item = ProviderId>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            identities,
            configured: configured.into_iter().collect(),
            clock,
            ttl: IDENTITY_CACHE_TTL,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// The same with another cache lifetime.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, identity: &str, now: UnixMillis) -> Option<bool> {
        let verdicts = self.verdicts.lock().ok()?;
        verdicts
            .get(identity)
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(_, ok)| *ok)
    }

    async fn can_send(&self, identity: &str) -> Result<bool, StoreError> {
        let now = UnixMillis::from(self.clock.now());
        if let Some(ok) = self.cached(identity, now) {
            return Ok(ok);
        }
        let answer = self.identities.get(identity).await;
        // A failed question is remembered as "let it through" too: a deployment whose role
        // may not read identities must not pay a failing SES call on every send.
        let ok = answer
            .as_ref()
            .map_or(true, |s| s.as_ref().is_some_and(|s| s.can_send()));
        if let Ok(mut verdicts) = self.verdicts.lock() {
            // Bounded: senders at many different domains cannot grow it without limit.
            if verdicts.len() >= MAX_CACHED_VERDICTS {
                verdicts.clear();
            }
            verdicts.insert(identity.to_owned(), (now, ok));
        }
        answer.map(|_| ok)
    }

    /// `Ok` when the message may go on: another provider could carry it, or SES has verified
    /// the sender's domain (or the address itself). The 422 `sender_domain_unverified` on
    /// `from` otherwise. When SES cannot be asked, the send goes on (logged).
    pub async fn check(
        &self,
        from: &EmailAddress,
        requested: Option<ProviderId>,
    ) -> Result<(), FieldError> {
        if !ses_only(requested, self.configured.iter().copied()) {
            return Ok(());
        }
        let domain = from.domain().to_ascii_lowercase();
        let verdict = match self.can_send(&domain).await {
            Ok(true) => Ok(true),
            // An address identity lets that one address send from an unverified domain.
            Ok(false) => self.can_send(&from.as_str().to_ascii_lowercase()).await,
            Err(e) => Err(e),
        };
        match verdict {
            Ok(true) => Ok(()),
            Ok(false) => Err(FieldError::new(
                SENDER_DOMAIN_UNVERIFIED,
                "from",
                format!(
                    "{domain} is not a verified SES identity and SES is the only provider that \
                     could send this message; add it with POST /v1/domains and publish its DNS \
                     records (GET /v1/domains/{domain} says what is missing)"
                ),
            )),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the sender's SES identity; sending anyway");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::ports::IdentitySummary;
    use mailgate_core::sender_domain::{Observed, RecordType};
    use mailgate_core::{BoxFuture, FixedClock};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Registry {
        verified: Vec<String>,
        tokens: Vec<String>,
        gets: AtomicUsize,
    }

    impl SenderIdentities for Registry {
        fn create_domain<'a>(
            &'a self,
            domain: &'a SenderDomain,
        ) -> BoxFuture<'a, Result<IdentityStatus, StoreError>> {
            Box::pin(async move {
                Ok(IdentityStatus {
                    name: domain.to_string(),
                    identity_type: "DOMAIN".into(),
                    dkim_tokens: self.tokens.clone(),
                    verification_status: Some("PENDING".into()),
                    ..IdentityStatus::default()
                })
            })
        }
        fn set_mail_from<'a>(
            &'a self,
            _: &'a SenderDomain,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), MailFromError>> {
            Box::pin(async { Ok(()) })
        }
        fn get<'a>(
            &'a self,
            identity: &'a str,
        ) -> BoxFuture<'a, Result<Option<IdentityStatus>, StoreError>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(Some(IdentityStatus {
                    name: identity.to_owned(),
                    identity_type: "DOMAIN".into(),
                    verified_for_sending: self.verified.iter().any(|v| v == identity),
                    dkim_tokens: self.tokens.clone(),
                    ..IdentityStatus::default()
                }))
            })
        }
        fn list(&self) -> BoxFuture<'_, Result<Vec<IdentitySummary>, StoreError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn delete<'a>(&'a self, _: &'a SenderDomain) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
    }

    struct Zone(HashMap<(String, RecordType), Vec<String>>);

    impl DnsLookup for Zone {
        fn lookup<'a>(&'a self, name: &'a str, kind: RecordType) -> BoxFuture<'a, Observed> {
            Box::pin(async move {
                match self.0.get(&(name.to_owned(), kind)) {
                    Some(v) => Observed::Records(v.clone()),
                    None => Observed::NoRecords,
                }
            })
        }
    }

    #[tokio::test]
    async fn the_check_reports_each_record_in_words() {
        let registry = Arc::new(Registry {
            tokens: vec!["aaa".into(), "bbb".into(), "ccc".into()],
            ..Registry::default()
        });
        let mut zone = HashMap::new();
        zone.insert(
            ("aaa._domainkey.example.org".to_owned(), RecordType::Cname),
            vec!["aaa.dkim.amazonses.com".to_owned()],
        );
        zone.insert(
            ("bbb._domainkey.example.org".to_owned(), RecordType::Cname),
            vec!["bbb.dkim.example.net".to_owned()],
        );
        let service = SenderDomains::new(registry, Arc::new(Zone(zone)), "us-east-1");
        let created = service
            .create(br#"{"domain": "Example.org"}"#)
            .await
            .unwrap();
        assert_eq!(created["records"].as_array().unwrap().len(), 5);
        let checked = service.check("example.org").await.unwrap();
        assert_eq!(checked["ready"], false);
        let statuses: Vec<&str> = checked["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["ok", "wrong", "missing", "missing", "missing"]);
        let problems = checked["problems"].to_string();
        assert!(
            problems.contains("points to bbb.dkim.example.net instead of bbb.dkim.amazonses.com")
        );
        assert!(problems.contains("no DMARC record at _dmarc.example.org"));
        assert!(problems.contains("SES has not verified example.org"));

        let bad = service
            .create(br#"{"domain": "not a domain"}"#)
            .await
            .unwrap_err();
        assert_eq!((bad.status, bad.code), (400, "invalid_domain"));
        let unknown = service
            .create(br#"{"domain": "example.org", "dkim": true}"#)
            .await
            .unwrap_err();
        assert_eq!(unknown.status, 400);
    }

    #[tokio::test]
    async fn the_gate_refuses_unverified_senders_only_when_ses_alone_could_send_and_caches() {
        let registry = Arc::new(Registry {
            verified: vec!["example.com".into(), "one@example.net".into()],
            ..Registry::default()
        });
        let gate = SenderDomainGate::new(
            registry.clone(),
            [ProviderId::Ses],
            Arc::new(FixedClock::at_unix(1_700_000_000)),
        );
        let addr = |a: &str| EmailAddress::parse(a).unwrap();
        assert!(gate.check(&addr("a@example.com"), None).await.is_ok());
        assert!(gate.check(&addr("one@example.net"), None).await.is_ok());
        let refused = gate.check(&addr("b@example.net"), None).await.unwrap_err();
        assert_eq!(refused.code, SENDER_DOMAIN_UNVERIFIED);
        assert_eq!(refused.status(), 422);
        let gets = registry.gets.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert!(gate.check(&addr("a@example.com"), None).await.is_ok());
            assert!(gate.check(&addr("b@example.net"), None).await.is_err());
        }
        assert_eq!(
            registry.gets.load(Ordering::SeqCst),
            gets,
            "answered from the cache"
        );
        // Another provider could carry it: no question asked.
        assert!(
            gate.check(&addr("b@example.net"), Some(ProviderId::Postmark))
                .await
                .is_ok()
        );
        let failover = SenderDomainGate::new(
            registry.clone(),
            [ProviderId::Ses, ProviderId::Postmark],
            Arc::new(FixedClock::at_unix(1_700_000_000)),
        );
        assert!(failover.check(&addr("b@example.net"), None).await.is_ok());
        assert!(
            failover
                .check(&addr("b@example.net"), Some(ProviderId::Ses))
                .await
                .is_err()
        );
    }
}
