//! Pooling batch records of several documents into shared batch inference jobs.
//!
//! Bedrock wants at least `min_records` records per job; a 70-page document alone is too small,
//! two of them together are not. Every execution on the batch branch joins the pool of its
//! process with its records (`beacon:batch-pool`): its records file is copied under the open
//! pool's input prefix, and
//!
//! - when the pool reaches `min_records`, it is sealed: the execution that sealed it submits the
//!   job (`role: submitter`; the job reads every file under the prefix) and the others are told
//!   the job's name (`role: member`) and find it with `listModelInvocationJobs`;
//! - an execution still waiting after `window` leaves the pool (its file is removed) and its
//!   units go on demand (`role: on-demand`, with the reason).
//!
//! Every document's records keep their own file, so each collects its own outputs
//! (`<file>.out`), joined by `recordId`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use beacon_asl::{TaskContext, TaskFailure, TaskHandler};
use beacon_store::{Store, keys};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, oneshot};

/// What every pool shares, in one process or across many (`beacon_aws::batch_pool`): where
/// the records go, when a pool is full, how long a document waits, what executions are told.
#[derive(Clone)]
pub struct PoolRules {
    pub store: Store,
    pub bucket: String,
    pub min_records: usize,
    pub window: Duration,
}

/// The pool of one process: at most one open pool at a time.
pub struct BatchPool {
    rules: PoolRules,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    /// The pool documents join now.
    open: Option<OpenPool>,
    /// Pools that were sealed (their job submitted), as opposed to retired.
    sealed: std::collections::HashSet<String>,
}

struct OpenPool {
    id: String,
    records: usize,
    members: Vec<Member>,
}

struct Member {
    run: String,
    file_key: String,
    records: usize,
    /// Told the pool's id when it is sealed.
    sealed: oneshot::Sender<String>,
}

/// What an execution brings to the pool (`beacon:batch-pool`'s input).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinInput {
    pub document_id: String,
    pub run: String,
    pub input_uri: String,
    pub record_count: usize,
}

impl JoinInput {
    pub fn parse(input: Value) -> Result<JoinInput, TaskFailure> {
        serde_json::from_value(input).map_err(|e| TaskFailure::new("Beacon.InvalidInput", format!("batch-pool: {e}")))
    }
}

pub fn store_failure(e: beacon_store::StoreError) -> TaskFailure {
    TaskFailure::new("Beacon.StoreError", e.to_string())
}

impl PoolRules {
    /// The configured minimum and window over the services' store.
    pub fn for_config(services: &crate::Services) -> PoolRules {
        let config = &services.config;
        PoolRules {
            store: services.store.clone(),
            bucket: config.bucket.clone(),
            min_records: (config.batch.min_records as usize).max(1),
            window: Duration::from_secs(config.batch.pool_window_secs),
        }
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn key_of<'a>(&self, uri: &'a str) -> Option<&'a str> {
        uri.strip_prefix("s3://")?.strip_prefix(self.bucket.as_str())?.strip_prefix('/')
    }

    /// The document's records and the name of its file in a pool's input.
    pub async fn records(&self, input: &JoinInput) -> Result<(Vec<u8>, String), TaskFailure> {
        let source = self.key_of(&input.input_uri).ok_or_else(|| {
            TaskFailure::new(
                "Beacon.InvalidInput",
                format!("{} is not in the bucket s3://{}/", input.input_uri, self.bucket),
            )
        })?;
        let bytes = self.store.get(source).await.map_err(store_failure)?.to_vec();
        let document: String = input.document_id.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        Ok((bytes, format!("{document}-{}.jsonl", short_hash(&input.run))))
    }

    /// Where `file` goes in pool `pool`'s input.
    pub fn file_key(pool: &str, file: &str) -> String {
        format!("{}{file}", keys::batch_pool_input(pool))
    }

    /// What a sealed pool's executions need: its input and output and the job's name.
    pub fn decision(&self, role: &str, pool: &str, members: usize, file: &str) -> Value {
        json!({
            "role": role,
            "poolId": pool,
            "jobName": format!("beacon-{pool}"),
            "inputUri": self.uri(&keys::batch_pool_input(pool)),
            "outputUri": self.uri(&keys::batch_pool_output(pool)),
            "inputFile": file,
            "members": members,
        })
    }

    /// An execution that waited `window` and goes on demand; the pool held `pooled` records.
    pub fn left_out(&self, input: &JoinInput, pooled: usize) -> Value {
        json!({
            "role": "on-demand",
            "note": format!(
                "the batch pool held {pooled} records after {} s, fewer than the {} a batch job needs: every unit was analysed on demand",
                self.window.as_secs(),
                self.min_records
            ),
            "records": input.record_count,
        })
    }
}

impl BatchPool {
    pub fn new(store: Store, bucket: impl Into<String>, min_records: usize, window: Duration) -> BatchPool {
        let rules = PoolRules { store, bucket: bucket.into(), min_records: min_records.max(1), window };
        BatchPool { rules, state: Mutex::new(PoolState::default()) }
    }

    /// A pool over the services' store with the configured minimum and window.
    pub fn for_config(services: &crate::Services) -> BatchPool {
        BatchPool { rules: PoolRules::for_config(services), state: Mutex::new(PoolState::default()) }
    }

    async fn join(&self, input: JoinInput) -> Result<Value, TaskFailure> {
        let rules = &self.rules;
        let (bytes, file) = rules.records(&input).await?;
        let (sealed_tx, sealed_rx) = oneshot::channel();
        let pool_id = {
            let mut state = self.state.lock().await;
            let open = &mut state.open;
            let pool = open.get_or_insert_with(|| OpenPool { id: new_pool_id(), records: 0, members: Vec::new() });
            let file_key = PoolRules::file_key(&pool.id, &file);
            // Written while the pool is locked: a sealed pool's input is complete.
            rules.store.put(&file_key, bytes).await.map_err(store_failure)?;
            pool.records += input.record_count;
            pool.members.push(Member {
                run: input.run.clone(),
                file_key: file_key.clone(),
                records: input.record_count,
                sealed: sealed_tx,
            });
            let (filled, id) = (pool.records >= rules.min_records, pool.id.clone());
            if let Some(pool) = open.take_if(|_| filled) {
                state.sealed.insert(pool.id.clone());
                let members = pool.members.len();
                tracing::info!(pool = pool.id, members, records = pool.records, "batch pool sealed");
                for member in pool.members {
                    // The sealing execution's own receiver is dropped below; others wait on theirs.
                    let _ = member.sealed.send(pool.id.clone());
                }
                return Ok(rules.decision("submitter", &pool.id, members, &file));
            }
            id
        };
        tracing::info!(pool = pool_id, run = input.run, "waiting for the batch pool to fill");
        match tokio::time::timeout(rules.window, sealed_rx).await {
            Ok(Ok(pool)) => Ok(rules.decision("member", &pool, 0, &file)),
            // The sender went away without sealing: cannot happen while the pool lives.
            Ok(Err(_)) => Ok(rules.left_out(&input, 0)),
            Err(_) => {
                let mut state = self.state.lock().await;
                let sealed = state.sealed.contains(&pool_id);
                let open = &mut state.open;
                let Some(pool) = open.as_mut().filter(|p| p.id == pool_id) else {
                    // Sealed while the timer fired: this execution is a member after all; or
                    // retired (a member's records could not be removed): on demand.
                    return Ok(if sealed {
                        rules.decision("member", &pool_id, 0, &file)
                    } else {
                        rules.left_out(&input, 0)
                    });
                };
                let Some(position) = pool.members.iter().position(|m| m.run == input.run) else {
                    return Ok(rules.left_out(&input, 0));
                };
                let member = pool.members.remove(position);
                let pooled = pool.records;
                pool.records -= member.records;
                // Removed while the pool is locked, so no job can be submitted over a prefix that
                // still holds this document's records. If it cannot be removed, the pool is
                // retired (its other members go on demand too) rather than paid for twice.
                if let Err(e) = rules.store.delete(&member.file_key).await {
                    tracing::warn!(error = %e, key = member.file_key, "cannot remove a left pool member's records; retiring the pool");
                    *open = None;
                } else if pool.members.is_empty() {
                    *open = None;
                }
                drop(state);
                Ok(rules.left_out(&input, pooled))
            }
        }
    }
}

fn short_hash(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..6])
}

/// `pool-<UTC time>-<random>`: unique, sortable, and short enough for a job name.
pub fn new_pool_id() -> String {
    format!("pool-{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), rand::random::<u16>())
}

/// `beacon:batch-pool` bound to a pool.
pub struct JoinBatchPool(pub Arc<BatchPool>);

#[async_trait]
impl TaskHandler for JoinBatchPool {
    async fn invoke(&self, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        self.0.join(JoinInput::parse(input)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(document: &str, run: &str, records: usize) -> JoinInput {
        JoinInput {
            document_id: document.repeat(12),
            run: run.into(),
            input_uri: format!("s3://b/batch/{document}/{run}/input/records.jsonl"),
            record_count: records,
        }
    }

    async fn pool(window: Duration) -> (tempfile::TempDir, Arc<BatchPool>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        for (d, r) in [("a", "r1"), ("b", "r2"), ("c", "r3")] {
            store.put(&format!("batch/{d}/{r}/input/records.jsonl"), format!("{d}\n").into_bytes()).await.unwrap();
        }
        (dir, Arc::new(BatchPool::new(store, "b", 100, window)))
    }

    #[tokio::test]
    async fn two_small_documents_fill_one_pool() {
        let (_dir, pool) = pool(Duration::from_secs(60)).await;
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.join(member("a", "r1", 70)).await }
        });
        // The first member is in the pool once its file is there.
        let first_file = loop {
            if let Some(open) = pool.state.lock().await.open.as_ref() {
                break open.members[0].file_key.clone();
            }
            tokio::task::yield_now().await;
        };
        let sealing = pool.join(member("b", "r2", 70)).await.unwrap();
        let member = waiting.await.unwrap().unwrap();
        assert_eq!(sealing["role"], "submitter");
        assert_eq!(sealing["members"], 2);
        assert_eq!(member["role"], "member");
        assert_eq!(member["jobName"], sealing["jobName"]);
        assert_eq!(member["inputUri"], sealing["inputUri"]);
        assert_ne!(member["inputFile"], sealing["inputFile"], "each document keeps its own file");
        let listed = pool.rules.store.list(&keys::batch_pool_input(sealing["poolId"].as_str().unwrap())).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|o| o.key == first_file));
        assert!(pool.state.lock().await.open.is_none(), "a sealed pool is closed; the next joiner opens a new one");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_small_document_leaves_after_the_window() {
        let (_dir, pool) = pool(Duration::from_secs(30)).await;
        let alone = pool.join(member("c", "r3", 70)).await.unwrap();
        assert_eq!(alone["role"], "on-demand");
        assert!(alone["note"].as_str().unwrap().contains("70 records after 30 s, fewer than the 100"), "{alone}");
        assert!(pool.state.lock().await.open.is_none());
        assert!(pool.rules.store.list("batch/pools/").await.unwrap().is_empty(), "its records left the pool");
    }

    #[tokio::test]
    async fn a_large_document_submits_alone_at_once() {
        let (_dir, pool) = pool(Duration::from_secs(3600)).await;
        let alone = pool.join(member("a", "r1", 150)).await.unwrap();
        assert_eq!((alone["role"].as_str(), alone["members"].as_u64()), (Some("submitter"), Some(1)));
    }
}
