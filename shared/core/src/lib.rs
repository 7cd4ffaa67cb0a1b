//! The pure domain of mailgate: validated email addresses, prefixed ids, provider identities and
//! the clock. No AWS SDK, no Lambda runtime, no HTTP client and no async runtime live here, so
//! every rule in this crate is unit-testable in microseconds (CI checks this with `cargo tree`).

pub mod address;
pub mod clock;
pub mod id;
pub mod provider;

pub use address::{AddressError, EmailAddress};
pub use clock::{Clock, FixedClock, SystemClock};
pub use id::{EventId, IdError, MessageId};
pub use provider::{ProviderId, UnknownProvider};
