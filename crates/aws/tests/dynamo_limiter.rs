//! The DynamoDB-backed rate limiter against moto: many independent clients (each with its own
//! SDK client and limiter, as separate processes or Lambdas would be) share one quota, and no
//! window ever holds more than the quota.

mod support;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use beacon_aws::{DynamoLimiter, create_limiter_table};
use beacon_llm::LlmError;
use beacon_llm::limiter::{Quota, RateLimiter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::Moto;

const TABLE: &str = "beacon-rate-limits";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_never_exceed_the_quota() {
    let Some(moto) = Moto::start() else { return };
    create_limiter_table(&moto.dynamodb().await, TABLE).await.unwrap();
    // Creating it again is fine.
    create_limiter_table(&moto.dynamodb().await, TABLE).await.unwrap();

    // 12 requests and 1,500 tokens per 2 s window; 8 clients want 48 requests of up to 250.
    let window = Duration::from_secs(2);
    let quota = Quota { rpm: Some(12), tpm: Some(1_500), tpd: None };
    let mut clients = Vec::new();
    for client in 0..8u64 {
        let limiter = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-a", quota).with_window(window);
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client);
            let mut admissions = Vec::new();
            for _ in 0..6 {
                let reserved = rng.random_range(50..=250);
                let permit = limiter.acquire(reserved).await.unwrap();
                let used = rng.random_range(reserved / 2..=reserved);
                admissions.push((permit.admitted_at, used));
                limiter.settle(permit, used).await;
            }
            admissions
        }));
    }
    let mut admissions = Vec::new();
    for client in clients {
        admissions.extend(client.await.unwrap());
    }
    admissions.sort_unstable();
    assert_eq!(admissions.len(), 48);
    let window_us = u64::try_from(window.as_micros()).unwrap();
    for (i, &(start, _)) in admissions.iter().enumerate() {
        let in_window: Vec<_> = admissions[i..].iter().take_while(|(at, _)| *at < start + window_us).collect();
        let tokens: u64 = in_window.iter().map(|(_, used)| used).sum();
        assert!(in_window.len() <= 12, "{} requests in the window from admission {i}: {admissions:?}", in_window.len());
        assert!(tokens <= 1_500, "{tokens} tokens in the window from admission {i}: {admissions:?}");
    }
    // The quota was used, not just respected: 48 requests need at least three windows.
    let span = admissions.last().unwrap().0 - admissions[0].0;
    assert!(span >= 3 * window_us, "48 requests at 12 per window went through in {span} µs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_sees_what_another_admitted() {
    let Some(moto) = Moto::start() else { return };
    let client = moto.dynamodb().await;
    create_limiter_table(&client, TABLE).await.unwrap();
    let quota = Quota { rpm: Some(2), tpm: None, tpd: None };
    let first = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-b", quota).with_burst(1.0);
    let second = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-b", quota).with_burst(1.0);
    let other_model = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-c", quota).with_burst(1.0);
    let _ = first.acquire(10).await.unwrap();
    let _ = second.acquire(10).await.unwrap();
    // The minute's two requests are gone: a third waits for a minute, whoever asks.
    let third = tokio::time::timeout(Duration::from_secs(2), first.acquire(10)).await;
    assert!(third.is_err(), "a third request within the minute must wait");
    // Another model's item is independent.
    let _ = other_model.acquire(10).await.unwrap();
    // The item carries a time to live.
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("modelId", AttributeValue::S("model-b".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(matches!(item.get("expiresAt"), Some(AttributeValue::N(_))), "{item:?}");
    assert_eq!(item.get("version"), Some(&AttributeValue::N("2".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_item_or_a_missing_table_is_a_clear_error() {
    let Some(moto) = Moto::start() else { return };
    let client = moto.dynamodb().await;
    let quota = Quota { rpm: Some(60), tpm: None, tpd: None };

    let missing = DynamoLimiter::new(client.clone(), "no-such-table", "m", quota);
    let error = missing.acquire(1).await.unwrap_err();
    assert!(matches!(error, LlmError::Transient { .. }), "{error}");
    assert!(error.to_string().contains("no-such-table"), "{error}");

    create_limiter_table(&client, TABLE).await.unwrap();
    client
        .put_item()
        .table_name(TABLE)
        .item("modelId", AttributeValue::S("damaged".into()))
        .item("version", AttributeValue::N("3".into()))
        .item("state", AttributeValue::S("{not json".into()))
        .send()
        .await
        .unwrap();
    let damaged = DynamoLimiter::new(client, TABLE, "damaged", quota);
    let error = damaged.acquire(1).await.unwrap_err().to_string();
    assert!(error.contains("\"damaged\"") && error.contains("state is not valid"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_one_process_reports_slows_every_process_down() {
    let Some(moto) = Moto::start() else { return };
    let client = moto.dynamodb().await;
    create_limiter_table(&client, TABLE).await.unwrap();
    let quota = Quota { rpm: Some(600), tpm: None, tpd: None };
    let first = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-d", quota);
    let second = DynamoLimiter::new(moto.dynamodb().await, TABLE, "model-d", quota);
    let pace = || async {
        let item = client
            .get_item()
            .table_name(TABLE)
            .key("modelId", AttributeValue::S("model-d".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let Some(AttributeValue::S(json)) = item.get("pace") else { panic!("no pace in {item:?}") };
        serde_json::from_str::<serde_json::Value>(json).unwrap()
    };
    // Slow start: the first throttle only ends it (the burst was too large).
    let permit = first.acquire(1).await.unwrap();
    first.throttled(permit).await;
    let after_first = pace().await;
    assert_eq!(after_first["slow_start"], false, "{after_first}");
    assert_eq!(after_first["rate"], 1.0, "{after_first}");
    // A throttle of a request the other process sent after that lowers the rate for both.
    let permit = second.acquire(1).await.unwrap();
    second.throttled(permit).await;
    let after_second = pace().await;
    let rate = after_second["rate"].as_f64().unwrap();
    assert!(rate < 0.85, "the shared rate fell: {after_second}");
}
