//! mailgate's application services, between the Lambda glue (`mailgate-lambda`, the functions)
//! and the adapters (`mailgate-aws`, `mailgate-providers`). Each service is written against the
//! core's ports only (`mailgate_core::ports`), returns outcomes (the caller counts them), and is
//! unit-tested on the in-memory fakes of [`testing`].
//!
//! | service | module | used by |
//! |---|---|---|
//! | accept a message or a batch: validate, screen, record and claim the key, deliver | [`accept`] | `send-api` |
//! | send one message through the providers: failover, breaker, rate limit, retries | [`send`] | `send-api`, `send-worker` |
//! | deliver an accepted message and record the outcome | [`delivery`] | `send-api`, `send-worker` |
//! | apply provider events: dedupe, correlate, suppress, fan out, record | [`events`] | `event-processor` |
//! | plan and enqueue app-webhook deliveries for events | [`fan_out`] | `event-processor` |
//! | sign and deliver one app webhook, scheduling retries | [`app_delivery`] | `dispatcher` |
//! | ingest a verified webhook delivery: receipt, events queue; re-enqueue stuck receipts | [`ingest`] | `webhook-<provider>`, `sweeper` |
//! | receive inbound email (raw stored, recorded once, parse queued) and parse it | [`inbound`] | `webhook-<provider>`, `event-processor` |
//! | release scheduled and paused messages onto the send queue | [`release`] | `sweeper` |
//! | authenticate a request: its key, looked up by hash, and the scope the route needs | [`auth`] | `send-api` |
//! | read or cancel one message for its caller | [`messages`] | `send-api` |
//! | find messages by recipient, correlation id, tag, state…; a recipient's view | [`search`] | `send-api`, `mailgate-admin` |
//! | administer the suppression list: list, read, store, remove; a test key may not lift an event's entry | [`suppressions`] | `send-api` |
//! | the sweeper's tick: every job once | [`sweep`] | `sweeper` |
//! | message templates: versions, previews, rendering for a send | [`templates`] | `send-api` |
//! | one-click unsubscribe: verify the token, apply an `unsubscribed` event | [`unsubscribe`] | `unsubscribe` |

pub mod accept;
pub mod app_delivery;
pub mod auth;
pub mod delivery;
pub mod domains;
pub mod events;
pub mod fan_out;
pub mod inbound;
pub mod ingest;
pub mod messages;
pub mod received;
pub mod release;
pub mod search;
pub mod send;
pub mod stats;
pub mod suppressions;
pub mod sweep;
pub mod templates;
pub mod unsubscribe;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
