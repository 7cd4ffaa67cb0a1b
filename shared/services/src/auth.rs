//! Authenticating a send-API request: the `Authorization` header → the key stored under its
//! hash → the scope the route needs. The decision itself is the core's
//! ([`mailgate_core::api_key::authorize`]); this service reads the key through the [`ApiKeys`]
//! port and logs refusals by key id (never the key).

use std::sync::Arc;

use mailgate_core::api_key::{authorize, parse_authorization};
use mailgate_core::ports::ApiKeys;
use mailgate_core::{AuthFailure, AuthenticatedKey, Requirement, StoreError};

/// Why a request was not authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// The caller's key is missing, malformed, unknown, revoked or lacks the scope.
    #[error(transparent)]
    Refused(#[from] AuthFailure),
    /// The key could not be looked up.
    #[error("the API key could not be checked: {0}")]
    Store(#[from] StoreError),
}

/// Checks API keys.
#[derive(Clone)]
pub struct Authentication {
    keys: Arc<dyn ApiKeys>,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication").finish_non_exhaustive()
    }
}

impl Authentication {
    /// Authenticates against `keys`.
    pub fn new(keys: Arc<dyn ApiKeys>) -> Self {
        Self { keys }
    }

    /// The caller's key, if the `Authorization` header's value `authorization` names a valid key
    /// that meets `requirement`.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        requirement: Requirement,
    ) -> Result<AuthenticatedKey, AuthError> {
        let secret = parse_authorization(authorization)?;
        let hash = secret.hash();
        let found = self.keys.find(&hash).await?;
        let key = authorize(&hash, found.as_ref(), requirement).inspect_err(|f| {
            tracing::info!(
                code = f.code(),
                key_id = found.as_ref().map_or("-", |r| r.id.as_str()),
                "request refused"
            );
        })?;
        tracing::debug!(key_id = %key.id, "request authenticated");
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryApiKeys;
    use mailgate_core::{
        ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, Scope, Scopes, StoreErrorKind,
    };
    use time::macros::datetime;

    fn keys_with(secret: &ApiKeySecret, scopes: &[Scope]) -> Arc<MemoryApiKeys> {
        let keys = Arc::new(MemoryApiKeys::default());
        keys.insert(ApiKeyRecord::new(
            secret,
            ApiKeyLabel::parse("billing").unwrap(),
            KeyEnvironment::Test,
            Scopes::new(scopes.iter().copied()).unwrap(),
            datetime!(2026-01-02 03:04:05 UTC),
        ));
        keys
    }

    fn bearer(secret: &ApiKeySecret) -> String {
        format!("Bearer {}", secret.expose())
    }

    #[tokio::test]
    async fn follows_the_table_of_keys_and_requirements() {
        let secret = ApiKeySecret::generate(KeyEnvironment::Test);
        let other = ApiKeySecret::generate(KeyEnvironment::Test);
        let keys = keys_with(&secret, &[Scope::Send, Scope::Read]);
        let auth = Authentication::new(keys.clone());
        let send = Requirement::Scope(Scope::Send);
        let write = Requirement::Scope(Scope::SuppressionsWrite);

        let key = auth
            .authenticate(Some(bearer(&secret).as_bytes()), send)
            .await
            .unwrap();
        assert_eq!(key.environment, KeyEnvironment::Test);
        assert_eq!(key.label.as_str(), "billing");

        for (header, requirement, expected) in [
            (None, Requirement::AnyKey, AuthFailure::MissingApiKey),
            (Some(bearer(&other)), send, AuthFailure::InvalidApiKey),
            (
                Some(bearer(&secret)),
                write,
                AuthFailure::InsufficientScope {
                    needed: Scope::SuppressionsWrite,
                },
            ),
        ] {
            let err = auth
                .authenticate(header.as_deref().map(str::as_bytes), requirement)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, AuthError::Refused(f) if *f == expected),
                "{header:?}: {err:?}"
            );
        }
        let err = auth
            .authenticate(Some(b"Basic dXNlcjpwYXNz"), send)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Refused(AuthFailure::MalformedApiKey(_))),
            "{err:?}"
        );

        keys.revoke(&secret.hash(), datetime!(2026-02-01 0:00 UTC));
        let err = auth
            .authenticate(Some(bearer(&secret).as_bytes()), send)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            AuthError::Refused(AuthFailure::InvalidApiKey)
        ));
    }

    #[tokio::test]
    async fn a_failed_lookup_is_a_store_error_not_a_refusal() {
        let secret = ApiKeySecret::generate(KeyEnvironment::Live);
        let keys = keys_with(&secret, &[Scope::Send]);
        let auth = Authentication::new(keys.clone());
        keys.faults.fail_next("find", StoreErrorKind::Throttled);
        let err = auth
            .authenticate(Some(bearer(&secret).as_bytes()), Requirement::AnyKey)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthError::Store(e) if e.kind() == StoreErrorKind::Throttled),
            "{err:?}"
        );
        // The next lookup succeeds.
        auth.authenticate(Some(bearer(&secret).as_bytes()), Requirement::AnyKey)
            .await
            .unwrap();
    }
}
