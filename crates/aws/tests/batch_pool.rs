//! The batch pool shared through DynamoDB (moto): two pools standing for two Lambda instances
//! fill one job together; a lone small document leaves after the window with its records taken
//! out of the pool; a large one submits at once; a join retried after its instance died takes its
//! place back without counting its records twice.

mod support;

use std::time::Duration;

use beacon_aws::batch_pool::DynamoPool;
use beacon_pipeline::pool::PoolRules;
use beacon_store::Store;
use serde_json::{Value, json};

const TABLE: &str = "beacon-pool-test";

async fn instance(moto: &support::Moto, store: &Store, window: Duration) -> DynamoPool {
    let rules = PoolRules { store: store.clone(), bucket: "b".into(), min_records: 100, window };
    let client = moto.dynamodb().await;
    beacon_aws::create_limiter_table(&client, TABLE).await.unwrap();
    let mut pool = DynamoPool::new(rules, client, TABLE, "model-1");
    pool.poll = Duration::from_millis(50);
    pool
}

fn member(document: &str, run: &str, records: usize) -> Value {
    json!({
        "documentId": document.repeat(12),
        "run": run,
        "inputUri": format!("s3://b/batch/{document}/{run}/input/records.jsonl"),
        "recordCount": records,
    })
}

async fn join(pool: &DynamoPool, input: Value) -> Value {
    use beacon_asl::TaskHandler;
    let ctx = beacon_asl::TaskContext {
        execution_name: "exec-1".into(),
        state_name: "JoinBatchPool".into(),
        attempt: 1,
        key: "JoinBatchPool@1#1".into(),
        context: Value::Null,
    };
    pool.invoke(input, ctx).await.expect("joined")
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path()).unwrap();
    for (d, r) in [("a", "r1"), ("b", "r2"), ("c", "r3"), ("d", "r4")] {
        store.put(&format!("batch/{d}/{r}/input/records.jsonl"), format!("{d}\n").into_bytes()).await.unwrap();
    }
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_on_two_instances_fill_one_job_and_a_lone_one_leaves_after_the_window() {
    let Some(moto) = support::Moto::start() else { return };
    let (_dir, store) = store().await;
    let first = instance(&moto, &store, Duration::from_secs(120)).await;
    let second = instance(&moto, &store, Duration::from_secs(120)).await;

    // Two documents reach two instances at once: whichever registers second seals the pool.
    let (a, b) = tokio::join!(join(&first, member("a", "r1", 70)), join(&second, member("b", "r2", 70)));
    let (sealing, joined) = if a["role"] == "submitter" { (a, b) } else { (b, a) };
    assert_eq!(sealing["role"], "submitter", "{sealing}");
    assert_eq!(sealing["members"], 2, "{sealing}");
    assert_eq!(joined["role"], "member", "{joined}");
    assert_eq!(joined["jobName"], sealing["jobName"]);
    assert_eq!(joined["inputUri"], sealing["inputUri"]);
    assert_ne!(joined["inputFile"], sealing["inputFile"], "each document keeps its own file");
    let pool_id = sealing["poolId"].as_str().unwrap();
    let files = store.list(&beacon_store::keys::batch_pool_input(pool_id)).await.unwrap();
    assert_eq!(files.len(), 2, "the sealed pool's input holds both documents: {files:?}");

    // A lone small document leaves after the window, its records out of the pool.
    let short = instance(&moto, &store, Duration::from_millis(300)).await;
    let alone = join(&short, member("c", "r3", 30)).await;
    assert_eq!(alone["role"], "on-demand", "{alone}");
    assert!(alone["note"].as_str().unwrap().contains("fewer than the 100"), "{alone}");
    let pooled: Vec<_> = store.list("batch/pools/").await.unwrap().into_iter().map(|o| o.key).collect();
    assert!(pooled.iter().all(|k| k.starts_with(&format!("batch/pools/{pool_id}/"))), "{pooled:?}");

    // A large document submits alone at once.
    let large = join(&second, member("d", "r4", 150)).await;
    assert_eq!((large["role"].as_str(), large["members"].as_u64()), (Some("submitter"), Some(1)), "{large}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_join_takes_its_place_back_and_counts_its_records_once() {
    let Some(moto) = support::Moto::start() else { return };
    let (_dir, store) = store().await;
    let client = moto.dynamodb().await;
    let first = instance(&moto, &store, Duration::from_secs(120)).await;

    // The instance that joined dies while it waits (its invocation is gone mid-wait).
    let waiting = tokio::spawn(async move { join(&first, member("a", "r1", 40)).await });
    let pool_records = || async {
        let item = client
            .get_item()
            .table_name(TABLE)
            .key("modelId", aws_sdk_dynamodb::types::AttributeValue::S("batch-pool#model-1".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        item.item().and_then(|i| i.get("poolRecords")).and_then(|v| v.as_n().ok()).map(|n| n.parse::<u64>().unwrap())
    };
    while pool_records().await != Some(40) {
        tokio::task::yield_now().await;
    }
    waiting.abort();

    // Step Functions retries it: the retry waits in the same place, and leaving after its window
    // takes the pool back to empty (the records were counted once).
    let retry = instance(&moto, &store, Duration::from_millis(300)).await;
    let left = join(&retry, member("a", "r1", 40)).await;
    assert_eq!(left["role"], "on-demand", "{left}");
    assert_eq!(pool_records().await, Some(0));
}
