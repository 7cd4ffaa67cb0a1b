//! The sandbox rule of the send API: messages sent with a `test` API key go to the built-in
//! event simulator (`mailgate_providers::simulator`, which owns the outcomes by address and the
//! events), never to a provider; and the simulator's domain is reserved for test keys, so a
//! `live` key sending there is refused up front with 422 `simulator_requires_test_key`.

use crate::{EmailAddress, FieldError, KeyEnvironment, OutboundEmail};

/// The simulator's domain: `<outcome>[+tag]@simulator.mailgate.invalid` (`.invalid` is reserved
/// by RFC 2606, so no real mail can ever be addressed there).
pub const SIMULATOR_DOMAIN: &str = "simulator.mailgate.invalid";

/// 422: a `live` key sent to the simulator's domain.
pub use crate::send_request::code::SIMULATOR_REQUIRES_TEST_KEY;

/// Whether `address` is at the simulator's domain.
pub fn is_simulator_address(address: &EmailAddress) -> bool {
    address.domain().eq_ignore_ascii_case(SIMULATOR_DOMAIN)
}

/// Refuses a message of a `live` key naming a recipient at the simulator's domain; the error's
/// field is that recipient's (`to[0]`, `cc[1]`, `bcc[2]`). A `test` key may send anywhere.
pub fn check_environment(
    environment: KeyEnvironment,
    email: &OutboundEmail,
) -> Result<(), FieldError> {
    if environment == KeyEnvironment::Test {
        return Ok(());
    }
    let lists = [("to", &email.to), ("cc", &email.cc), ("bcc", &email.bcc)];
    for (name, list) in lists {
        if let Some(index) = list.iter().position(is_simulator_address) {
            return Err(FieldError::new(
                SIMULATOR_REQUIRES_TEST_KEY,
                format!("{name}[{index}]"),
                format!(
                    "addresses at {SIMULATOR_DOMAIN} reach the event simulator, which only a \
                     test API key may use; send with a test key"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mailbox, MessageId};

    fn email(to: &[&str], cc: &[&str]) -> OutboundEmail {
        let parse = |list: &[&str]| {
            list.iter()
                .map(|a| EmailAddress::parse(a).unwrap())
                .collect::<Vec<_>>()
        };
        let mut to = parse(to);
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("app@example.com").unwrap()),
            to.remove(0),
            "hello",
        );
        email.to.extend(to);
        email.cc = parse(cc);
        email
    }

    #[test]
    fn a_live_key_may_not_send_to_the_simulator_and_the_field_names_the_recipient() {
        let e = email(
            &["jane@example.com"],
            &["x@example.org", "Bounced+1@Simulator.Mailgate.Invalid"],
        );
        let err = check_environment(KeyEnvironment::Live, &e).unwrap_err();
        assert_eq!(err.code, SIMULATOR_REQUIRES_TEST_KEY);
        assert_eq!(err.field, "cc[1]");
        assert_eq!(err.status(), 422);
        assert!(check_environment(KeyEnvironment::Test, &e).is_ok());
    }

    #[test]
    fn other_domains_are_free_for_both_environments() {
        let e = email(&["jane@simulator.mailgate.example"], &[]);
        assert!(check_environment(KeyEnvironment::Live, &e).is_ok());
        assert!(check_environment(KeyEnvironment::Test, &e).is_ok());
    }
}
