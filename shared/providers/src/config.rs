//! Typed provider configuration, read once at cold start from an explicit list of environment
//! variables: which providers to send through (and in what order, with optional weights), how to
//! reach and authenticate with each, their shared rate limits, and the send path's time budget.
//!
//! Only providers listed in `MAILGATE_PROVIDERS` need anything; a listed provider without its
//! credentials is a startup error naming the variable. Every problem is collected, so one start
//! reports them all. The secret variables ([`SECRET_VARIABLES`]) may hold `ssm:`/`secretsmanager:`
//! references when deployed; the caller resolves them before calling
//! [`ProvidersConfig::from_lookup`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::{FailoverPolicy, ProviderId, ProviderOrder, RateLimit};

use crate::mailgun::send::{MailgunConfig, MailgunRegion, MailgunSender};
use crate::postmark::send::{PostmarkConfig, PostmarkSender};
use crate::send::{EmailProvider, HttpClientError, HttpTimeouts, Secret};
use crate::sendgrid::send::{self as sendgrid_send, SendgridConfig, SendgridSender};
use crate::ses::send::{SesConfig, SesSender};
use crate::smtp2go::send::{self as smtp2go_send, Smtp2goConfig, Smtp2goSender};

/// The provider order, e.g. `ses,sendgrid:2,mailgun` (required).
pub const PROVIDERS_VAR: &str = "MAILGATE_PROVIDERS";
/// The timeout of one provider call, in milliseconds.
pub const SEND_TIMEOUT_VAR: &str = "SEND_TIMEOUT_MS";
/// The time budget of one synchronous send, in milliseconds.
pub const SEND_BUDGET_VAR: &str = "SEND_BUDGET_MS";
/// Whether an ambiguous outcome may be followed by a second provider.
pub const ALLOW_FAILOVER_ON_AMBIGUOUS_VAR: &str = "ALLOW_FAILOVER_ON_AMBIGUOUS";

/// The variables that hold credentials: literals locally, `ssm:`/`secretsmanager:` references
/// when deployed (resolve them with `mailgate_aws::resolve_from_env` first).
pub const SECRET_VARIABLES: &[&str] = &[
    "SENDGRID_API_KEY",
    "MAILGUN_API_KEY",
    "POSTMARK_SERVER_TOKEN",
    "SMTP2GO_API_KEY",
];

/// The default time budget of one synchronous send.
pub const DEFAULT_SEND_BUDGET: Duration = Duration::from_secs(10);

/// Why the provider configuration is unusable: every problem found, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider configuration: {}", .problems.join("; "))]
pub struct ProvidersConfigError {
    /// One line per problem, each starting with the variable's name.
    pub problems: Vec<String>,
}

/// How to reach every provider listed in `MAILGATE_PROVIDERS`, and the send path's limits.
#[derive(Clone)]
pub struct ProvidersConfig {
    /// The providers in priority order, with their weights.
    pub order: ProviderOrder,
    /// SES (credentials and region from the SDK chain), if listed.
    pub ses: Option<SesConfig>,
    /// SendGrid, if listed.
    pub sendgrid: Option<SendgridConfig>,
    /// Mailgun, if listed.
    pub mailgun: Option<MailgunConfig>,
    /// Postmark, if listed.
    pub postmark: Option<PostmarkConfig>,
    /// SMTP2GO, if listed.
    pub smtp2go: Option<Smtp2goConfig>,
    /// Shared rate limits of the listed providers that have one.
    pub rate_limits: HashMap<ProviderId, RateLimit>,
    /// Timeouts of one HTTP provider call.
    pub timeouts: HttpTimeouts,
    /// The time budget of one synchronous send.
    pub send_budget: Duration,
    /// Whether an ambiguous outcome may be followed by a second provider.
    pub allow_failover_on_ambiguous: bool,
    /// How long after a `test` key's send the event simulator's events become visible
    /// (`SIMULATOR_EVENT_DELAY_SECONDS`, default 5; follow-up events at twice that).
    pub simulator_event_delay: Duration,
}

impl fmt::Debug for ProvidersConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The provider configs redact their secrets themselves; this only keeps the output short.
        f.debug_struct("ProvidersConfig")
            .field("order", &self.order.to_string())
            .field("rate_limits", &self.rate_limits)
            .field("timeouts", &self.timeouts)
            .field("send_budget", &self.send_budget)
            .field(
                "allow_failover_on_ambiguous",
                &self.allow_failover_on_ambiguous,
            )
            .field("simulator_event_delay", &self.simulator_event_delay)
            .finish_non_exhaustive()
    }
}

/// The variable-name stem of a provider (`SENDGRID` in `SENDGRID_RATE_PER_SECOND`).
fn stem(provider: ProviderId) -> &'static str {
    match provider {
        ProviderId::Ses => "SES",
        ProviderId::Sendgrid => "SENDGRID",
        ProviderId::Mailgun => "MAILGUN",
        ProviderId::Postmark => "POSTMARK",
        ProviderId::Smtp2go => "SMTP2GO",
        ProviderId::Simulator => "SIMULATOR",
    }
}

/// Reads variables through a lookup and collects problems.
struct Reader<L> {
    lookup: L,
    problems: Vec<String>,
}

impl<L: Fn(&str) -> Option<String>> Reader<L> {
    /// The trimmed value, `None` when unset or blank.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    fn required(&mut self, name: &str, provider: ProviderId) -> Option<String> {
        let value = self.get(name);
        if value.is_none() {
            self.problem(format!(
                "{name} is not set, but {PROVIDERS_VAR} lists {provider}"
            ));
        }
        value
    }

    fn secret(&mut self, name: &str, provider: ProviderId) -> Option<Secret> {
        self.required(name, provider).map(Secret::new)
    }

    /// An `http(s)` base URL, or `default` when unset.
    fn base_url(&mut self, name: &str, default: &str) -> String {
        let Some(value) = self.get(name) else {
            return default.to_owned();
        };
        match url::Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => value,
            _ => {
                self.problem(format!(
                    "{name} must be an http(s) URL such as https://api.example.com, got {value:?}"
                ));
                default.to_owned()
            }
        }
    }

    /// A whole number of milliseconds above zero, or `default` when unset.
    fn millis(&mut self, name: &str, default: Duration) -> Duration {
        let Some(value) = self.get(name) else {
            return default;
        };
        match value.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => {
                self.problem(format!(
                    "{name} must be a whole number of milliseconds above 0, got {value:?}"
                ));
                default
            }
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(value) = self.get(name) else {
            return default;
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                self.problem(format!("{name} must be true or false, got {value:?}"));
                default
            }
        }
    }

    /// `<P>_RATE_PER_SECOND` and `<P>_RATE_BURST`: no limit when both are unset; the burst
    /// defaults to one second's worth (at least 1).
    fn rate_limit(&mut self, provider: ProviderId) -> Option<RateLimit> {
        let rate_name = format!("{}_RATE_PER_SECOND", stem(provider));
        let burst_name = format!("{}_RATE_BURST", stem(provider));
        let rate = self.get(&rate_name);
        let burst = self.get(&burst_name);
        let Some(rate) = rate else {
            if burst.is_some() {
                self.problem(format!("{burst_name} is set without {rate_name}"));
            }
            return None;
        };
        let Ok(per_second) = rate.parse::<f64>() else {
            self.problem(format!(
                "{rate_name} must be a number of sends per second, got {rate:?}"
            ));
            return None;
        };
        let burst = match burst {
            None => per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
            Some(burst) => match burst.parse::<u32>() {
                Ok(burst) => burst,
                Err(_) => {
                    self.problem(format!(
                        "{burst_name} must be a whole number of sends, got {burst:?}"
                    ));
                    return None;
                }
            },
        };
        match RateLimit::new(per_second, burst) {
            Ok(limit) => Some(limit),
            Err(e) => {
                self.problem(format!("{rate_name}/{burst_name}: {e}"));
                None
            }
        }
    }
}

impl ProvidersConfig {
    /// Reads the configuration from the process environment (secrets as literals).
    pub fn from_env() -> Result<Self, ProvidersConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or the environment with
    /// resolved secret references).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProvidersConfigError> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };
        let request_timeout = r.millis(SEND_TIMEOUT_VAR, HttpTimeouts::default().request);
        let timeouts = HttpTimeouts {
            connect: HttpTimeouts::default().connect.min(request_timeout),
            request: request_timeout,
        };
        let send_budget = r.millis(SEND_BUDGET_VAR, DEFAULT_SEND_BUDGET);
        let allow_failover_on_ambiguous = r.flag(ALLOW_FAILOVER_ON_AMBIGUOUS_VAR, false);
        let simulator_event_delay =
            crate::simulator::event_delay_from_lookup(&|name| (r.lookup)(name)).unwrap_or_else(
                |problem| {
                    r.problem(problem);
                    crate::simulator::DEFAULT_EVENT_DELAY
                },
            );

        let order = match r.get(PROVIDERS_VAR) {
            None => {
                r.problem(format!(
                    "{PROVIDERS_VAR} is not set; list the providers to send through, e.g. ses,sendgrid:2,mailgun"
                ));
                None
            }
            Some(value) => match value.parse::<ProviderOrder>() {
                Ok(order) => Some(order),
                Err(e) => {
                    r.problem(format!("{PROVIDERS_VAR}: {e}"));
                    None
                }
            },
        };
        let listed: Vec<ProviderId> = order
            .as_ref()
            .map(|o| o.providers().collect())
            .unwrap_or_default();

        let mut config = PartialConfig::default();
        let mut rate_limits = HashMap::new();
        for provider in listed {
            if let Some(limit) = r.rate_limit(provider) {
                rate_limits.insert(provider, limit);
            }
            match provider {
                ProviderId::Ses => {
                    config.ses = Some(SesConfig {
                        configuration_set_name: r.get("SES_CONFIGURATION_SET"),
                    });
                }
                ProviderId::Sendgrid => {
                    let base_url = r.base_url("SENDGRID_BASE_URL", sendgrid_send::DEFAULT_BASE_URL);
                    config.sendgrid =
                        r.secret("SENDGRID_API_KEY", provider)
                            .map(|api_key| SendgridConfig {
                                base_url,
                                api_key,
                                timeouts,
                            });
                }
                ProviderId::Mailgun => {
                    let region = match r.get("MAILGUN_REGION").map(|v| v.to_ascii_lowercase()) {
                        None => MailgunRegion::Us,
                        Some(v) if v == "us" => MailgunRegion::Us,
                        Some(v) if v == "eu" => MailgunRegion::Eu,
                        Some(v) => {
                            r.problem(format!("MAILGUN_REGION must be us or eu, got {v:?}"));
                            MailgunRegion::Us
                        }
                    };
                    let base_url = r.base_url("MAILGUN_BASE_URL", region.base_url());
                    let domain = r.required("MAILGUN_DOMAIN", provider);
                    let api_key = r.secret("MAILGUN_API_KEY", provider);
                    if let (Some(domain), Some(api_key)) = (domain, api_key) {
                        config.mailgun = Some(MailgunConfig {
                            base_url,
                            domain,
                            api_key,
                            timeouts,
                        });
                    }
                }
                ProviderId::Postmark => {
                    let base_url =
                        r.base_url("POSTMARK_BASE_URL", crate::postmark::send::DEFAULT_BASE_URL);
                    let bulk_message_stream = r.get("POSTMARK_BULK_MESSAGE_STREAM");
                    config.postmark =
                        r.secret("POSTMARK_SERVER_TOKEN", provider)
                            .map(|server_token| PostmarkConfig {
                                base_url,
                                server_token,
                                bulk_message_stream,
                                timeouts,
                            });
                }
                ProviderId::Smtp2go => {
                    let base_url = r.base_url("SMTP2GO_BASE_URL", smtp2go_send::DEFAULT_BASE_URL);
                    config.smtp2go =
                        r.secret("SMTP2GO_API_KEY", provider)
                            .map(|api_key| Smtp2goConfig {
                                base_url,
                                api_key,
                                timeouts,
                            });
                }
                // The order never lists it (`ProviderId::parse_real`): nothing to configure.
                ProviderId::Simulator => {}
            }
        }

        match order {
            Some(order) if r.problems.is_empty() => Ok(Self {
                order,
                ses: config.ses,
                sendgrid: config.sendgrid,
                mailgun: config.mailgun,
                postmark: config.postmark,
                smtp2go: config.smtp2go,
                rate_limits,
                timeouts,
                send_budget,
                allow_failover_on_ambiguous,
                simulator_event_delay,
            }),
            _ => Err(ProvidersConfigError {
                problems: r.problems,
            }),
        }
    }

    /// The failover rules this configuration implies (default attempt limit and backoff).
    pub fn failover_policy(&self) -> FailoverPolicy {
        FailoverPolicy {
            allow_failover_on_ambiguous: self.allow_failover_on_ambiguous,
            ..FailoverPolicy::default()
        }
    }

    /// One sender per listed provider, in configured order. `ses_client` is called only when SES
    /// is listed.
    pub fn senders(
        &self,
        ses_client: impl FnOnce() -> aws_sdk_sesv2::Client,
    ) -> Result<Vec<Arc<dyn EmailProvider>>, HttpClientError> {
        let mut ses_client = Some(ses_client);
        let mut senders: Vec<Arc<dyn EmailProvider>> = Vec::new();
        for provider in self.order.providers() {
            let sender: Option<Arc<dyn EmailProvider>> = match provider {
                ProviderId::Ses => match (&self.ses, ses_client.take()) {
                    (Some(config), Some(client)) => {
                        Some(Arc::new(SesSender::new(client(), config.clone())))
                    }
                    _ => None,
                },
                ProviderId::Sendgrid => match &self.sendgrid {
                    Some(c) => Some(Arc::new(SendgridSender::new(c.clone())?)),
                    None => None,
                },
                ProviderId::Mailgun => match &self.mailgun {
                    Some(c) => Some(Arc::new(MailgunSender::new(c.clone())?)),
                    None => None,
                },
                ProviderId::Postmark => match &self.postmark {
                    Some(c) => Some(Arc::new(PostmarkSender::new(c.clone())?)),
                    None => None,
                },
                ProviderId::Smtp2go => match &self.smtp2go {
                    Some(c) => Some(Arc::new(Smtp2goSender::new(c.clone())?)),
                    None => None,
                },
                // Test keys reach the simulator outside the send service, never through it.
                ProviderId::Simulator => None,
            };
            senders.extend(sender);
        }
        Ok(senders)
    }
}

/// The per-provider configs gathered while reading.
#[derive(Default)]
struct PartialConfig {
    ses: Option<SesConfig>,
    sendgrid: Option<SendgridConfig>,
    mailgun: Option<MailgunConfig>,
    postmark: Option<PostmarkConfig>,
    smtp2go: Option<Smtp2goConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<ProvidersConfig, ProvidersConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProvidersConfig::from_lookup(move |name| vars.get(name).cloned())
    }

    fn problems(vars: &[(&str, &str)]) -> Vec<String> {
        read(vars).unwrap_err().problems
    }

    #[test]
    fn a_listed_provider_without_credentials_is_named_in_the_error() {
        let p = problems(&[("MAILGATE_PROVIDERS", "sendgrid,mailgun,postmark,smtp2go")]);
        for name in [
            "SENDGRID_API_KEY",
            "MAILGUN_DOMAIN",
            "MAILGUN_API_KEY",
            "POSTMARK_SERVER_TOKEN",
            "SMTP2GO_API_KEY",
        ] {
            assert!(p.iter().any(|line| line.starts_with(name)), "{name}: {p:?}");
        }
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn unlisted_providers_need_nothing() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "ses"),
            ("SES_CONFIGURATION_SET", "mailgate-events"),
        ])
        .unwrap();
        assert_eq!(c.order.to_string(), "ses");
        assert_eq!(
            c.ses.as_ref().unwrap().configuration_set_name.as_deref(),
            Some("mailgate-events")
        );
        assert!(c.sendgrid.is_none() && c.mailgun.is_none());
        assert!(c.rate_limits.is_empty());
        assert_eq!(c.send_budget, DEFAULT_SEND_BUDGET);
        assert!(!c.allow_failover_on_ambiguous);
        assert!(!c.failover_policy().allow_failover_on_ambiguous);
    }

    #[test]
    fn the_order_keeps_weights_and_every_listed_provider_is_configured() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "ses,sendgrid:2,mailgun"),
            ("SENDGRID_API_KEY", " SG.key "),
            ("SENDGRID_BASE_URL", "http://127.0.0.1:9000"),
            ("MAILGUN_API_KEY", "key-1"),
            ("MAILGUN_DOMAIN", "mg.example.com"),
            ("MAILGUN_REGION", "EU"),
        ])
        .unwrap();
        assert_eq!(
            c.order.providers().collect::<Vec<_>>(),
            [ProviderId::Ses, ProviderId::Sendgrid, ProviderId::Mailgun]
        );
        assert_eq!(c.order.weight(ProviderId::Sendgrid), Some(2));
        let sendgrid = c.sendgrid.as_ref().unwrap();
        assert_eq!(sendgrid.base_url, "http://127.0.0.1:9000");
        assert_eq!(sendgrid.api_key.expose(), "SG.key");
        let mailgun = c.mailgun.as_ref().unwrap();
        assert_eq!(mailgun.base_url, MailgunRegion::Eu.base_url());
        assert_eq!(mailgun.domain, "mg.example.com");
        // Secrets never reach a Debug rendering.
        assert!(!format!("{c:?}").contains("SG.key"));
        assert!(!format!("{sendgrid:?}").contains("SG.key"));
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "postmark,smtp2go"),
            ("POSTMARK_SERVER_TOKEN", "pm-token"),
            ("SMTP2GO_API_KEY", "api-key"),
        ])
        .unwrap();
        assert_eq!(
            c.postmark.unwrap().base_url,
            crate::postmark::send::DEFAULT_BASE_URL
        );
        assert_eq!(c.smtp2go.unwrap().base_url, smtp2go_send::DEFAULT_BASE_URL);
        assert_eq!(c.timeouts, HttpTimeouts::default());
    }

    #[test]
    fn rates_timeouts_budget_and_the_ambiguity_switch_are_read() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "ses,postmark"),
            ("POSTMARK_SERVER_TOKEN", "pm-token"),
            ("SES_RATE_PER_SECOND", "14"),
            ("SES_RATE_BURST", "28"),
            ("POSTMARK_RATE_PER_SECOND", "2.5"),
            ("SEND_TIMEOUT_MS", "1500"),
            ("SEND_BUDGET_MS", "8000"),
            ("ALLOW_FAILOVER_ON_AMBIGUOUS", "true"),
            ("SIMULATOR_EVENT_DELAY_SECONDS", "12"),
        ])
        .unwrap();
        assert_eq!(c.simulator_event_delay, Duration::from_secs(12));
        assert_eq!(
            c.rate_limits[&ProviderId::Ses],
            RateLimit::new(14.0, 28).unwrap()
        );
        // Without a burst, one second's worth, rounded up.
        assert_eq!(c.rate_limits[&ProviderId::Postmark].burst(), 3);
        assert_eq!(c.timeouts.request, Duration::from_millis(1500));
        assert_eq!(c.timeouts.connect, Duration::from_millis(1500));
        assert_eq!(c.postmark.as_ref().unwrap().timeouts, c.timeouts);
        assert_eq!(c.send_budget, Duration::from_millis(8000));
        assert!(c.failover_policy().allow_failover_on_ambiguous);
    }

    #[test]
    fn bad_numbers_are_named() {
        let p = problems(&[
            ("MAILGATE_PROVIDERS", "ses"),
            ("SES_RATE_PER_SECOND", "fast"),
            ("SEND_TIMEOUT_MS", "0"),
            ("SEND_BUDGET_MS", "-5"),
            ("ALLOW_FAILOVER_ON_AMBIGUOUS", "maybe"),
            ("SIMULATOR_EVENT_DELAY_SECONDS", "900"),
        ]);
        for name in [
            "SES_RATE_PER_SECOND",
            "SEND_TIMEOUT_MS",
            "SEND_BUDGET_MS",
            "ALLOW_FAILOVER_ON_AMBIGUOUS",
            "SIMULATOR_EVENT_DELAY_SECONDS",
        ] {
            assert!(p.iter().any(|line| line.starts_with(name)), "{name}: {p:?}");
        }
        let p = problems(&[("MAILGATE_PROVIDERS", "ses"), ("SES_RATE_PER_SECOND", "0")]);
        assert!(
            p[0].starts_with("SES_RATE_PER_SECOND/SES_RATE_BURST"),
            "{p:?}"
        );
        let p = problems(&[("MAILGATE_PROVIDERS", "ses"), ("SES_RATE_BURST", "5")]);
        assert!(p[0].starts_with("SES_RATE_BURST"), "{p:?}");
        let p = problems(&[
            ("MAILGATE_PROVIDERS", "ses"),
            ("SES_RATE_PER_SECOND", "1"),
            ("SES_RATE_BURST", "1.5"),
        ]);
        assert!(p[0].starts_with("SES_RATE_BURST"), "{p:?}");
    }

    #[test]
    fn unusable_orders_regions_and_urls_are_named() {
        assert!(problems(&[])[0].starts_with("MAILGATE_PROVIDERS is not set"));
        assert!(
            problems(&[("MAILGATE_PROVIDERS", "ses,sparkpost")])[0]
                .starts_with("MAILGATE_PROVIDERS:")
        );
        assert!(problems(&[("MAILGATE_PROVIDERS", "ses:x")])[0].starts_with("MAILGATE_PROVIDERS:"));
        let p = problems(&[
            ("MAILGATE_PROVIDERS", "mailgun,sendgrid"),
            ("MAILGUN_API_KEY", "k"),
            ("MAILGUN_DOMAIN", "mg.example.com"),
            ("MAILGUN_REGION", "asia"),
            ("SENDGRID_API_KEY", "k"),
            ("SENDGRID_BASE_URL", "ftp://example.com"),
        ]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("MAILGUN_REGION"));
        assert!(p[1].starts_with("SENDGRID_BASE_URL"));
    }

    #[test]
    fn senders_follow_the_configured_order() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "postmark,sendgrid:3,mailgun,smtp2go"),
            ("POSTMARK_SERVER_TOKEN", "t"),
            ("SENDGRID_API_KEY", "k"),
            ("MAILGUN_API_KEY", "k"),
            ("MAILGUN_DOMAIN", "mg.example.com"),
            ("SMTP2GO_API_KEY", "k"),
        ])
        .unwrap();
        let senders = c
            .senders(|| unreachable!("SES is not listed"))
            .unwrap()
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>();
        assert_eq!(
            senders,
            [
                ProviderId::Postmark,
                ProviderId::Sendgrid,
                ProviderId::Mailgun,
                ProviderId::Smtp2go
            ]
        );
    }

    #[test]
    fn every_secret_variable_is_a_credential_the_reader_uses() {
        let c = read(&[
            ("MAILGATE_PROVIDERS", "sendgrid,mailgun,postmark,smtp2go"),
            ("MAILGUN_DOMAIN", "mg.example.com"),
            ("SENDGRID_API_KEY", "v"),
            ("MAILGUN_API_KEY", "v"),
            ("POSTMARK_SERVER_TOKEN", "v"),
            ("SMTP2GO_API_KEY", "v"),
        ]);
        assert!(c.is_ok());
        for name in SECRET_VARIABLES {
            let without: Vec<_> = [
                ("MAILGATE_PROVIDERS", "sendgrid,mailgun,postmark,smtp2go"),
                ("MAILGUN_DOMAIN", "mg.example.com"),
                ("SENDGRID_API_KEY", "v"),
                ("MAILGUN_API_KEY", "v"),
                ("POSTMARK_SERVER_TOKEN", "v"),
                ("SMTP2GO_API_KEY", "v"),
            ]
            .into_iter()
            .filter(|(k, _)| k != name)
            .collect();
            assert!(problems(&without)[0].starts_with(name));
        }
    }
}
