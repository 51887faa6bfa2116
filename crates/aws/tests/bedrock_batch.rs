//! The `aws-sdk:bedrock` batch resources through the real aws-sdk-bedrock client against
//! `beacon sim`'s batch job API: parameters and outputs in Step Functions' PascalCase, the job's
//! statuses in order, outputs joined by record id, validation, stop and list.

use std::time::{Duration, Instant};

use beacon_asl::{TaskContext, TaskFailure, TaskRegistry};
use beacon_aws::bedrock_batch::{CREATE_JOB, GET_JOB, LIST_JOBS, STOP_JOB, register};
use beacon_pipeline::batch_jobs::BatchJobs;
use beacon_sim::{SimConfig, SimServer};
use serde_json::{Value, json};

fn ctx() -> TaskContext {
    TaskContext {
        execution_name: "e".into(),
        state_name: "S".into(),
        attempt: 1,
        key: "S@1#1".into(),
        context: Value::Null,
    }
}

struct Fixture {
    sim: SimServer,
    registry: TaskRegistry,
    jobs: BatchJobs,
    store: tempfile::TempDir,
}

impl Fixture {
    async fn start(config: SimConfig) -> Fixture {
        let store = tempfile::tempdir().unwrap();
        let config = SimConfig { batch_store_dir: Some(store.path().to_path_buf()), ..config };
        let sim = SimServer::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        let endpoint = format!("http://{}", sim.local_addr());
        let mut registry = TaskRegistry::new();
        // Any credentials do for the simulator; the region only matters for signing.
        let sdk = aws_sdk_bedrock::Config::builder()
            .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrock::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_bedrock::config::Credentials::new("test", "test", None, None, "sim"))
            .build();
        let jobs = BatchJobs::default();
        register(&mut registry, &aws_sdk_bedrock::Client::from_conf(sdk), &jobs);
        Fixture { sim, registry, jobs, store }
    }

    async fn call(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
        self.registry.get(resource).expect("registered").invoke(input, ctx()).await
    }

    /// `n` records in Anthropic Messages format under `key`.
    fn write_records(&self, key: &str, n: usize) {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                json!({
                    "recordId": format!("R{i:010}"),
                    "modelInput": {
                        "anthropic_version": "bedrock-2023-05-31",
                        "max_tokens": 200,
                        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("--- CONTENT ---\nPage {i}\nThe total is {i} yen.")}]}],
                    },
                })
                .to_string()
            })
            .collect();
        let path = self.store.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, lines.join("\n")).unwrap();
    }

    fn create_input(name: &str) -> Value {
        json!({
            "JobName": name,
            "ModelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "RoleArn": "arn:aws:iam::123456789012:role/batch",
            "InputDataConfig": {"S3InputDataConfig": {"S3InputFormat": "JSONL", "S3Uri": "s3://bucket/in/records.jsonl"}},
            "OutputDataConfig": {"S3OutputDataConfig": {"S3Uri": "s3://bucket/out/"}},
            "TimeoutDurationInHours": 24,
        })
    }

    /// Polls the job until it reaches a final status; returns every status seen, in order.
    async fn statuses_until_done(&self, arn: &str) -> (Vec<String>, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen: Vec<String> = Vec::new();
        loop {
            let job = self.call(GET_JOB, json!({"JobIdentifier": arn})).await.unwrap();
            let status = job["Status"].as_str().unwrap().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if ["Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"].contains(&status.as_str()) {
                return (seen, job);
            }
            assert!(Instant::now() < deadline, "the job did not end: {seen:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_job_moves_through_its_statuses_and_writes_outputs_by_record_id() {
    let f = Fixture::start(SimConfig { batch_step_ms: 40, batch_min_records: Some(10), ..SimConfig::default() }).await;
    f.write_records("in/records.jsonl", 12);
    let created = f.call(CREATE_JOB, Fixture::create_input("job-1")).await.unwrap();
    let arn = created["JobArn"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:bedrock:") && arn.contains(":model-invocation-job/"), "{arn}");
    let (seen, job) = f.statuses_until_done(&arn).await;
    let order = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"];
    let positions: Vec<usize> = seen.iter().map(|s| order.iter().position(|o| o == s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "statuses in order: {seen:?}");
    assert_eq!(seen.first().map(String::as_str), Some("Submitted"));
    assert_eq!(seen.last().map(String::as_str), Some("Completed"));
    assert_eq!(job["TotalRecordCount"], 12);
    assert_eq!(job["ErrorRecordCount"], 0);
    assert_eq!(job["InputDataConfig"]["S3InputDataConfig"]["S3Uri"], "s3://bucket/in/records.jsonl");
    assert!(job["EndTime"].is_string() && job["SubmitTime"].is_string());
    let by_status = f.jobs.by_status();
    assert_eq!((by_status["Completed"], by_status["Submitted"]), (1, 0), "the job counts once, as last seen");

    let job_id = arn.rsplit('/').next().unwrap();
    let out_dir = f.store.path().join("out").join(job_id);
    let output = std::fs::read_to_string(out_dir.join("records.jsonl.out")).unwrap();
    let records: Vec<Value> = output.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 12);
    for record in &records {
        let id = record["recordId"].as_str().unwrap();
        let i: usize = id[1..].parse().unwrap();
        let text = record["modelOutput"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(&format!("Page {i}")), "{id} holds its own answer: {text}");
        assert!(record["modelOutput"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json.out")).unwrap()).unwrap();
    assert_eq!(manifest["totalRecordCount"], 12);
    assert_eq!(manifest["successRecordCount"], 12);
    assert_eq!(f.sim.batch_stats().records, 12);

    let listed = f.call(LIST_JOBS, json!({"StatusEquals": "Completed"})).await.unwrap();
    assert_eq!(listed["InvocationJobSummaries"][0]["JobArn"], arn.as_str());
    let none = f.call(LIST_JOBS, json!({"NameContains": "nothing-like-it"})).await.unwrap();
    assert_eq!(none["InvocationJobSummaries"], json!([]));
}

#[tokio::test]
async fn too_few_records_fail_validation_and_bad_requests_are_bedrock_errors() {
    let f = Fixture::start(SimConfig::default()).await;
    f.write_records("in/records.jsonl", 99);
    let created = f.call(CREATE_JOB, Fixture::create_input("small")).await.unwrap();
    let (seen, job) = f.statuses_until_done(created["JobArn"].as_str().unwrap()).await;
    assert_eq!(seen, vec!["Failed"], "with no step time the job ends at the first look");
    assert!(job["Message"].as_str().unwrap().contains("(99) is below the minimum of 100"), "{job}");

    let err = f.call(CREATE_JOB, Fixture::create_input("small")).await.unwrap_err();
    assert_eq!(err.error, "Bedrock.ConflictException", "{err}");
    // With a client request token, a repeated create (a retry whose answer was lost) is the same job.
    let mut with_token = Fixture::create_input("tokened");
    with_token["ClientRequestToken"] = json!("pool-20261202T000000-abcd");
    let first = f.call(CREATE_JOB, with_token.clone()).await.unwrap();
    assert_eq!(f.call(CREATE_JOB, with_token).await.unwrap(), first);
    let mut missing = Fixture::create_input("missing");
    missing["InputDataConfig"]["S3InputDataConfig"]["S3Uri"] = json!("s3://bucket/none.jsonl");
    let err = f.call(CREATE_JOB, missing).await.unwrap_err();
    assert_eq!(err.error, "Bedrock.ValidationException");
    assert!(err.cause.contains("does not exist"), "{err}");
    let err = f
        .call(GET_JOB, json!({"JobIdentifier": "arn:aws:bedrock:us-east-1:1:model-invocation-job/nope"}))
        .await
        .unwrap_err();
    assert_eq!(err.error, "Bedrock.ResourceNotFoundException");
    let err = f.call(CREATE_JOB, json!({"JobName": "x"})).await.unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    assert!(err.cause.contains("RoleArn") || err.cause.contains("S3Uri"), "{err}");
}

#[tokio::test]
async fn a_stopped_job_ends_stopped_and_record_errors_make_it_partial() {
    let f = Fixture::start(SimConfig { batch_step_ms: 60_000, ..SimConfig::default() }).await;
    f.write_records("in/records.jsonl", 100);
    let created = f.call(CREATE_JOB, Fixture::create_input("stop-me")).await.unwrap();
    let arn = created["JobArn"].as_str().unwrap();
    f.call(STOP_JOB, json!({"JobIdentifier": arn})).await.unwrap();
    let (seen, _) = f.statuses_until_done(arn).await;
    assert_eq!(seen, vec!["Stopping", "Stopped"]);
    let err = f.call(STOP_JOB, json!({"JobIdentifier": arn})).await.unwrap_err();
    assert_eq!(err.error, "Bedrock.ValidationException", "a stopped job cannot be stopped again");

    let f = Fixture::start(SimConfig { batch_record_errors: 0.2, seed: 5, ..SimConfig::default() }).await;
    f.write_records("in/records.jsonl", 100);
    let created = f.call(CREATE_JOB, Fixture::create_input("partial")).await.unwrap();
    let (_, job) = f.statuses_until_done(created["JobArn"].as_str().unwrap()).await;
    assert_eq!(job["Status"], "PartiallyCompleted");
    let errors = job["ErrorRecordCount"].as_u64().unwrap();
    assert!((5..=40).contains(&errors), "about a fifth of the records failed: {errors}");
    assert_eq!(job["SuccessRecordCount"].as_u64().unwrap() + errors, 100);
}
