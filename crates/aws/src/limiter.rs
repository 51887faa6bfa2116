//! A [`RateLimiter`] shared by every process and Lambda that draws on one model's quota, kept in
//! DynamoDB.
//!
//! # The table
//!
//! One item per model (partition key `modelId`, a string; the seed's table, without its
//! per-minute sort key). The item holds the whole limiter state of [`GcraState`] as JSON in
//! `state` — GCRA's theoretical arrival times for requests and tokens, and the admissions of the
//! last minute merged per second — a `version` number, and `expiresAt` (epoch seconds) for
//! DynamoDB's time to live, so an idle model's item disappears. The item stays around a few
//! kilobytes whatever the quota.
//!
//! # Admission
//!
//! `acquire` reads the item (strongly consistent), runs the same arithmetic as the in-process
//! [`beacon_llm::limiter::GcraLimiter`] on the wall clock, and, when the request may go, writes
//! the new state back with the condition `version = :read_version`. A concurrent writer makes
//! the condition fail; the limiter reads again and retries. When the request must wait, it
//! sleeps until the computed time (plus a little jitter, so waiting processes do not all write
//! at the same instant) and tries again. So:
//!
//! - no fixed-window double burst: the seed counted requests per calendar minute, which lets a
//!   whole quota go at 12:00:59 and another at 12:01:00; here GCRA smooths the rate and the
//!   record of admissions keeps every sliding 60 s window (61 s, with the arrival margin of
//!   [`beacon_llm::limiter::RECORD_WINDOW`]) within the quota, on requests and on tokens;
//! - tokens are reserved (estimate + `max_tokens`) and the unused part refunded by `settle`,
//!   another conditional write;
//! - one item per model: all writers of a model contend on one item. Each admission costs one
//!   consistent read and one conditional write of a few kilobytes (a few write units), and a
//!   lost race costs one more read. That is comfortably within one partition's throughput for
//!   the quotas LLM providers grant (thousands of requests per minute).
//!
//! Timestamps are microseconds since the Unix epoch, so processes rely on their clocks agreeing
//! to well under the one-second slot that admissions are merged into (NTP-synchronised hosts and
//! Lambda do).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use beacon_llm::LlmError;
use beacon_llm::limiter::{GcraState, Micros, Permit, Quota, RateLimiter, WINDOW, micros};
use beacon_llm::pacer::PacerConfig;
use beacon_llm::shared_pace::SharedPace;
use rand::Rng;

use crate::{AwsError, describe};

/// The partition key: the model id (or any name of the quota the item counts).
pub const KEY_ATTRIBUTE: &str = "modelId";
const STATE_ATTRIBUTE: &str = "state";
/// The shared pacing feedback ([`SharedPace`]) as JSON; absent in items older than it.
const PACE_ATTRIBUTE: &str = "pace";
const VERSION_ATTRIBUTE: &str = "version";
/// Epoch seconds after which DynamoDB may delete the item (its time-to-live attribute).
pub const EXPIRES_ATTRIBUTE: &str = "expiresAt";

/// How long an item outlives its last admission: long past its record, so its expiry never
/// loses information that still counts.
const IDLE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How many times in a row a call to DynamoDB may fail (after the SDK's own retries) before
/// `acquire` gives up with [`LlmError::Transient`].
const MAX_STORE_FAILURES: u32 = 3;

/// How many lost races `settle` tolerates before it drops the refund (the safe side).
const MAX_SETTLE_RACES: u32 = 20;

/// A [`RateLimiter`] whose state is one DynamoDB item per model, shared by every process that
/// uses the same table and key (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct DynamoLimiter {
    client: Client,
    table: String,
    key: String,
    quota: Quota,
    pacing: PacerConfig,
    window: Duration,
}

impl DynamoLimiter {
    /// A limiter on `quota` for the item `key` (normally the model id) of `table`, pacing with
    /// the default [`PacerConfig`] (a burst of one second of quota outside slow start).
    pub fn new(client: Client, table: impl Into<String>, key: impl Into<String>, quota: Quota) -> Self {
        let pacing = PacerConfig::default();
        DynamoLimiter { client, table: table.into(), key: key.into(), quota, pacing, window: WINDOW }
    }

    /// Connects to `table` (region and endpoint override as for [`crate::sdk_config`]), creating
    /// it if it does not exist, and returns a limiter on `quota` for the item `key`.
    pub async fn connect(
        table: &str,
        key: &str,
        quota: Quota,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Self, AwsError> {
        let client = Client::new(&crate::sdk_config(region, endpoint).await);
        create_limiter_table(&client, table).await?;
        Ok(DynamoLimiter::new(client, table, key, quota))
    }

    /// Paces and learns with `config` (its burst, slow start, decrease and recovery), shared by
    /// every process on the item.
    pub fn with_pacing(mut self, config: PacerConfig) -> Self {
        self.pacing = config.sanitized();
        self
    }

    /// The share of a window's quota (in `(0, 1]`) that may go at once outside slow start.
    pub fn with_burst(self, fraction: f64) -> Self {
        let burst_secs = fraction * 60.0;
        let pacing =
            PacerConfig { burst_secs, max_burst_secs: self.pacing.max_burst_secs.max(burst_secs), ..self.pacing };
        self.with_pacing(pacing)
    }

    /// Counts the quota per `window` instead of per minute: for tests and simulations that
    /// cannot wait minutes. The record margin and the slot scale with it (1/60 of the window).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_millis(60));
        self
    }

    /// The quota this limiter enforces.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    fn resource(&self) -> String {
        format!("rate-limit item {:?} of DynamoDB table {:?}", self.key, self.table)
    }

    fn fresh_state(&self, now: Micros) -> GcraState {
        let window = micros(self.window);
        let slot = window / 60;
        GcraState::new(self.quota, self.pacing.burst_secs / 60.0, window, window + slot, now).with_slots(slot)
    }

    /// The burst, in seconds of quota, that one more request reserving `tokens` needs at the
    /// shared rate: slow start's scout.
    fn scout_secs(&self, pace: &SharedPace, tokens: u64) -> f64 {
        let per_minute = |quota: f64| 60.0 / (quota * pace.rate).max(f64::MIN_POSITIVE);
        let by_requests = self.quota.rpm.filter(|&r| r > 0).map_or(0.0, |rpm| per_minute(f64::from(rpm)));
        // Precision loss is irrelevant for token counts.
        #[allow(clippy::cast_precision_loss)]
        let by_tokens = self.quota.tpm.filter(|&t| t > 0).map_or(0.0, |tpm| tokens as f64 * per_minute(tpm as f64));
        by_requests.max(by_tokens)
    }

    /// Reads the item: its state (reconfigured to this limiter's quota and to the shared
    /// pacing), the pacing and the version; a missing item is a fresh state at version 0.
    async fn load(&self, now: Micros) -> Result<(GcraState, SharedPace, u64), AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(self.key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| AwsError::Api {
                operation: "GetItem",
                resource: self.resource(),
                message: describe(&error),
            })?;
        let Some(item) = output.item else {
            return Ok((self.fresh_state(now), SharedPace::new(&self.pacing, now), 0));
        };
        let corrupt = |message: String| AwsError::Corrupt { resource: self.resource(), message };
        let version = match item.get(VERSION_ATTRIBUTE) {
            Some(AttributeValue::N(number)) => {
                number.parse::<u64>().map_err(|_| corrupt(format!("version {number:?} is not a number")))?
            }
            _ => return Err(corrupt(format!("the item has no numeric {VERSION_ATTRIBUTE:?} attribute"))),
        };
        let mut state: GcraState = match item.get(STATE_ATTRIBUTE) {
            Some(AttributeValue::S(json)) => {
                serde_json::from_str(json).map_err(|error| corrupt(format!("its state is not valid: {error}")))?
            }
            _ => return Err(corrupt(format!("the item has no string {STATE_ATTRIBUTE:?} attribute"))),
        };
        let mut pace: SharedPace = match item.get(PACE_ATTRIBUTE) {
            Some(AttributeValue::S(json)) => {
                serde_json::from_str(json).map_err(|error| corrupt(format!("its pacing is not valid: {error}")))?
            }
            _ => SharedPace::new(&self.pacing, now),
        };
        state.reconfigure(self.quota, state.burst_fraction(), now);
        pace.advance(&self.pacing, now);
        pace.apply(&mut state, now);
        state.prune(now);
        Ok((state, pace, version))
    }

    /// Writes `state` and `pace` as version `read_version + 1` if the item is still at
    /// `read_version`. `Ok(false)`: another writer came first.
    async fn store(
        &self,
        state: &GcraState,
        pace: &SharedPace,
        read_version: u64,
        now: Micros,
    ) -> Result<bool, AwsError> {
        let corrupt =
            |error: serde_json::Error| AwsError::Corrupt { resource: self.resource(), message: error.to_string() };
        let json = serde_json::to_string(state).map_err(corrupt)?;
        let pace_json = serde_json::to_string(pace).map_err(corrupt)?;
        let expires = Duration::from_micros(now) + IDLE_LIFETIME;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY_ATTRIBUTE, AttributeValue::S(self.key.clone()))
            .item(STATE_ATTRIBUTE, AttributeValue::S(json))
            .item(PACE_ATTRIBUTE, AttributeValue::S(pace_json))
            .item(VERSION_ATTRIBUTE, AttributeValue::N((read_version + 1).to_string()))
            .item(EXPIRES_ATTRIBUTE, AttributeValue::N(expires.as_secs().to_string()));
        put = if read_version == 0 {
            put.condition_expression("attribute_not_exists(#key)").expression_attribute_names("#key", KEY_ATTRIBUTE)
        } else {
            put.condition_expression("#version = :read")
                .expression_attribute_names("#version", VERSION_ATTRIBUTE)
                .expression_attribute_values(":read", AttributeValue::N(read_version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(AwsError::Api { operation: "PutItem", resource: self.resource(), message: describe(&error) }),
            },
        }
    }
}

/// Now on the wall clock, in microseconds since the Unix epoch.
fn wall_clock() -> Micros {
    micros(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// What one read-decide-write round of `acquire` came to.
enum Round {
    Admitted(Permit),
    /// Another writer changed the item between our read and our write.
    LostRace,
    /// The pacing changed (slow start grew the burst): decide again at once.
    Retry,
    /// The request may go after this many microseconds.
    Wait(Micros),
}

impl DynamoLimiter {
    async fn round(&self, tokens: u64) -> Result<Round, AwsError> {
        let now = wall_clock();
        let (mut state, mut pace, version) = self.load(now).await?;
        if let Some(wait) = state.wait(now, tokens) {
            if pace.held_back(&self.pacing, now, self.scout_secs(&pace, tokens)) {
                // Slow start lets more go at once: try again on the grown burst.
                pace.apply(&mut state, now);
                return Ok(if self.store(&state, &pace, version, now).await? { Round::Retry } else { Round::LostRace });
            }
            if pace.slow_start {
                // Look again when the burst may grow next.
                return Ok(Round::Wait(wait.min(pace.next_growth(&self.pacing).saturating_sub(now).max(1_000))));
            }
            return Ok(Round::Wait(wait));
        }
        let permit = state.admit(now, tokens);
        Ok(if self.store(&state, &pace, version, now).await? { Round::Admitted(permit) } else { Round::LostRace })
    }

    /// Settles `permit` with `used` tokens and, when it was throttled, tells the shared pacing;
    /// retried on lost races, dropped (the safe side) when the store fails.
    async fn update(&self, permit: &Permit, used: u64, throttled: bool) {
        for _ in 0..MAX_SETTLE_RACES {
            let now = wall_clock();
            let result = async {
                let (mut state, mut pace, version) = self.load(now).await?;
                state.settle(now, permit, used);
                if throttled {
                    pace.throttled(&self.pacing, now, permit.admitted_at);
                    pace.apply(&mut state, now);
                }
                self.store(&state, &pace, version, now).await
            };
            match result.await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not update a rate-limit reservation; keeping it (the safe side)");
                    return;
                }
            }
        }
        tracing::warn!("could not update a rate-limit reservation in {MAX_SETTLE_RACES} tries; keeping it");
    }
}

#[async_trait]
impl RateLimiter for DynamoLimiter {
    async fn acquire(&self, tokens: u64) -> Result<Permit, LlmError> {
        let mut failures = 0;
        loop {
            match self.round(tokens).await {
                Ok(Round::Admitted(permit)) => return Ok(permit),
                Ok(Round::LostRace | Round::Retry) => {}
                Ok(Round::Wait(wait)) => {
                    // Up to 2% (at most 50 ms) of jitter spreads the writers that wake together.
                    let jitter = rand::rng().random_range(0..=(wait / 50).min(50_000));
                    tokio::time::sleep(Duration::from_micros(wait + jitter)).await;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "rate limiter store unavailable");
                    if failures >= MAX_STORE_FAILURES {
                        return Err(LlmError::Transient {
                            provider: "the shared rate limiter".to_string(),
                            message: error.to_string(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                }
            }
        }
    }

    async fn settle(&self, permit: Permit, used: u64) {
        if used != permit.reserved {
            self.update(&permit, used, false).await;
        }
    }

    async fn throttled(&self, permit: Permit) {
        self.update(&permit, 0, true).await;
    }
}

/// Creates the rate-limit table (on-demand billing, time to live on [`EXPIRES_ATTRIBUTE`]) if it
/// does not exist (an existing table only needs `dynamodb:DescribeTable`). Deployments create it with CloudFormation; this is for local emulators and
/// ad-hoc setups.
pub async fn create_limiter_table(client: &Client, table: &str) -> Result<(), AwsError> {
    let api_error =
        |operation, message| AwsError::Api { operation, resource: format!("DynamoDB table {table:?}"), message };
    match client.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(error) => return Err(api_error("DescribeTable", describe(&error))),
    }
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY_ATTRIBUTE)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|error| api_error("CreateTable", error.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY_ATTRIBUTE)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|error| api_error("CreateTable", error.to_string()))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => return Ok(()),
        Err(error) => return Err(api_error("CreateTable", describe(&error))),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(EXPIRES_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(|error| api_error("UpdateTimeToLive", error.to_string()))?,
        )
        .send()
        .await
        .map_err(|error| api_error("UpdateTimeToLive", describe(&error)))?;
    // A new table takes a moment to become ACTIVE on AWS (at once on emulators).
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| api_error("DescribeTable", describe(&error)))?;
        if described.table.and_then(|t| t.table_status) == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(api_error("DescribeTable", "the table did not become ACTIVE within a minute".to_string()))
}
