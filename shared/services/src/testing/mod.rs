//! In-memory fakes of the core's ports, for the services' unit tests (feature `testing`).
//! They keep what they are given in maps, follow the same rules as the real adapters (claims
//! decided by the core's idempotency rules, leases, conditional creates), and take injected
//! failures per operation ([`Faults`]). Integration tests never use them: those run the real
//! adapters against the local AWS emulator. One file per flow.

mod api;
mod events;
mod inbound;
mod search;
mod send;
mod sweep;
mod templates;
mod webhooks;

pub use api::*;
pub use events::*;
pub use inbound::*;
pub use search::*;
pub use send::*;
pub use sweep::*;
pub use templates::*;
pub use webhooks::*;
