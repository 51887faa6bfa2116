//! Amazon Bedrock's InvokeModel API with the Anthropic Messages body, through the AWS SDK for Rust.
//!
//! [`BedrockInvoke`] is the alternative to [`crate::bedrock::BedrockConverse`] for Anthropic
//! models: the request body is the model's native JSON (`anthropic_version`, `system`,
//! `messages`), which is also what Bedrock batch inference jobs take, so one request layout serves
//! both. The user message has the same layout as Converse's (instruction, the
//! [`CONTENT_MARKER`](crate::bedrock::CONTENT_MARKER) line, label, content), and errors are classified the same way: by exception
//! name first, then by HTTP status. As with Converse the SDK's own retries are off and
//! [`crate::retry::Retrying`] retries instead.
//!
//! ```no_run
//! # async fn run() -> Result<(), beacon_llm::LlmError> {
//! use beacon_llm::invoke::BedrockInvoke;
//!
//! let claude = BedrockInvoke::new("anthropic.claude-3-haiku-20240307-v1:0", None, Some("us-east-1".into())).await?;
//! # Ok(())
//! # }
//! ```

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::Region;
use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::SdkError;
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_smithy_types::Blob;
use serde::{Deserialize, Serialize};

use crate::bedrock::{BedrockBuilder, user_message_text};
use crate::{Completion, CompletionRequest, LlmClient, LlmError, Usage};

/// The provider name in errors.
const PROVIDER: &str = "bedrock";

/// The `anthropic_version` Bedrock requires in Anthropic Messages bodies.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// An Anthropic model on Bedrock behind the InvokeModel API.
#[derive(Debug, Clone)]
pub struct BedrockInvoke {
    client: Client,
    model_id: String,
}

impl BedrockInvoke {
    /// A client for `model_id` (an Anthropic model id, inference profile id or ARN).
    ///
    /// Uses the normal AWS credential and region resolution; `endpoint` overrides the URL and
    /// `region` the region. See [`BedrockInvoke::builder`] for timeouts and credentials.
    pub async fn new(
        model_id: impl Into<String>,
        endpoint: Option<String>,
        region: Option<String>,
    ) -> Result<Self, LlmError> {
        BedrockInvoke::builder(model_id).maybe_endpoint(endpoint).maybe_region(region).build().await
    }

    /// A builder with more options than [`BedrockInvoke::new`].
    pub fn builder(model_id: impl Into<String>) -> BedrockInvokeBuilder {
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

/// Options for [`BedrockInvoke`] (the same as for Converse: see [`BedrockBuilder`]).
pub type BedrockInvokeBuilder = BedrockBuilder<BedrockInvoke>;

impl BedrockBuilder<BedrockInvoke> {
    /// Resolves the configuration and creates the client.
    pub async fn build(self) -> Result<BedrockInvoke, LlmError> {
        let client =
            self.client("InvokeModel", "an Anthropic model id, inference profile id or ARN on Bedrock").await?;
        Ok(BedrockInvoke { client, model_id: self.model_id })
    }
}

/// The Anthropic Messages request body.
#[derive(Debug, Serialize)]
struct MessagesBody<'a> {
    anthropic_version: &'static str,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [UserMessage; 1],
}

#[derive(Debug, Serialize)]
struct UserMessage {
    role: &'static str,
    /// Attachments (document and image blocks, base64), then the text block.
    content: Vec<serde_json::Value>,
}

/// The request body InvokeModel takes for an Anthropic model: the system prompt (left out when
/// empty, which Anthropic models reject), and one user message whose text is laid out as for
/// Converse, with the [`CONTENT_MARKER`](crate::bedrock::CONTENT_MARKER) line before the content.
pub fn request_body(request: &CompletionRequest) -> serde_json::Value {
    let system = request.system.as_str();
    let body = MessagesBody {
        anthropic_version: ANTHROPIC_VERSION,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        system: (!system.trim().is_empty()).then_some(system),
        messages: [UserMessage {
            role: "user",
            content: request
                .attachments
                .iter()
                .map(|attachment| {
                    let kind = if attachment.kind.is_image() { "image" } else { "document" };
                    serde_json::json!({
                        "type": kind,
                        "source": {
                            "type": "base64",
                            "media_type": attachment.kind.media_type(),
                            "data": base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, &attachment.bytes),
                        },
                    })
                })
                .chain([serde_json::json!({"type": "text", "text": user_message_text(request)})])
                .collect(),
        }],
    };
    // Plain strings and numbers always serialize.
    serde_json::to_value(body).unwrap_or_default()
}

/// The parts of an Anthropic Messages response BEACON uses.
#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    content: Vec<ResponseBlock>,
    #[serde(default)]
    usage: Option<ResponseUsage>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseBlock {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// Turns an InvokeModel response body into a [`Completion`]: the text blocks joined, the usage
/// and the stop reason. A body that is not an Anthropic Messages response is
/// [`LlmError::Transient`] (a proxy's error page, a truncated body), as Converse treats
/// unreadable responses.
pub fn parse_response(body: &[u8], model_id: &str) -> Result<Completion, LlmError> {
    let response: MessagesResponse = serde_json::from_slice(body).map_err(|err| {
        let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        transient(format!("the InvokeModel response is not an Anthropic Messages body ({err}): {start}"))
    })?;
    let text = response
        .content
        .iter()
        .filter(|block| block.r#type == "text" || block.r#type.is_empty())
        .filter_map(|block| block.text.as_deref())
        .collect::<String>();
    let usage = response
        .usage
        .map(|u| Usage { input_tokens: u.input_tokens, output_tokens: u.output_tokens })
        .unwrap_or_default();
    Ok(Completion {
        text,
        usage,
        model: model_id.to_string(),
        stop_reason: response.stop_reason.unwrap_or_default(),
        attempts: 1,
        throttles: 0,
    })
}

#[async_trait]
impl LlmClient for BedrockInvoke {
    fn name(&self) -> String {
        format!("bedrock-invoke:{}", self.model_id)
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let body = serde_json::to_vec(&request_body(request)).map_err(|err| LlmError::Rejected {
            provider: PROVIDER.into(),
            kind: "InvalidRequest".into(),
            message: err.to_string(),
        })?;
        let response = self
            .client
            .invoke_model()
            .model_id(&self.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(|err| classify(&err))?;
        parse_response(response.body().as_ref(), &self.model_id)
    }
}

fn transient(message: impl Into<String>) -> LlmError {
    LlmError::Transient { provider: PROVIDER.into(), message: message.into() }
}

/// Classifies an InvokeModel SDK error exactly as [`crate::bedrock::classify`] classifies
/// Converse errors: quotas are [`LlmError::Throttled`], server trouble and the network
/// [`LlmError::Transient`], bad requests [`LlmError::Rejected`], missing credentials
/// [`LlmError::Config`].
pub fn classify(err: &SdkError<InvokeModelError, HttpResponse>) -> LlmError {
    crate::bedrock::classify_sdk_error(err, modeled_parts)
}

fn modeled_parts(err: &InvokeModelError) -> (Option<&'static str>, Option<&str>) {
    match err {
        InvokeModelError::ThrottlingException(e) => (Some("ThrottlingException"), e.message()),
        InvokeModelError::ServiceUnavailableException(e) => (Some("ServiceUnavailableException"), e.message()),
        InvokeModelError::ModelNotReadyException(e) => (Some("ModelNotReadyException"), e.message()),
        InvokeModelError::InternalServerException(e) => (Some("InternalServerException"), e.message()),
        InvokeModelError::ModelTimeoutException(e) => (Some("ModelTimeoutException"), e.message()),
        InvokeModelError::ModelErrorException(e) => (Some("ModelErrorException"), e.message()),
        InvokeModelError::ValidationException(e) => (Some("ValidationException"), e.message()),
        InvokeModelError::AccessDeniedException(e) => (Some("AccessDeniedException"), e.message()),
        InvokeModelError::ResourceNotFoundException(e) => (Some("ResourceNotFoundException"), e.message()),
        InvokeModelError::ServiceQuotaExceededException(e) => (Some("ServiceQuotaExceededException"), e.message()),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_credential_types::provider::error::CredentialsError;

    use super::*;
    use crate::bedrock::CONTENT_MARKER;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, InternalServerException, ModelNotReadyException, ServiceQuotaExceededException,
        ThrottlingException, ValidationException,
    };
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;
    use serde_json::json;

    fn response(status: u16, headers: &[(&str, &str)]) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        for (name, value) in headers {
            response.headers_mut().insert(name.to_string(), value.to_string());
        }
        response
    }

    fn service_error(
        err: InvokeModelError,
        status: u16,
        headers: &[(&str, &str)],
    ) -> SdkError<InvokeModelError, HttpResponse> {
        SdkError::service_error(err, response(status, headers))
    }

    #[test]
    fn attachments_go_first_as_base64_blocks() {
        let attachments = vec![
            crate::Attachment { kind: crate::AttachmentKind::Pdf, name: "page-3".into(), bytes: b"%PDF-1.7".to_vec() },
            crate::Attachment { kind: crate::AttachmentKind::Png, name: "scan".into(), bytes: vec![0x89, b'P'] },
        ];
        let body = request_body(&CompletionRequest { attachments, ..request() });
        let content = &body["messages"][0]["content"];
        assert_eq!(content[0]["type"], "document");
        assert_eq!(content[0]["source"]["media_type"], "application/pdf");
        assert_eq!(content[0]["source"]["data"], "JVBERi0xLjc=");
        assert_eq!(content[1]["type"], "image");
        assert_eq!(content[1]["source"]["media_type"], "image/png");
        assert_eq!(content[2]["type"], "text");
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
    fn body_is_an_anthropic_messages_request_with_the_content_after_the_marker() {
        let body = request_body(&request());
        assert_eq!(
            body,
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 256,
                "temperature": 0.0,
                "system": "You analyse documents.",
                "messages": [{
                    "role": "user",
                    "content": [{"type": "text", "text": "Return JSON.\n--- CONTENT ---\npage 3\nLine one.\nLine two."}]
                }]
            })
        );
        assert!(body["messages"][0]["content"][0]["text"].as_str().unwrap().contains(CONTENT_MARKER));
    }

    #[test]
    fn an_empty_system_prompt_is_left_out() {
        let body = request_body(&CompletionRequest { system: "  ".into(), ..request() });
        assert!(body.get("system").is_none(), "{body}");
    }

    #[test]
    fn response_text_blocks_usage_and_stop_reason_are_read() {
        let body = json!({
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [
                {"type": "text", "text": "{\"summary\":"},
                {"type": "tool_use", "id": "t", "name": "x", "input": {}},
                {"type": "text", "text": "\"x\"}"}
            ],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 12, "output_tokens": 5}
        });
        let completion = parse_response(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(completion.text, "{\"summary\":\"x\"}");
        assert_eq!(completion.usage, Usage { input_tokens: 12, output_tokens: 5 });
        assert_eq!(completion.stop_reason, "max_tokens");
        assert_eq!((completion.model.as_str(), completion.attempts, completion.throttles), ("m", 1, 0));
    }

    #[test]
    fn a_body_without_usage_still_parses_and_garbage_is_transient() {
        let completion = parse_response(br#"{"content":[{"type":"text","text":"hi"}]}"#, "m").unwrap();
        assert_eq!((completion.text.as_str(), completion.usage), ("hi", Usage::default()));
        match parse_response(b"<html>502 Bad Gateway</html>", "m") {
            Err(LlmError::Transient { message, .. }) => assert!(message.contains("502 Bad Gateway"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttling_is_throttled_with_retry_after() {
        let err = InvokeModelError::ThrottlingException(
            ThrottlingException::builder().message("Too many requests, please wait before trying again.").build(),
        );
        match classify(&service_error(err, 429, &[("retry-after", "3")])) {
            LlmError::Throttled { message, retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(message.starts_with("Too many requests"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let unmodelled = InvokeModelError::generic(ErrorMetadata::builder().code("TooManyRequests").build());
        assert!(matches!(classify(&service_error(unmodelled, 429, &[])), LlmError::Throttled { .. }));
    }

    #[test]
    fn server_errors_and_timeouts_are_transient() {
        let err = InvokeModelError::InternalServerException(InternalServerException::builder().message("boom").build());
        assert!(matches!(classify(&service_error(err, 500, &[])), LlmError::Transient { .. }));
        let not_ready =
            InvokeModelError::ModelNotReadyException(ModelNotReadyException::builder().message("warming").build());
        assert!(matches!(classify(&service_error(not_ready, 429, &[])), LlmError::Transient { .. }));
        let unmodelled = InvokeModelError::generic(
            ErrorMetadata::builder().code("BadGatewayException").message("bad gateway").build(),
        );
        assert!(matches!(classify(&service_error(unmodelled, 502, &[])), LlmError::Transient { .. }));
        let timeout: SdkError<InvokeModelError, HttpResponse> = SdkError::timeout_error("read timed out");
        assert!(matches!(classify(&timeout), LlmError::Transient { .. }));
    }

    #[test]
    fn client_errors_are_rejected_with_the_exception_name() {
        let validation =
            InvokeModelError::ValidationException(ValidationException::builder().message("bad input").build());
        assert_eq!(
            classify(&service_error(validation, 400, &[])),
            LlmError::Rejected {
                provider: "bedrock".into(),
                kind: "ValidationException".into(),
                message: "bad input".into(),
            }
        );
        let denied = InvokeModelError::AccessDeniedException(AccessDeniedException::builder().message("no").build());
        assert!(matches!(
            classify(&service_error(denied, 403, &[])),
            LlmError::Rejected { kind, .. } if kind == "AccessDeniedException"
        ));
        // Like Converse, the account quota exception (HTTP 400) is not retried.
        let quota = InvokeModelError::ServiceQuotaExceededException(
            ServiceQuotaExceededException::builder().message("quota").build(),
        );
        assert!(matches!(
            classify(&service_error(quota, 400, &[])),
            LlmError::Rejected { kind, .. } if kind == "ServiceQuotaExceededException"
        ));
        let unnamed = InvokeModelError::generic(ErrorMetadata::builder().build());
        assert!(matches!(
            classify(&service_error(unnamed, 404, &[])),
            LlmError::Rejected { kind, .. } if kind == "HTTP 404"
        ));
    }

    #[test]
    fn credentials_and_connection_errors() {
        use aws_sdk_bedrockruntime::error::ConnectorError;
        let missing: SdkError<InvokeModelError, HttpResponse> = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::not_loaded("no providers in chain provided credentials")),
            None,
        ));
        assert!(matches!(classify(&missing), LlmError::Config { message, .. } if message.contains("AWS_PROFILE")));
        let slow: SdkError<InvokeModelError, HttpResponse> = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(CredentialsError::provider_timed_out(Duration::from_secs(5))),
            None,
        ));
        assert!(matches!(classify(&slow), LlmError::Transient { .. }));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let refused: SdkError<InvokeModelError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io)));
        assert!(matches!(classify(&refused), LlmError::Transient { message, .. } if message.contains("refused")));
    }

    #[tokio::test]
    async fn builds_with_overrides_and_rejects_an_empty_model_id() {
        let client = BedrockInvoke::builder("m")
            .endpoint("http://127.0.0.1:9")
            .region("eu-west-3")
            .static_credentials("a", "b")
            .build()
            .await
            .unwrap();
        assert_eq!(client.name(), "bedrock-invoke:m");
        assert_eq!(client.model_id(), "m");
        assert_eq!(client.region(), Some("eu-west-3"));
        assert!(matches!(BedrockInvoke::builder(" ").build().await, Err(LlmError::Config { .. })));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transient_error_through_the_sdk() {
        // A port that was just free: the SDK's dispatch failure must be classified as
        // retryable, not surface as a config error.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = BedrockInvoke::builder("m")
            .endpoint(format!("http://127.0.0.1:{port}"))
            .region("us-east-1")
            .static_credentials("a", "b")
            .connect_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap();
        let err = client.complete(&request()).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
}
