//! SQS's message-body character check, which moto does not do: SQS accepts only
//! `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` and refuses anything else with
//! `InvalidMessageContents` (400) for `SendMessage`, and per entry for `SendMessageBatch`.

use serde_json::{Value, json};

/// The first character SQS refuses in `body`, if any.
pub fn forbidden_char(body: &str) -> Option<char> {
    body.chars().find(|c| !allowed(*c))
}

/// Whether SQS accepts `c` in a message body (Rust `char`s are never surrogates, so the
/// `#xD800-#xDFFF` gap needs no test).
pub fn allowed(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The message SQS gives for a refused character.
pub fn invalid_contents_message(c: char) -> String {
    format!(
        "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        u32::from(c)
    )
}

/// The refused character of a `SendMessage` JSON request, if any.
pub fn check_send_message(request: &Value) -> Option<char> {
    request
        .get("MessageBody")
        .and_then(Value::as_str)
        .and_then(forbidden_char)
}

/// A `SendMessageBatch` request split by the character check.
#[derive(Debug)]
pub struct BatchSplit {
    /// The request with only the acceptable entries (what goes on to the emulator).
    pub accepted: Value,
    /// How many entries are left in it.
    pub accepted_count: usize,
    /// `BatchResultErrorEntry` objects for the refused entries.
    pub failed: Vec<Value>,
}

/// Splits a `SendMessageBatch` request; `None` when every entry is acceptable (or the request is
/// not shaped as expected, which the emulator then judges).
pub fn split_batch(request: &Value) -> Option<BatchSplit> {
    let entries = request.get("Entries")?.as_array()?;
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        match entry
            .get("MessageBody")
            .and_then(Value::as_str)
            .and_then(forbidden_char)
        {
            Some(c) => failed.push(json!({
                "Id": entry.get("Id").cloned().unwrap_or(Value::Null),
                "SenderFault": true,
                "Code": "InvalidMessageContents",
                "Message": invalid_contents_message(c),
            })),
            None => accepted.push(entry.clone()),
        }
    }
    if failed.is_empty() {
        return None;
    }
    let mut request = request.clone();
    let accepted_count = accepted.len();
    request["Entries"] = Value::Array(accepted);
    Some(BatchSplit {
        accepted: request,
        accepted_count,
        failed,
    })
}

/// Adds the refused entries to the emulator's `SendMessageBatch` answer (or to an empty one when
/// no entry was forwarded).
pub fn merge_batch_result(upstream: Option<Value>, failed: Vec<Value>) -> Value {
    let mut result = upstream.unwrap_or_else(|| json!({"Successful": []}));
    if !result.get("Successful").is_some_and(Value::is_array) {
        result["Successful"] = json!([]);
    }
    let mut all_failed = result
        .get("Failed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    all_failed.extend(failed);
    result["Failed"] = Value::Array(all_failed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqs_character_set_is_enforced_at_its_edges() {
        for ok in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
        ] {
            assert!(allowed(ok), "{:X}", u32::from(ok));
        }
        for bad in [
            '\u{0}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!allowed(bad), "{:X}", u32::from(bad));
        }
        assert_eq!(forbidden_char("ok \u{1} then \u{FFFE}"), Some('\u{1}'));
        assert!(invalid_contents_message('\u{FFFE}').contains("'#xFFFE'"));
    }

    #[test]
    fn a_batch_keeps_good_entries_and_fails_bad_ones_by_id() {
        let request = json!({"QueueUrl": "q", "Entries": [
            {"Id": "a", "MessageBody": "fine"},
            {"Id": "b", "MessageBody": "bad \u{FFFF}"},
        ]});
        let split = split_batch(&request).expect("one entry is refused");
        assert_eq!(split.accepted_count, 1);
        assert_eq!(split.accepted["Entries"][0]["Id"], "a");
        assert_eq!(split.accepted["QueueUrl"], "q");
        assert_eq!(split.failed[0]["Id"], "b");
        assert_eq!(split.failed[0]["Code"], "InvalidMessageContents");
        let merged = merge_batch_result(
            Some(json!({"Successful": [{"Id": "a"}]})),
            split.failed.clone(),
        );
        assert_eq!(merged["Successful"][0]["Id"], "a");
        assert_eq!(merged["Failed"][0]["Id"], "b");
        assert!(split_batch(&json!({"Entries": [{"Id": "a", "MessageBody": "x"}]})).is_none());
    }
}
