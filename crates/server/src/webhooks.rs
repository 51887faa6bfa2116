//! Webhooks: events POSTed to subscribers (and to an upload's `callback_url`), signed as the
//! Standard Webhooks specification says — `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` — delivered from an outbox
//! in the server's SQLite file and retried with exponential backoff, every attempt recorded.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use beacon_pipeline::config::ServeConfig;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::db::{AttemptOutcome, Delivery, ServerDb};
use crate::metrics::Metrics;

/// The subscriber name of an upload's callback URL.
pub const CALLBACK: &str = "callback";

/// The longest wait between two attempts at one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The events there are.
pub const EVENTS: &[&str] = &["execution.succeeded", "execution.failed", "execution.timed_out", "alarm.state_changed"];

/// The key a `whsec_<base64>` secret stands for (any other text is the key itself).
fn key_of(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<signature>` of `body` sent as message `id` at `timestamp` (Unix seconds).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    // An HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(secret)).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Sends what the outbox holds.
pub struct Webhooks {
    db: Arc<ServerDb>,
    config: ServeConfig,
    client: reqwest::Client,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    pub fn new(db: Arc<ServerDb>, config: ServeConfig, metrics: Arc<Metrics>) -> Arc<Webhooks> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A subscriber's redirect could point anywhere: not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(Webhooks { db, config, client, wake: Notify::new(), metrics })
    }

    /// Whether an upload may ask for a callback to `url` (the allow-list). URLs are compared
    /// parsed: the same scheme, host and port as an allowed entry, and a path under its path (a
    /// string prefix would let `https://allowed.example.evil.net/` or `https://allowed.example@other/`
    /// through).
    pub fn callback_allowed(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("callback_url is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() || parsed.password().is_some()
        {
            return Err("callback_url must be an http:// or https:// URL without credentials".into());
        }
        if self.callback_secret().is_none() {
            return Err("callbacks need a signing secret: set serve.callback_secret (or callback_secret_env)".into());
        }
        let allowed = self.config.callback_allow.iter().filter_map(|a| reqwest::Url::parse(a).ok()).any(|a| {
            a.scheme() == parsed.scheme()
                && a.host_str() == parsed.host_str()
                && a.port_or_known_default() == parsed.port_or_known_default()
                && path_under(parsed.path(), a.path())
        });
        if allowed {
            Ok(())
        } else {
            Err(format!("callback_url {url} is not allowed (serve.callback_allow lists the allowed URLs)"))
        }
    }

    fn callback_secret(&self) -> Option<String> {
        self.config
            .callback_secret
            .clone()
            .or_else(|| self.config.callback_secret_env.as_ref().and_then(|v| std::env::var(v).ok()))
    }

    fn secret(&self, subscriber: &str) -> Option<String> {
        if subscriber == CALLBACK {
            return self.callback_secret();
        }
        self.config.webhooks.iter().find(|w| w.name == subscriber).and_then(|w| w.secret())
    }

    /// Queue `event` with `data` for every subscriber that wants it, and for `callback`.
    pub fn publish(&self, event: &str, data: Value, callback: Option<&str>) {
        let id = format!("msg_{}", hex::encode(rand::random::<[u8; 12]>()));
        let body = json!({
            "type": event,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string();
        let mut targets: Vec<(String, String)> = self
            .config
            .webhooks
            .iter()
            .filter(|w| w.events.is_empty() || w.events.iter().any(|e| e == event))
            .map(|w| (w.name.clone(), w.url.clone()))
            .collect();
        if let Some(url) = callback {
            targets.push((CALLBACK.to_string(), url.to_string()));
        }
        for (n, (subscriber, url)) in targets.into_iter().enumerate() {
            // One message id per destination (a receiver deduplicates by it).
            let delivery = Delivery {
                id: format!("{id}_{n}"),
                subscriber,
                url,
                event: event.to_string(),
                body: body.clone(),
                attempts: 0,
            };
            if let Err(e) = self.db.enqueue(&delivery) {
                tracing::error!("webhook not queued: {}", e.message);
            }
        }
        self.wake.notify_one();
    }

    /// Delivers until the process ends: what is due now, then waits for the next due time or a
    /// new event.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let (due, next) = match self.db.due(now, 32) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!("{}", e.message);
                    (Vec::new(), Some(now + 5000))
                }
            };
            let busy = !due.is_empty();
            futures::future::join_all(due.iter().map(|d| self.attempt(d))).await;
            if busy {
                continue;
            }
            let wait = next.map_or(Duration::from_secs(60), |at| {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(Duration::from_secs(60))
            });
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn attempt(&self, delivery: &Delivery) {
        let outcome = match self.secret(&delivery.subscriber) {
            None => AttemptOutcome::Failed {
                status: None,
                error: format!("no secret for subscriber '{}' (it left the configuration)", delivery.subscriber),
                retry_at_ms: None,
            },
            Some(secret) => {
                let timestamp = chrono::Utc::now().timestamp();
                let signature = sign(&secret, &delivery.id, timestamp, &delivery.body);
                let sent = self
                    .client
                    .post(&delivery.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &delivery.id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(delivery.body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        AttemptOutcome::Delivered(response.status().as_u16())
                    }
                    Ok(response) => {
                        self.retry(delivery, Some(response.status().as_u16()), format!("HTTP {}", response.status()))
                    }
                    Err(e) => self.retry(delivery, None, e.to_string()),
                }
            }
        };
        let label = match &outcome {
            AttemptOutcome::Delivered(_) => "delivered",
            AttemptOutcome::Failed { retry_at_ms: Some(_), .. } => "retried",
            AttemptOutcome::Failed { retry_at_ms: None, .. } => "failed",
        };
        self.metrics.webhook_delivery(label);
        if let Err(e) = self.db.record_attempt(delivery, &outcome) {
            tracing::error!("{}", e.message);
        }
    }

    fn retry(&self, delivery: &Delivery, status: Option<u16>, error: String) -> AttemptOutcome {
        let attempts = delivery.attempts + 1;
        if attempts >= self.config.webhook_max_attempts.max(1) {
            tracing::warn!(
                delivery = delivery.id,
                url = delivery.url,
                "webhook given up after {attempts} attempts: {error}"
            );
            return AttemptOutcome::Failed { status, error, retry_at_ms: None };
        }
        let base = Duration::from_millis(self.config.webhook_retry_base_ms.max(1));
        let backoff = base.saturating_mul(1u32 << attempts.min(20)).min(MAX_BACKOFF);
        // Full jitter over the upper half: receivers that failed together do not get a wave.
        let jittered = backoff.mul_f64(rand::random_range(0.5..=1.0));
        let at = chrono::Utc::now().timestamp_millis() + i64::try_from(jittered.as_millis()).unwrap_or(i64::MAX / 2);
        AttemptOutcome::Failed { status, error, retry_at_ms: Some(at) }
    }
}

/// Whether `path` is `base` or below it (`/hooks` covers `/hooks/a`, not `/hooksmith`).
fn path_under(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    base.is_empty() || path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn callbacks_must_match_an_allowed_url_exactly() {
        let config = beacon_pipeline::config::ServeConfig {
            callback_allow: vec!["https://hooks.example.com/beacon".into(), "http://127.0.0.1:9000/".into()],
            callback_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(crate::db::ServerDb::open(&dir.path().join("s.sqlite")).unwrap());
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(
            crate::metrics::Observed::default(),
            "offline",
            "offline",
        ));
        let hooks = super::Webhooks::new(db, config, metrics);
        assert!(hooks.callback_allowed("https://hooks.example.com/beacon/done").is_ok());
        assert!(hooks.callback_allowed("https://hooks.example.com/beacon").is_ok());
        assert!(hooks.callback_allowed("http://127.0.0.1:9000/x").is_ok());
        for refused in [
            "https://hooks.example.com.evil.net/beacon",
            "https://hooks.example.com@169.254.169.254/beacon",
            "https://user@hooks.example.com/beacon",
            "https://hooks.example.com/beaconsmith",
            "http://hooks.example.com/beacon",
            "https://hooks.example.com:8443/beacon",
            "http://127.0.0.1:9001/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(hooks.callback_allowed(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The specification's published example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(sign(secret, id, 1_614_265_330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
