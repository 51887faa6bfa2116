//! The wire format of OpenAI's Chat Completions API (`POST /v1/chat/completions`), as far as the
//! simulator needs it, and OpenAI-style error responses.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{DEFAULT_MAX_TOKENS, ValidRequest};

/// The body of `POST /v1/chat/completions`. Fields the simulator does not use (`tools`, `stream`,
/// `n`, ...) are accepted and ignored; `response_format` is accepted as well, since the simulated
/// model answers JSON whatever is asked.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// One message: `content` is a string or an array of parts (`{"type":"text","text":...}`).
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

impl ChatRequest {
    /// Parses and validates a request body; also returns the model name to echo.
    pub fn parse(body: &[u8]) -> Result<(String, ValidRequest), OpenAiError> {
        let request: ChatRequest = serde_json::from_slice(body).map_err(|err| {
            OpenAiError::invalid_request(format!("We could not parse the JSON body of your request: {err}."))
        })?;
        request.validate()
    }

    fn validate(self) -> Result<(String, ValidRequest), OpenAiError> {
        let model = self
            .model
            .filter(|m| !m.is_empty())
            .ok_or_else(|| OpenAiError::invalid_request("you must provide a model parameter").with_param("model"))?;
        if self.messages.is_empty() {
            return Err(OpenAiError::invalid_request("[] is too short - 'messages'").with_param("messages"));
        }
        if let Some(bad) = self.messages.iter().find(|m| !ROLES.contains(&m.role.as_str())) {
            return Err(OpenAiError::invalid_request(format!(
                "Invalid value: '{}'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.",
                bad.role
            ))
            .with_param("messages"));
        }
        let Some(last_user) = self.messages.iter().rev().find(|m| m.role == "user") else {
            return Err(OpenAiError::invalid_request("The messages must contain at least one user message.")
                .with_param("messages"));
        };
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => DEFAULT_MAX_TOKENS,
            Some(n) if n >= 1 => n.unsigned_abs(),
            Some(n) => {
                return Err(OpenAiError::invalid_request(format!(
                    "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got {n} instead."
                ))
                .with_param("max_tokens"));
            }
        };
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(OpenAiError::invalid_request(format!(
                "Invalid 'temperature': expected a value between 0 and 2, but got {t} instead."
            ))
            .with_param("temperature"));
        }
        if let Some(format) = &self.response_format {
            let kind = format.get("type").and_then(Value::as_str);
            if !matches!(kind, Some("text" | "json_object" | "json_schema")) {
                return Err(OpenAiError::invalid_request(format!(
                    "Invalid 'response_format': {format}; the type must be 'text', 'json_object' or 'json_schema'."
                ))
                .with_param("response_format"));
            }
        }
        let prompt = text_of(&last_user.content);
        let all_text = self.messages.iter().map(|m| text_of(&m.content)).collect::<Vec<_>>().join("\n");
        let attachments = self
            .messages
            .iter()
            .filter_map(|m| m.content.as_array())
            .flatten()
            .filter(|part| matches!(part.get("type").and_then(Value::as_str), Some("image_url" | "file")))
            .count() as u64;
        Ok((model, ValidRequest { prompt, all_text, max_tokens, attachments }))
    }
}

/// The body of a successful chat completion.
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl ChatCompletion {
    /// One assistant choice; `truncated` when the answer ran out of `max_tokens`.
    pub fn new(
        id: String,
        created: u64,
        model: String,
        content: String,
        truncated: bool,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> ChatCompletion {
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage { role: "assistant", content },
                finish_reason: if truncated { "length" } else { "stop" },
            }],
            usage: Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens },
        }
    }
}

/// An error answered the way OpenAI answers it: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({status}): {message}")]
pub struct OpenAiError {
    pub status: StatusCode,
    /// The error's `type`.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    pub message: String,
    /// Sent as the `retry-after` header, in whole seconds.
    pub retry_after: Option<Duration>,
}

/// The `retry-after` sent when the quota never admits the request; clients should give up or
/// wait for a human rather than spin.
const RETRY_AFTER_NEVER_SECS: u64 = 60;

impl OpenAiError {
    /// HTTP 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// HTTP 429 `rate_limit_error` with a `retry-after` of `retry_after` rounded up to whole
    /// seconds (at least 1).
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> OpenAiError {
        OpenAiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            code: Some("rate_limit_exceeded"),
            param: None,
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }

    /// HTTP 503 `server_error`.
    pub fn unavailable(message: impl Into<String>) -> OpenAiError {
        OpenAiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: None,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }

    fn with_param(mut self, param: &'static str) -> OpenAiError {
        self.param = Some(param);
        self
    }
}

/// Whole seconds for a `retry-after` header: rounded up, at least 1, and a fixed minute for
/// "never".
pub fn retry_after_secs(wait: Duration) -> u64 {
    if wait == Duration::MAX {
        return RETRY_AFTER_NEVER_SECS;
    }
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code }
        })
        .to_string();
        let mut response =
            (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(HeaderName::from_static("retry-after"), HeaderValue::from(retry_after_secs(wait)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated() {
        let (model, ok) = ChatRequest::parse(
            br#"{"model":"gpt-x","messages":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":100,"temperature":0.0,"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        assert_eq!(model, "gpt-x");
        assert_eq!(
            ok,
            ValidRequest { prompt: "hi".into(), all_text: "sys\nhi".into(), max_tokens: 100, attachments: 0 }
        );

        for body in [
            &b"not json"[..],
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
            br#"{"model":"m","messages":[]}"#,
            br#"{"model":"m","messages":[{"role":"assistant","content":"x"}]}"#,
            br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":2.5}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
        ] {
            let err = ChatRequest::parse(body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.kind, "invalid_request_error");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::MAX), 60);
    }

    #[tokio::test]
    async fn rate_limit_response_is_shaped_like_openai() {
        let response = OpenAiError::rate_limited("slow down", Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
    }
}
