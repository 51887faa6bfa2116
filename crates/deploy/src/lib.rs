//! BEACON on a deployed AWS stack, from this machine: `beacon deploy` (the template and the
//! Lambda code to a CloudFormation stack), `beacon run --engine aws` ([`remote_run`]) and
//! `beacon executions --engine aws` ([`executions`]). Apart from `beacon_aws` so that the Lambda
//! functions do not link the CloudFormation and Step Functions SDKs they never call.
//!
//! Deploying:
//! 1. [`package`]: the template (`deploy/template.yaml`, built into the binary, or a file)
//!    becomes plain CloudFormation ([`template`]), and the Lambda zip is built with cargo-lambda
//!    or taken prebuilt ([`artifact`]).
//! 2. [`write_dry_run`] writes them to a directory and calls nothing; [`deploy`] uploads them to
//!    an artifacts bucket (its own small stack, created once per account and region), then
//!    creates or updates the stack through a change set, with progress from the stack's events
//!    ([`stack`]).

pub mod artifact;
pub mod executions;
pub mod provisioned;
pub mod quota;
pub mod remote_run;
pub mod stack;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::SdkConfig;
use serde_json::{Value, json};

pub use artifact::Arch;
pub use stack::{Rollout, StackState, Stacks, TemplateLocation};

/// The template the binary was built with: deploying never needs the source tree.
pub const EMBEDDED_TEMPLATE: &str = include_str!("../../../deploy/template.yaml");
/// Where the embedded template's `DefinitionUri` points.
const EMBEDDED_DEFINITION_URI: &str = "statemachine/beacon.asl.json";

/// The stack holding the bucket deployments upload to, one per account and region.
pub const ARTIFACTS_STACK: &str = "beacon-deploy-artifacts";

/// Why a deployment failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The template cannot be packaged.
    #[error("template: {0}")]
    Template(String),
    /// The Lambda zip cannot be built or used.
    #[error("{0}")]
    Artifact(String),
    /// An AWS call failed.
    #[error("{operation} failed: {message}")]
    Aws { operation: &'static str, message: String },
    /// The stack did not reach the state asked for.
    #[error("{0}")]
    Stack(String),
    /// Writing the packaged files or uploading them failed.
    #[error("{0}")]
    Io(String),
}

/// A file the packaged template refers to, uploaded to the artifacts bucket.
pub struct Upload {
    /// `<dir>/<stem>-<sha256 prefix>.<ext>`: a new content is a new key.
    pub key: String,
    pub bytes: Vec<u8>,
}

impl Upload {
    pub fn new(dir: &str, stem: &str, ext: &str, bytes: Vec<u8>) -> Upload {
        use sha2::Digest;
        let digest: String = sha2::Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
        Upload { key: format!("{dir}/{stem}-{digest}.{ext}"), bytes }
    }

    /// The last part of the key, for files written locally.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("key", &self.key).field("bytes", &self.bytes.len()).finish()
    }
}

/// Which template to deploy.
pub enum TemplateSource {
    /// The one built into the binary, with the state machine the embedded engine runs.
    Embedded,
    /// A template file; `DefinitionUri` paths are relative to it.
    File(PathBuf),
}

impl TemplateSource {
    fn text(&self) -> Result<String, DeployError> {
        match self {
            TemplateSource::Embedded => Ok(EMBEDDED_TEMPLATE.to_string()),
            TemplateSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| DeployError::Usage(format!("{}: {e}", path.display())))
            }
        }
    }
}

impl template::TemplateFiles for TemplateSource {
    fn read(&self, relative: &str) -> Result<String, DeployError> {
        match self {
            TemplateSource::Embedded if relative == EMBEDDED_DEFINITION_URI => {
                Ok(beacon_pipeline::flow::STATE_MACHINE_DEFINITION.to_string())
            }
            TemplateSource::Embedded => {
                Err(DeployError::Template(format!("the built-in template refers to {relative}, which is not built in")))
            }
            TemplateSource::File(path) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(relative);
                std::fs::read_to_string(&file).map_err(|e| DeployError::Template(format!("{}: {e}", file.display())))
            }
        }
    }
}

/// Where the Lambda code comes from.
pub enum CodeSource {
    /// Build `beacon-lambda` with cargo-lambda in this BEACON checkout.
    Build { source: PathBuf },
    /// A `bootstrap` executable already built for the architecture.
    Binary(PathBuf),
    /// A zip holding `bootstrap` (e.g. from `cargo lambda build --output-format zip`).
    Zip(PathBuf),
}

/// What to deploy.
pub struct DeployRequest {
    pub template: TemplateSource,
    pub code: CodeSource,
    pub arch: Arch,
    /// Template parameters given on the command line (`Architecture` comes from `arch`).
    pub parameters: BTreeMap<String, String>,
    /// Scratch space for builds.
    pub work_dir: PathBuf,
}

/// A template and code ready to deploy.
pub struct Packaged {
    /// Plain CloudFormation; the bucket of the uploads is a parameter.
    pub template: Value,
    /// The Lambda zip.
    pub zip: Upload,
    /// The state machine definitions.
    pub definitions: Vec<Upload>,
    /// The parameters to pass, except the artifacts bucket.
    pub parameters: BTreeMap<String, String>,
    /// Every parameter the template declares (those not passed keep their value on an update).
    pub declared: Vec<String>,
}

impl Packaged {
    /// The template as CloudFormation reads it.
    pub fn template_text(&self) -> String {
        serde_json::to_string_pretty(&self.template).unwrap_or_default()
    }

    /// The parameters with the uploads in `bucket`.
    pub fn parameters_with_bucket(&self, bucket: &str) -> BTreeMap<String, String> {
        let mut parameters = self.parameters.clone();
        parameters.insert(template::ARTIFACTS_BUCKET_PARAMETER.into(), bucket.into());
        parameters
    }

    /// Everything to upload beside the template.
    pub fn uploads(&self) -> impl Iterator<Item = &Upload> {
        std::iter::once(&self.zip).chain(&self.definitions)
    }
}

/// Packages the template and the Lambda code; checks the parameters against the template.
pub fn package(request: &DeployRequest) -> Result<Packaged, DeployError> {
    let sam = template::parse(&request.template.text()?)?;
    let declared: Vec<String> =
        sam.get("Parameters").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let mut parameters = request.parameters.clone();
    if declared.iter().any(|p| p == "Architecture") {
        parameters.insert("Architecture".into(), request.arch.lambda_name().into());
    }
    if let Some(unknown) = parameters.keys().find(|k| !declared.contains(k)) {
        return Err(DeployError::Usage(format!(
            "the template has no parameter {unknown}; it has: {}",
            declared.join(", ")
        )));
    }
    // The template first: its errors come before a build of minutes.
    template::package(sam.clone(), &request.template, "")?;
    let zip = match &request.code {
        CodeSource::Build { source } => artifact::build(source, request.arch, &request.work_dir)?,
        CodeSource::Binary(path) => artifact::from_binary(path, request.arch)?,
        CodeSource::Zip(path) => artifact::from_zip(path, request.arch)?,
    };
    let (template, definitions) = template::package(sam, &request.template, &zip.key)?;
    Ok(Packaged { template, zip, definitions, parameters, declared })
}

/// Writes the packaged template, the uploads and the parameters under `dir`; returns the paths.
pub fn write_dry_run(packaged: &Packaged, dir: &Path) -> Result<Vec<PathBuf>, DeployError> {
    let io = |path: &Path, e: std::io::Error| DeployError::Io(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let template = dir.join("template.json");
    std::fs::write(&template, packaged.template_text()).map_err(|e| io(&template, e))?;
    let mut written = vec![template];
    for upload in packaged.uploads() {
        let path = dir.join(upload.file_name());
        std::fs::write(&path, &upload.bytes).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    // In the form `aws cloudformation create-stack --parameters file://...` reads.
    let parameters = dir.join("parameters.json");
    let list: Vec<Value> = packaged
        .parameters_with_bucket("<artifacts bucket>")
        .into_iter()
        .map(|(k, v)| json!({ "ParameterKey": k, "ParameterValue": v }))
        .collect();
    std::fs::write(&parameters, serde_json::to_string_pretty(&list).unwrap_or_default())
        .map_err(|e| io(&parameters, e))?;
    written.push(parameters);
    Ok(written)
}

/// Options of a deployment.
pub struct DeployOptions {
    /// An existing bucket for the artifacts instead of the [`ARTIFACTS_STACK`] one.
    pub artifacts_bucket: Option<String>,
    /// An endpoint instead of AWS's (LocalStack, moto).
    pub endpoint: Option<String>,
    pub poll: std::time::Duration,
    pub timeout: std::time::Duration,
}

/// The result of [`deploy`].
pub struct Deployed {
    pub rollout: Rollout,
    pub stack: StackState,
    pub artifacts_bucket: String,
}

/// Uploads the packaged code and template and creates or updates `stack`.
pub async fn deploy(
    packaged: &Packaged,
    stack: &str,
    sdk: &SdkConfig,
    options: &DeployOptions,
    progress: &dyn Fn(&str),
) -> Result<Deployed, DeployError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| DeployError::Usage("no AWS region: pass --region or set AWS_REGION".into()))?;
    let stacks =
        Stacks { client: aws_sdk_cloudformation::Client::new(sdk), poll: options.poll, timeout: options.timeout };
    let bucket = match &options.artifacts_bucket {
        Some(bucket) => bucket.clone(),
        None => artifacts_bucket(&stacks, progress).await?,
    };
    let store = s3_store(sdk, &bucket, &region, options.endpoint.as_deref())?;
    let template_key = format!("templates/{stack}-{}.json", unix_millis());
    for upload in packaged.uploads() {
        progress(&format!("uploading {} ({} bytes) to s3://{bucket}", upload.key, upload.bytes.len()));
        store.put(&upload.key, upload.bytes.clone()).await.map_err(|e| DeployError::Io(e.to_string()))?;
    }
    store.put(&template_key, packaged.template_text()).await.map_err(|e| DeployError::Io(e.to_string()))?;
    let url = format!("https://{bucket}.s3.{region}.amazonaws.com/{template_key}");
    let parameters = packaged.parameters_with_bucket(&bucket);
    let (rollout, state) =
        stacks.deploy(stack, TemplateLocation::Url(url), &parameters, &packaged.declared, progress).await?;
    Ok(Deployed { rollout, stack: state, artifacts_bucket: bucket })
}

/// The artifacts bucket, its stack created on first use.
async fn artifacts_bucket(stacks: &Stacks, progress: &dyn Fn(&str)) -> Result<String, DeployError> {
    let existing = stacks.describe(ARTIFACTS_STACK).await?;
    let state = match existing {
        Some(state) if state.outputs.contains_key("BucketName") => state,
        _ => {
            progress(&format!("creating the artifacts bucket (stack {ARTIFACTS_STACK}, once per account and region)"));
            let body = serde_json::to_string(&artifacts_template()).unwrap_or_default();
            stacks.deploy(ARTIFACTS_STACK, TemplateLocation::Body(body), &BTreeMap::new(), &[], progress).await?.1
        }
    };
    state
        .outputs
        .get("BucketName")
        .cloned()
        .ok_or_else(|| DeployError::Stack(format!("stack {ARTIFACTS_STACK} has no BucketName output")))
}

/// The artifacts bucket: encrypted, private, TLS only; old templates expire.
fn artifacts_template() -> Value {
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Artifacts of beacon deploy: Lambda zips and packaged templates.",
        "Resources": {
            "ArtifactsBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": true, "BlockPublicPolicy": true,
                        "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
                    "LifecycleConfiguration": {"Rules": [
                        {"Id": "expire-templates", "Status": "Enabled", "Prefix": "templates/", "ExpirationInDays": 30}]}
                }
            },
            "ArtifactsBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "ArtifactsBucket"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                        "Resource": [{"Fn::GetAtt": ["ArtifactsBucket", "Arn"]},
                                     {"Fn::Sub": "${ArtifactsBucket.Arn}/*"}],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
                }
            }
        },
        "Outputs": {"BucketName": {"Value": {"Ref": "ArtifactsBucket"}}}
    })
}

/// A store on `bucket` with the SDK's credentials (profiles, SSO, roles), not only the
/// environment variables `object_store` reads on its own.
pub(crate) fn s3_store(
    sdk: &SdkConfig,
    bucket: &str,
    region: &str,
    endpoint: Option<&str>,
) -> Result<beacon_store::Store, DeployError> {
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| DeployError::Usage("no AWS credentials provider is configured".into()))?;
    let provider: object_store::aws::AwsCredentialProvider = Arc::new(SdkCredentials(credentials));
    beacon_store::Store::s3_with_credentials(bucket, Some(region), endpoint, provider)
        .map_err(|e| DeployError::Io(e.to_string()))
}

/// The AWS SDK's credentials provider as `object_store` asks for credentials.
#[derive(Debug)]
struct SdkCredentials(aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = object_store::aws::AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<object_store::aws::AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let credentials = self.0.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: format!("no AWS credentials: {e}").into(),
        })?;
        Ok(Arc::new(object_store::aws::AwsCredential {
            key_id: credentials.access_key_id().to_string(),
            secret_key: credentials.secret_access_key().to_string(),
            token: credentials.session_token().map(str::to_string),
        }))
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
