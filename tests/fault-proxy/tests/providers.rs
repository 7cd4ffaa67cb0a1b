#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The misbehaving provider fakes do what they say, seen from a real HTTP client with a timeout.

use std::time::Duration;

use mailgate_fault_proxy::MisbehavingProvider;

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

async fn post(url: &str, timeout: Duration) -> Result<reqwest::Response, reqwest::Error> {
    client(timeout)
        .post(format!("{url}/v3/mail/send"))
        .body(r#"{"subject":"hello"}"#)
        .send()
        .await
}

#[tokio::test]
async fn a_hanging_provider_reads_the_request_and_times_the_client_out() {
    let fake = MisbehavingProvider::hanging().await.unwrap();

    let err = post(&fake.url(), Duration::from_millis(300))
        .await
        .unwrap_err();

    assert!(err.is_timeout(), "got {err:?}");
    assert_eq!(fake.requests(), 1, "the request was read in full");
}

#[tokio::test]
async fn a_resetting_provider_gives_a_transport_error_not_an_answer() {
    let fake = MisbehavingProvider::resetting().await.unwrap();

    let err = post(&fake.url(), Duration::from_secs(5)).await.unwrap_err();

    assert!(!err.is_timeout(), "a reset, not a timeout: {err:?}");
    assert!(err.status().is_none());
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn a_slow_provider_answers_only_clients_that_wait_long_enough() {
    let fake = MisbehavingProvider::slow(Duration::from_millis(600), 202, r#"{"id":"x"}"#)
        .await
        .unwrap();

    let err = post(&fake.url(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "got {err:?}");

    let answer = post(&fake.url(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    assert_eq!(answer.text().await.unwrap(), r#"{"id":"x"}"#);
    assert_eq!(fake.requests(), 2);
}
