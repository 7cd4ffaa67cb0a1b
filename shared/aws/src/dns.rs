//! `HickoryDns`: the core's [`DnsLookup`] on hickory's stub resolver, through the system's
//! resolver configuration (`/etc/resolv.conf`) or the one server `DNS_RESOLVER` names
//! (`<ip>` or `<ip>:<port>`, UDP with TCP fallback). Answers are not cached: a check after a
//! fix must see the fix.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType as HickoryType};
use mailgate_core::BoxFuture;
use mailgate_core::ports::DnsLookup;
use mailgate_core::sender_domain::{Observed, RecordType};

/// The variable naming the DNS server to check domains through (default: the system's).
pub const DNS_RESOLVER_VAR: &str = "DNS_RESOLVER";

/// `DNS_RESOLVER` is not an address.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{DNS_RESOLVER_VAR} must be an IP address or IP:port, got {0:?}")]
pub struct DnsResolverError(pub String);

/// Parses `DNS_RESOLVER`: `None` for unset or empty (the system's resolver).
pub fn parse_resolver(value: Option<&str>) -> Result<Option<SocketAddr>, DnsResolverError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    v.parse::<IpAddr>()
        .map(|ip| Some(SocketAddr::new(ip, 53)))
        .map_err(|_| DnsResolverError(v.to_owned()))
}

/// A DNS resolver, built on its first lookup (no cold-start cost, and a machine without a
/// resolver configuration fails the lookups, not the function).
#[derive(Clone)]
pub struct HickoryDns {
    server: Option<SocketAddr>,
    resolver: Arc<OnceLock<Result<TokioResolver, String>>>,
}

impl std::fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryDns").finish_non_exhaustive()
    }
}

fn options(mut opts: ResolverOpts) -> ResolverOpts {
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    // Every check must see the records as published now.
    opts.cache_size = 0;
    opts
}

impl HickoryDns {
    /// Through `server` when given, else the system's configuration.
    pub fn new(server: Option<SocketAddr>) -> Self {
        Self {
            server,
            resolver: Arc::new(OnceLock::new()),
        }
    }

    fn resolver(&self) -> Result<&TokioResolver, &str> {
        self.resolver
            .get_or_init(|| Self::build(self.server))
            .as_ref()
            .map_err(String::as_str)
    }

    fn build(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![ns]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider).map_err(|e| e.to_string())?,
        };
        let opts = options(builder.options_mut().clone());
        *builder.options_mut() = opts;
        builder.build().map_err(|e| e.to_string())
    }
}

fn name_text(name: &hickory_resolver::proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl DnsLookup for HickoryDns {
    fn lookup<'a>(&'a self, name: &'a str, kind: RecordType) -> BoxFuture<'a, Observed> {
        Box::pin(async move {
            let wanted = match kind {
                RecordType::Cname => HickoryType::CNAME,
                RecordType::Mx => HickoryType::MX,
                RecordType::Txt => HickoryType::TXT,
            };
            // Fully qualified: no search-domain expansion.
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            let resolver = match self.resolver() {
                Ok(r) => r,
                Err(why) => return Observed::Failed(format!("no DNS resolver: {why}")),
            };
            match resolver.lookup(fqdn.as_str(), wanted).await {
                Ok(lookup) => {
                    let values: Vec<String> = lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::CNAME(c) if kind == RecordType::Cname => Some(name_text(&c.0)),
                            RData::MX(mx) if kind == RecordType::Mx => {
                                Some(format!("{} {}", mx.preference, name_text(&mx.exchange)))
                            }
                            RData::TXT(txt) if kind == RecordType::Txt => Some(
                                txt.txt_data
                                    .iter()
                                    .map(|part| String::from_utf8_lossy(part).into_owned())
                                    .collect::<String>(),
                            ),
                            _ => None,
                        })
                        .collect();
                    if values.is_empty() {
                        Observed::NoRecords
                    } else {
                        Observed::Records(values)
                    }
                }
                Err(err) if err.is_no_records_found() || err.is_nx_domain() => Observed::NoRecords,
                Err(err) => Observed::Failed(err.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_variable_is_an_address_with_an_optional_port() {
        assert_eq!(parse_resolver(None).unwrap(), None);
        assert_eq!(parse_resolver(Some(" ")).unwrap(), None);
        assert_eq!(
            parse_resolver(Some("127.0.0.1:5353")).unwrap(),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_resolver(Some("10.0.0.2")).unwrap(),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert!(parse_resolver(Some("dns.example")).is_err());
    }
}
