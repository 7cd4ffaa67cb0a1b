//! `SesIdentities`: the core's [`SenderIdentities`] on SESv2 email identities
//! (`CreateEmailIdentity` with Easy DKIM, `PutEmailIdentityMailFromAttributes`,
//! `GetEmailIdentity`, `ListEmailIdentities`, `DeleteEmailIdentity`).
//!
//! | call | SES answer | port answer |
//! |---|---|---|
//! | create | created | its status with the DKIM tokens |
//! | create | `AlreadyExistsException` | the existing identity's status |
//! | get | `NotFoundException` | `None` |
//! | set MAIL FROM | HTTP 404 without an SES error code (an emulator lacking the operation) | `MailFromError::Unsupported` |
//! | delete | `NotFoundException` | `Ok` (already gone) |
//! | any | throttled, 5xx, timeout | `StoreError` of that kind |

use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::types::{BehaviorOnMxFailure, DkimAttributes};
use mailgate_core::BoxFuture;
use mailgate_core::ports::{IdentityStatus, IdentitySummary, MailFromError, SenderIdentities};
use mailgate_core::sender_domain::SenderDomain;

use crate::sdk::store_error;

/// SES identities.
#[derive(Debug, Clone)]
pub struct SesIdentities {
    client: aws_sdk_sesv2::Client,
}

impl SesIdentities {
    /// The registry on `client`.
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        Self { client }
    }

    async fn get_identity(
        &self,
        identity: &str,
    ) -> Result<Option<IdentityStatus>, mailgate_core::StoreError> {
        match self
            .client
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(out) => {
                let mut status = IdentityStatus {
                    name: identity.to_owned(),
                    identity_type: out
                        .identity_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    verified_for_sending: out.verified_for_sending_status(),
                    verification_status: out.verification_status().map(|s| s.as_str().to_owned()),
                    mail_from_domain: out
                        .mail_from_attributes()
                        .map(|m| m.mail_from_domain().to_owned())
                        .filter(|d| !d.is_empty()),
                    mail_from_status: out
                        .mail_from_attributes()
                        .map(|m| m.mail_from_domain_status().as_str().to_owned()),
                    ..IdentityStatus::default()
                };
                dkim(&mut status, out.dkim_attributes());
                Ok(Some(status))
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(store_error("GetEmailIdentity", err)),
        }
    }
}

fn dkim(status: &mut IdentityStatus, attributes: Option<&DkimAttributes>) {
    if let Some(d) = attributes {
        status.dkim_status = d.status().map(|s| s.as_str().to_owned());
        status.dkim_signing_enabled = d.signing_enabled();
        status.dkim_tokens = d.tokens().to_vec();
    }
}

impl SenderIdentities for SesIdentities {
    fn create_domain<'a>(
        &'a self,
        domain: &'a SenderDomain,
    ) -> BoxFuture<'a, Result<IdentityStatus, mailgate_core::StoreError>> {
        Box::pin(async move {
            // No DkimSigningAttributes: SES then sets up Easy DKIM and answers its tokens.
            match self
                .client
                .create_email_identity()
                .email_identity(domain.as_str())
                .send()
                .await
            {
                Ok(out) => {
                    let mut status = IdentityStatus {
                        name: domain.as_str().to_owned(),
                        identity_type: out
                            .identity_type()
                            .map(|t| t.as_str().to_owned())
                            .unwrap_or_default(),
                        verified_for_sending: out.verified_for_sending_status(),
                        ..IdentityStatus::default()
                    };
                    dkim(&mut status, out.dkim_attributes());
                    // The create answer has no verification status; read it like a GET.
                    if let Ok(Some(read)) = self.get_identity(domain.as_str()).await {
                        status.verification_status = read.verification_status;
                        if status.dkim_tokens.is_empty() {
                            status.dkim_tokens = read.dkim_tokens;
                        }
                    }
                    Ok(status)
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_already_exists_exception()) =>
                {
                    match self.get_identity(domain.as_str()).await? {
                        Some(status) => Ok(status),
                        None => Err(store_error("CreateEmailIdentity", err)),
                    }
                }
                Err(err) => Err(store_error("CreateEmailIdentity", err)),
            }
        })
    }

    fn set_mail_from<'a>(
        &'a self,
        domain: &'a SenderDomain,
        mail_from: &'a str,
    ) -> BoxFuture<'a, Result<(), MailFromError>> {
        Box::pin(async move {
            match self
                .client
                .put_email_identity_mail_from_attributes()
                .email_identity(domain.as_str())
                .mail_from_domain(mail_from)
                .behavior_on_mx_failure(BehaviorOnMxFailure::UseDefaultValue)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(err) => {
                    let unmodelled_404 = err
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 404)
                        && err.code().is_none_or(|c| c != "NotFoundException");
                    if unmodelled_404 {
                        Err(MailFromError::Unsupported(
                            "PutEmailIdentityMailFromAttributes answered HTTP 404 without an SES error code"
                                .to_owned(),
                        ))
                    } else {
                        Err(MailFromError::Store(store_error(
                            "PutEmailIdentityMailFromAttributes",
                            err,
                        )))
                    }
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdentityStatus>, mailgate_core::StoreError>> {
        Box::pin(self.get_identity(identity))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<IdentitySummary>, mailgate_core::StoreError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_email_identities()
                    .page_size(1000)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| store_error("ListEmailIdentities", e))?;
                all.extend(out.email_identities().iter().map(|i| {
                    IdentitySummary {
                        name: i.identity_name().unwrap_or_default().to_owned(),
                        identity_type: i
                            .identity_type()
                            .map(|t| t.as_str().to_owned())
                            .unwrap_or_default(),
                        sending_enabled: i.sending_enabled(),
                        verification_status: i.verification_status().map(|s| s.as_str().to_owned()),
                    }
                }));
                match out.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                    _ => return Ok(all),
                }
            }
        })
    }

    fn delete<'a>(
        &'a self,
        domain: &'a SenderDomain,
    ) -> BoxFuture<'a, Result<(), mailgate_core::StoreError>> {
        Box::pin(async move {
            match self
                .client
                .delete_email_identity()
                .email_identity(domain.as_str())
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_not_found_exception()) =>
                {
                    Ok(())
                }
                Err(err) => Err(store_error("DeleteEmailIdentity", err)),
            }
        })
    }
}
