//! A content-addressed cache of completions: the same request to the same model is answered once.
//!
//! [`cache_key`] hashes (SHA-256) everything that changes the answer: the model, the system
//! prompt, the instruction (which embeds the answer's schema), the content and its label, the
//! language, `max_tokens` and the temperature. [`Cached`] looks the key up in a [`CacheStore`]
//! before calling its inner client, and stores successful answers only: failures are never
//! cached, so a rerun retries them.
//!
//! Stores: [`MemoryCache`] for one process, [`DirectoryCache`] to survive restarts (one JSON file
//! per key, written atomically, so a crash never leaves a half-written entry and a corrupt file
//! is simply a miss).
//!
//! ```no_run
//! # async fn run(client: impl beacon_llm::LlmClient, request: beacon_llm::CompletionRequest) {
//! use std::sync::Arc;
//! use beacon_llm::cache::{Cached, DirectoryCache};
//! use beacon_llm::{ClientStats, LlmClient};
//!
//! let store = Arc::new(DirectoryCache::new(".beacon/cache/llm"));
//! let client = Cached::new(client, store, "anthropic.claude-3-haiku-20240307-v1:0", ClientStats::default());
//! let first = client.complete(&request).await; // calls the model
//! let again = client.complete(&request).await; // answered from the cache, `attempts == 0`
//! assert_eq!(client.hits(), 1);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ClientStats, Completion, CompletionRequest, LlmClient, LlmError};

/// Where [`Cached`] keeps completions. Stores are best effort: a store that cannot read answers
/// `None`, one that cannot write logs and carries on.
pub trait CacheStore: Send + Sync {
    /// The completion stored under `key`, if any.
    fn get(&self, key: &str) -> Option<Completion>;

    /// Stores `completion` under `key`, replacing any earlier one.
    fn put(&self, key: &str, completion: &Completion);
}

/// The cache key of `request` sent to `model`: the SHA-256, in lowercase hex, of a canonical
/// encoding of every field that changes the answer.
///
/// The encoding is versioned and length-prefixed (so no two different requests encode alike);
/// changing it invalidates every cache, which is the point of the version.
pub fn cache_key(request: &CompletionRequest, model: &str) -> String {
    let CompletionRequest {
        system,
        instruction,
        content,
        content_label,
        language,
        max_tokens,
        temperature,
        attachments,
    } = request;
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        for part in [name.as_bytes(), value] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    };
    field("beacon-llm cache key", b"1");
    field("model", model.as_bytes());
    field("system", system.as_bytes());
    field("instruction", instruction.as_bytes());
    field("content", content.as_bytes());
    field("content_label", content_label.as_bytes());
    match language {
        Some(language) => field("language", language.as_bytes()),
        None => field("no language", b""),
    }
    field("max_tokens", &max_tokens.to_le_bytes());
    // 0.0 and -0.0 sample alike.
    let temperature = if *temperature == 0.0 { 0.0f32 } else { *temperature };
    field("temperature", &temperature.to_bits().to_le_bytes());
    for attachment in attachments {
        field("attachment", attachment.kind.media_type().as_bytes());
        field("attachment name", attachment.name.as_bytes());
        field("attachment bytes", &attachment.bytes);
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// A [`CacheStore`] in memory, for one process.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, Completion>>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        MemoryCache::default()
    }

    /// How many completions are stored.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CacheStore for MemoryCache {
    fn get(&self, key: &str) -> Option<Completion> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    fn put(&self, key: &str, completion: &Completion) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned(), completion.clone());
    }
}

/// A [`CacheStore`] in a directory: one JSON file per key, `<dir>/<first 2 chars>/<key>.json`.
///
/// Writes go to a temporary file in the same directory and are renamed into place, so readers
/// see a whole entry or none. Unreadable, corrupt or mismatched files are misses. Keys must be
/// ASCII letters, digits, `-` or `_` (as [`cache_key`]'s are); others are misses and are not
/// stored. The I/O is blocking: entries are a few kilobytes.
#[derive(Debug, Clone)]
pub struct DirectoryCache {
    dir: PathBuf,
}

/// The file format of a [`DirectoryCache`] entry.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    completion: Completion,
}

impl DirectoryCache {
    /// A cache in `dir`, created on the first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirectoryCache { dir: dir.into() }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key`, or `None` when `key` cannot name a file safely.
    pub fn path_of(&self, key: &str) -> Option<PathBuf> {
        let valid = key.len() >= 3 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| self.dir.join(&key[..2]).join(format!("{key}.json")))
    }

    fn write(&self, path: &Path, key: &str, completion: &Completion) -> std::io::Result<()> {
        static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
        let shard = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(shard)?;
        let entry = Entry { key: key.to_owned(), completion: completion.clone() };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        let temp =
            shard.join(format!(".{key}.{}.{}.tmp", std::process::id(), NEXT_TEMP.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::File::create(&temp).and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
        match written.and_then(|()| std::fs::rename(&temp, path)) {
            Ok(()) => Ok(()),
            Err(error) => {
                let _ = std::fs::remove_file(&temp);
                Err(error)
            }
        }
    }
}

impl CacheStore for DirectoryCache {
    fn get(&self, key: &str) -> Option<Completion> {
        let path = self.path_of(key)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read cache entry; treating it as a miss");
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.key == key => Some(entry.completion),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "cache entry belongs to another key; treating it as a miss");
                None
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "corrupt cache entry; treating it as a miss");
                None
            }
        }
    }

    fn put(&self, key: &str, completion: &Completion) {
        let Some(path) = self.path_of(key) else {
            tracing::warn!(key, "not a valid cache key; not caching");
            return;
        };
        if let Err(error) = self.write(&path, key, completion) {
            tracing::warn!(path = %path.display(), %error, "cannot write cache entry; continuing without it");
        }
    }
}

/// An [`LlmClient`] that answers repeated requests from a [`CacheStore`].
///
/// A hit returns the stored completion with `attempts` and `throttles` set to 0 (it cost no
/// call). [`Cached::hits`] and [`Cached::misses`] count lookups.
pub struct Cached<C> {
    inner: C,
    store: Arc<dyn CacheStore>,
    model: String,
    stats: ClientStats,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<C: LlmClient> Cached<C> {
    /// Wraps `inner`, which answers as `model` (part of every key: another model, another
    /// answer). `stats` is the stack's shared counters.
    pub fn new(inner: C, store: Arc<dyn CacheStore>, model: impl Into<String>, stats: ClientStats) -> Self {
        Cached { inner, store, model: model.into(), stats, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Requests answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Requests passed to the inner client.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The model in every key.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The stack's shared counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C> std::fmt::Debug for Cached<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("model", &self.model)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<C: LlmClient> LlmClient for Cached<C> {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let key = cache_key(request, &self.model);
        if let Some(mut completion) = self.store.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(label = %request.content_label, key = %key, "cache hit");
            completion.attempts = 0;
            completion.throttles = 0;
            return Ok(completion);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let completion = self.inner.complete(request).await?;
        self.store.put(&key, &completion);
        Ok(completion)
    }

    async fn cached(&self, request: &CompletionRequest) -> Option<Completion> {
        self.store.get(&cache_key(request, &self.model))
    }

    async fn remember(&self, request: &CompletionRequest, completion: &Completion) {
        self.store.put(&cache_key(request, &self.model), completion);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::Usage;

    fn request() -> CompletionRequest {
        CompletionRequest {
            system: "s".into(),
            instruction: "i".into(),
            content: "c".into(),
            content_label: "page 1".into(),
            language: Some("ja".into()),
            max_tokens: 100,
            temperature: 0.0,
            attachments: Vec::new(),
        }
    }

    fn completion(text: &str) -> Completion {
        Completion {
            text: text.into(),
            usage: Usage { input_tokens: 10, output_tokens: 5 },
            model: "m".into(),
            stop_reason: "end_turn".into(),
            attempts: 3,
            throttles: 2,
        }
    }

    /// A directory under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "beacon-llm-cache-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Answers `answer-<n>` and counts calls; fails when the content is "fail".
    struct Counting(AtomicU32);

    #[async_trait]
    impl LlmClient for Counting {
        fn name(&self) -> String {
            "counting".into()
        }
        async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if request.content == "fail" {
                return Err(LlmError::Transient { provider: "counting".into(), message: "503".into() });
            }
            Ok(completion(&format!("answer-{n}")))
        }
    }

    #[test]
    fn key_changes_with_everything_that_changes_the_answer() {
        let base = request();
        let key = cache_key(&base, "m");
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(key, cache_key(&base.clone(), "m"), "deterministic");
        let variants: Vec<CompletionRequest> = vec![
            CompletionRequest { system: "s2".into(), ..base.clone() },
            CompletionRequest { instruction: "i2".into(), ..base.clone() },
            CompletionRequest { content: "c2".into(), ..base.clone() },
            CompletionRequest { content_label: "page 2".into(), ..base.clone() },
            CompletionRequest { language: Some("en".into()), ..base.clone() },
            CompletionRequest { language: None, ..base.clone() },
            CompletionRequest { language: Some(String::new()), ..base.clone() },
            CompletionRequest { max_tokens: 101, ..base.clone() },
            CompletionRequest { temperature: 0.5, ..base.clone() },
            // Moving text between fields is a different request.
            CompletionRequest { system: "si".into(), instruction: String::new(), ..base.clone() },
        ];
        let mut keys: Vec<String> = variants.iter().map(|v| cache_key(v, "m")).collect();
        keys.push(cache_key(&base, "m2"));
        keys.push(key.clone());
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count, "every variant has its own key");
        assert_eq!(key, cache_key(&CompletionRequest { temperature: -0.0, ..base }, "m"));
    }

    #[tokio::test]
    async fn second_request_is_a_hit_with_no_call() {
        let store = Arc::new(MemoryCache::new());
        let client = Cached::new(Counting(AtomicU32::new(0)), store.clone(), "m", ClientStats::default());
        let first = client.complete(&request()).await.unwrap();
        assert_eq!((first.attempts, first.throttles), (3, 2));
        let again = client.complete(&request()).await.unwrap();
        assert_eq!(again.text, first.text);
        assert_eq!((again.attempts, again.throttles), (0, 0));
        assert_eq!(client.inner().0.load(Ordering::SeqCst), 1);
        assert_eq!((client.hits(), client.misses()), (1, 1));
        assert_eq!(store.len(), 1);
        // Another model: another key.
        let other = Cached::new(Counting(AtomicU32::new(0)), store.clone(), "m2", ClientStats::default());
        other.complete(&request()).await.unwrap();
        assert_eq!(other.misses(), 1);
    }

    #[tokio::test]
    async fn answers_from_elsewhere_are_remembered_and_looked_up_without_a_call() {
        let cached =
            Cached::new(Counting(AtomicU32::new(0)), Arc::new(MemoryCache::new()), "m", ClientStats::default());
        assert!(cached.cached(&request()).await.is_none());
        cached.remember(&request(), &completion("from a batch job")).await;
        assert_eq!(cached.cached(&request()).await.map(|c| c.text), Some("from a batch job".to_string()));
        assert_eq!(cached.complete(&request()).await.unwrap().text, "from a batch job");
        assert_eq!(cached.inner().0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let store = Arc::new(MemoryCache::new());
        let client = Cached::new(Counting(AtomicU32::new(0)), store.clone(), "m", ClientStats::default());
        let failing = CompletionRequest { content: "fail".into(), ..request() };
        assert!(client.complete(&failing).await.is_err());
        assert!(client.complete(&failing).await.is_err());
        assert_eq!(client.inner().0.load(Ordering::SeqCst), 2);
        assert!(store.is_empty());
    }

    #[test]
    fn directory_cache_round_trips_and_shards() {
        let dir = TempDir::new();
        let cache = DirectoryCache::new(&dir.0);
        let key = cache_key(&request(), "m");
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &completion("a"));
        assert_eq!(cache.get(&key), Some(completion("a")));
        let path = dir.0.join(&key[..2]).join(format!("{key}.json"));
        assert!(path.is_file());
        cache.put(&key, &completion("b"));
        assert_eq!(cache.get(&key), Some(completion("b")));
        // No temporary files are left behind.
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1);
        // A second handle on the same directory sees the entry (it survives restarts).
        assert_eq!(DirectoryCache::new(&dir.0).get(&key), Some(completion("b")));
    }

    #[test]
    fn corrupt_or_foreign_entries_are_misses() {
        let dir = TempDir::new();
        let cache = DirectoryCache::new(&dir.0);
        let key = cache_key(&request(), "m");
        cache.put(&key, &completion("a"));
        let path = cache.path_of(&key).unwrap();
        std::fs::write(&path, b"{\"key\": \"trunc").unwrap();
        assert_eq!(cache.get(&key), None);
        // An entry copied under another key's name is not trusted.
        let other = cache_key(&request(), "m2");
        cache.put(&other, &completion("other"));
        std::fs::copy(cache.path_of(&other).unwrap(), &path).unwrap();
        assert_eq!(cache.get(&key), None);
        // Overwriting a corrupt entry repairs it.
        cache.put(&key, &completion("a"));
        assert_eq!(cache.get(&key), Some(completion("a")));
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let dir = TempDir::new();
        let cache = DirectoryCache::new(&dir.0);
        for key in ["", "ab", "../etc/passwd", "a/b/c", "ab.json"] {
            assert_eq!(cache.path_of(key), None, "{key}");
            cache.put(key, &completion("x"));
            assert_eq!(cache.get(key), None);
        }
        assert!(!dir.0.exists(), "nothing was written");
    }
}
