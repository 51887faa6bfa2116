//! The wire format of Bedrock's Converse API, as far as the simulator needs it, and Bedrock-style
//! error responses.
//!
//! Errors follow the restJson1 protocol that the AWS SDKs parse: the status code, an
//! `x-amzn-ErrorType` header naming the exception (the SDKs ignore anything after a `:`), and a
//! JSON body with a `message`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The header AWS services use to name the error.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// Exactly what Bedrock sends in [`ERROR_TYPE_HEADER`] when a quota is exceeded.
pub const THROTTLING_ERROR_TYPE: &str = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/";

/// Exactly what Bedrock says in the body when a quota is exceeded.
pub const THROTTLING_MESSAGE: &str = "Too many requests, please wait before trying again.";

/// What Bedrock says in the body when the tokens-per-minute quota is exceeded.
pub const THROTTLING_TOKENS_MESSAGE: &str = "Too many tokens, please wait before trying again.";

/// The message of a throttle by the tokens-per-day quota.
pub const THROTTLING_DAY_MESSAGE: &str = "Too many tokens per day, please wait before trying again.";

/// The message of the simulator's `ServiceUnavailableException`.
pub const UNAVAILABLE_MESSAGE: &str = "Bedrock is unable to process your request.";

/// The model's `maxTokens` when a request does not set one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The body of `POST /model/{modelId}/converse`. Fields the simulator does not use (tool
/// configuration, guardrails, ...) are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Vec<Value>,
    #[serde(default)]
    pub inference_config: Option<InferenceConfig>,
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Vec<Value>,
}

/// The inference parameters the simulator looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
}

/// A request the simulator can answer, after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    /// The text of the last user message.
    pub prompt: String,
    /// The text of the system prompt and every message, for counting input tokens.
    pub all_text: String,
    pub max_tokens: u64,
    /// Document and image blocks (validated).
    pub attachments: u64,
}

/// The input tokens the simulator counts per document or image block (about what a PDF page or
/// a one-megapixel image costs on Claude).
pub const ATTACHMENT_TOKENS: u64 = 1_600;

/// Checks a document or image block as Bedrock does (format, name, decodable bytes that look
/// like the format); returns whether `block` is one.
fn check_attachment(block: &Value) -> Result<bool, BedrockError> {
    use base64::Engine;
    let (kind, body) = match (block.get("document"), block.get("image")) {
        (Some(document), _) => ("document", document),
        (None, Some(image)) => ("image", image),
        (None, None) => return Ok(false),
    };
    let format = body.get("format").and_then(Value::as_str).unwrap_or_default();
    let allowed: &[&str] = if kind == "document" {
        &["pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"]
    } else {
        &["png", "jpeg", "gif", "webp"]
    };
    if !allowed.contains(&format) {
        return Err(BedrockError::validation(format!("The {kind} format {format:?} is not supported.")));
    }
    if kind == "document" {
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        let valid = !name.is_empty()
            && !name.contains("  ")
            && name.chars().all(|c| c.is_alphanumeric() || " -()[]".contains(c));
        if !valid {
            return Err(BedrockError::validation(format!(
                "The document name {name:?} can only contain alphanumeric characters, whitespace (no two in a row), hyphens, parentheses and square brackets."
            )));
        }
    }
    let encoded = body.pointer("/source/bytes").and_then(Value::as_str).unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| BedrockError::validation(format!("The {kind} bytes are not valid base64.")))?;
    let magic_ok = match format {
        "pdf" => bytes.starts_with(b"%PDF-"),
        "png" => bytes.starts_with(b"\x89PNG"),
        "jpeg" => bytes.starts_with(&[0xFF, 0xD8]),
        _ => !bytes.is_empty(),
    };
    if !magic_ok {
        return Err(BedrockError::validation(format!("Could not process the {kind}: its bytes are not {format}.")));
    }
    Ok(true)
}

/// The text of the `text` content blocks; other block kinds (images, documents, ...) carry no
/// text the simulator can analyse.
fn text_of(blocks: &[Value]) -> String {
    blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
}

impl ConverseRequest {
    /// Parses and validates a request body, with Bedrock-like messages for what is wrong.
    pub fn parse(body: &[u8]) -> Result<ValidRequest, BedrockError> {
        let request: ConverseRequest = serde_json::from_slice(body).map_err(|err| {
            BedrockError::validation(format!(
                "Malformed input request: {err}, please reformat your input and try again."
            ))
        })?;
        request.validate()
    }

    fn validate(self) -> Result<ValidRequest, BedrockError> {
        if self.messages.is_empty() {
            return Err(BedrockError::validation(
                "The messages field is required and must contain at least one message.",
            ));
        }
        if let Some(bad) = self.messages.iter().find(|m| m.role != "user" && m.role != "assistant") {
            return Err(BedrockError::validation(format!(
                "Unknown message role {:?}: roles must be user or assistant.",
                bad.role
            )));
        }
        let Some(last_user) = self.messages.iter().rev().find(|m| m.role == "user") else {
            return Err(BedrockError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        };
        let config = self.inference_config.unwrap_or_default();
        let max_tokens = match config.max_tokens {
            None => DEFAULT_MAX_TOKENS,
            Some(n) if n >= 1 => n.unsigned_abs(),
            Some(n) => {
                return Err(BedrockError::validation(format!(
                    "The value at inferenceConfig.maxTokens ({n}) must be at least 1."
                )));
            }
        };
        if let Some(t) = config.temperature.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(BedrockError::validation(format!(
                "The value at inferenceConfig.temperature ({t}) must be between 0 and 1."
            )));
        }
        let mut attachments = 0;
        for block in self.messages.iter().flat_map(|m| &m.content) {
            attachments += u64::from(check_attachment(block)?);
        }
        let prompt = text_of(&last_user.content);
        let mut all_text = text_of(&self.system);
        for message in &self.messages {
            all_text.push('\n');
            all_text.push_str(&text_of(&message.content));
        }
        Ok(ValidRequest { prompt, all_text, max_tokens, attachments })
    }
}

/// Parses an InvokeModel body for an Anthropic model (the Messages API: `anthropic_version`,
/// `max_tokens`, `system`, `messages` whose content is a string or blocks of type `text`,
/// `document` or `image` with base64 sources): what a batch inference record's `modelInput`
/// holds.
pub fn parse_anthropic_messages(body: &Value) -> Result<ValidRequest, BedrockError> {
    let Some(object) = body.as_object() else {
        return Err(BedrockError::validation("Malformed input request: the body must be a JSON object."));
    };
    if object.get("anthropic_version").and_then(Value::as_str).is_none() {
        return Err(BedrockError::validation("Malformed input request: #: required key [anthropic_version] not found"));
    }
    let max_tokens = match object.get("max_tokens").and_then(Value::as_i64) {
        Some(n) if n >= 1 => n.unsigned_abs(),
        Some(n) => return Err(BedrockError::validation(format!("max_tokens: {n} must be at least 1"))),
        None => {
            return Err(BedrockError::validation("Malformed input request: #: required key [max_tokens] not found"));
        }
    };
    let blocks = |content: Option<&Value>| -> Vec<Value> {
        match content {
            Some(Value::String(text)) => vec![serde_json::json!({"type": "text", "text": text})],
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => Vec::new(),
        }
    };
    let messages = object.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(last_user) = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
        return Err(BedrockError::validation("messages: at least one message with role user is required"));
    };
    let mut attachments = 0;
    let mut all_text = text_of(&blocks(object.get("system")));
    for message in &messages {
        let content = blocks(message.get("content"));
        for block in &content {
            let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind == "document" || kind == "image" {
                if block.pointer("/source/data").and_then(Value::as_str).is_none_or(str::is_empty) {
                    return Err(BedrockError::validation(format!("messages: a {kind} block needs source.data")));
                }
                attachments += 1;
            }
        }
        all_text.push('\n');
        all_text.push_str(&text_of(&content));
    }
    let prompt = text_of(&blocks(last_user.get("content")));
    Ok(ValidRequest { prompt, all_text, max_tokens, attachments })
}

/// The body of a successful Converse response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: Output,
    pub stop_reason: String,
    pub usage: TokenUsage,
    pub metrics: Metrics,
}

#[derive(Debug, Serialize)]
pub struct Output {
    pub message: OutputMessage,
}

#[derive(Debug, Serialize)]
pub struct OutputMessage {
    pub role: String,
    pub content: Vec<TextBlock>,
}

#[derive(Debug, Serialize)]
pub struct TextBlock {
    pub text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub latency_ms: u64,
}

impl ConverseResponse {
    /// An assistant answer with one text block.
    pub fn new(
        text: String,
        stop_reason: &str,
        input_tokens: u64,
        output_tokens: u64,
        latency_ms: u64,
    ) -> ConverseResponse {
        ConverseResponse {
            output: Output { message: OutputMessage { role: "assistant".into(), content: vec![TextBlock { text }] } },
            stop_reason: stop_reason.into(),
            usage: TokenUsage { input_tokens, output_tokens, total_tokens: input_tokens + output_tokens },
            metrics: Metrics { latency_ms },
        }
    }
}

/// An error answered the way Bedrock answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type} ({status}): {message}")]
pub struct BedrockError {
    pub status: StatusCode,
    /// The value of the `x-amzn-ErrorType` header.
    pub error_type: &'static str,
    pub message: String,
}

impl BedrockError {
    /// HTTP 429 `ThrottlingException`, byte for byte what Bedrock sends.
    pub fn throttling() -> BedrockError {
        BedrockError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error_type: THROTTLING_ERROR_TYPE,
            message: THROTTLING_MESSAGE.into(),
        }
    }

    /// HTTP 429 `ThrottlingException` for the tokens-per-minute quota.
    pub fn throttling_tokens() -> BedrockError {
        BedrockError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error_type: THROTTLING_ERROR_TYPE,
            message: THROTTLING_TOKENS_MESSAGE.into(),
        }
    }

    /// HTTP 429 `ThrottlingException` for the tokens-per-day quota.
    pub fn throttling_day() -> BedrockError {
        BedrockError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error_type: THROTTLING_ERROR_TYPE,
            message: THROTTLING_DAY_MESSAGE.into(),
        }
    }

    /// HTTP 503 `ServiceUnavailableException`.
    pub fn service_unavailable(message: impl Into<String>) -> BedrockError {
        BedrockError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error_type: "ServiceUnavailableException",
            message: message.into(),
        }
    }

    /// HTTP 400 `ValidationException`.
    pub fn validation(message: impl Into<String>) -> BedrockError {
        BedrockError { status: StatusCode::BAD_REQUEST, error_type: "ValidationException", message: message.into() }
    }

    /// HTTP 404 `UnknownOperationException`, for paths that are no Bedrock operation.
    pub fn unknown_operation(method: &str, path: &str) -> BedrockError {
        BedrockError {
            status: StatusCode::NOT_FOUND,
            error_type: "UnknownOperationException",
            message: format!("The simulator has no operation {method} {path}."),
        }
    }
}

impl IntoResponse for BedrockError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        (
            self.status,
            [
                (HeaderName::from_static(ERROR_TYPE_HEADER), HeaderValue::from_static(self.error_type)),
                (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
            body,
        )
            .into_response()
    }
}

/// Extracts and percent-decodes the model id from a raw request path of the form
/// `/model/{modelId}/converse`.
///
/// Model ids may be ARNs (provisioned throughput, inference profiles) containing `:` and `/`,
/// which clients percent-encode. Returns `None` when the path is not a Converse path and an
/// error when the id is not valid percent-encoded UTF-8.
pub fn converse_model_id(path: &str) -> Option<Result<String, BedrockError>> {
    let encoded = path.strip_prefix("/model/")?.strip_suffix("/converse")?;
    if encoded.is_empty() {
        return None;
    }
    Some(percent_decode(encoded).ok_or_else(|| {
        BedrockError::validation(format!("The model identifier {encoded:?} is not valid percent-encoded UTF-8."))
    }))
}

fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_model_ids_pass_through() {
        assert_eq!(
            converse_model_id("/model/anthropic.claude-3-haiku-20240307-v1:0/converse"),
            Some(Ok("anthropic.claude-3-haiku-20240307-v1:0".into()))
        );
    }

    #[test]
    fn encoded_arns_are_decoded() {
        let path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprovisioned-model%2Fabc123/converse";
        assert_eq!(
            converse_model_id(path),
            Some(Ok("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123".into()))
        );
        // Clients that do not encode `/` still reach the same model.
        assert_eq!(
            converse_model_id("/model/arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123/converse"),
            Some(Ok("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123".into()))
        );
    }

    #[test]
    fn encoded_utf8_is_decoded() {
        assert_eq!(converse_model_id("/model/%E3%83%A2%E3%83%87%E3%83%AB/converse"), Some(Ok("モデル".into())));
    }

    #[test]
    fn bad_encodings_are_validation_errors() {
        for path in ["/model/abc%2/converse", "/model/abc%zz/converse", "/model/%FF/converse"] {
            let err = converse_model_id(path).unwrap().unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{path}");
        }
    }

    #[test]
    fn other_paths_are_not_converse() {
        assert_eq!(converse_model_id("/model//converse"), None);
        assert_eq!(converse_model_id("/model/x/invoke"), None);
        assert_eq!(converse_model_id("/models/x/converse"), None);
    }

    #[tokio::test]
    async fn throttling_response_is_shaped_like_bedrock() {
        let response = BedrockError::throttling().into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers()["x-amzn-ErrorType"],
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert_eq!(&body[..], br#"{"message":"Too many requests, please wait before trying again."}"#);
    }

    #[test]
    fn requests_are_validated() {
        let ok = ConverseRequest::parse(
            br#"{"system":[{"text":"sys"}],"messages":[{"role":"user","content":[{"text":"hi"},{"image":{"format":"png","source":{"bytes":"iVBORw=="}}}]}],"inferenceConfig":{"maxTokens":100,"temperature":0.0}}"#,
        )
        .unwrap();
        assert_eq!(ok.attachments, 1);
        assert_eq!(ok.prompt, "hi");
        assert_eq!(ok.all_text, "sys\nhi");
        assert_eq!(ok.max_tokens, 100);

        for body in [
            &b"not json"[..],
            br#"{"messages":[]}"#,
            br#"{}"#,
            br#"{"messages":[{"role":"assistant","content":[{"text":"x"}]}]}"#,
            br#"{"messages":[{"role":"robot","content":[{"text":"x"}]}]}"#,
            br#"{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"maxTokens":0}}"#,
            br#"{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"temperature":1.5}}"#,
        ] {
            let err = ConverseRequest::parse(body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.error_type, "ValidationException");
        }
    }

    #[test]
    fn documents_and_images_are_checked_and_counted() {
        let body = |block: &str| {
            format!(r#"{{"messages":[{{"role":"user","content":[{block},{{"text":"hi"}}]}}]}}"#).into_bytes()
        };
        // "%PDF-1.7" and a PNG signature, base64.
        let pdf = r#"{"document":{"format":"pdf","name":"page-3","source":{"bytes":"JVBERi0xLjc="}}}"#;
        let png = r#"{"image":{"format":"png","source":{"bytes":"iVBORw=="}}}"#;
        assert_eq!(ConverseRequest::parse(&body(pdf)).unwrap().attachments, 1);
        assert_eq!(ConverseRequest::parse(&body(png)).unwrap().attachments, 1);
        for bad in [
            r#"{"document":{"format":"pdf","name":"page_3.pdf","source":{"bytes":"JVBERi0xLjc="}}}"#,
            r#"{"document":{"format":"exe","name":"x","source":{"bytes":"JVBERi0xLjc="}}}"#,
            r#"{"document":{"format":"pdf","name":"x","source":{"bytes":"aGVsbG8="}}}"#,
            r#"{"image":{"format":"png","source":{"bytes":"not base64!"}}}"#,
        ] {
            let error = ConverseRequest::parse(&body(bad)).unwrap_err();
            assert_eq!(error.error_type, "ValidationException", "{bad}");
        }
    }
}
