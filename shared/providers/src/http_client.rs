//! The functions' reqwest clients (provider sends, SNS certificate fetches, app webhooks),
//! built off the cold-start path and on one set of root certificates.
//!
//! reqwest's rustls backend reads and parses the system's root certificates
//! (rustls-platform-verifier) every time a client is built: at cold start, before the first
//! `invocation/next`, and once more for every client (send-api built one per third-party
//! provider). Here a client is built on its first request instead, and every client trusts
//! the same roots, read from the system once per process. The roots are the platform's, as
//! before (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured); what the platform verifier added on
//! Linux beyond them is nothing.

use std::sync::{Arc, LazyLock, OnceLock};

/// The system's root certificates, read once per process on first use.
static SYSTEM_ROOTS: LazyLock<Result<Vec<reqwest::Certificate>, String>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    let roots: Vec<reqwest::Certificate> = found
        .certs
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
        .collect();
    if roots.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        Err(format!(
            "no root certificate could be read from the system ({})",
            errors.join("; ")
        ))
    } else {
        Ok(roots)
    }
});

/// How a client is configured (timeouts, redirects, user agent), applied to a fresh builder.
type Configure = dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync;

/// A reqwest client built on its first use (see the module docs); clones share it.
#[derive(Clone)]
pub struct LazyHttpClient {
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    configure: Arc<Configure>,
}

impl std::fmt::Debug for LazyHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyHttpClient")
            .field("built", &self.client.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The client could not be built (no root certificate, or the TLS backend failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the HTTP client could not be built: {0}")]
pub struct ClientUnavailable(pub String);

impl LazyHttpClient {
    /// A client configured by `configure` when first used, trusting the system's roots.
    pub fn new(
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        Self {
            client: Arc::default(),
            configure: Arc::new(configure),
        }
    }

    /// The client, built now if this is its first use.
    pub fn get(&self) -> Result<&reqwest::Client, ClientUnavailable> {
        self.client
            .get_or_init(|| {
                let roots = SYSTEM_ROOTS.as_ref().map_err(Clone::clone)?;
                (self.configure)(reqwest::Client::builder())
                    .tls_certs_only(roots.iter().cloned())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ClientUnavailable(e.clone()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_client_is_built_once_on_first_use_and_shared_by_its_clones() {
        let builds = Arc::new(AtomicU32::new(0));
        let counted = builds.clone();
        let lazy = LazyHttpClient::new(move |b| {
            counted.fetch_add(1, Ordering::SeqCst);
            b
        });
        let clone = lazy.clone();
        assert_eq!(builds.load(Ordering::SeqCst), 0, "nothing built before use");
        assert!(format!("{lazy:?}").contains("built: false"));
        lazy.get().unwrap();
        clone.get().unwrap();
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert!(SYSTEM_ROOTS.as_ref().is_ok_and(|r| !r.is_empty()));
    }
}
