//! The batch pool shared by every Lambda instance (and process) through DynamoDB: the same
//! rules as the in-process pool (`beacon_pipeline::pool`), so documents that reach different
//! instances still fill one job.
//!
//! The open pool of a model is one item of the rate-limit table (`batch-pool#<model>`: pool id,
//! records, members, version); every change is a write conditional on the version read. Joining
//! writes the document's records file under the pool's input first, then registers it: a sealed
//! pool's input is complete. The joiner that reaches `min_records` seals the pool in one
//! transaction (the item starts a new empty pool; a `batch-pool-sealed#<pool>` marker appears)
//! and submits the job; the others see the marker and find the job by name. A document still
//! waiting after the window leaves: it unregisters (conditionally, so a pool sealed meanwhile
//! keeps it as a member), then removes its file. A pool sealed in the instant between the two
//! would process the leaver's records in its job too: paid twice, never lost, since every
//! document collects only its own file's outputs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use beacon_asl::{TaskContext, TaskFailure, TaskHandler};
use beacon_pipeline::pool::{JoinInput, PoolRules, new_pool_id, store_failure};
use serde_json::Value;

const KEY: &str = "modelId";
/// How long a sealed marker outlives its pool (the table's TTL attribute).
const SEALED_TTL_SECS: u64 = 7 * 24 * 3600;

/// `beacon:batch-pool` over a DynamoDB table.
pub struct DynamoPool {
    rules: PoolRules,
    client: Client,
    table: String,
    /// The model whose jobs the pool fills (one open pool per model).
    model: String,
    /// Between two looks at the pool while waiting.
    pub poll: Duration,
}

/// The open pool as read.
struct Open {
    pool: String,
    records: usize,
    members: usize,
    version: Option<u64>,
    /// The runs in the pool (each one's records counted once).
    runs: Vec<String>,
}

fn failure(operation: &str, message: String) -> TaskFailure {
    TaskFailure::new("Beacon.Transient", format!("batch pool: {operation}: {message}"))
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: &E) -> bool {
    matches!(error.code(), Some("ConditionalCheckFailedException") | Some("TransactionCanceledException"))
}

impl DynamoPool {
    /// The pool on `table` (created if missing, as the limiter creates it) in `region` or at
    /// `endpoint`.
    pub async fn connect(
        rules: PoolRules,
        table: &str,
        model: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<DynamoPool, crate::AwsError> {
        let client = Client::new(&crate::sdk_config(region, endpoint).await);
        crate::create_limiter_table(&client, table).await?;
        Ok(DynamoPool::new(rules, client, table, model))
    }

    pub fn new(rules: PoolRules, client: Client, table: impl Into<String>, model: impl Into<String>) -> DynamoPool {
        DynamoPool { rules, client, table: table.into(), model: model.into(), poll: Duration::from_secs(1) }
    }

    fn open_key(&self) -> AttributeValue {
        AttributeValue::S(format!("batch-pool#{}", self.model))
    }

    fn sealed_key(pool: &str) -> AttributeValue {
        AttributeValue::S(format!("batch-pool-sealed#{pool}"))
    }

    async fn read(&self) -> Result<Open, TaskFailure> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, self.open_key())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failure("GetItem", crate::describe(&e)))?;
        let Some(item) = item.item() else {
            return Ok(Open { pool: new_pool_id(), records: 0, members: 0, version: None, runs: Vec::new() });
        };
        let n = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
        let runs: Vec<String> =
            item.get("poolMembers").and_then(|v| v.as_m().ok()).map_or_else(Vec::new, |m| m.keys().cloned().collect());
        Ok(Open {
            pool: item.get("poolId").and_then(|v| v.as_s().ok()).cloned().unwrap_or_else(new_pool_id),
            records: n("poolRecords").unwrap_or(0) as usize,
            members: runs.len(),
            version: n("poolVersion"),
            runs,
        })
    }

    /// `open` with this document added; `Ok(false)` when someone changed the pool first.
    async fn register(&self, open: &Open, run: &str, file_key: &str, records: usize) -> Result<bool, TaskFailure> {
        let file = AttributeValue::S(file_key.to_string());
        let mut values = HashMap::from([(":n".to_string(), number(records)), (":one".to_string(), number(1))]);
        let mut update = self.client.update_item().table_name(&self.table).key(KEY, self.open_key());
        update = match open.version {
            Some(version) => {
                values.insert(":seen".into(), number(version));
                values.insert(":file".into(), file);
                update
                    .condition_expression("poolVersion = :seen")
                    .update_expression("SET poolMembers.#run = :file, poolRecords = poolRecords + :n, poolVersion = poolVersion + :one")
                    .expression_attribute_names("#run", run)
            }
            None => {
                values.insert(":pool".into(), AttributeValue::S(open.pool.clone()));
                values.insert(":first".into(), AttributeValue::M(HashMap::from([(run.to_string(), file)])));
                update
                    .condition_expression("attribute_not_exists(modelId)")
                    .update_expression("SET poolId = :pool, poolMembers = :first, poolRecords = :n, poolVersion = :one")
            }
        };
        let result = update.set_expression_attribute_values(Some(values)).send().await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(false),
            Err(e) => Err(failure("UpdateItem", crate::describe(&e))),
        }
    }

    /// Seals `open` (which this document fills): a new empty pool and the sealed marker, in one
    /// transaction; `Ok(false)` when someone changed the pool first.
    async fn seal(&self, open: &Open) -> Result<bool, TaskFailure> {
        let mut values = HashMap::from([
            (":pool".to_string(), AttributeValue::S(new_pool_id())),
            (":none".to_string(), AttributeValue::M(HashMap::new())),
            (":zero".to_string(), number(0)),
            (":one".to_string(), number(1)),
        ]);
        let condition = match open.version {
            Some(version) => {
                values.insert(":seen".into(), number(version));
                "poolVersion = :seen"
            }
            None => "attribute_not_exists(modelId)",
        };
        let reset = Update::builder()
            .table_name(&self.table)
            .key(KEY, self.open_key())
            .condition_expression(condition)
            .update_expression("SET poolId = :pool, poolMembers = :none, poolRecords = :zero ADD poolVersion :one")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| failure("TransactWriteItems", e.to_string()))?;
        let expires = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            + SEALED_TTL_SECS;
        let marker = Put::builder()
            .table_name(&self.table)
            .item(KEY, Self::sealed_key(&open.pool))
            .item("expiresAt", number(expires))
            .build()
            .map_err(|e| failure("TransactWriteItems", e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(reset).build())
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(false),
            Err(e) => Err(failure("TransactWriteItems", crate::describe(&e))),
        }
    }

    async fn is_sealed(&self, pool: &str) -> Result<bool, TaskFailure> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, Self::sealed_key(pool))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failure("GetItem", crate::describe(&e)))?;
        Ok(item.item().is_some())
    }

    /// Takes this document out of `pool` if it is still open; the records it held before, or
    /// `None` when the pool was sealed (or started over) first.
    async fn unregister(&self, pool: &str, run: &str, records: usize) -> Result<Option<usize>, TaskFailure> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, self.open_key())
            .condition_expression("poolId = :pool AND attribute_exists(poolMembers.#run)")
            .update_expression("REMOVE poolMembers.#run SET poolRecords = poolRecords - :n ADD poolVersion :one")
            .expression_attribute_names("#run", run)
            .expression_attribute_values(":pool", AttributeValue::S(pool.to_string()))
            .expression_attribute_values(":n", number(records))
            .expression_attribute_values(":one", number(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(
                out.attributes()
                    .and_then(|a| a.get("poolRecords"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(records),
            )),
            Err(e) if e.as_service_error().is_some_and(conditional_failed) => Ok(None),
            Err(e) => Err(failure("UpdateItem", crate::describe(&e))),
        }
    }

    async fn join(&self, input: JoinInput) -> Result<Value, TaskFailure> {
        let rules = &self.rules;
        let (bytes, file) = rules.records(&input).await?;
        let deadline = Instant::now() + rules.window;
        // Register (or seal), retrying when another document changed the pool first.
        let (pool, file_key) = loop {
            let open = self.read().await?;
            let file_key = PoolRules::file_key(&open.pool, &file);
            if open.runs.contains(&input.run) {
                // A retried invocation (the instance that joined died: Lambda.Unknown,
                // Sandbox.Timedout): the run's file and records are in the pool already; wait on.
                break (open.pool, file_key);
            }
            // The file first: a sealed pool's input is complete.
            rules.store.put(&file_key, bytes.clone()).await.map_err(store_failure)?;
            if open.records + input.record_count >= rules.min_records {
                if self.seal(&open).await? {
                    tracing::info!(pool = open.pool, members = open.members + 1, "batch pool sealed");
                    return Ok(rules.decision("submitter", &open.pool, open.members + 1, &file));
                }
            } else if self.register(&open, &input.run, &file_key, input.record_count).await? {
                break (open.pool, file_key);
            }
            // Not in that pool after all: its input must not hold this document's records.
            rules.store.delete(&file_key).await.map_err(store_failure)?;
        };
        tracing::info!(pool, run = input.run, "waiting for the shared batch pool to fill");
        loop {
            if self.is_sealed(&pool).await? {
                return Ok(rules.decision("member", &pool, 0, &file));
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(self.poll.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        match self.unregister(&pool, &input.run, input.record_count).await? {
            Some(pooled) => {
                rules.store.delete(&file_key).await.map_err(store_failure)?;
                Ok(rules.left_out(&input, pooled))
            }
            None if self.is_sealed(&pool).await? => Ok(rules.decision("member", &pool, 0, &file)),
            None => {
                rules.store.delete(&file_key).await.map_err(store_failure)?;
                Ok(rules.left_out(&input, 0))
            }
        }
    }
}

#[async_trait]
impl TaskHandler for DynamoPool {
    async fn invoke(&self, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        self.join(JoinInput::parse(input)?).await
    }
}
