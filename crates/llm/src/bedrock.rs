//! Amazon Bedrock's Converse API through the AWS SDK for Rust.
//!
//! [`BedrockConverse`] sends one [`CompletionRequest`] as one Converse call and classifies what
//! goes wrong into [`LlmError`]s that the retry layer understands. The SDK's own retries are
//! disabled: [`crate::retry::Retrying`] retries instead, with full jitter and a throttle budget,
//! and counts every attempt in [`crate::ClientStats`] (SDK-internal retries would be invisible).
//!
//! ```no_run
//! # async fn run() -> Result<(), beacon_llm::LlmError> {
//! use beacon_llm::bedrock::BedrockConverse;
//!
//! // Real Bedrock, with the usual credential and region resolution:
//! let bedrock = BedrockConverse::new("anthropic.claude-3-haiku-20240307-v1:0", None, None).await?;
//! // `beacon sim` on this machine, with throwaway credentials:
//! let sim = BedrockConverse::builder("sim-model")
//!     .endpoint("http://127.0.0.1:4000")
//!     .static_credentials("test", "test")
//!     .build()
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput as ConverseResponse};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput, InferenceConfiguration, Message, SystemContentBlock,
};

use crate::openai::parse_retry_after;
use crate::{Completion, CompletionRequest, LlmClient, LlmError, Usage};

/// The provider name in errors.
const PROVIDER: &str = "bedrock";

/// The line between the instruction and the content in the user message; `beacon sim` looks for
/// it too.
pub const CONTENT_MARKER: &str = "--- CONTENT ---";

/// Region used with an endpoint override when none is configured: a local simulator does not
/// care, but request signing needs one.
const FALLBACK_REGION: &str = "us-east-1";

/// Default time to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time to wait for response bytes. A non-streaming Converse call answers only when the
/// model has finished writing, which takes minutes for long answers from large models.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// A Bedrock model behind the Converse API.
#[derive(Debug, Clone)]
pub struct BedrockConverse {
    client: Client,
    model_id: String,
}

impl BedrockConverse {
    /// A client for `model_id` (a model id, inference profile id or ARN).
    ///
    /// Uses the normal AWS credential and region resolution (environment, profile, SSO, IMDS).
    /// `endpoint` overrides the URL (e.g. `http://127.0.0.1:PORT` for `beacon sim`); `region`
    /// overrides the region. See [`BedrockConverse::builder`] for timeouts and credentials.
    pub async fn new(
        model_id: impl Into<String>,
        endpoint: Option<String>,
        region: Option<String>,
    ) -> Result<Self, LlmError> {
        BedrockConverse::builder(model_id).maybe_endpoint(endpoint).maybe_region(region).build().await
    }

    /// A builder with more options than [`BedrockConverse::new`].
    pub fn builder(model_id: impl Into<String>) -> BedrockConverseBuilder {
        BedrockBuilder::new(model_id)
    }

    /// The model id requests are sent to.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The region requests are signed for.
    pub fn region(&self) -> Option<&str> {
        self.client.config().region().map(Region::as_ref)
    }
}

/// Options for a Bedrock client: [`BedrockConverse`] (start with [`BedrockConverse::builder`])
/// or [`crate::invoke::BedrockInvoke`] (start with its `builder`). Both share the AWS SDK set-up:
/// SDK retries off (BEACON's retry layer retries), timeouts, normal credential and region
/// resolution unless given.
#[derive(Debug)]
pub struct BedrockBuilder<T> {
    pub(crate) model_id: String,
    endpoint: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    credentials: Option<aws_sdk_bedrockruntime::config::SharedCredentialsProvider>,
    connect_timeout: Duration,
    read_timeout: Duration,
    client: std::marker::PhantomData<fn() -> T>,
}

/// Options for [`BedrockConverse`].
pub type BedrockConverseBuilder = BedrockBuilder<BedrockConverse>;

impl<T> BedrockBuilder<T> {
    pub(crate) fn new(model_id: impl Into<String>) -> Self {
        BedrockBuilder {
            model_id: model_id.into(),
            endpoint: None,
            region: None,
            profile: None,
            credentials: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            client: std::marker::PhantomData,
        }
    }

    /// Sends requests to this URL instead of the regional Bedrock endpoint.
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        self.maybe_endpoint(Some(url.into()))
    }

    /// [`BedrockBuilder::endpoint`] when given.
    pub fn maybe_endpoint(mut self, url: Option<String>) -> Self {
        self.endpoint = url.or(self.endpoint);
        self
    }

    /// Uses this region instead of resolving one.
    pub fn region(self, region: impl Into<String>) -> Self {
        self.maybe_region(Some(region.into()))
    }

    /// [`BedrockBuilder::region`] when given.
    pub fn maybe_region(mut self, region: Option<String>) -> Self {
        self.region = region.or(self.region);
        self
    }

    /// Reads credentials and region from this profile of `~/.aws/config` instead of the default.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Signs with these fixed credentials instead of resolving any: for `beacon sim` and tests,
    /// where any credentials do.
    pub fn static_credentials(self, access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        let credentials = Credentials::new(access_key_id, secret_access_key, None, None, "beacon-static");
        self.credentials_provider(credentials)
    }

    /// Resolves credentials with this provider instead of the default chain.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(aws_sdk_bedrockruntime::config::SharedCredentialsProvider::new(provider));
        self
    }

    /// How long to wait for a connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for response bytes (default [`DEFAULT_READ_TIMEOUT`]).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The SDK client for these options, after checking the model id (`what` names the models
    /// expected, for the error). Credentials are resolved lazily, at the first request; a missing
    /// region is an error here.
    pub(crate) async fn client(&self, api: &str, what: &str) -> Result<Client, LlmError> {
        if self.model_id.trim().is_empty() {
            return Err(config_error(format!("the model id is empty: pass {what}")));
        }
        let timeouts =
            TimeoutConfig::builder().connect_timeout(self.connect_timeout).read_timeout(self.read_timeout).build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(credentials) = self.credentials.clone() {
            loader = loader.credentials_provider(credentials);
        }
        match (&self.region, &self.endpoint) {
            (Some(region), _) => loader = loader.region(Region::new(region.clone())),
            (None, Some(_)) => {
                // With an endpoint override (a simulator, a proxy) the region only matters for
                // signing, so skip the instance metadata lookup, which off EC2 only costs time.
                let mut profile_region = ProfileFileRegionProvider::builder();
                if let Some(profile) = &self.profile {
                    profile_region = profile_region.profile_name(profile);
                }
                let chain = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                    .or_else(profile_region.build())
                    .or_else(Region::new(FALLBACK_REGION));
                loader = loader.region(chain);
            }
            (None, None) => {}
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            return Err(config_error(
                "no AWS region is configured: set AWS_REGION (or a region in your AWS profile), \
                 or pass --region, e.g. --region us-east-1",
            ));
        }
        tracing::debug!(
            model_id = %self.model_id,
            region = ?sdk_config.region(),
            endpoint = ?self.endpoint,
            "Bedrock {api} client configured"
        );
        Ok(Client::new(&sdk_config))
    }
}

impl BedrockBuilder<BedrockConverse> {
    /// Resolves the configuration and creates the client.
    pub async fn build(self) -> Result<BedrockConverse, LlmError> {
        let client = self.client("Converse", "a Bedrock model id, inference profile id or ARN").await?;
        Ok(BedrockConverse { client, model_id: self.model_id })
    }
}

/// A Converse document block (PDF) or image block for `attachment`.
fn attachment_block(attachment: &crate::Attachment) -> Result<ContentBlock, LlmError> {
    use aws_sdk_bedrockruntime::primitives::Blob;
    use aws_sdk_bedrockruntime::types::{
        DocumentBlock, DocumentFormat, DocumentSource, ImageBlock, ImageFormat, ImageSource,
    };
    let invalid = |err: aws_sdk_bedrockruntime::error::BuildError| LlmError::Rejected {
        provider: PROVIDER.into(),
        kind: "InvalidRequest".into(),
        message: format!("attachment {:?}: {err}", attachment.name),
    };
    let bytes = Blob::new(attachment.bytes.clone());
    let image = |format| {
        ImageBlock::builder().format(format).source(ImageSource::Bytes(bytes.clone())).build().map(ContentBlock::Image)
    };
    match attachment.kind {
        crate::AttachmentKind::Pdf => DocumentBlock::builder()
            .format(DocumentFormat::Pdf)
            .name(&attachment.name)
            .source(DocumentSource::Bytes(bytes.clone()))
            .build()
            .map(ContentBlock::Document),
        crate::AttachmentKind::Png => image(ImageFormat::Png),
        crate::AttachmentKind::Jpeg => image(ImageFormat::Jpeg),
        crate::AttachmentKind::Gif => image(ImageFormat::Gif),
        crate::AttachmentKind::Webp => image(ImageFormat::Webp),
    }
    .map_err(invalid)
}

/// The text of the one user message: the instruction, the marker line, the label, the content.
pub fn user_message_text(request: &CompletionRequest) -> String {
    format!("{}\n{CONTENT_MARKER}\n{}\n{}", request.instruction, request.content_label, request.content)
}

#[async_trait]
impl LlmClient for BedrockConverse {
    fn name(&self) -> String {
        format!("{PROVIDER}:{}", self.model_id)
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        // Files first, then the question: how Anthropic recommends ordering long inputs.
        let mut message = Message::builder().role(ConversationRole::User);
        for attachment in &request.attachments {
            message = message.content(attachment_block(attachment)?);
        }
        let message = message.content(ContentBlock::Text(user_message_text(request))).build().map_err(|err| {
            LlmError::Rejected { provider: PROVIDER.into(), kind: "InvalidRequest".into(), message: err.to_string() }
        })?;
        let inference = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
            .temperature(request.temperature)
            .build();
        let mut call = self.client.converse().model_id(&self.model_id).messages(message).inference_config(inference);
        // Bedrock rejects empty text blocks.
        if !request.system.trim().is_empty() {
            call = call.system(SystemContentBlock::Text(request.system.clone()));
        }
        let response = call.send().await.map_err(|err| classify(&err))?;
        Ok(completion_from(response, &self.model_id))
    }
}

fn completion_from(response: ConverseResponse, model_id: &str) -> Completion {
    let text = match response.output() {
        Some(ConverseOutput::Message(message)) => {
            message.content().iter().filter_map(|block| block.as_text().ok()).map(String::as_str).collect::<String>()
        }
        _ => String::new(),
    };
    let usage = response
        .usage()
        .map(|usage| Usage {
            input_tokens: u64::try_from(usage.input_tokens).unwrap_or(0),
            output_tokens: u64::try_from(usage.output_tokens).unwrap_or(0),
        })
        .unwrap_or_default();
    Completion {
        text,
        usage,
        model: model_id.to_string(),
        stop_reason: response.stop_reason().as_str().to_string(),
        attempts: 1,
        throttles: 0,
    }
}

fn config_error(message: impl Into<String>) -> LlmError {
    LlmError::Config { provider: PROVIDER.into(), message: message.into() }
}

fn transient(message: impl Into<String>) -> LlmError {
    LlmError::Transient { provider: PROVIDER.into(), message: message.into() }
}

/// Classifies an SDK error for retrying: quotas are [`LlmError::Throttled`], server trouble and
/// the network are [`LlmError::Transient`], bad requests are [`LlmError::Rejected`], and missing
/// credentials are [`LlmError::Config`].
pub fn classify(err: &SdkError<ConverseError, HttpResponse>) -> LlmError {
    classify_sdk_error(err, modeled_parts)
}

/// The SDK error classification for any Bedrock runtime operation; `modeled` names the
/// operation's modeled exceptions (errors built in code carry no metadata code).
pub(crate) fn classify_sdk_error<E>(
    err: &SdkError<E, HttpResponse>,
    modeled: fn(&E) -> (Option<&'static str>, Option<&str>),
) -> LlmError
where
    E: ProvideErrorMetadata + RequestId + StdError + 'static,
{
    match err {
        SdkError::ServiceError(context) => {
            let service_err = context.err();
            let (modeled_kind, modeled_message) = modeled(service_err);
            let kind = modeled_kind.or(service_err.code());
            let message = service_err.message().or(modeled_message);
            classify_exception(kind, message, service_err.request_id(), context.raw(), SystemTime::now())
        }
        SdkError::TimeoutError(_) => transient(format!("the request timed out: {}", error_chain(err))),
        SdkError::DispatchFailure(failure) => {
            if let Some(credentials) = find_source::<CredentialsError>(err) {
                return classify_credentials_error(credentials);
            }
            if failure.is_user() {
                return config_error(format!(
                    "the request could not be sent (check the endpoint URL): {}",
                    error_chain(err)
                ));
            }
            transient(format!("the request could not be sent: {}", error_chain(err)))
        }
        SdkError::ResponseError(context) => {
            transient(format!("unreadable response (HTTP {}): {}", context.raw().status().as_u16(), error_chain(err)))
        }
        SdkError::ConstructionFailure(_) => {
            if let Some(credentials) = find_source::<CredentialsError>(err) {
                return classify_credentials_error(credentials);
            }
            LlmError::Rejected {
                provider: PROVIDER.into(),
                kind: "InvalidRequest".into(),
                message: format!("the request could not be built: {}", error_chain(err)),
            }
        }
        _ => transient(error_chain(err)),
    }
}

/// Classifies a service exception by its name, then by the HTTP status for names not known here.
fn classify_exception(
    kind: Option<&str>,
    message: Option<&str>,
    request_id: Option<&str>,
    raw: &HttpResponse,
    now: SystemTime,
) -> LlmError {
    let status = raw.status().as_u16();
    let kind = kind.map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let mut message = message.map(str::to_string).unwrap_or_else(|| format!("{kind} (HTTP {status})"));
    if let Some(request_id) = request_id {
        message = format!("{message} (request id {request_id})");
    }
    let retry_after = || raw.headers().get("retry-after").and_then(|v| parse_retry_after(v, now));
    match kind.as_str() {
        "ThrottlingException" => LlmError::Throttled { provider: PROVIDER.into(), message, retry_after: retry_after() },
        "ServiceUnavailableException"
        | "ModelNotReadyException"
        | "InternalServerException"
        | "ModelTimeoutException"
        | "ModelErrorException" => transient(format!("{kind}: {message}")),
        "ValidationException" | "AccessDeniedException" | "ResourceNotFoundException" => {
            LlmError::Rejected { provider: PROVIDER.into(), kind, message }
        }
        _ if status == 429 => LlmError::Throttled {
            provider: PROVIDER.into(),
            message: format!("{kind}: {message}"),
            retry_after: retry_after(),
        },
        _ if status >= 500 || status == 408 => transient(format!("{kind}: {message}")),
        _ => LlmError::Rejected { provider: PROVIDER.into(), kind, message },
    }
}

/// The exception name and message of a modeled error. Errors parsed from a response also carry
/// them in their metadata; errors built in code only here.
fn modeled_parts(err: &ConverseError) -> (Option<&'static str>, Option<&str>) {
    match err {
        ConverseError::ThrottlingException(e) => (Some("ThrottlingException"), e.message()),
        ConverseError::ServiceUnavailableException(e) => (Some("ServiceUnavailableException"), e.message()),
        ConverseError::ModelNotReadyException(e) => (Some("ModelNotReadyException"), e.message()),
        ConverseError::InternalServerException(e) => (Some("InternalServerException"), e.message()),
        ConverseError::ModelTimeoutException(e) => (Some("ModelTimeoutException"), e.message()),
        ConverseError::ModelErrorException(e) => (Some("ModelErrorException"), e.message()),
        ConverseError::ValidationException(e) => (Some("ValidationException"), e.message()),
        ConverseError::AccessDeniedException(e) => (Some("AccessDeniedException"), e.message()),
        ConverseError::ResourceNotFoundException(e) => (Some("ResourceNotFoundException"), e.message()),
        _ => (None, None),
    }
}

fn classify_credentials_error(err: &CredentialsError) -> LlmError {
    let detail = error_chain(err);
    match err {
        // A slow SSO or STS endpoint may answer next time.
        CredentialsError::ProviderTimedOut(_) => transient(format!("loading AWS credentials timed out: {detail}")),
        _ => config_error(format!(
            "no usable AWS credentials ({detail}). Set AWS_PROFILE (and run `aws sso login` for SSO \
             profiles), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; for `beacon sim` any \
             values work"
        )),
    }
}

/// The first error of type `E` in `err`'s source chain.
pub(crate) fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<E>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// An error and its sources as one line: SDK errors say little at the top level.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, InternalServerException, ThrottlingException, ValidationException,
    };
    use aws_sdk_bedrockruntime::types::{StopReason, TokenUsage};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        for (name, value) in headers {
            response.headers_mut().insert(name.to_string(), value.to_string());
        }
        response
    }

    fn service_error(
        err: ConverseError,
        status: u16,
        headers: &[(&str, &str)],
    ) -> SdkError<ConverseError, HttpResponse> {
        SdkError::service_error(err, response(status, headers))
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: "You analyse documents.".into(),
            instruction: "Return JSON.".into(),
            content: "Line one.\nLine two.".into(),
            content_label: "page 3".into(),
            language: Some("en".into()),
            max_tokens: 256,
            temperature: 0.0,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn user_message_puts_the_content_after_the_marker() {
        assert_eq!(user_message_text(&request()), "Return JSON.\n--- CONTENT ---\npage 3\nLine one.\nLine two.");
    }

    #[test]
    fn throttling_is_throttled_with_retry_after() {
        let err = ConverseError::ThrottlingException(
            ThrottlingException::builder().message("Too many requests, please wait before trying again.").build(),
        );
        match classify(&service_error(err, 429, &[("retry-after", "3")])) {
            LlmError::Throttled { message, retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(message.starts_with("Too many requests"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_errors_are_transient() {
        let err = ConverseError::InternalServerException(InternalServerException::builder().message("boom").build());
        assert!(matches!(classify(&service_error(err, 500, &[])), LlmError::Transient { .. }));
        let unmodelled =
            ConverseError::generic(ErrorMetadata::builder().code("BadGatewayException").message("bad gateway").build());
        assert!(matches!(classify(&service_error(unmodelled, 502, &[])), LlmError::Transient { .. }));
        let timeout: SdkError<ConverseError, HttpResponse> = SdkError::timeout_error("read timed out");
        assert!(matches!(classify(&timeout), LlmError::Transient { .. }));
    }

    #[test]
    fn client_errors_are_rejected_with_the_exception_name() {
        let validation =
            ConverseError::ValidationException(ValidationException::builder().message("bad input").build());
        assert_eq!(
            classify(&service_error(validation, 400, &[])),
            LlmError::Rejected {
                provider: "bedrock".into(),
                kind: "ValidationException".into(),
                message: "bad input".into(),
            }
        );
        let denied = ConverseError::AccessDeniedException(AccessDeniedException::builder().message("no").build());
        assert!(matches!(
            classify(&service_error(denied, 403, &[])),
            LlmError::Rejected { kind, .. } if kind == "AccessDeniedException"
        ));
        let unknown = ConverseError::generic(ErrorMetadata::builder().code("UnknownOperationException").build());
        assert!(matches!(
            classify(&service_error(unknown, 404, &[])),
            LlmError::Rejected { kind, .. } if kind == "UnknownOperationException"
        ));
        let unmodelled_quota = ConverseError::generic(ErrorMetadata::builder().code("TooManyRequests").build());
        assert!(matches!(classify(&service_error(unmodelled_quota, 429, &[])), LlmError::Throttled { .. }));
    }

    #[test]
    fn missing_credentials_are_a_config_error() {
        use aws_sdk_bedrockruntime::error::ConnectorError;
        let err: SdkError<ConverseError, HttpResponse> = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded("no providers in chain provided credentials")),
            None,
        ));
        match classify(&err) {
            LlmError::Config { message, .. } => {
                assert!(message.contains("AWS_PROFILE"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let slow: SdkError<ConverseError, HttpResponse> = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_timed_out(Duration::from_secs(5))),
            None,
        ));
        assert!(matches!(classify(&slow), LlmError::Transient { .. }));
    }

    #[test]
    fn connection_errors_are_transient() {
        use aws_sdk_bedrockruntime::error::ConnectorError;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err: SdkError<ConverseError, HttpResponse> = SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        match classify(&err) {
            LlmError::Transient { message, .. } => assert!(message.contains("refused"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0.5 ", now), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn completion_concatenates_text_blocks() {
        let message = Message::builder()
            .role(ConversationRole::Assistant)
            .content(ContentBlock::Text("{\"summary\":".into()))
            .content(ContentBlock::Text("\"x\"}".into()))
            .build()
            .unwrap();
        let response = ConverseResponse::builder()
            .output(ConverseOutput::Message(message))
            .stop_reason(StopReason::MaxTokens)
            .usage(TokenUsage::builder().input_tokens(10).output_tokens(4).total_tokens(14).build().unwrap())
            .build()
            .unwrap();
        let completion = completion_from(response, "m");
        assert_eq!(completion.text, "{\"summary\":\"x\"}");
        assert_eq!(completion.stop_reason, "max_tokens");
        assert_eq!(completion.usage, Usage { input_tokens: 10, output_tokens: 4 });
        assert_eq!((completion.attempts, completion.throttles), (1, 0));
        assert_eq!(completion.model, "m");
    }

    #[tokio::test]
    async fn builds_with_overrides_and_rejects_an_empty_model_id() {
        let client = BedrockConverse::builder("m")
            .endpoint("http://127.0.0.1:9")
            .region("eu-west-3")
            .static_credentials("a", "b")
            .build()
            .await
            .unwrap();
        assert_eq!(client.name(), "bedrock:m");
        assert_eq!(client.region(), Some("eu-west-3"));
        // With an endpoint override some region is always found (environment, profile, or the
        // fallback), without asking instance metadata.
        let local = BedrockConverse::builder("m")
            .endpoint("http://127.0.0.1:9")
            .static_credentials("a", "b")
            .build()
            .await
            .unwrap();
        assert!(local.region().is_some());
        assert!(matches!(BedrockConverse::builder(" ").build().await, Err(LlmError::Config { .. })));
    }
}
