//! `beacon deploy`: the packaged template is plain CloudFormation that cfn-lint accepts, with
//! the state machine definition the embedded engine runs; a deployment against moto's
//! CloudFormation creates the stack with the encrypted, private, TLS-only bucket, the state
//! machine from `beacon.asl.json` after substitution, the functions, and the alarms with the
//! thresholds asked for. The Lambda code is the `beacon-lambda` this build made (an x86_64
//! binary, hence `--arch x86_64`; a cargo-lambda cross build takes minutes and is not run here).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

#[path = "../../aws/tests/support/mod.rs"]
mod aws;

const STACK: &str = "beacon-deploy-test";
const DEFINITION: &str = include_str!("../../../deploy/statemachine/beacon.asl.json");

fn deploy(s: &Scratch, args: &[&str]) -> Output {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    cmd.args(["deploy", "--stack", STACK]).args(args).output().expect("run beacon deploy")
}

/// `beacon deploy` to moto with this build's `beacon-lambda`, and `extra`.
fn deploy_to_moto(s: &Scratch, moto: &aws::Moto, extra: &[&str]) -> Output {
    let binary = lambda_binary().display().to_string();
    let base =
        ["--region", "us-east-1", "--endpoint", &moto.endpoint, "--arch", host_arch(), "--lambda-binary", &binary];
    deploy(s, &[&base[..], &["--poll-seconds", "1"], extra].concat())
}

fn other_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") { "x86_64" } else { "arm64" }
}

#[test]
fn a_dry_run_writes_plain_cloudformation_the_definition_and_the_code_and_calls_nothing() {
    let s = Scratch::new();
    let binary = lambda_binary().display().to_string();
    // No endpoint, no credentials that work: a dry run calls nothing.
    let out = deploy(&s, &["--dry-run", "--arch", host_arch(), "--lambda-binary", &binary, "--model", "m-1"]);
    assert_exit(&out, 0);
    let dir = s.path("deploy-out").join(STACK);
    let written: Vec<PathBuf> = stdout(&out).lines().map(|l| s.path(l)).collect();
    assert_eq!(written.len(), 4, "{}", stdout(&out));
    assert!(written.iter().all(|p| p.starts_with(&dir) && p.is_file()), "{written:?}");

    let template: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("template.json")).unwrap()).unwrap();
    assert!(template.get("Transform").is_none() && template.get("Globals").is_none());
    let resources = template["Resources"].as_object().unwrap();
    assert!(resources.values().all(|r| !r["Type"].as_str().unwrap().starts_with("AWS::Serverless::")));
    let functions: Vec<&Value> = resources.values().filter(|r| r["Type"] == "AWS::Lambda::Function").collect();
    assert_eq!(functions.len(), 7);
    let zip_name = written.iter().find(|p| p.extension().is_some_and(|e| e == "zip")).unwrap();
    for function in &functions {
        let code = &function["Properties"]["Code"];
        assert_eq!(code["S3Bucket"], serde_json::json!({"Ref": "ArtifactsBucket"}));
        assert!(zip_name.ends_with(code["S3Key"].as_str().unwrap().rsplit('/').next().unwrap()));
        assert_eq!(function["Properties"]["Runtime"], "provided.al2023");
        assert!(function["Properties"]["Environment"]["Variables"]["BEACON_TASK"].is_string());
        assert!(function["Properties"]["Environment"]["Variables"]["BEACON_BUCKET"].is_object(), "globals merged");
    }
    // The definition is the file the embedded engine runs, byte for byte.
    let machine = &resources["StateMachine"]["Properties"];
    let key = machine["DefinitionS3Location"]["Key"].as_str().unwrap();
    let uploaded = std::fs::read_to_string(dir.join(key.rsplit('/').next().unwrap())).unwrap();
    assert_eq!(uploaded, DEFINITION);
    assert!(machine["DefinitionSubstitutions"]["LlmProcessorFunctionArn"].is_object());
    // The zip holds this build's beacon-lambda.
    assert!(std::fs::metadata(zip_name).unwrap().len() > 1000);
    let parameters: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("parameters.json")).unwrap()).unwrap();
    let parameters: BTreeMap<&str, &str> = parameters
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ParameterKey"].as_str().unwrap(), p["ParameterValue"].as_str().unwrap()))
        .collect();
    assert_eq!(parameters["ModelId"], "m-1");
    assert_eq!(parameters["Architecture"], host_arch());

    // cfn-lint accepts the packaged template as it is.
    if let Some(cfn_lint) = venv_tool("cfn-lint") {
        let lint = Command::new(cfn_lint).arg(dir.join("template.json")).output().unwrap();
        assert!(lint.status.success(), "cfn-lint:\n{}{}", stdout(&lint), stderr(&lint));
    }
}

#[test]
fn a_binary_for_the_wrong_architecture_an_unknown_parameter_or_a_bad_stack_name_is_refused() {
    let s = Scratch::new();
    let binary = lambda_binary().display().to_string();
    let out = deploy(&s, &["--dry-run", "--arch", other_arch(), "--lambda-binary", &binary]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains(&format!("built for {}", host_arch())), "{}", stderr(&out));

    let out = deploy(&s, &["--dry-run", "--arch", host_arch(), "--lambda-binary", &binary, "--parameter", "Nope=1"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no parameter Nope") && stderr(&out).contains("LlmProcessorMemory"));

    let mut cmd = s.beacon();
    let out = cmd.args(["deploy", "--stack", "9-lives", "--dry-run"]).output().unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("invalid stack name"));

    // Without a prebuilt binary it builds in a checkout, and says so when it is not in one.
    let out = deploy(&s, &["--dry-run", "--arch", host_arch()]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("not a BEACON checkout"), "{}", stderr(&out));
    assert!(!s.path("deploy-out").join(STACK).join("template.json").exists());
}

/// The values `deployed` has where `template` has `${Name}` placeholders; panics where the
/// text around them differs.
fn substitutions(template: &str, deployed: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut rest = deployed;
    let mut pieces = template.split("${").peekable();
    let first = pieces.next().unwrap();
    assert!(rest.starts_with(first), "the definitions differ at the start");
    rest = &rest[first.len()..];
    for piece in pieces {
        let name_end = piece.find('}').unwrap();
        let (name, literal) = (&piece[..name_end], &piece[name_end + 1..]);
        if !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            // Not a placeholder (`${...}` in the comment): the text is kept.
            let kept = format!("${{{piece}");
            assert!(rest.starts_with(&kept), "the definitions differ near ${{{name}}}");
            rest = &rest[kept.len()..];
            continue;
        }
        // The value runs to the literal text after the placeholder (never empty but at the end:
        // placeholders are never adjacent).
        let end = if literal.is_empty() { rest.len() } else { rest.find(literal).expect("the text after it follows") };
        let value = rest[..end].to_string();
        assert!(!value.contains("${"), "{name} was not substituted");
        if let Some(previous) = values.insert(name.to_string(), value.clone()) {
            assert_eq!(previous, value, "{name} substituted two ways");
        }
        rest = &rest[end + literal.len()..];
    }
    assert!(rest.is_empty(), "the deployed definition has more text at the end");
    values
}

#[test]
fn beacon_deploy_creates_the_stack_on_moto_with_the_definition_the_bucket_rules_and_the_alarms_and_its_executions_read_back()
 {
    let Some(moto) = aws::Moto::start() else { return };
    let s = Scratch::new();
    let out = deploy_to_moto(
        &s,
        &moto,
        &[
            "--model",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "--alarm-email",
            "ops@example.com",
            "--parameter",
            "FailedExecutionsThreshold=3",
            "--parameter",
            "DistributedThreshold=50",
        ],
    );
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("creating the artifacts bucket") && err.contains(&format!("stack {STACK} created")), "{err}");
    assert!(err.contains("CREATE_COMPLETE"), "progress from the stack events:\n{err}");
    let outputs: BTreeMap<String, String> =
        stdout(&out).lines().filter_map(|l| l.split_once('\t')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for key in ["BucketName", "StateMachineArn", "RateLimitTableName", "AlarmTopicArn", "DashboardUrl"] {
        assert!(outputs.contains_key(key), "output {key} missing: {}", stdout(&out));
    }

    let state = moto.boto3(&format!(
        r#"
s3 = boto3.client("s3")
bucket = "{bucket}"
lambdas = boto3.client("lambda").list_functions()["Functions"]
print(json.dumps({{
    "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
    "public_access": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
    "policy": json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]),
    "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
    "definition": boto3.client("stepfunctions").describe_state_machine(stateMachineArn="{machine}")["definition"],
    "alarms": boto3.client("cloudwatch").describe_alarms()["MetricAlarms"],
    "functions": [{{"name": f["FunctionName"], "arn": f["FunctionArn"], "arch": f.get("Architectures"),
                   "runtime": f["Runtime"], "env": f["Environment"]["Variables"]}} for f in lambdas],
    "topic": boto3.client("sns").get_topic_attributes(TopicArn="{topic}")["Attributes"],
}}, default=str))
"#,
        bucket = outputs["BucketName"],
        machine = outputs["StateMachineArn"],
        topic = outputs["AlarmTopicArn"],
    ));

    // The bucket: encrypted, private, TLS only, intermediate prefixes expiring.
    assert_eq!(state["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256");
    for flag in ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"] {
        assert_eq!(state["public_access"][flag], true, "{flag}");
    }
    let deny = &state["policy"]["Statement"][0];
    assert_eq!(
        (deny["Effect"].as_str(), deny["Condition"]["Bool"]["aws:SecureTransport"].as_str()),
        (Some("Deny"), Some("false"))
    );
    let expiring: Vec<&str> = state["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Expiration"]["Days"] == 7)
        .map(|r| r["Filter"]["Prefix"].as_str().unwrap())
        .collect();
    assert_eq!(expiring, ["units/", "results/", "batch/", "map-runs/"]);

    // The functions: one per task, the binary's architecture, the task in BEACON_TASK.
    let functions = state["functions"].as_array().unwrap();
    let tasks = beacon_pipeline::tasks::resources::TASKS;
    assert_eq!(functions.len(), tasks.len());
    let mut arn_of_task = BTreeMap::new();
    for function in functions {
        let task = function["env"]["BEACON_TASK"].as_str().unwrap();
        assert!(tasks.contains(&task));
        assert_eq!(function["name"].as_str().unwrap(), format!("{STACK}-{task}"));
        assert_eq!(function["arch"], serde_json::json!([host_arch()]));
        assert_eq!(function["runtime"], "provided.al2023");
        assert_eq!(function["env"]["BEACON_BUCKET"].as_str(), Some(outputs["BucketName"].as_str()));
        arn_of_task.insert(task.to_string(), function["arn"].as_str().unwrap().to_string());
    }

    // The state machine: beacon.asl.json, each placeholder filled from the stack.
    let values = substitutions(DEFINITION, state["definition"].as_str().unwrap());
    for (placeholder, task) in [
        ("DocumentProcessorFunctionArn", "document-processor"),
        ("LlmProcessorFunctionArn", "llm-processor"),
        ("UnitFailureRecorderFunctionArn", "record-unit-failure"),
        ("ResultIntegratorFunctionArn", "result-integrator"),
        ("BatchPreparerFunctionArn", "batch-prepare"),
        ("BatchCollectorFunctionArn", "batch-collect"),
        ("BatchPoolFunctionArn", "batch-pool"),
    ] {
        assert_eq!(values[placeholder], arn_of_task[task], "{placeholder}");
    }
    assert_eq!(values["BucketName"], outputs["BucketName"]);
    assert_eq!(values["ModelId"], "anthropic.claude-3-5-haiku-20241022-v1:0");
    assert_eq!(values["DistributedThreshold"], "50");
    assert_eq!(values["BatchThreshold"], "100", "template default");
    assert!(values["BatchRoleArn"].starts_with("arn:aws:iam::"), "{}", values["BatchRoleArn"]);

    // The alarms: the seed's three, Bedrock throttling and failed units, all to the topic.
    let alarms: BTreeMap<&str, &Value> =
        state["alarms"].as_array().unwrap().iter().map(|a| (a["MetricName"].as_str().unwrap(), a)).collect();
    let metrics: Vec<&str> = alarms.keys().copied().collect();
    assert_eq!(
        metrics,
        ["ExecutionThrottled", "ExecutionTime", "ExecutionsFailed", "InvocationThrottles", "UnitsFailed"]
    );
    assert_eq!(alarms["ExecutionsFailed"]["Threshold"], 3.0, "the threshold given");
    assert_eq!(alarms["ExecutionThrottled"]["Threshold"], 10.0, "the template default");
    assert_eq!(alarms["InvocationThrottles"]["Dimensions"][0]["Value"], "anthropic.claude-3-5-haiku-20241022-v1:0");
    for alarm in alarms.values() {
        assert_eq!(alarm["AlarmActions"], serde_json::json!([outputs["AlarmTopicArn"]]));
    }
    assert!(state["topic"]["KmsMasterKeyId"].as_str().is_some_and(|k| !k.is_empty()), "the topic is encrypted");

    // Its executions, read through Step Functions: one started as an upload would start it.
    let started = moto.boto3(&format!(
        r#"
sfn = boto3.client("stepfunctions")
run = sfn.start_execution(stateMachineArn="{machine}", name="upload-1",
    input=json.dumps({{"document": {{"key": "uploads/report.pdf", "name": "uploads/report.pdf"}}, "options": {{}}}}))
print(json.dumps(run["executionArn"]))
"#,
        machine = outputs["StateMachineArn"]
    ));
    let aws_args = ["--engine", "aws", "--stack", STACK, "--region", "us-east-1", "--endpoint", &moto.endpoint];
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    let out = cmd.args(["executions", "list", "--json"]).args(aws_args).output().unwrap();
    assert_exit(&out, 0);
    let listed: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 1, "{}", stdout(&out));
    assert_eq!((listed[0]["name"].as_str(), listed[0]["arn"].as_str()), (Some("upload-1"), started.as_str()));
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    let out = cmd.args(["executions", "show", "upload-1", "--json", "--history"]).args(aws_args).output().unwrap();
    assert_exit(&out, 0);
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["input"]["document"]["key"], "uploads/report.pdf");
    assert_eq!(shown["status"], listed[0]["status"]);
    assert!(shown["events"].is_array());
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    let out = cmd.args(["executions", "show", "no-such-run"]).args(aws_args).output().unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no execution no-such-run"), "{}", stderr(&out));

    // beacon run --engine aws --detach: the document goes where the embedded engine puts it
    // (documents/<sha256>/source, outside the uploads rule) and an execution starts with the
    // input the embedded engine gives its own.
    let document = repo_root().join("samples/operations-review.pdf");
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    let out = cmd
        .arg("run")
        .arg(&document)
        .args(["--engine", "aws", "--detach", "--strategy", "distributed", "--stack", STACK])
        .args(["--region", "us-east-1", "--aws-endpoint", &moto.endpoint])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let execution = stdout(&out).trim().to_string();
    assert!(stderr(&out).contains(&format!("beacon executions show {execution} --engine aws")), "{}", stderr(&out));
    let uploaded = moto.boto3(&format!(
        r#"
import hashlib
source = open("{path}", "rb").read()
digest = hashlib.sha256(source).hexdigest()
stored = boto3.client("s3").get_object(Bucket="{bucket}", Key=f"documents/{{digest}}/source")["Body"].read()
arn = "{machine}".replace(":stateMachine:", ":execution:") + ":{execution}"
described = boto3.client("stepfunctions").describe_execution(executionArn=arn)
print(json.dumps({{"same": stored == source, "digest": digest, "input": json.loads(described["input"])}}))
"#,
        path = document.display(),
        bucket = outputs["BucketName"],
        machine = outputs["StateMachineArn"],
    ));
    assert_eq!(uploaded["same"], true);
    assert_eq!(
        uploaded["input"],
        serde_json::json!({
            "document": {"key": format!("documents/{}/source", uploaded["digest"].as_str().unwrap()), "name": "operations-review.pdf"},
            "options": {"model": "anthropic.claude-3-5-haiku-20241022-v1:0", "batchAvailable": true, "strategy": "distributed"},
        })
    );
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd);
    let out = cmd.args(["executions", "list", "--json"]).args(aws_args).output().unwrap();
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));

    // A second deploy updates the stack through a change set: the parameter given changes, the
    // ones not given keep their values (UsePreviousValue), not the template's defaults.
    let out = deploy_to_moto(&s, &moto, &["--parameter", "FailedExecutionsThreshold=5"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains(&format!("stack {STACK} updated")), "{}", stderr(&out));
    let updated = moto.boto3(&format!(
        r#"
alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
print(json.dumps({{
    "failed": [a["Threshold"] for a in alarms if a["MetricName"] == "ExecutionsFailed"],
    "definition": boto3.client("stepfunctions").describe_state_machine(stateMachineArn="{machine}")["definition"],
}}))
"#,
        machine = outputs["StateMachineArn"]
    ));
    assert_eq!(updated["failed"], serde_json::json!([5.0]));
    let kept = substitutions(DEFINITION, updated["definition"].as_str().unwrap());
    assert_eq!(kept["DistributedThreshold"], "50");
    assert_eq!(kept["ModelId"], "anthropic.claude-3-5-haiku-20241022-v1:0");

    // --engine aws needs a stack; --detach needs --engine aws.
    let mut cmd = s.beacon();
    let out = cmd.arg("run").arg(&document).args(["--engine", "aws"]).output().unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--stack"), "{}", stderr(&out));
    let mut cmd = s.beacon();
    let out = cmd.arg("run").arg(&document).arg("--detach").output().unwrap();
    assert_exit(&out, 2);
}

#[test]
fn provisioned_throughput_is_bought_only_with_yes_after_its_cost_is_said_and_the_stack_runs_on_it() {
    let Some(moto) = aws::Moto::start() else { return };
    // The simulator's Bedrock control plane: a provisioned model is in service after 50 ms.
    let sim = Sim::start(&["--batch-step-ms", "50"]);
    let s = Scratch::new();
    let sim_endpoint = sim.endpoint();
    let args = [
        "--model",
        "anthropic.claude-v2",
        "--provisioned-units",
        "2",
        "--commitment",
        "1month",
        "--provisioned-unit-price",
        "20",
        "--bedrock-endpoint",
        &sim_endpoint,
    ];
    let stacks = || {
        moto.boto3(
            "print(json.dumps([s['StackName'] for s in boto3.client('cloudformation').describe_stacks()['Stacks']]))",
        )
    };

    // Without --yes: what it costs, and nothing bought or deployed.
    let out = deploy_to_moto(&s, &moto, &args);
    assert_exit(&out, 2);
    let said = stderr(&out);
    assert!(said.contains("2 model unit(s) of anthropic.claude-v2"), "{said}");
    assert!(said.contains("$40.00 an hour") && said.contains("$29200.00 for the term"), "{said}");
    assert!(said.contains("add --yes"), "{said}");
    assert_eq!(stacks(), serde_json::json!([]));

    // With --yes: bought, in service, and the stack's model.
    let out = deploy_to_moto(&s, &moto, &[&args[..], &["--yes"]].concat());
    assert_exit(&out, 0);
    let said = stderr(&out);
    let arn = said
        .split_whitespace()
        .find(|w| w.starts_with("arn:aws:bedrock:") && w.contains(":provisioned-model/"))
        .unwrap_or_else(|| panic!("no provisioned model ARN in:\n{said}"))
        .to_string();
    let deployed = moto.boto3(&format!(
        r#"
stack = boto3.client("cloudformation").describe_stacks(StackName="{STACK}")["Stacks"][0]
machine = [o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "StateMachineArn"][0]
print(json.dumps({{
    "parameter": [p["ParameterValue"] for p in stack["Parameters"] if p["ParameterKey"] == "ProvisionedModelArn"][0],
    "definition": boto3.client("stepfunctions").describe_state_machine(stateMachineArn=machine)["definition"],
}}))
"#
    ));
    assert_eq!(deployed["parameter"], arn.as_str());
    let values = substitutions(DEFINITION, deployed["definition"].as_str().unwrap());
    assert_eq!(values["ModelId"], arn, "the flow runs on the provisioned model");
}
