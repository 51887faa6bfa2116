//! Step Functions' AWS SDK integration for Bedrock batch inference, on the embedded engine.
//!
//! On AWS, a Task whose `Resource` is `arn:aws:states:::aws-sdk:bedrock:createModelInvocationJob`
//! (or `getModelInvocationJob`, `listModelInvocationJobs`, `stopModelInvocationJob`) calls the
//! Bedrock API with the state's `Parameters`, whose keys are the API's members in PascalCase,
//! and returns the response in PascalCase; a service error fails the task as
//! `Bedrock.<ExceptionName>`. [`register`] serves the same resources to BEACON's interpreter
//! through the real `aws-sdk-bedrock` client (pointed at `beacon sim` with an endpoint
//! override), so the state machine's batch branch runs unchanged on both engines.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_bedrock::Client;
use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::primitives::DateTime;
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig, ModelInvocationJobS3InputDataConfig,
    ModelInvocationJobS3OutputDataConfig, ModelInvocationJobStatus, S3InputFormat, SortOrder,
};
use beacon_asl::{TaskContext, TaskFailure, TaskHandler, TaskRegistry};
use beacon_pipeline::batch_jobs::BatchJobs;
use serde_json::{Map, Value, json};

/// `CreateModelInvocationJob` as a Step Functions resource.
pub const CREATE_JOB: &str = "arn:aws:states:::aws-sdk:bedrock:createModelInvocationJob";
/// `GetModelInvocationJob` as a Step Functions resource.
pub const GET_JOB: &str = "arn:aws:states:::aws-sdk:bedrock:getModelInvocationJob";
/// `ListModelInvocationJobs` as a Step Functions resource.
pub const LIST_JOBS: &str = "arn:aws:states:::aws-sdk:bedrock:listModelInvocationJobs";
/// `StopModelInvocationJob` as a Step Functions resource.
pub const STOP_JOB: &str = "arn:aws:states:::aws-sdk:bedrock:stopModelInvocationJob";

#[derive(Clone, Copy)]
enum Operation {
    Create,
    Get,
    List,
    Stop,
}

struct BedrockTask {
    client: Client,
    operation: Operation,
    jobs: BatchJobs,
}

/// Registers the four Bedrock batch resources, served by `client`; the statuses of the jobs
/// they create and get are recorded in `jobs`.
pub fn register(registry: &mut TaskRegistry, client: &Client, jobs: &BatchJobs) {
    for (resource, operation) in [
        (CREATE_JOB, Operation::Create),
        (GET_JOB, Operation::Get),
        (LIST_JOBS, Operation::List),
        (STOP_JOB, Operation::Stop),
    ] {
        registry.register(resource, Arc::new(BedrockTask { client: client.clone(), operation, jobs: jobs.clone() }));
    }
}

/// A client for the Bedrock control plane (region and endpoint as [`crate::sdk_config`]).
pub async fn client(region: Option<&str>, endpoint: Option<&str>) -> Client {
    Client::new(&crate::sdk_config(region, endpoint).await)
}

#[async_trait]
impl TaskHandler for BedrockTask {
    async fn invoke(&self, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        match self.operation {
            Operation::Create => {
                let created = create(&self.client, &input).await?;
                if let Some(arn) = created["JobArn"].as_str() {
                    self.jobs.saw(arn, "Submitted");
                }
                Ok(created)
            }
            Operation::Get => {
                let job = get(&self.client, &input).await?;
                if let (Some(arn), Some(status)) = (job["JobArn"].as_str(), job["Status"].as_str()) {
                    self.jobs.saw(arn, status);
                }
                Ok(job)
            }
            Operation::List => list(&self.client, &input).await,
            Operation::Stop => stop(&self.client, &input).await,
        }
    }
}

/// A parameter Step Functions would refuse before calling: `States.Runtime`, as AWS names a
/// parameter validation failure of an SDK integration.
fn parameter_error(operation: &str, message: impl std::fmt::Display) -> TaskFailure {
    TaskFailure::new("States.Runtime", format!("{operation}: {message}"))
}

fn text<'a>(input: &'a Value, pointer: &str, operation: &str) -> Result<&'a str, TaskFailure> {
    input
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| parameter_error(operation, format!("the parameter {} is required (a string)", &pointer[1..])))
}

/// A failed call as Step Functions reports it: `Bedrock.<ExceptionName>` for service errors;
/// a call that got no answer (connection, timeout) is `Bedrock.SdkClientException`, the AWS
/// SDKs' name for client-side failures, so a Retry can name it. (Not `States.TaskFailed`: in
/// `ErrorEquals` that name matches every error.)
fn sdk_failure<E, R>(error: SdkError<E, R>) -> TaskFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => TaskFailure::new(
            format!("Bedrock.{}", service.code().unwrap_or("BedrockException")),
            service.message().unwrap_or("no message").to_string(),
        ),
        None => TaskFailure::new(
            "Bedrock.SdkClientException",
            format!("the Bedrock API did not answer: {}", aws_sdk_bedrock::error::DisplayErrorContext(&error)),
        ),
    }
}

fn time(t: Option<&DateTime>) -> Option<Value> {
    t.and_then(|t| t.fmt(aws_sdk_bedrock::primitives::DateTimeFormat::DateTime).ok()).map(Value::String)
}

/// Adds `key` when `value` is present, as Step Functions leaves absent members out.
fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        out.insert(key.to_string(), value);
    }
}

fn input_config(config: Option<&ModelInvocationJobInputDataConfig>) -> Option<Value> {
    let s3 = config?.as_s3_input_data_config().ok()?;
    let mut v = json!({"S3Uri": s3.s3_uri()});
    if let Some(format) = s3.s3_input_format() {
        v["S3InputFormat"] = json!(format.as_str());
    }
    Some(json!({"S3InputDataConfig": v}))
}

fn output_config(config: Option<&ModelInvocationJobOutputDataConfig>) -> Option<Value> {
    let s3 = config?.as_s3_output_data_config().ok()?;
    Some(json!({"S3OutputDataConfig": {"S3Uri": s3.s3_uri()}}))
}

async fn create(client: &Client, input: &Value) -> Result<Value, TaskFailure> {
    const OP: &str = "CreateModelInvocationJob";
    let input_s3 = ModelInvocationJobS3InputDataConfig::builder()
        .s3_uri(text(input, "/InputDataConfig/S3InputDataConfig/S3Uri", OP)?)
        .s3_input_format(S3InputFormat::from(
            input
                .pointer("/InputDataConfig/S3InputDataConfig/S3InputFormat")
                .and_then(Value::as_str)
                .unwrap_or("JSONL"),
        ))
        .build()
        .map_err(|e| parameter_error(OP, e))?;
    let output_s3 = ModelInvocationJobS3OutputDataConfig::builder()
        .s3_uri(text(input, "/OutputDataConfig/S3OutputDataConfig/S3Uri", OP)?)
        .build()
        .map_err(|e| parameter_error(OP, e))?;
    let mut request = client
        .create_model_invocation_job()
        .job_name(text(input, "/JobName", OP)?)
        .role_arn(text(input, "/RoleArn", OP)?)
        .model_id(text(input, "/ModelId", OP)?)
        .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input_s3))
        .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(output_s3));
    if let Some(token) = input.get("ClientRequestToken").and_then(Value::as_str) {
        request = request.client_request_token(token);
    }
    if let Some(hours) = input.get("TimeoutDurationInHours").and_then(Value::as_i64) {
        request = request.timeout_duration_in_hours(i32::try_from(hours).map_err(|e| parameter_error(OP, e))?);
    }
    let response = request.send().await.map_err(sdk_failure)?;
    Ok(json!({"JobArn": response.job_arn()}))
}

/// What GetModelInvocationJob and each ListModelInvocationJobs summary share.
struct JobHead<'a> {
    arn: &'a str,
    name: Option<&'a str>,
    model: &'a str,
    status: Option<&'a ModelInvocationJobStatus>,
    message: Option<&'a str>,
    submitted: &'a DateTime,
    ended: Option<&'a DateTime>,
}

impl JobHead<'_> {
    fn into_map(self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("JobArn".into(), json!(self.arn));
        put(&mut out, "JobName", self.name.map(|n| json!(n)));
        out.insert("ModelId".into(), json!(self.model));
        put(&mut out, "Status", self.status.map(|s| json!(s.as_str())));
        put(&mut out, "Message", self.message.map(|m| json!(m)));
        put(&mut out, "SubmitTime", time(Some(self.submitted)));
        put(&mut out, "EndTime", time(self.ended));
        out
    }
}

async fn get(client: &Client, input: &Value) -> Result<Value, TaskFailure> {
    let identifier = text(input, "/JobIdentifier", "GetModelInvocationJob")?;
    let job = client.get_model_invocation_job().job_identifier(identifier).send().await.map_err(sdk_failure)?;
    let mut out = JobHead {
        arn: job.job_arn(),
        name: job.job_name(),
        model: job.model_id(),
        status: job.status(),
        message: job.message(),
        submitted: job.submit_time(),
        ended: job.end_time(),
    }
    .into_map();
    out.insert("RoleArn".into(), json!(job.role_arn()));
    put(&mut out, "LastModifiedTime", time(job.last_modified_time()));
    put(&mut out, "InputDataConfig", input_config(job.input_data_config()));
    put(&mut out, "OutputDataConfig", output_config(job.output_data_config()));
    put(&mut out, "TimeoutDurationInHours", job.timeout_duration_in_hours().map(|h| json!(h)));
    put(&mut out, "JobExpirationTime", time(job.job_expiration_time()));
    put(&mut out, "TotalRecordCount", job.total_record_count().map(|n| json!(n)));
    put(&mut out, "ProcessedRecordCount", job.processed_record_count().map(|n| json!(n)));
    put(&mut out, "SuccessRecordCount", job.success_record_count().map(|n| json!(n)));
    put(&mut out, "ErrorRecordCount", job.error_record_count().map(|n| json!(n)));
    Ok(Value::Object(out))
}

async fn list(client: &Client, input: &Value) -> Result<Value, TaskFailure> {
    let mut request = client.list_model_invocation_jobs();
    if let Some(status) = input.get("StatusEquals").and_then(Value::as_str) {
        request = request.status_equals(ModelInvocationJobStatus::from(status));
    }
    if let Some(name) = input.get("NameContains").and_then(Value::as_str) {
        request = request.name_contains(name);
    }
    if let Some(max) = input.get("MaxResults").and_then(Value::as_i64) {
        request = request.max_results(i32::try_from(max).unwrap_or(i32::MAX));
    }
    if let Some(token) = input.get("NextToken").and_then(Value::as_str) {
        request = request.next_token(token);
    }
    if let Some(order) = input.get("SortOrder").and_then(Value::as_str) {
        request = request.sort_order(SortOrder::from(order));
    }
    let response = request.send().await.map_err(sdk_failure)?;
    let summaries: Vec<Value> = response
        .invocation_job_summaries()
        .iter()
        .map(|job| {
            let head = JobHead {
                arn: job.job_arn(),
                name: Some(job.job_name()),
                model: job.model_id(),
                status: job.status(),
                message: job.message(),
                submitted: job.submit_time(),
                ended: job.end_time(),
            };
            Value::Object(head.into_map())
        })
        .collect();
    let mut out = json!({"InvocationJobSummaries": summaries});
    if let Some(token) = response.next_token() {
        out["NextToken"] = json!(token);
    }
    Ok(out)
}

async fn stop(client: &Client, input: &Value) -> Result<Value, TaskFailure> {
    let identifier = text(input, "/JobIdentifier", "StopModelInvocationJob")?;
    client.stop_model_invocation_job().job_identifier(identifier).send().await.map_err(sdk_failure)?;
    Ok(json!({}))
}
