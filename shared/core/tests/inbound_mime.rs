//! The MIME corpus (`tests/mime/*.eml`): real-world shapes of received mail, each parsed and
//! checked field by field.

use mailgate_core::inbound::our_id_in;
use mailgate_core::{BounceCause, BounceKind, InboundKind, MalformedMime, MessageId, parse_mime};
use sha2::{Digest, Sha256};

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/mime/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ours() -> MessageId {
    MessageId::parse("msg_0123456789abcdefghjkmnpqrs").expect("a valid id")
}

#[test]
fn a_multipart_alternative_reply_gives_every_header_and_both_bodies() {
    let mail = parse_mime(&corpus("alternative_reply.eml")).unwrap();
    let from = mail.from.as_ref().unwrap();
    assert_eq!(from.address, "ana@example.org");
    assert_eq!(from.name.as_deref(), Some("Ana María"));
    assert_eq!(mail.to.len(), 1);
    assert_eq!(mail.to[0].address, "support@example.com");
    let cc: Vec<_> = mail.cc.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(cc, ["lead@example.org", "ops@example.org"]);
    assert_eq!(mail.cc[1].name.as_deref(), Some("Team, Ops"));
    assert_eq!(mail.reply_to[0].address, "ana.replies@example.org");
    assert_eq!(mail.subject.as_deref(), Some("Re: Your order — shipped"));
    // 10:15 at +01:00 is 09:15 UTC.
    assert_eq!(mail.date.unwrap().as_i64(), 1_796_289_300_000);
    assert_eq!(
        mail.message_id.as_deref(),
        Some("CAF=reply-1@mail.example.org")
    );
    assert_eq!(
        mail.in_reply_to,
        ["msg_0123456789abcdefghjkmnpqrs@example.com"]
    );
    assert_eq!(
        mail.references,
        [
            "older-thread@example.com",
            "msg_0123456789abcdefghjkmnpqrs@example.com"
        ]
    );
    let text = mail.text.as_deref().unwrap();
    assert!(
        text.starts_with("Thanks — it arrived. Café tomorrow?"),
        "{text:?}"
    );
    assert_eq!(
        mail.html.as_deref().map(str::trim),
        Some("<p>Thanks — it arrived. Café tomorrow?</p>")
    );
    assert!(mail.attachments.is_empty());
    assert_eq!(mail.kind, InboundKind::Message);
    assert_eq!(mail.dsn, None);
    assert_eq!(mail.our_message_ids(), [ours()]);
    assert_eq!(
        mail.ancestor_ids(),
        [
            "msg_0123456789abcdefghjkmnpqrs@example.com",
            "older-thread@example.com"
        ]
    );
}

#[test]
fn nested_mixed_keeps_bodies_and_attachments_with_size_type_and_digest() {
    let mail = parse_mime(&corpus("nested_mixed_attachments.eml")).unwrap();
    assert_eq!(
        mail.text.as_deref().map(str::trim),
        Some("Invoice attached.")
    );
    assert_eq!(
        mail.html.as_deref().map(str::trim),
        Some("<b>Invoice attached.</b>")
    );
    assert_eq!(mail.attachments.len(), 2);
    let pdf = &mail.attachments[0];
    let expected_pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
    assert_eq!(pdf.content, expected_pdf);
    assert_eq!(pdf.meta.index, 0);
    assert_eq!(pdf.meta.filename.as_deref(), Some("invoice-117.pdf"));
    assert_eq!(pdf.meta.content_type, "application/pdf");
    assert_eq!(pdf.meta.size, expected_pdf.len() as u64);
    assert_eq!(pdf.meta.sha256, hex::encode(Sha256::digest(expected_pdf)));
    assert!(!pdf.meta.inline);
    let csv = &mail.attachments[1];
    assert_eq!(csv.meta.index, 1);
    assert_eq!(csv.meta.filename.as_deref(), Some("lines.csv"));
    assert_eq!(csv.meta.content_type, "text/csv");
    assert!(!csv.meta.inline);
    // A text attachment is charset-decoded like a body (ISO-8859-1 → UTF-8).
    assert_eq!(
        String::from_utf8(csv.content.clone()).unwrap(),
        "name;city\nJosé;Málaga\n"
    );
    assert_eq!(csv.meta.size, csv.content.len() as u64);
    assert!(mail.our_message_ids().is_empty());
}

#[test]
fn iso_8859_1_quoted_printable_is_decoded_in_headers_and_body() {
    let mail = parse_mime(&corpus("latin1_quoted_printable.eml")).unwrap();
    assert_eq!(
        mail.from.as_ref().unwrap().name.as_deref(),
        Some("François Béranger")
    );
    assert_eq!(mail.subject.as_deref(), Some("Réponse à votre demande"));
    assert_eq!(
        mail.text.as_deref().map(str::trim),
        Some("Très bien reçu, merci. À bientôt.")
    );
    assert_eq!(mail.html, None);
}

#[test]
fn shift_jis_koi8_r_and_iso_2022_jp_are_decoded() {
    let mail = parse_mime(&corpus("other_charsets.eml")).unwrap();
    assert_eq!(mail.subject.as_deref(), Some("こんにちは"));
    assert_eq!(
        mail.text.as_deref().map(str::trim),
        Some("こんにちは、世界")
    );
    assert_eq!(mail.html.as_deref().map(str::trim), Some("<p>Привет</p>"));
}

#[test]
fn an_inline_image_is_an_attachment_marked_inline_with_its_content_id() {
    let mail = parse_mime(&corpus("inline_image.eml")).unwrap();
    assert!(
        mail.html
            .as_deref()
            .unwrap()
            .contains("cid:logo123@example.net")
    );
    assert_eq!(mail.text, None);
    assert_eq!(mail.attachments.len(), 1);
    let logo = &mail.attachments[0];
    assert!(logo.meta.inline);
    assert_eq!(logo.meta.content_type, "image/png");
    assert_eq!(logo.meta.content_id.as_deref(), Some("logo123@example.net"));
    assert_eq!(logo.meta.filename.as_deref(), Some("logo.png"));
    assert!(logo.content.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(logo.meta.size, 33);
}

#[test]
fn a_dsn_names_our_original_and_classifies_each_failed_recipient() {
    let mail = parse_mime(&corpus("dsn_user_unknown.eml")).unwrap();
    // The DSN also says Auto-Submitted; being a report wins.
    assert_eq!(mail.kind, InboundKind::Dsn);
    let dsn = mail.dsn.as_ref().unwrap();
    assert_eq!(dsn.original, Some(ours()));
    assert_eq!(
        dsn.original_message_id.as_deref(),
        Some("msg_0123456789abcdefghjkmnpqrs@example.com")
    );
    assert_eq!(dsn.recipients.len(), 1);
    let r = &dsn.recipients[0];
    assert_eq!(r.recipient, "nobody@example.net");
    assert!(r.is_failure());
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    assert!(
        r.diagnostic
            .as_deref()
            .unwrap()
            .starts_with("550 5.1.1 <nobody@example.net>: Recipient address rejected"),
        "{:?}",
        r.diagnostic
    );
    assert_eq!(r.classification.kind, BounceKind::Hard);
    assert_eq!(r.classification.cause, BounceCause::UserUnknown);
    assert!(r.classification.suppress);
    assert!(mail.text.as_deref().unwrap().contains("could not"));
}

#[test]
fn a_vacation_reply_is_an_auto_reply_even_when_it_threads_to_ours() {
    let mail = parse_mime(&corpus("auto_reply_vacation.eml")).unwrap();
    assert_eq!(mail.kind, InboundKind::AutoReply);
    assert_eq!(mail.our_message_ids(), [ours()]);
    assert_eq!(mail.dsn, None);
}

#[test]
fn auto_submitted_no_is_a_human_message() {
    let raw = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\nAuto-Submitted: no\r\n\r\nhello\r\n";
    assert_eq!(parse_mime(raw).unwrap().kind, InboundKind::Message);
    let raw = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: away\r\nPrecedence: auto_reply\r\n\r\naway\r\n";
    assert_eq!(parse_mime(raw).unwrap().kind, InboundKind::AutoReply);
}

#[test]
fn a_multipart_whose_boundary_never_occurs_is_malformed() {
    assert_eq!(
        parse_mime(&corpus("broken_boundary.eml")),
        Err(MalformedMime::BoundaryNotFound(
            "declared-but-absent".into()
        ))
    );
}

#[test]
fn a_missing_closing_boundary_is_tolerated() {
    let raw = b"From: a@example.org\r\nSubject: cut\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n";
    let mail = parse_mime(raw).unwrap();
    assert_eq!(mail.text.as_deref().map(str::trim), Some("first part"));
}

#[test]
fn bytes_without_a_header_section_are_not_a_message() {
    let err = parse_mime(&corpus("not_a_message.eml")).unwrap_err();
    assert_eq!(err, MalformedMime::NotAMessage);
    assert_eq!(err.code(), "not_a_message");
    assert_eq!(parse_mime(b""), Err(MalformedMime::NotAMessage));
}

#[test]
fn only_message_ids_with_our_id_as_local_part_thread() {
    assert_eq!(
        our_id_in("<MSG_0123456789ABCDEFGHJKMNPQRS@example.com>"),
        Some(ours())
    );
    assert_eq!(our_id_in("msg_short@example.com"), None);
    assert_eq!(our_id_in("random@example.com"), None);
}
