#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Sender domains end to end: the real send-api handler creating, listing, checking and deleting
//! SES identities in the emulator, the DNS check through a DNS server this test starts on
//! loopback (serving only some of the records), the send path's 422 `sender_domain_unverified`,
//! validation and scopes.
//!
//! What moto (5.2.5) cannot emulate, and these tests therefore do not fake: it never reports
//! Easy DKIM tokens (so there are no DKIM CNAMEs to list or check here: the core and service
//! unit tests cover the DKIM verdicts), it marks every identity `SUCCESS` at once (no pending
//! verification), and it has no `PutEmailIdentityMailFromAttributes` (HTTP 404).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::KeyEnvironment;
use mailgate_tests::api::bearer;
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// A DNS server on a loopback UDP port answering from a fixed zone: the records of the asked
/// name and type, an empty answer (NODATA) for a known name of another type, NXDOMAIN for an
/// unknown name.
async fn dns_server(zone: Vec<Record>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let zone = Arc::new(zone);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut response = Message::response(request.metadata.id, request.metadata.op_code);
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            let mut known = false;
            for query in &request.queries {
                response.add_query(query.clone());
                let asked = query.name.to_ascii().to_ascii_lowercase();
                for record in zone.iter() {
                    if record.name.to_ascii().to_ascii_lowercase() == asked {
                        known = true;
                        if record.data.record_type() == query.query_type {
                            response.add_answer(record.clone());
                        }
                    }
                }
            }
            if !known {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn txt(name: &str, value: &str) -> Record {
    Record::from_rdata(
        Name::from_ascii(format!("{name}.")).unwrap(),
        60,
        RData::TXT(TXT::new(vec![value.to_owned()])),
    )
}

fn api(t: &TestStack, dns: Option<SocketAddr>) -> SendApi {
    let env = t.function_env("send-api");
    let dns = dns.map(|a| a.to_string());
    let config = SendApiConfig::from_lookup(move |k| {
        if k == "DNS_RESOLVER" {
            dns.clone()
        } else {
            env(k)
        }
    })
    .unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

fn request(auth: &str, method: &str, path: &str, body: Option<Value>) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
    request
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        Body::Empty => Value::Null,
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// A domain of this test alone (moto's identities are shared by every stack).
fn unique_domain() -> String {
    format!(
        "d{}.example.org",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

#[tokio::test]
async fn a_domain_is_created_listed_checked_against_loopback_dns_and_deleted() {
    let t = TestStack::new().await;
    let domain = unique_domain();
    // The zone publishes two SPF records at the domain and no DMARC record.
    let dns = dns_server(vec![
        txt(&domain, "v=spf1 include:amazonses.com ~all"),
        txt(&domain, "v=spf1 mx -all"),
        txt(&domain, "google-site-verification=not-spf"),
    ])
    .await;
    let api = api(&t, Some(dns));
    let admin = bearer(&t, "read,domains:write").await;

    let created = api
        .handle(request(
            &admin,
            "POST",
            "/v1/domains",
            Some(json!({"domain": domain.to_uppercase()})),
        ))
        .await;
    let body = json_body(&created);
    assert_eq!(created.status(), StatusCode::CREATED, "{body}");
    assert_eq!(body["domain"], domain.as_str());
    let records = body["records"].as_array().unwrap();
    let spf = records.iter().find(|r| r["purpose"] == "spf").unwrap();
    assert_eq!(spf["type"], "TXT");
    assert_eq!(spf["name"], domain.as_str());
    assert_eq!(spf["value"], "v=spf1 include:amazonses.com ~all");
    let dmarc = records.iter().find(|r| r["purpose"] == "dmarc").unwrap();
    assert_eq!(dmarc["name"], format!("_dmarc.{domain}"));
    assert!(dmarc["value"].as_str().unwrap().contains("p=none"));
    assert!(dmarc["advice"].as_str().unwrap().contains("p=reject"));
    // moto gives no Easy DKIM tokens: no CNAME is invented, and the answer says why.
    assert!(records.iter().all(|r| r["purpose"] != "dkim"));
    assert!(
        body["notes"][0]
            .as_str()
            .unwrap()
            .contains("no Easy DKIM tokens")
    );

    // The identity is real in the emulator.
    let ses = t
        .clients
        .ses
        .get_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .unwrap();
    assert_eq!(ses.identity_type().unwrap().as_str(), "DOMAIN");

    let listed = api
        .handle(request(&admin, "GET", "/v1/domains", None))
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed = json_body(&listed);
    let mine = listed["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain.as_str())
        .unwrap_or_else(|| panic!("{domain} not in {listed}"));
    assert_eq!(mine["verification_status"], "SUCCESS");

    let checked = api
        .handle(request(
            &admin,
            "GET",
            &format!("/v1/domains/{domain}"),
            None,
        ))
        .await;
    let checked_body = json_body(&checked);
    assert_eq!(checked.status(), StatusCode::OK, "{checked_body}");
    assert_eq!(checked_body["ready"], false);
    let checks = checked_body["checks"].as_array().unwrap();
    let spf = checks.iter().find(|c| c["purpose"] == "spf").unwrap();
    assert_eq!(spf["status"], "wrong");
    assert_eq!(spf["found"].as_array().unwrap().len(), 2);
    assert!(
        spf["message"]
            .as_str()
            .unwrap()
            .contains(&format!("there are 2 SPF records at {domain}")),
        "{spf}"
    );
    let dmarc = checks.iter().find(|c| c["purpose"] == "dmarc").unwrap();
    assert_eq!(dmarc["status"], "missing");
    assert!(
        dmarc["message"]
            .as_str()
            .unwrap()
            .contains(&format!("there is no DMARC record at _dmarc.{domain}")),
        "{dmarc}"
    );
    let problems = checked_body["problems"].to_string();
    assert!(problems.contains("2 SPF records"), "{problems}");
    assert!(problems.contains("no DMARC record"), "{problems}");
    assert!(problems.contains("no Easy DKIM tokens"), "{problems}");

    let deleted = api
        .handle(request(
            &admin,
            "DELETE",
            &format!("/v1/domains/{domain}"),
            None,
        ))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = api
        .handle(request(
            &admin,
            "GET",
            &format!("/v1/domains/{domain}"),
            None,
        ))
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(&gone)["error"]["code"], "not_found");
    let again = api
        .handle(request(
            &admin,
            "DELETE",
            &format!("/v1/domains/{domain}"),
            None,
        ))
        .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_fixed_zone_passes_the_check_once_its_records_are_published() {
    let t = TestStack::new().await;
    let domain = unique_domain();
    let dns = dns_server(vec![
        txt(&domain, "v=spf1 include:amazonses.com ~all"),
        txt(
            &format!("_dmarc.{domain}"),
            "v=DMARC1; p=none; rua=mailto:dmarc@example.org",
        ),
    ])
    .await;
    let api = api(&t, Some(dns));
    let admin = bearer(&t, "read,domains:write").await;
    let created = api
        .handle(request(
            &admin,
            "POST",
            "/v1/domains",
            Some(json!({"domain": domain})),
        ))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let checked = json_body(
        &api.handle(request(
            &admin,
            "GET",
            &format!("/v1/domains/{domain}"),
            None,
        ))
        .await,
    );
    let checks = checked["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["status"] == "ok"), "{checked}");
    let dmarc = checks.iter().find(|c| c["purpose"] == "dmarc").unwrap();
    assert!(dmarc["message"].as_str().unwrap().contains("tighten"));
    // Still not ready: moto reports no DKIM tokens, so DKIM cannot be confirmed.
    assert_eq!(checked["ready"], false);
    assert_eq!(
        checked["problems"].as_array().unwrap().len(),
        1,
        "{checked}"
    );

    // Setting a custom MAIL FROM: moto lacks the operation; the answer says so plainly.
    let mail_from = api
        .handle(request(
            &admin,
            "POST",
            "/v1/domains",
            Some(json!({"domain": domain, "mail_from_subdomain": "bounce"})),
        ))
        .await;
    assert_eq!(mail_from.status(), StatusCode::NOT_IMPLEMENTED);
    let error = json_body(&mail_from);
    assert_eq!(error["error"]["code"], "mail_from_unsupported");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("bounce.{domain}"))
    );
}

#[tokio::test]
async fn invalid_domains_are_400_with_a_code_and_scopes_are_enforced() {
    let t = TestStack::new().await;
    let api = api(&t, None);
    let admin = bearer(&t, "read,domains:write").await;
    for (body, code, field) in [
        (
            json!({"domain": "not a domain"}),
            "invalid_domain",
            "domain",
        ),
        (
            json!({"domain": "someone@example.org"}),
            "invalid_domain",
            "domain",
        ),
        (json!({"domain": "localhost"}), "invalid_domain", "domain"),
        (
            json!({"domain": "example.org", "mail_from_subdomain": "bad_label"}),
            "invalid_mail_from_subdomain",
            "mail_from_subdomain",
        ),
        (
            json!({"domain": "example.org", "dkim": "no"}),
            "unknown_field",
            "dkim",
        ),
        (json!({"domain": 7}), "invalid_type", "domain"),
    ] {
        let r = api
            .handle(request(&admin, "POST", "/v1/domains", Some(body.clone())))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = json_body(&r);
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let bad_get = api
        .handle(request(&admin, "GET", "/v1/domains/a..b", None))
        .await;
    assert_eq!(bad_get.status(), StatusCode::BAD_REQUEST);

    let reader = bearer(&t, "read").await;
    let sender = bearer(&t, "send").await;
    let refused = api
        .handle(request(
            &reader,
            "POST",
            "/v1/domains",
            Some(json!({"domain": unique_domain()})),
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(&refused)["error"]["code"], "insufficient_scope");
    assert!(
        refused.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("domains:write")
    );
    let refused = api
        .handle(request(&reader, "DELETE", "/v1/domains/example.com", None))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = api
        .handle(request(&sender, "GET", "/v1/domains", None))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let allowed = api
        .handle(request(&reader, "GET", "/v1/domains", None))
        .await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let wrong_method = api
        .handle(request(&admin, "PUT", "/v1/domains", None))
        .await;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn sending_from_an_unverified_domain_through_ses_alone_is_422_before_any_provider_call() {
    let t = TestStack::new().await;
    let api = api(&t, None);
    let key = bearer(&t, "send,read,domains:write").await;
    let domain = unique_domain();
    let message = |from: &str| {
        json!({
            "from": from,
            "to": ["someone@example.net"],
            "subject": "hello",
            "text": "hello",
        })
    };
    let refused = api
        .handle(request(
            &key,
            "POST",
            "/v1/messages",
            Some(message(&format!("shop@{domain}"))),
        ))
        .await;
    let error = json_body(&refused);
    assert_eq!(
        refused.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{error}"
    );
    assert_eq!(error["error"]["code"], "sender_domain_unverified");
    assert_eq!(error["error"]["field"], "from");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&domain)
    );

    // The batch refuses that message alone.
    let batch = api
        .handle(request(
            &key,
            "POST",
            "/v1/messages/batch",
            Some(json!({"messages": [
                message("hello@example.com"),
                message(&format!("shop@{domain}")),
            ]})),
        ))
        .await;
    let results = json_body(&batch);
    assert_eq!(results["results"][0]["status"], "queued", "{results}");
    assert_eq!(
        results["results"][1]["error"]["code"], "sender_domain_unverified",
        "{results}"
    );
    assert_eq!(results["results"][1]["error"]["field"], "messages[1].from");

    // The dev identity (verified by the stack's provisioning) sends.
    let sent = api
        .handle(request(
            &key,
            "POST",
            "/v1/messages",
            Some(message("hello@example.com")),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{}", json_body(&sent));

    // A test key's mail goes to the sandbox simulator, never to SES: no identity is needed.
    let test_key = mailgate_tests::api::bearer_in(&t, KeyEnvironment::Test, "send").await;
    let sandboxed = api
        .handle(request(
            &test_key,
            "POST",
            "/v1/messages",
            Some(message(&format!("shop@{domain}"))),
        ))
        .await;
    assert_eq!(
        sandboxed.status(),
        StatusCode::ACCEPTED,
        "{}",
        json_body(&sandboxed)
    );
}

async fn admin(t: &TestStack, args: &[&str]) -> Result<String, mailgate_admin::AdminError> {
    use clap::Parser;
    let cli = mailgate_admin::Cli::try_parse_from(
        std::iter::once("mailgate-admin").chain(args.iter().copied()),
    )
    .unwrap();
    let mut out = Vec::new();
    mailgate_admin::run_with_clients(cli, &t.clients, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_admin_adds_lists_and_checks_domains_and_lists_and_renders_templates() {
    let t = TestStack::new().await;
    let domain = unique_domain();
    let dns = dns_server(vec![txt(&domain, "v=spf1 mx -all")]).await;

    let added = admin(&t, &["domains", "add", &domain]).await.unwrap();
    assert!(added.contains("publish these DNS records"), "{added}");
    assert!(added.contains(&format!("_dmarc.{domain}")), "{added}");
    assert!(
        added.contains("v=spf1 include:amazonses.com ~all"),
        "{added}"
    );
    assert!(added.contains("no Easy DKIM tokens"), "{added}");

    let listed = admin(&t, &["domains", "list"]).await.unwrap();
    assert!(listed.lines().any(|l| l.starts_with(&domain)), "{listed}");

    let resolver = dns.to_string();
    let checked = admin(
        &t,
        &["domains", "check", &domain, "--dns-resolver", &resolver],
    )
    .await
    .unwrap();
    assert!(checked.contains("not ready:"), "{checked}");
    assert!(
        checked.contains(&format!(
            "the SPF record at {domain} does not include amazonses.com"
        )),
        "{checked}"
    );
    assert!(checked.contains("there is no DMARC record"), "{checked}");

    let invalid = admin(&t, &["domains", "add", "not a domain"])
        .await
        .unwrap_err();
    assert_eq!(invalid.exit_code(), mailgate_admin::EXIT_USAGE);
    let unknown = admin(&t, &["domains", "check", &unique_domain()])
        .await
        .unwrap_err();
    assert_eq!(unknown.exit_code(), mailgate_admin::EXIT_UNKNOWN_KEY);

    // Templates: one created through the API, listed and rendered by the admin.
    let api = api(&t, None);
    let writer = bearer(&t, "read,templates:write").await;
    let created = api
        .handle(request(
            &writer,
            "POST",
            "/v1/templates",
            Some(json!({"name": "Welcome", "subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>", "text": "Hello {{ name }}"})),
        ))
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = json_body(&created)["id"].as_str().unwrap().to_owned();
    let table = t.table("TemplatesTable");
    let listed = admin(&t, &["templates", "list", "--table", &table])
        .await
        .unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("Welcome")),
        "{listed}"
    );
    let rendered = admin(
        &t,
        &[
            "templates",
            "render",
            &id,
            "--data",
            r#"{"name": "<Jane>"}"#,
            "--table",
            &table,
        ],
    )
    .await
    .unwrap();
    assert!(rendered.contains("subject:  Hi <Jane>"), "{rendered}");
    assert!(rendered.contains("Hello <Jane>"), "{rendered}");
    assert!(rendered.contains("<p>&lt;Jane&gt;</p>"), "{rendered}");
    let missing = admin(&t, &["templates", "render", &id, "--table", &table])
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("name"), "{missing}");
    assert!(
        missing.to_string().contains("template_render_failed"),
        "{missing}"
    );
}
