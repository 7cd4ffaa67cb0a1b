// The seed's SendGrid webhook path, written from its description in issue 14, so `make bench`
// can set mailgate's figure against it on the same file in the same run:
//
//   verify ECDSA P-256 / SHA-256 over `timestamp ‖ body` (node:crypto), `JSON.parse` the batch,
//   normalise every event (kind, recipient, provider message id, our id, time, bounce details).
//
// Usage: node benches/seed_sendgrid.mjs <batch.json> <signature.json>
// where signature.json is {"timestamp": "...", "signature": "<base64 DER>", "public_key":
// "<base64 SPKI DER>"} as tests/benches/sendgrid_batch.rs writes it next to the batch.
// Prints `bench seed_node_sendgrid_batch_1000 <ns> ns_per_event` (median of the timed runs).

import { createPublicKey, createVerify } from "node:crypto";
import { readFileSync } from "node:fs";

const [batchPath, signaturePath] = process.argv.slice(2);
if (!batchPath || !signaturePath) {
  console.error("usage: node seed_sendgrid.mjs <batch.json> <signature.json>");
  process.exit(2);
}
const body = readFileSync(batchPath);
const signed = JSON.parse(readFileSync(signaturePath, "utf8"));
const publicKey = createPublicKey({
  key: Buffer.from(signed.public_key, "base64"),
  format: "der",
  type: "spki",
});
const signature = Buffer.from(signed.signature, "base64");

const KINDS = {
  processed: "sent",
  delivered: "delivered",
  deferred: "deferred",
  bounce: "bounced",
  dropped: "dropped",
  spamreport: "complained",
  unsubscribe: "unsubscribed",
  group_unsubscribe: "unsubscribed",
  group_resubscribe: "resubscribed",
  open: "opened",
  click: "clicked",
  account_status_change: "account_notice",
};
const CAUSES = {
  "Invalid Address": "user_unknown",
  "Mailbox Unavailable": "mailbox_disabled",
  Reputation: "reputation_block",
  Content: "spam_content",
  "Frequency or Volume Too High": "rate_limited",
};
const SUPPRESSION_REASONS = [
  "bounced address",
  "unsubscribed address",
  "spam reporting address",
  "blocked address",
  "group unsubscribe",
  "global unsubscribe",
];

const text = (v) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);

function providerMessageId(e) {
  const sg = text(e.sg_message_id);
  if (sg) return sg.split(".")[0].trim() || undefined;
  const smtp = text(e["smtp-id"]);
  if (!smtp) return undefined;
  return smtp.replace(/^<+|>+$/g, "").split("@")[0].split(".")[0].trim() || undefined;
}

function report(diagnostic, status) {
  const enhanced = status ?? diagnostic?.match(/\b[245]\.\d{1,3}\.\d{1,3}\b/)?.[0];
  const code = diagnostic?.match(/^\s*([245]\d\d)\b/)?.[1];
  return { status: enhanced, reply_code: code ? Number(code) : undefined, diagnostic };
}

function normalise(e, receipt, index, receivedAt) {
  const name = text(e.event);
  if (!name) throw new Error("the event has no `event` name");
  const kind = KINDS[name] ?? "unknown";
  const out = {
    key: text(e.sg_event_id) ?? JSON.stringify(e),
    kind,
    provider_type: name,
    provider: "sendgrid",
    recipient: kind === "account_notice" ? undefined : text(e.email)?.toLowerCase(),
    provider_message_id: providerMessageId(e),
    message_id: text(e.mailgate_message_id),
    occurred_at: typeof e.timestamp === "number" ? Math.round(e.timestamp * 1000) : undefined,
    received_at: receivedAt,
    source: { receipt, index },
  };
  if (kind === "deferred") {
    out.bounce = { ...report(text(e.response) ?? text(e.reason), text(e.status)), kind: "soft" };
  } else if (kind === "bounced") {
    const type = text(e.type) ?? "bounce";
    out.bounce = {
      ...report(text(e.reason), text(e.status)),
      provider_type: type,
      kind: type === "blocked" ? "soft" : "hard",
      cause: CAUSES[text(e.bounce_classification)],
    };
  } else if (kind === "dropped") {
    const reason = text(e.reason);
    out.detail = reason;
    out.provider_suppressed =
      !!reason && SUPPRESSION_REASONS.some((r) => reason.toLowerCase().includes(r));
  } else if (kind === "clicked") {
    out.url = text(e.url);
  }
  return out;
}

// One request: verify, parse, normalise every event.
function handle() {
  const verifier = createVerify("SHA256");
  verifier.update(signed.timestamp);
  verifier.update(body);
  if (!verifier.verify(publicKey, signature)) throw new Error("the batch does not verify");
  const events = JSON.parse(body);
  const receivedAt = Date.now();
  return events.map((e, i) => normalise(e, "sendgrid#seed", i, receivedAt));
}

const events = handle().length;
const deadline = process.hrtime.bigint() + 2_000_000_000n;
while (process.hrtime.bigint() < deadline) handle();
const samples = [];
for (let i = 0; i < 50; i++) {
  const started = process.hrtime.bigint();
  handle();
  samples.push(Number(process.hrtime.bigint() - started));
}
samples.sort((a, b) => a - b);
const median = samples[samples.length >> 1];
console.log(`bench seed_node_sendgrid_batch_1000 ${Math.round(median / events)} ns_per_event`);
