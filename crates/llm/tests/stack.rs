//! The whole client stack, `Cached<Limited<Adaptive<Retrying<provider>>>>`, against a fake
//! provider that enforces a quota and a concurrency capacity, on a manual clock (nothing sleeps).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use beacon_llm::cache::{Cached, MemoryCache};
use beacon_llm::concurrency::{Adaptive, AdaptiveConfig};
use beacon_llm::limiter::{Clock, GcraLimiter, Limited, ManualClock, Quota, WINDOW, estimate_input_tokens};
use beacon_llm::retry::{RetryPolicy, Retrying};
use beacon_llm::{ClientStats, Completion, CompletionRequest, LlmClient, LlmError, Usage};

type Stack = Cached<Limited<Adaptive<Retrying<Arc<FakeProvider>>>>>;

/// A provider with a quota (requests and tokens in any 60 s window, as counted by its own log)
/// and a capacity (calls in flight); beyond either it throttles.
struct FakeProvider {
    clock: Arc<ManualClock>,
    quota: Quota,
    capacity: usize,
    /// Scheduler turns a call takes, so that calls overlap.
    turns: usize,
    calls: AtomicU64,
    throttles: AtomicU64,
    in_flight: AtomicUsize,
    /// Accepted calls: when, and the tokens they used.
    log: Mutex<Vec<(Instant, u64)>>,
}

impl FakeProvider {
    fn new(clock: Arc<ManualClock>, quota: Quota, capacity: usize, turns: usize) -> Arc<Self> {
        Arc::new(FakeProvider {
            clock,
            quota,
            capacity,
            turns,
            calls: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::SeqCst)
    }

    /// Whether a call of `tokens` at `now` fits the quota.
    fn fits(&self, log: &[(Instant, u64)], now: Instant, tokens: u64) -> bool {
        let window: Vec<_> = log.iter().filter(|(at, _)| *at + WINDOW > now).collect();
        let used: u64 = window.iter().map(|(_, tokens)| tokens).sum();
        self.quota.rpm.is_none_or(|rpm| window.len() < rpm as usize)
            && self.quota.tpm.is_none_or(|tpm| used + tokens <= tpm)
    }
}

#[async_trait]
impl LlmClient for FakeProvider {
    fn name(&self) -> String {
        "fake".into()
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let crowd = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        for _ in 0..self.turns {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // The answer's length varies with the request, within max_tokens.
        let output = (request.content.len() as u64 * 37) % u64::from(request.max_tokens) + 1;
        let usage = Usage { input_tokens: estimate_input_tokens(request), output_tokens: output };
        let now = self.clock.now();
        let mut log = self.log.lock().unwrap();
        if crowd > self.capacity || !self.fits(&log, now, usage.total()) {
            self.throttles.fetch_add(1, Ordering::SeqCst);
            return Err(LlmError::Throttled { provider: "fake".into(), message: "quota".into(), retry_after: None });
        }
        log.push((now, usage.total()));
        Ok(Completion {
            text: format!("{{\"summary\":\"{}\"}}", request.content_label),
            usage,
            model: "fake-model".into(),
            stop_reason: "end_turn".into(),
            attempts: 1,
            throttles: 0,
        })
    }
}

fn request(n: usize) -> CompletionRequest {
    CompletionRequest {
        system: "You analyse one page and answer with JSON only.".into(),
        instruction: "Return {\"summary\": string}.".into(),
        content: format!("Page {n}. {}", "Revenue grew while costs stayed flat. ".repeat(n % 17 + 1)),
        content_label: format!("page {n}"),
        language: Some("en".into()),
        max_tokens: 500,
        temperature: 0.0,
        attachments: Vec::new(),
    }
}

fn stack(provider: &Arc<FakeProvider>, clock: &Arc<ManualClock>, quota: Quota) -> (Arc<Stack>, ClientStats) {
    let stats = ClientStats::default();
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        // A manual clock's sleeps end at once, so every attempt would look slow enough to hedge.
        hedge: false,
        ..RetryPolicy::default()
    };
    let retrying = Retrying::new(provider.clone(), policy, stats.clone()).with_sleeper(clock.clone());
    let adaptive = Adaptive::new(retrying, AdaptiveConfig::default()).with_clock(clock.clone());
    let limiter = Arc::new(GcraLimiter::with_clock(quota, clock.clone()));
    let limited = Limited::new(adaptive, limiter);
    let cached = Cached::new(limited, Arc::new(MemoryCache::new()), "fake-model", stats.clone());
    (Arc::new(cached), stats)
}

async fn run_batch(client: &Arc<Stack>, requests: usize) -> Vec<Result<Completion, LlmError>> {
    let tasks: Vec<_> = (0..requests)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.complete(&request(n)).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn an_identical_request_is_answered_from_the_cache() {
    let clock = Arc::new(ManualClock::new());
    let provider =
        FakeProvider::new(clock.clone(), Quota { rpm: Some(60), tpm: Some(50_000), tpd: None }, usize::MAX, 0);
    let (client, stats) = stack(&provider, &clock, Quota { rpm: Some(60), tpm: Some(50_000), tpd: None });
    let first = client.complete(&request(1)).await.unwrap();
    assert_eq!(first.attempts, 1);
    let requests_before = stats.snapshot().requests;
    let second = client.complete(&request(1)).await.unwrap();
    assert_eq!(second.text, first.text);
    assert_eq!(second.usage, first.usage);
    assert_eq!((second.attempts, second.throttles), (0, 0));
    assert_eq!(provider.calls(), 1, "no second provider call");
    assert_eq!(stats.snapshot().requests, requests_before);
    assert_eq!((client.hits(), client.misses()), (1, 1));
    // A different page is a miss.
    client.complete(&request(2)).await.unwrap();
    assert_eq!((provider.calls(), client.hits(), client.misses()), (2, 1, 2));
}

#[tokio::test]
async fn a_concurrent_batch_never_exceeds_a_known_quota() {
    const REQUESTS: usize = 200;
    let quota = Quota { rpm: Some(60), tpm: Some(30_000), tpd: None };
    let clock = Arc::new(ManualClock::new());
    let start = clock.now();
    let provider = FakeProvider::new(clock.clone(), quota, usize::MAX, 0);
    let (client, stats) = stack(&provider, &clock, quota);

    let results = run_batch(&client, REQUESTS).await;

    assert!(results.iter().all(Result::is_ok), "every request succeeds");
    assert_eq!(provider.throttles(), 0, "the limiter kept every call within the quota");
    assert_eq!(stats.snapshot().throttles, 0);
    assert_eq!(provider.calls(), REQUESTS as u64);
    let log = provider.log.lock().unwrap().clone();
    for (i, &(from, _)) in log.iter().enumerate() {
        let window: Vec<_> = log[i..].iter().take_while(|(at, _)| *at < from + WINDOW).collect();
        assert!(window.len() <= 60, "{} requests in the window from call {i}", window.len());
        let tokens: u64 = window.iter().map(|(_, tokens)| tokens).sum();
        assert!(tokens <= 30_000, "{tokens} tokens in the window from call {i}");
    }
    // And it went about as fast as the quota allows: 200 requests at 60/min take 3 to 4 minutes
    // (requests bind; the token reservations are refunded down to what was used).
    let elapsed = log.last().unwrap().0 - start;
    assert!(elapsed >= Duration::from_secs(120) && elapsed <= Duration::from_secs(240), "{elapsed:?}");
}

#[tokio::test]
async fn with_an_unknown_quota_adaptive_concurrency_gets_everything_through() {
    const REQUESTS: usize = 300;
    const CAPACITY: usize = 10;
    let clock = Arc::new(ManualClock::new());
    // The provider takes any rate but throttles beyond 10 calls in flight; the limiter knows
    // nothing.
    let provider = FakeProvider::new(clock.clone(), Quota::unlimited(), CAPACITY, 3);
    let (client, stats) = stack(&provider, &clock, Quota::unlimited());

    let results = run_batch(&client, REQUESTS).await;

    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(client.misses(), REQUESTS as u64);
    // The limit was found by trying: some throttles, retried below the adaptive layer.
    assert!(provider.throttles() > 0);
    assert_eq!(stats.snapshot().throttles, provider.throttles());
    let limit = client.inner().inner().limit();
    assert!(limit > 1.0 && limit < 3.0 * CAPACITY as f64, "limit {limit}");
}
