//! The flow's Task states served by deployed Lambda functions through the Lambda Invoke API
//! (`aws-sdk-lambda`), the way Step Functions calls a function named by its ARN in `Resource`:
//! the task input is the event and the function's response is the task result. A function error
//! fails the task with the function's `errorType` as the error name (what Retry and Catch match)
//! and the function's error document as the cause; an Invoke API error fails it as
//! `Lambda.<exception>` (`Lambda.TooManyRequestsException`, ...), as Step Functions names them.
//!
//! `beacon run` uses this when `lambda.functions` names functions: the embedded engine runs the
//! deployed definition while the tasks run where they are deployed (or in a local Lambda
//! emulator, through `lambda.endpoint`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use beacon_asl::{TaskContext, TaskFailure, TaskHandler, TaskRegistry};
use serde_json::Value;

/// A Lambda client for `region`, with `endpoint` overriding the service endpoint when given.
/// The SDK does not retry: as on Step Functions, an Invoke API error (a throttle included)
/// reaches the state machine, whose Retry rules (`Lambda.TooManyRequestsException`, ...) decide.
pub async fn client(region: Option<&str>, endpoint: Option<&str>) -> Client {
    let config = aws_sdk_lambda::config::Builder::from(&crate::sdk_config(region, endpoint).await)
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// Registers one handler per function of `functions` (task name → function name or ARN), under
/// the resource the definition names it by (the function itself, see
/// `beacon_pipeline::flow::task_resource`).
pub fn register(registry: &mut TaskRegistry, client: &Client, functions: &BTreeMap<String, String>) {
    for function in functions.values() {
        registry
            .register(function.clone(), Arc::new(LambdaTask { client: client.clone(), function: function.clone() }));
    }
}

/// One deployed function, invoked synchronously.
struct LambdaTask {
    client: Client,
    function: String,
}

#[async_trait]
impl TaskHandler for LambdaTask {
    async fn invoke(&self, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
        let payload = serde_json::to_vec(&input).map_err(|e| TaskFailure::new("States.Runtime", e.to_string()))?;
        let response = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| invoke_failure(&self.function, &e))?;
        let body = response.payload().map(|b| b.as_ref()).unwrap_or(b"null");
        if response.function_error().is_some() {
            return Err(function_failure(body));
        }
        serde_json::from_slice(body).map_err(|e| {
            TaskFailure::new(
                "States.Runtime",
                format!("the function {} answered with a response that is not JSON: {e}", self.function),
            )
        })
    }
}

/// A function error as Step Functions reports it: the error document's `errorType` as the error
/// (`Lambda.Unknown` without one), the document itself as the cause.
fn function_failure(body: &[u8]) -> TaskFailure {
    let document: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = document.get("errorType").and_then(Value::as_str).filter(|e| !e.is_empty()).unwrap_or("Lambda.Unknown");
    TaskFailure::new(error, String::from_utf8_lossy(body))
}

/// An Invoke API error as `Lambda.<exception>`; transport errors are `Lambda.SdkClientException`.
fn invoke_failure<E, R>(function: &str, error: &aws_sdk_lambda::error::SdkError<E, R>) -> TaskFailure
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_lambda::error::DisplayErrorContext;
    let (code, message) = match error.as_service_error() {
        Some(service) => (
            service.code().unwrap_or("ServiceException").to_string(),
            service.message().unwrap_or("no message").to_string(),
        ),
        None => ("SdkClientException".to_string(), DisplayErrorContext(error).to_string()),
    };
    TaskFailure::new(format!("Lambda.{code}"), format!("invoking {function}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_keep_their_type_and_document() {
        let failure = function_failure(br#"{"errorType":"Beacon.Transient","errorMessage":"slow down"}"#);
        assert_eq!(failure.error, "Beacon.Transient");
        assert_eq!(failure.cause, r#"{"errorType":"Beacon.Transient","errorMessage":"slow down"}"#);
        assert_eq!(function_failure(b"oops").error, "Lambda.Unknown");
        assert_eq!(function_failure(br#"{"errorType":""}"#).error, "Lambda.Unknown");
    }
}
