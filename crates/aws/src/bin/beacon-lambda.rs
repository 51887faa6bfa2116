//! The Lambda function of every BEACON task (`BEACON_TASK` says which): see `beacon_aws::lambda`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("BEACON_LOG"))
        .without_time()
        .init();
    beacon_aws::lambda::run().await
}
