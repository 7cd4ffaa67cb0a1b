//! Authenticating a send-API request: the `Authorization` header → the key stored under its
//! hash → the scope the route needs. The decision itself is the core's
//! ([`mailgate_core::api_key::authorize`]); this service reads the key through the [`ApiKeys`]
//! port and logs refusals by key id (never the key).
//!
//! The send route may take the key from a per-container cache instead
//! ([`Authentication::authenticate_cached`]): the cached record answers with a [`KeyGuard`]
//! that the write recording the message checks, so a revocation is still refused at once;
//! every other route reads the key on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mailgate_core::api_key::{authorize, parse_authorization};
use mailgate_core::ports::{ApiKeys, KeyGuard};
use mailgate_core::{ApiKeyRecord, AuthFailure, AuthenticatedKey, Requirement, StoreError};

/// The most keys one container remembers (a deployment has a handful; the bound keeps a
/// flood of distinct valid keys from growing the cache without end).
const CACHED_KEYS: usize = 256;

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
    /// Valid keys read by this container, by the hash's hex (never revoked ones).
    cache: Arc<Mutex<HashMap<String, ApiKeyRecord>>>,
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication").finish_non_exhaustive()
    }
}

impl Authentication {
    /// Authenticates against `keys`.
    pub fn new(keys: Arc<dyn ApiKeys>) -> Self {
        Self {
            keys,
            cache: Arc::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, ApiKeyRecord>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
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
        {
            // The cache follows every read: a key found revoked or gone is forgotten.
            let mut cache = self.cache();
            match &found {
                Some(record) if !record.is_revoked() && record.hash == hash => {
                    let hex = hash.to_hex();
                    if cache.len() >= CACHED_KEYS && !cache.contains_key(&hex) {
                        cache.clear();
                    }
                    cache.insert(hex, record.clone());
                }
                _ => {
                    cache.remove(&hash.to_hex());
                }
            }
        }
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

    /// [`authenticate`](Self::authenticate) for a route whose write confirms the key (the
    /// send route): a key this container read before is taken from its cache without a read,
    /// with the [`KeyGuard`] the write must check; a key not cached is read (and cached), with
    /// no guard needed. Refusals by the cached record's scopes are answered as they stand;
    /// the caller reads the key again whenever the write did not confirm it.
    pub async fn authenticate_cached(
        &self,
        authorization: Option<&[u8]>,
        scope: mailgate_core::Scope,
    ) -> Result<(AuthenticatedKey, Option<KeyGuard>), AuthError> {
        let secret = parse_authorization(authorization)?;
        let hash = secret.hash();
        let cached = self.cache().get(&hash.to_hex()).cloned();
        let Some(record) = cached else {
            let key = self
                .authenticate(authorization, Requirement::Scope(scope))
                .await?;
            return Ok((key, None));
        };
        match authorize(&hash, Some(&record), Requirement::Scope(scope)) {
            Ok(key) => {
                tracing::debug!(key_id = %key.id, "request authenticated from the cache");
                let guard = KeyGuard {
                    hash,
                    id: record.id,
                    environment: record.environment,
                    scope,
                };
                Ok((key, Some(guard)))
            }
            // The cached scopes refuse: read, the key may have changed since.
            Err(_) => Ok((
                self.authenticate(authorization, Requirement::Scope(scope))
                    .await?,
                None,
            )),
        }
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
    async fn the_send_route_reads_a_key_once_then_takes_it_from_the_cache_with_its_guard() {
        let secret = ApiKeySecret::generate(KeyEnvironment::Test);
        let keys = keys_with(&secret, &[Scope::Send]);
        let auth = Authentication::new(keys.clone());
        let header = bearer(&secret);
        let (key, guard) = auth
            .authenticate_cached(Some(header.as_bytes()), Scope::Send)
            .await
            .unwrap();
        assert!(guard.is_none(), "read, so nothing left to confirm");
        // From the cache: a lookup would fail.
        keys.faults.fail_next("find", StoreErrorKind::Throttled);
        let (cached, guard) = auth
            .authenticate_cached(Some(header.as_bytes()), Scope::Send)
            .await
            .unwrap();
        assert_eq!(cached, key);
        let guard = guard.unwrap();
        assert_eq!(guard.hash, secret.hash());
        assert_eq!(guard.id, key.id);
        assert_eq!(guard.scope, Scope::Send);
        // A scope the cached record lacks is read again: the read meets the failure the
        // cached answer left unused.
        let err = auth
            .authenticate_cached(Some(header.as_bytes()), Scope::Read)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Store(_)), "{err:?}");
        // A read that finds the key revoked drops it from the cache.
        keys.revoke(&secret.hash(), datetime!(2026-02-01 0:00 UTC));
        assert!(
            auth.authenticate(Some(header.as_bytes()), Requirement::AnyKey)
                .await
                .is_err()
        );
        let err = auth
            .authenticate_cached(Some(header.as_bytes()), Scope::Send)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Refused(AuthFailure::InvalidApiKey)),
            "{err:?}"
        );
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
