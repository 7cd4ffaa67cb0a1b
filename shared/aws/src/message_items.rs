//! The keys of a message's partition in the messages table, shared by the message store and
//! the event history (which writes its entries beside the summary), so neither module needs
//! the other's.

use mailgate_core::MessageId;

/// The sort key of a message's summary item.
pub const SUMMARY: &str = "summary";

/// The partition key of a message's summary, attempts and history entries.
pub fn message_pk(id: &MessageId) -> String {
    format!("msg#{id}")
}
