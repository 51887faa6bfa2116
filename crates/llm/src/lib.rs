//! LLM clients for BEACON.
//!
//! Every provider implements [`LlmClient`]: given one [`CompletionRequest`] (a system prompt, an
//! instruction and the content of one unit), it returns the model's answer as text plus the token
//! usage. The pipeline builds the prompts and parses the answers; providers only talk to models.
//!
//! Providers:
//! - [`bedrock::BedrockConverse`]: Amazon Bedrock's Converse API through the AWS SDK for Rust.
//! - [`invoke::BedrockInvoke`]: Bedrock InvokeModel with an Anthropic Messages body (AWS SDK).
//! - [`openai::OpenAiChat`]: OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp).
//! - [`offline::OfflineAnalyzer`]: an extractive analyzer that needs no model and no network.
//!
//! Wrappers (the client stack [`stack::paced`] builds), outermost first:
//! `Cached<Retrying<Paced<Timed<provider>>>>`; [`Timed`] records how long the provider took.
//! - [`cache::Cached`]: answers repeated requests from a content-addressed [`cache::CacheStore`].
//! - [`retry::Retrying`]: exponential backoff with full jitter on 5xx and timeouts; throttled
//!   attempts go straight back to the pacer, which does the waiting.
//! - [`pacer::Paced`]: every attempt passes a [`pacer::Pacer`]: smooth pacing in small bursts at
//!   the told quota (an upper bound, enforced over every 60 s window by a
//!   [`limiter::RateLimiter`] such as [`limiter::GcraLimiter`], reserving `input + max_tokens`
//!   and refunding what was unused) or at a learned rate; slow start; multiplicative decrease on
//!   throttles and additive recovery; one probe while throttled, `Retry-After` honoured.
//!
//! [`limiter::Limited`] (the limiter alone) and [`concurrency::Adaptive`] (AIMD on calls in
//! flight) remain as building blocks for callers that want one of them alone.
//!
//! [`ClientStats`] counts requests, throttles and retries across the stack so that progress
//! displays and reports can show them.

pub mod bedrock;
pub mod cache;
pub mod concurrency;
pub mod invoke;
pub mod limiter;
pub mod offline;
pub mod openai;
pub mod pacer;
pub mod retry;
pub mod shared_pace;
pub mod stack;
mod stats;

pub use stats::{Available, ClientStats, LATENCY_BUCKETS, LatencySnapshot, StatsSnapshot, Timed};

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One request to a model: analyse the content of one unit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompletionRequest {
    /// The system prompt (role, output format rules).
    pub system: String,
    /// What to do with the content (task description, JSON schema to follow).
    pub instruction: String,
    /// The unit's content as text (page text, sheet as a Markdown table, ...).
    pub content: String,
    /// A short label for the content (e.g. "page 3", "sheet 売上"); used in prompts and logs.
    pub content_label: String,
    /// BCP-47-ish language code of the document when known (e.g. "ja", "en"); answers should be
    /// written in this language.
    pub language: Option<String>,
    /// Upper bound on the answer's tokens.
    pub max_tokens: u32,
    /// Sampling temperature; 0.0 for reproducible answers.
    pub temperature: f32,
    /// Files the model reads alongside the text (a one-page PDF of the page, an image), for
    /// models that accept them. Providers that cannot send an attachment's kind reject the
    /// request with [`LlmError::Config`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file sent to the model with a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// A short name ("page-3"): letters, digits, spaces, hyphens, parentheses and brackets only,
    /// as Bedrock requires for document names.
    pub name: String,
    #[serde(with = "attachment_bytes")]
    pub bytes: Vec<u8>,
}

/// What an [`Attachment`] holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    Pdf,
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl AttachmentKind {
    /// The MIME type.
    pub fn media_type(self) -> &'static str {
        match self {
            AttachmentKind::Pdf => "application/pdf",
            AttachmentKind::Png => "image/png",
            AttachmentKind::Jpeg => "image/jpeg",
            AttachmentKind::Gif => "image/gif",
            AttachmentKind::Webp => "image/webp",
        }
    }

    /// Whether it is an image (otherwise a document).
    pub fn is_image(self) -> bool {
        !matches!(self, AttachmentKind::Pdf)
    }
}

/// The tokens an attachment is assumed to cost before the provider says: a PDF page or an image
/// of about a megapixel is 1,000–1,600 tokens for Claude (text of the page plus its image), so
/// the reservation takes the high end; the limiter settles with the real count.
pub const ATTACHMENT_TOKEN_ESTIMATE: u64 = 1_600;

/// Attachments travel as base64 in JSON (caches, journals).
mod attachment_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Token usage of one call as reported by the provider.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
    }
}

/// A model's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Completion {
    /// The answer's text (expected to be a JSON document when the instruction asks for one).
    pub text: String,
    pub usage: Usage,
    /// The model that answered (as the provider names it).
    pub model: String,
    /// Why the model stopped (`end_turn`, `max_tokens`, ...).
    pub stop_reason: String,
    /// How many attempts the call took, including the successful one (filled by [`retry::Retrying`]).
    pub attempts: u32,
    /// How many of those attempts were throttled.
    pub throttles: u32,
}

/// What went wrong talking to a model, classified for retrying.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// The provider refused the request because a quota was exceeded (HTTP 429,
    /// `ThrottlingException`). Retryable. `retry_after` is the provider's hint, when given.
    #[error("throttled by {provider}: {message}")]
    Throttled { provider: String, message: String, retry_after: Option<std::time::Duration> },
    /// A temporary failure: 5xx, `ServiceUnavailable`, `ModelNotReady`, timeouts, connection
    /// errors. Retryable.
    #[error("transient error from {provider}: {message}")]
    Transient { provider: String, message: String },
    /// The request itself is wrong or not allowed (validation, access denied, unknown model).
    /// Retrying cannot help.
    #[error("{provider} rejected the request ({kind}): {message}")]
    Rejected { provider: String, kind: String, message: String },
    /// Retries were exhausted; `last` is the final error.
    #[error("gave up after {attempts} attempts ({throttles} throttled): {last}")]
    GaveUp { attempts: u32, throttles: u32, last: Box<LlmError> },
    /// The client could not be set up (credentials, region, endpoint).
    #[error("cannot configure {provider}: {message}")]
    Config { provider: String, message: String },
}

impl LlmError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LlmError::Throttled { .. } | LlmError::Transient { .. })
    }

    /// Whether this is a throttling error.
    pub fn is_throttle(&self) -> bool {
        matches!(self, LlmError::Throttled { .. })
    }

    /// A stable error name for state machines and reports (`Beacon.Throttled`, ...).
    pub fn error_name(&self) -> &'static str {
        match self {
            LlmError::Throttled { .. } => "Beacon.Throttled",
            LlmError::Transient { .. } => "Beacon.Transient",
            LlmError::Rejected { .. } => "Beacon.Rejected",
            LlmError::GaveUp { .. } => "Beacon.GaveUp",
            LlmError::Config { .. } => "Beacon.Config",
        }
    }
}

/// A language model (or something that answers like one).
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// A short name for logs and reports, e.g. `bedrock:anthropic.claude-3-haiku...` or `offline`.
    fn name(&self) -> String;

    /// Send one request and wait for the answer.
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError>;

    /// The stored answer to `request`, if the client keeps one (the result cache), without
    /// sending anything. Lets a batch job leave out what a re-run would not pay for.
    async fn cached(&self, _request: &CompletionRequest) -> Option<Completion> {
        None
    }

    /// Keep `completion`, obtained elsewhere (a batch job), as the answer to `request`, as if
    /// [`LlmClient::complete`] had returned it. Clients without a cache ignore it.
    async fn remember(&self, _request: &CompletionRequest, _completion: &Completion) {}
}

#[async_trait]
impl<T: LlmClient + ?Sized> LlmClient for Arc<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        (**self).complete(request).await
    }
    async fn cached(&self, request: &CompletionRequest) -> Option<Completion> {
        (**self).cached(request).await
    }
    async fn remember(&self, request: &CompletionRequest, completion: &Completion) {
        (**self).remember(request, completion).await
    }
}
