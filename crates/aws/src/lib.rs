//! BEACON's AWS adapters.
//!
//! - [`DynamoLimiter`]: the rate limiter many processes and Lambdas share, one DynamoDB item per
//!   model, updated with conditional writes.
//! - [`batch_pool`]: the batch pool every Lambda instance shares through DynamoDB.
//! - [`bedrock_batch`]: Step Functions' `aws-sdk:bedrock` batch inference resources for the
//!   embedded engine, through the real `aws-sdk-bedrock` client.
//! - [`client`]: the LLM client stack a configuration asks for (shared by `beacon run` and the
//!   Lambda functions).
//! - [`lambda`]: the tasks as Lambda functions (`beacon-lambda`, one binary, `BEACON_TASK`).
//! - [`lambda_invoke`]: the flow's tasks served by deployed functions through the Lambda Invoke
//!   API (the embedded engine running the deployed definition).
//! - [`metrics`]: BEACON's metrics as CloudWatch embedded metric format lines.
//! - [`sdk_config`]: the AWS SDK configuration these adapters use (region, optional endpoint
//!   override for a local emulator).

pub mod batch_pool;
pub mod bedrock_batch;
pub mod client;
pub mod lambda;
pub mod lambda_invoke;
pub mod limiter;
pub mod metrics;

pub use limiter::{DynamoLimiter, create_limiter_table};

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The region used when none is configured and an endpoint override points at a local emulator
/// (where the region only matters for signing).
pub const FALLBACK_REGION: &str = "us-east-1";

/// Errors of the AWS adapters.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// An AWS API call failed.
    #[error("{operation} on {resource} failed: {message}")]
    Api { operation: &'static str, resource: String, message: String },
    /// Stored data could not be read back.
    #[error("{resource} holds data BEACON cannot read: {message}")]
    Corrupt { resource: String, message: String },
}

/// The AWS SDK configuration: the normal credential and region resolution, `region` and
/// `endpoint` overriding them when given (an endpoint without a region falls back to
/// [`FALLBACK_REGION`] if nothing else names one).
pub async fn sdk_config(region: Option<&str>, endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    } else if endpoint.is_some() {
        loader = loader.region(RegionProviderChain::default_provider().or_else(Region::new(FALLBACK_REGION)));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// The message of an SDK error, with its service error code when there is one.
pub fn describe<E, R>(error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_dynamodb::error::DisplayErrorContext;
    match error.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("service error"), service.message().unwrap_or("no message"))
        }
        None => DisplayErrorContext(error).to_string(),
    }
}
