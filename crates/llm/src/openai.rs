//! OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, the llama.cpp server and others.
//!
//! [`OpenAiChat`] sends one [`CompletionRequest`] as one `POST {base_url}/chat/completions` with
//! a system message and one user message laid out as for Bedrock (instruction, the
//! [`CONTENT_MARKER`](crate::bedrock::CONTENT_MARKER) line, label, content), and asks for a JSON object answer
//! (`response_format: {"type": "json_object"}`) unless told not to. HTTP failures are classified
//! into [`LlmError`]s for [`crate::retry::Retrying`]: 429 is throttling (with the server's
//! `retry-after-ms` / `retry-after` hint), 5xx, timeouts and connection errors are transient, other
//! 4xx are rejections named by the error body's `type` or `code`.
//!
//! ```no_run
//! # fn run() -> Result<(), beacon_llm::LlmError> {
//! use std::time::Duration;
//! use beacon_llm::openai::OpenAiChat;
//!
//! // A vLLM server on this machine, no key:
//! let local = OpenAiChat::new("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", None, Duration::from_secs(300))?;
//! // A llama.cpp server that rejects `response_format`:
//! let llama = OpenAiChat::builder("http://127.0.0.1:8080/v1", "local").json_response(false).build()?;
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bedrock::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, user_message_text};
use crate::{Completion, CompletionRequest, LlmClient, LlmError, Usage};

/// The provider name in errors.
const PROVIDER: &str = "openai";

/// How much of an unexpected response body goes into an error message.
const BODY_EXCERPT_CHARS: usize = 300;

/// A model behind an OpenAI-compatible chat completions endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    http: reqwest::Client,
    /// `{base_url}/chat/completions`.
    url: reqwest::Url,
    model: String,
    api_key: Option<String>,
    json_response: bool,
}

impl OpenAiChat {
    /// A client for `model` at `base_url` (the API root, e.g. `http://127.0.0.1:8000/v1` or
    /// `https://api.openai.com/v1`). `api_key` is sent as `Authorization: Bearer KEY` when
    /// given; `request_timeout` bounds each whole request, answer included.
    pub fn new(
        base_url: impl Into<String>,
        model: impl Into<String>,
        api_key: Option<String>,
        request_timeout: Duration,
    ) -> Result<Self, LlmError> {
        let mut builder = OpenAiChat::builder(base_url, model).request_timeout(request_timeout);
        builder.api_key = api_key;
        builder.build()
    }

    /// A builder with more options than [`OpenAiChat::new`].
    pub fn builder(base_url: impl Into<String>, model: impl Into<String>) -> OpenAiChatBuilder {
        OpenAiChatBuilder {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_READ_TIMEOUT,
            json_response: true,
        }
    }

    /// The model requests name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The URL requests are posted to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

/// Options for [`OpenAiChat`]; start with [`OpenAiChat::builder`].
#[derive(Debug, Clone)]
pub struct OpenAiChatBuilder {
    base_url: String,
    model: String,
    api_key: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    json_response: bool,
}

impl OpenAiChatBuilder {
    /// Sends `Authorization: Bearer KEY`. Local servers (vLLM, Ollama) usually need none.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// How long to wait for a connection (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one whole request may take, the model's writing included (default
    /// [`DEFAULT_READ_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Whether to ask for a JSON object answer with `response_format` (default on). Turn it off
    /// for servers that reject the field; the prompt asks for JSON either way.
    pub fn json_response(mut self, on: bool) -> Self {
        self.json_response = on;
        self
    }

    /// Checks the options and creates the client.
    pub fn build(self) -> Result<OpenAiChat, LlmError> {
        if self.model.trim().is_empty() {
            return Err(config_error("the model name is empty: pass the model the server serves, e.g. gpt-4o-mini"));
        }
        let base = self.base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/chat/completions")).map_err(|err| {
            config_error(format!(
                "'{}' is not a usable base URL ({err}): pass the API root, e.g. http://127.0.0.1:8000/v1",
                self.base_url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "'{}' is not an http(s) URL: pass the API root, e.g. https://api.openai.com/v1",
                self.base_url
            )));
        }
        let api_key = self.api_key.filter(|key| !key.trim().is_empty());
        if let Some(key) = &api_key
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
        {
            return Err(config_error("the API key contains characters that cannot be sent in an HTTP header"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .user_agent(concat!("beacon/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| config_error(format!("cannot create the HTTP client: {}", error_chain(&err))))?;
        tracing::debug!(url = %url, model = %self.model, json_response = self.json_response, "OpenAI-compatible client configured");
        Ok(OpenAiChat { http, url, model: self.model, api_key, json_response: self.json_response })
    }
}

#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Debug, Serialize)]
struct ChatMessage {
    role: &'static str,
    /// A string, or content parts when there are attachments.
    content: Value,
}

#[derive(Debug, Serialize)]
struct ResponseFormat {
    r#type: &'static str,
}

/// The user message's content: its text, or, with attachments, content parts (images as
/// `image_url` data URLs, PDFs as `file` parts) followed by the text.
fn user_content(request: &CompletionRequest) -> Value {
    let text = user_message_text(request);
    if request.attachments.is_empty() {
        return Value::String(text);
    }
    let encode = |bytes: &[u8]| base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let mut parts: Vec<Value> = request
        .attachments
        .iter()
        .map(|attachment| {
            let data_url = format!("data:{};base64,{}", attachment.kind.media_type(), encode(&attachment.bytes));
            if attachment.kind.is_image() {
                serde_json::json!({"type": "image_url", "image_url": {"url": data_url}})
            } else {
                serde_json::json!({"type": "file", "file": {"filename": format!("{}.pdf", attachment.name), "file_data": data_url}})
            }
        })
        .collect();
    parts.push(serde_json::json!({"type": "text", "text": text}));
    Value::Array(parts)
}

/// The chat completions request body for `request`: the system prompt as a system message (left
/// out when empty), and one user message with the content after the [`CONTENT_MARKER`](crate::bedrock::CONTENT_MARKER) line.
pub fn request_body(request: &CompletionRequest, model: &str, json_response: bool) -> Value {
    let mut messages = Vec::with_capacity(2);
    if !request.system.trim().is_empty() {
        messages.push(ChatMessage { role: "system", content: Value::String(request.system.clone()) });
    }
    messages.push(ChatMessage { role: "user", content: user_content(request) });
    let body = ChatRequest {
        model,
        messages,
        max_tokens: request.max_tokens,
        temperature: request.temperature,
        response_format: json_response.then_some(ResponseFormat { r#type: "json_object" }),
    };
    // Plain strings and numbers always serialize.
    serde_json::to_value(body).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Turns a 200 response body into a [`Completion`]. The first choice is the answer;
/// `finish_reason` is translated to the stop reasons the rest of BEACON uses (`stop` →
/// `end_turn`, `length` → `max_tokens`, `content_filter` → `content_filtered`, `tool_calls` →
/// `tool_use`; others as given). A body that is not a chat completion is
/// [`LlmError::Transient`] (a proxy's page, a truncated body).
pub fn parse_response(body: &[u8], model: &str) -> Result<Completion, LlmError> {
    let response: ChatResponse = serde_json::from_slice(body)
        .map_err(|err| transient(format!("the response is not a chat completion ({err}): {}", excerpt(body))))?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(transient(format!("the response has no choices: {}", excerpt(body))));
    };
    let text = choice.message.and_then(|m| m.content).unwrap_or_default();
    let stop_reason = match choice.finish_reason.as_deref() {
        Some("stop") => "end_turn".to_string(),
        Some("length") => "max_tokens".to_string(),
        Some("content_filter") => "content_filtered".to_string(),
        Some("tool_calls") | Some("function_call") => "tool_use".to_string(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let usage = response
        .usage
        .map(|u| Usage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens })
        .unwrap_or_default();
    Ok(Completion { text, usage, model: model.to_string(), stop_reason, attempts: 1, throttles: 0 })
}

#[async_trait]
impl LlmClient for OpenAiChat {
    fn name(&self) -> String {
        format!("{PROVIDER}:{}", self.model)
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let body = request_body(request, &self.model, self.json_response);
        let mut call = self.http.post(self.url.clone()).json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let response = call.send().await.map_err(|err| classify_transport(&err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|err| classify_transport(&err))?;
        if status.is_success() {
            parse_response(&bytes, &self.model)
        } else {
            Err(classify_status(status, &headers, &bytes, SystemTime::now()))
        }
    }
}

/// Classifies a failure to get a response at all: always retryable except for requests that
/// could not be built (a bad URL or header), which would fail the same way again.
pub fn classify_transport(err: &reqwest::Error) -> LlmError {
    let detail = error_chain(err);
    if err.is_timeout() {
        transient(format!("the request timed out: {detail}"))
    } else if err.is_connect() {
        transient(format!("cannot connect (is the server running at this address?): {detail}"))
    } else if err.is_builder() {
        config_error(format!("the request could not be built (check the base URL and API key): {detail}"))
    } else {
        transient(format!("the request failed: {detail}"))
    }
}

/// Classifies an HTTP error response: 429 is [`LlmError::Throttled`] (unless the body says the
/// account has no quota left at all, which waiting does not fix), 408 and 5xx are
/// [`LlmError::Transient`], other statuses are [`LlmError::Rejected`] with the error body's `type`
/// or `code` as the kind.
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &[u8], now: SystemTime) -> LlmError {
    let detail = ErrorDetail::from_body(body);
    let code = status.as_u16();
    let message = detail.message.clone().unwrap_or_else(|| {
        let text = excerpt(body);
        if text.is_empty() { format!("HTTP {code}") } else { format!("HTTP {code}: {text}") }
    });
    let kind = detail.kind().unwrap_or_else(|| format!("HTTP {code}"));
    match code {
        // OpenAI answers 429 `insufficient_quota` when billing is exhausted: not a rate limit.
        429 if detail.code.as_deref() != Some("insufficient_quota") => {
            LlmError::Throttled { provider: PROVIDER.into(), message, retry_after: retry_after(headers, now) }
        }
        408 | 500..=599 => transient(format!("{kind}: {message}")),
        401 | 403 => LlmError::Rejected {
            provider: PROVIDER.into(),
            kind,
            message: format!("{message} (check the API key: the CLI reads OPENAI_API_KEY)"),
        },
        404 => LlmError::Rejected {
            provider: PROVIDER.into(),
            kind,
            message: format!("{message} (check the base URL, which should end in /v1, and the model name)"),
        },
        _ => LlmError::Rejected { provider: PROVIDER.into(), kind, message },
    }
}

/// What an error body says, in the shapes servers use: OpenAI and llama.cpp
/// `{"error": {"message", "type", "code"}}`, vLLM `{"object": "error", "message", "type",
/// "code"}`, Ollama `{"error": "message"}`.
#[derive(Debug, Default, PartialEq)]
struct ErrorDetail {
    message: Option<String>,
    r#type: Option<String>,
    code: Option<String>,
}

impl ErrorDetail {
    fn from_body(body: &[u8]) -> ErrorDetail {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return ErrorDetail::default();
        };
        let fields = match value.get("error") {
            Some(Value::String(message)) => {
                return ErrorDetail { message: Some(message.clone()), ..Default::default() };
            }
            Some(error @ Value::Object(_)) => error,
            _ => &value,
        };
        let text = |name: &str| match fields.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        ErrorDetail { message: text("message"), r#type: text("type"), code: text("code") }
    }

    /// The kind for [`LlmError::Rejected`]: the `type`, or a non-numeric `code` (llama.cpp's
    /// numeric codes only repeat the status).
    fn kind(&self) -> Option<String> {
        self.r#type.clone().or_else(|| self.code.clone().filter(|c| c.parse::<u16>().is_err()))
    }
}

/// The server's wait hint: `retry-after-ms` (OpenAI, milliseconds), else `retry-after` (seconds
/// or an HTTP date).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && let Ok(delay) = Duration::try_from_secs_f64(ms / 1000.0)
    {
        return Some(delay);
    }
    parse_retry_after(header("retry-after")?, now)
}

/// A `Retry-After` value as a delay: seconds (`"5"`, `"0.5"`) or an HTTP date (a date in the past
/// is no wait). `None` for anything else.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(SystemTime::from(date).duration_since(now).unwrap_or(Duration::ZERO))
}

/// The start of a body as text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn config_error(message: impl Into<String>) -> LlmError {
    LlmError::Config { provider: PROVIDER.into(), message: message.into() }
}

fn transient(message: impl Into<String>) -> LlmError {
    LlmError::Transient { provider: PROVIDER.into(), message: message.into() }
}

/// An error and its sources as one line: reqwest's top-level messages say little.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
    use crate::bedrock::CONTENT_MARKER;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn attachments_become_content_parts() {
        let attachments = vec![
            crate::Attachment { kind: crate::AttachmentKind::Pdf, name: "page-3".into(), bytes: b"%PDF-1.7".to_vec() },
            crate::Attachment { kind: crate::AttachmentKind::Jpeg, name: "scan".into(), bytes: vec![0xFF, 0xD8] },
        ];
        let body = request_body(&CompletionRequest { attachments, ..request() }, "m", true);
        let parts = &body["messages"][1]["content"];
        assert_eq!(parts[0]["type"], "file");
        assert_eq!(parts[0]["file"]["filename"], "page-3.pdf");
        assert_eq!(parts[0]["file"]["file_data"], "data:application/pdf;base64,JVBERi0xLjc=");
        assert_eq!(parts[1]["image_url"]["url"], "data:image/jpeg;base64,/9g=");
        assert_eq!(parts[2]["type"], "text");
        // Without attachments the content stays a plain string.
        assert!(request_body(&request(), "m", true)["messages"][1]["content"].is_string());
    }

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: "You analyse documents.".into(),
            instruction: "Return JSON.".into(),
            content: "Line one.".into(),
            content_label: "page 3".into(),
            language: None,
            max_tokens: 256,
            temperature: 0.0,
            attachments: Vec::new(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    const NOW: u64 = 784_111_777; // 1994-11-06 08:49:37 UTC

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn body_has_system_and_user_messages_and_asks_for_json() {
        let body = request_body(&request(), "m", true);
        assert_eq!(
            body,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "You analyse documents."},
                    {"role": "user", "content": "Return JSON.\n--- CONTENT ---\npage 3\nLine one."}
                ],
                "max_tokens": 256,
                "temperature": 0.0,
                "response_format": {"type": "json_object"}
            })
        );
        assert!(body["messages"][1]["content"].as_str().unwrap().contains(CONTENT_MARKER));
        let plain = request_body(&CompletionRequest { system: String::new(), ..request() }, "m", false);
        assert!(plain.get("response_format").is_none());
        assert_eq!(plain["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn response_parsing_maps_finish_reasons_and_usage() {
        let body = json!({
            "id": "x", "object": "chat.completion", "model": "served-name",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"summary\":\"s\"}"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
        });
        let completion = parse_response(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(completion.text, "{\"summary\":\"s\"}");
        assert_eq!(completion.stop_reason, "max_tokens");
        assert_eq!(completion.usage, Usage { input_tokens: 20, output_tokens: 7 });
        assert_eq!(completion.model, "m");
        let null_content = json!({"choices": [{"message": {"content": null}, "finish_reason": "stop"}]});
        let completion = parse_response(null_content.to_string().as_bytes(), "m").unwrap();
        assert_eq!((completion.text.as_str(), completion.stop_reason.as_str()), ("", "end_turn"));
        assert!(matches!(parse_response(br#"{"choices": []}"#, "m"), Err(LlmError::Transient { .. })));
        assert!(matches!(parse_response(b"<html>", "m"), Err(LlmError::Transient { .. })));
    }

    #[test]
    fn throttling_reads_retry_after_ms_then_retry_after() {
        let classify = |h: &[(&'static str, &'static str)]| {
            classify_status(StatusCode::TOO_MANY_REQUESTS, &headers(h), b"{}", now())
        };
        assert!(matches!(
            classify(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            LlmError::Throttled { retry_after: Some(d), .. } if d == Duration::from_millis(250)
        ));
        assert!(matches!(
            classify(&[("retry-after", "2")]),
            LlmError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
            LlmError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(10)
        ));
        assert!(matches!(classify(&[]), LlmError::Throttled { retry_after: None, .. }));
        let no_quota = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
        assert!(matches!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), no_quota, now()),
            LlmError::Rejected { kind, .. } if kind == "insufficient_quota"
        ));
    }

    #[test]
    fn server_errors_are_transient_and_client_errors_rejected_with_the_body_type() {
        for status in [500, 502, 503, 504, 408] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(matches!(classify_status(status, &HeaderMap::new(), b"", now()), LlmError::Transient { .. }));
        }
        let openai = br#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#;
        match classify_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), openai, now()) {
            LlmError::Rejected { kind, message, .. } => {
                assert_eq!(kind, "invalid_request_error");
                assert!(message.starts_with("Incorrect API key provided"), "{message}");
                assert!(message.contains("OPENAI_API_KEY"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let vllm = br#"{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "param": null, "code": 404}"#;
        assert!(matches!(
            classify_status(StatusCode::NOT_FOUND, &HeaderMap::new(), vllm, now()),
            LlmError::Rejected { kind, message, .. } if kind == "NotFoundError" && message.contains("does not exist")
        ));
        let ollama = br#"{"error": "model \"llama9\" not found, try pulling it first"}"#;
        assert!(matches!(
            classify_status(StatusCode::NOT_FOUND, &HeaderMap::new(), ollama, now()),
            LlmError::Rejected { kind, message, .. } if kind == "HTTP 404" && message.contains("try pulling")
        ));
        let llama_cpp = br#"{"error": {"code": 400, "message": "response_format is not supported", "type": "invalid_request_error"}}"#;
        assert!(matches!(
            classify_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), llama_cpp, now()),
            LlmError::Rejected { kind, .. } if kind == "invalid_request_error"
        ));
        let code_only = br#"{"error": {"message": "bad", "code": "context_length_exceeded"}}"#;
        assert!(matches!(
            classify_status(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), code_only, now()),
            LlmError::Rejected { kind, .. } if kind == "context_length_exceeded"
        ));
        assert!(matches!(
            classify_status(StatusCode::FORBIDDEN, &HeaderMap::new(), b"<html>Forbidden</html>", now()),
            LlmError::Rejected { kind, message, .. } if kind == "HTTP 403" && message.contains("Forbidden")
        ));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("5", now()), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after(" 0.5 ", now()), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn builder_checks_the_url_model_and_key() {
        let client =
            OpenAiChat::new("http://127.0.0.1:8000/v1/", "m", Some("k".into()), Duration::from_secs(1)).unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:8000/v1/chat/completions");
        assert_eq!((client.name().as_str(), client.model()), ("openai:m", "m"));
        assert!(matches!(OpenAiChat::builder("not a url", "m").build(), Err(LlmError::Config { .. })));
        assert!(matches!(OpenAiChat::builder("ftp://host/v1", "m").build(), Err(LlmError::Config { .. })));
        assert!(matches!(OpenAiChat::builder("http://h/v1", " ").build(), Err(LlmError::Config { .. })));
        assert!(matches!(
            OpenAiChat::builder("http://h/v1", "m").api_key("bad\nkey").build(),
            Err(LlmError::Config { .. })
        ));
    }

    #[test]
    fn excerpts_are_cut_on_character_boundaries() {
        let long = "売".repeat(BODY_EXCERPT_CHARS + 10);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
