//! What the webhook benchmarks share: a realistic SendGrid Event Webhook batch and the
//! `bench <name> <value> <unit>` line that `make bench` collects. Signing uses the integration
//! tests' SendGrid key (`mailgate_tests::webhooks`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Prints one figure in the form `make bench` collects and compares run to run.
pub fn figure(name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("bench {name} {value} {unit}");
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
];

/// A SendGrid Event Webhook body of `events` events, as SendGrid posts it: one compact JSON
/// array. The events follow the samples in `shared/design/providers/samples/sendgrid_*.json`
/// (processed, delivered, open, click, deferred, bounce, dropped, spamreport, unsubscribe,
/// group_unsubscribe in a plausible mix), each with a unique `sg_event_id`, an `sg_message_id`
/// and `smtp-id` of the same message, categories, and our custom args flattened as top-level
/// keys (`mailgate_message_id`, `mailgate_tenant`). The same `seed` gives the same bytes.
pub fn sendgrid_batch(seed: u64, events: usize, signed_at: i64) -> anyhow::Result<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let batch: Vec<Value> = (0..events)
        .map(|i| sendgrid_event(&mut rng, i, signed_at))
        .collect();
    Ok(serde_json::to_vec(&batch)?)
}

fn sendgrid_event(rng: &mut StdRng, index: usize, signed_at: i64) -> Value {
    let x_message_id = URL_SAFE_NO_PAD.encode(rng.random::<[u8; 16]>());
    let sg_event_id = STANDARD.encode(rng.random::<[u8; 16]>());
    let ours = format!("msg_{}", id_text(rng));
    let user = rng.random_range(0..100_000);
    let mut event = json!({
        "email": format!("customer.{user}@example.com"),
        "timestamp": signed_at - rng.random_range(0..3_600),
        "smtp-id": format!("<{x_message_id}@ismtpd0039p1iad1.sendgrid.net>"),
        "sg_event_id": sg_event_id,
        "sg_message_id": format!("{x_message_id}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-{}.0", index % 10),
        "category": ["transactional", "order-updates"],
        "mailgate_message_id": ours,
        "mailgate_tenant": "acme",
    });
    let ip = format!("203.0.113.{}", rng.random_range(1..255));
    let agent = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())];
    let extra = match rng.random_range(0..100) {
        0..25 => json!({"event": "processed"}),
        25..55 => json!({
            "event": "delivered",
            "ip": "168.1.1.1",
            "response": "250 2.0.0 OK  1795442400 d75a77b69052e-43b1f8c0e1asi4155541cf.251 - gsmtp",
            "tls": 1,
        }),
        55..75 => json!({"event": "open", "sg_machine_open": false, "useragent": agent, "ip": ip}),
        75..85 => json!({
            "event": "click",
            "useragent": agent,
            "ip": ip,
            "url": format!("https://shop.example.com/orders/{user}?utm_source=email&utm_campaign=receipt"),
            "url_offset": {"index": 0, "type": "html"},
        }),
        85..90 => json!({
            "event": "deferred",
            "ip": "168.1.1.1",
            "response": "421 4.7.0 Try again later, closing connection.",
            "attempt": "2",
        }),
        90..94 => json!({
            "event": "bounce",
            "ip": "168.1.1.1",
            "bounce_classification": "Invalid Address",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "status": "5.1.1",
            "type": "bounce",
        }),
        94..96 => json!({"event": "dropped", "reason": "Bounced Address", "status": "5.0.0"}),
        96 => json!({"event": "spamreport"}),
        97 => json!({"event": "unsubscribe"}),
        _ => json!({
            "event": "group_unsubscribe",
            "asm_group_id": 10,
            "useragent": agent,
            "ip": ip,
            "url": "https://shop.example.com/preferences",
        }),
    };
    if let (Value::Object(event), Value::Object(extra)) = (&mut event, extra) {
        event.extend(extra);
    }
    event
}

/// 26 lowercase base-32 characters, the shape of the text after our id prefixes.
fn id_text(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    (0..26)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Criterion's median time per iteration (ns) of benchmark `name` under `dir`, from this run
/// only (`started` is when the run began).
pub fn median_ns(
    dir: &std::path::Path,
    name: &str,
    started: std::time::SystemTime,
) -> anyhow::Result<f64> {
    use anyhow::{Context, bail};
    let path = dir.join(name).join("new").join("estimates.json");
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| format!("criterion wrote no {}", path.display()))?;
    if written < started {
        bail!("{} is from an earlier run", path.display());
    }
    let estimates: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}
