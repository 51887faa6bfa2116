//! BEACON's tasks as AWS Lambda functions, through the Lambda Runtime API (`lambda_runtime`).
//!
//! One binary, `beacon-lambda`, serves every task; the function's `BEACON_TASK` environment
//! variable says which (`document-processor`, `llm-processor`, `record-unit-failure`,
//! `result-integrator`, `batch-prepare`, `batch-collect`, `batch-pool`), so a deployment builds
//! once. The handler is the same task function the embedded engine calls, bound to services
//! made from the environment: the store is the S3 bucket `BEACON_BUCKET` (`BEACON_S3_ENDPOINT`
//! overrides the endpoint, for moto), the LLM client stack is the one `beacon run` builds from
//! the same `BEACON_*` settings. A task's failure is returned with its error name as the Lambda
//! `errorType`, which is what the state machine's Retry and Catch match (`Beacon.Transient`,
//! `Beacon.InvalidDocument`, ...). Each invocation also prints its metrics as an EMF line
//! ([`crate::metrics`]).

use std::sync::Arc;

use beacon_asl::{TaskContext, TaskHandler};
use beacon_llm::ClientStats;
use beacon_pipeline::pool::{BatchPool, JoinBatchPool, PoolRules};

use crate::batch_pool::DynamoPool;
use beacon_pipeline::tasks::resources;
use beacon_pipeline::{Config, Services};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

/// Why a function could not start (reported to Lambda as an init error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(String);

/// The task `BEACON_TASK` names, with its services; serves invocations until the runtime stops.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    let task = std::env::var("BEACON_TASK").map_err(|_| {
        InitError("BEACON_TASK is not set: name the task this function runs (e.g. document-processor)".into())
    })?;
    let stats = ClientStats::default();
    let handler = handler(&task, stats.clone()).await?;
    let resource = format!("beacon:{task}");
    let namespace = std::env::var("BEACON_METRICS_NAMESPACE").unwrap_or_else(|_| "BEACON".into());
    let state_machine = std::env::var("BEACON_STATE_MACHINE").unwrap_or_else(|_| "beacon".into());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        let (stats, resource, namespace, state_machine) =
            (stats.clone(), resource.clone(), namespace.clone(), state_machine.clone());
        async move {
            let context = TaskContext {
                execution_name: event.context.request_id.clone(),
                state_name: task_state_name(&event.context.invoked_function_arn),
                attempt: 1,
                key: event.context.request_id,
                context: Value::Null,
            };
            let before = stats.snapshot();
            let outcome = handler.invoke(event.payload, context).await;
            let calls = crate::metrics::calls_between(&before, &stats.snapshot());
            let measured = outcome.as_ref().map_err(|f| f.error.as_str());
            let metrics = crate::metrics::task_metrics(&resource, measured, &calls);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            if let Some(line) = crate::metrics::emf_line(&namespace, &state_machine, now.as_millis() as u64, &metrics) {
                // Lambda sends stdout to CloudWatch Logs, where EMF lines become metrics.
                println!("{line}");
            }
            outcome.map_err(|failure| Diagnostic { error_type: failure.error, error_message: failure.cause })
        }
    }))
    .await
}

/// The function's name, for logs (the last part of its ARN).
fn task_state_name(function_arn: &str) -> String {
    function_arn.rsplit(':').next().unwrap_or_default().to_string()
}

/// The handler of `task`, bound to services made from the environment.
pub async fn handler(task: &str, stats: ClientStats) -> Result<Arc<dyn TaskHandler>, InitError> {
    let (services, table) = services_from_env(stats).await?;
    let resource = format!("beacon:{task}");
    if resource == resources::BATCH_POOL {
        let config = &services.config;
        let rules = PoolRules::for_config(&services);
        // With the shared table (BEACON_QUOTA_TABLE, as the template sets it) every instance
        // joins the same pool; without it, documents pool per instance.
        return match &table {
            Some(table) => {
                let region = config.provider.region.as_deref();
                let endpoint = config.quota.shared_endpoint.as_deref();
                let pool = DynamoPool::connect(rules, table, &config.model_name(), region, endpoint)
                    .await
                    .map_err(|e| InitError(e.to_string()))?;
                Ok(Arc::new(pool))
            }
            None => Ok(Arc::new(JoinBatchPool(Arc::new(BatchPool::for_config(&services))))),
        };
    }
    let registry = beacon_pipeline::tasks::registry(&services);
    registry.get(&resource).ok_or_else(|| {
        InitError(format!("BEACON_TASK={task} names no task; use one of {}", resources::TASKS.join(", ")))
    })
}

/// Configuration from `BEACON_*` variables, the store in `BEACON_BUCKET`, the client stack; and
/// the shared table (`BEACON_QUOTA_TABLE`), which also keeps the batch pool.
async fn services_from_env(stats: ClientStats) -> Result<(Services, Option<String>), InitError> {
    let mut config = Config::load(None).map_err(|e| InitError(e.to_string()))?;
    let table = config.quota.shared_table.clone();
    if !config.quota.is_known() && config.quota.shared_table.take().is_some() {
        // No quota given at deploy time (RequestsPerMinute and TokensPerMinute 0): nothing to
        // share, each instance adapts to the throttles it meets.
        tracing::info!("no requests- or tokens-per-minute quota: the rate limiter is not shared");
    }
    if std::env::var("BEACON_BUCKET").is_err() {
        return Err(InitError("BEACON_BUCKET is not set: the S3 bucket the state machine uses".into()));
    }
    // A function has no disk to keep objects on: its store is always the bucket.
    config.store.backend = beacon_pipeline::config::StoreBackend::S3;
    config.validate().map_err(|e| InitError(e.to_string()))?;
    let store = config.open_store().map_err(|e| InitError(e.to_string()))?;
    let unit_schema = beacon_pipeline::schema::unit_schema(&config).map_err(|e| InitError(e.to_string()))?;
    let llm = crate::client::build_client(&config, stats).await.map_err(|e| InitError(e.to_string()))?;
    Ok((Services { store, llm, config: Arc::new(config), unit_schema: Arc::new(unit_schema) }, table))
}
