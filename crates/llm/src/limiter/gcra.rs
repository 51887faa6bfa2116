//! The limiter's arithmetic, free of clocks and locks: GCRA on requests and tokens plus a record
//! of recent admissions, on timestamps in microseconds since an origin the owner chooses.
//!
//! [`super::GcraLimiter`] keeps one [`GcraState`] in memory (origin: its creation, one record
//! entry per admission). A shared limiter stores one in a database item (origin: the Unix epoch,
//! entries merged per [`GcraState::with_slots`] slot so the item stays small whatever the quota)
//! and updates it with a conditional write. Both admit exactly the same way.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Permit, Quota};

/// Microseconds since the state's origin.
pub type Micros = u64;

/// Parts per million: the whole quota.
const PPM: u32 = 1_000_000;

fn whole_rate() -> u32 {
    PPM
}

/// One dimension's GCRA (generic cell rate algorithm) state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Dimension {
    /// Units per window.
    quota: u64,
    /// Units that may go at once.
    burst: u64,
    /// Theoretical arrival time: when everything admitted so far is paid for.
    tat: Micros,
}

impl Dimension {
    fn new(quota: u64, burst_fraction: f64, now: Micros) -> Self {
        // Truncation is intended: the burst is a whole number of units, at least one.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let burst = ((quota as f64 * burst_fraction).floor() as u64).clamp(1, quota);
        Dimension { quota, burst, tat: now }
    }

    /// The time `units` cost: `units · window / quota`, saturating.
    fn cost(&self, window: Micros, units: u64) -> Micros {
        let micros = u128::from(units) * u128::from(window) / u128::from(self.quota);
        u64::try_from(micros).unwrap_or(u64::MAX / 4)
    }

    /// How long a request of `units` must wait from `now` (zero when it may go).
    fn wait(&self, window: Micros, now: Micros, units: u64) -> Micros {
        if units <= self.burst {
            // max(TAT, now) + cost − now ≤ τ  ⇔  now ≥ TAT + cost − τ.
            let ready = self.tat.saturating_add(self.cost(window, units));
            ready.saturating_sub(now.saturating_add(self.cost(window, self.burst)))
        } else {
            // Larger than a burst: wait for a full bucket, then go alone.
            self.tat.saturating_sub(now)
        }
    }

    fn charge(&mut self, window: Micros, now: Micros, units: u64) {
        self.tat = self.tat.max(now).saturating_add(self.cost(window, units));
    }

    fn refund(&mut self, window: Micros, now: Micros, units: u64) {
        if self.tat > now {
            self.tat = self.tat.saturating_sub(self.cost(window, units)).max(now);
        }
    }
}

/// Admissions recorded together: one admission, or all of one slot's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Increasing; the permit's ticket finds its entry again.
    ticket: u64,
    /// When the entry's admissions happened (for a slot: its end, the conservative side).
    at: Micros,
    requests: u64,
    tokens: u64,
}

/// The whole state of a limiter on one quota. Serializable, so that a shared limiter can keep it
/// in one database item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcraState {
    /// The quota's window (60 s for per-minute quotas).
    window: Micros,
    /// How long an admission stays in the record: a little longer than the window, because the
    /// provider's window counts *arrivals* (see [`super::RECORD_WINDOW`]).
    record: Micros,
    /// Record entries are merged per slot of this length; 0 keeps one entry per admission.
    slot: Micros,
    quota: Quota,
    burst_fraction_ppm: u32,
    /// The share of the quota GCRA paces at, in parts per million (a shared limiter lowers it
    /// when the provider throttles; see [`crate::shared_pace`]). The record's window bound
    /// stays at the whole quota.
    #[serde(default = "whole_rate")]
    rate_ppm: u32,
    requests: Option<Dimension>,
    tokens: Option<Dimension>,
    /// Admissions of the last `record`, oldest first.
    entries: VecDeque<Entry>,
    next_ticket: u64,
}

impl GcraState {
    /// A fresh state for `quota` per `window` at time `now`, with `burst` (a share of the quota in
    /// `(0, 1]`) allowed at once and admissions recorded for `record` (≥ `window`).
    pub fn new(quota: Quota, burst: f64, window: Micros, record: Micros, now: Micros) -> Self {
        let burst = if burst.is_finite() { burst.clamp(f64::MIN_POSITIVE, 1.0) } else { super::DEFAULT_BURST };
        // Rounding is intended: the fraction is stored in parts per million.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst_fraction_ppm = (burst * 1e6).round().max(1.0) as u32;
        let window = window.max(1);
        let mut state = GcraState {
            window,
            record: record.max(window),
            slot: 0,
            quota,
            burst_fraction_ppm,
            rate_ppm: PPM,
            requests: None,
            tokens: None,
            entries: VecDeque::new(),
            next_ticket: 0,
        };
        state.set_dimensions(now);
        state
    }

    /// Merges record entries per `slot` (each counted as if admitted at its slot's end), so the
    /// record holds at most `record / slot + 1` entries. Costs up to one slot of throughput per
    /// record; the window guarantee is unchanged.
    pub fn with_slots(mut self, slot: Micros) -> Self {
        self.slot = slot;
        self
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The burst share, as given to [`GcraState::new`] (to a millionth).
    pub fn burst_fraction(&self) -> f64 {
        f64::from(self.burst_fraction_ppm) / 1e6
    }

    /// Paces at `share` of the quota (clamped to `[0.001, 1]`) from now on; the TATs already
    /// reached stay, so nothing that was admitted is paid again or forgiven.
    pub fn set_rate(&mut self, share: f64) {
        let share = if share.is_finite() { share.clamp(0.001, 1.0) } else { 1.0 };
        // Rounding is intended: the share is stored in parts per million.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ppm = (share * f64::from(PPM)).round() as u32;
        self.rate_ppm = ppm.clamp(1, PPM);
    }

    /// The share of the quota GCRA paces at.
    pub fn rate(&self) -> f64 {
        f64::from(self.rate_ppm) / f64::from(PPM)
    }

    /// The window GCRA's costs are counted over: longer than the quota's window when pacing
    /// below the whole quota.
    fn pace_window(&self) -> Micros {
        let ppm = u128::from(self.rate_ppm.max(1));
        u64::try_from(u128::from(self.window) * u128::from(PPM) / ppm).unwrap_or(u64::MAX / 4)
    }

    /// The burst in units per limited dimension: `(requests, tokens)`.
    pub fn burst(&self) -> (Option<u64>, Option<u64>) {
        (self.requests.as_ref().map(|d| d.burst), self.tokens.as_ref().map(|d| d.burst))
    }

    /// Changes the quota or burst (another process configured a different one, or the quota was
    /// raised): the GCRA restarts at `now`, the record of admissions is kept, so the window
    /// guarantee holds across the change.
    pub fn reconfigure(&mut self, quota: Quota, burst: f64, now: Micros) {
        let window = self.window;
        let record = self.record;
        let fresh = GcraState::new(quota, burst, window, record, now);
        if fresh.quota != self.quota || fresh.burst_fraction_ppm != self.burst_fraction_ppm {
            self.quota = quota;
            self.burst_fraction_ppm = fresh.burst_fraction_ppm;
            self.set_dimensions(now);
        }
    }

    fn set_dimensions(&mut self, now: Micros) {
        let fraction = self.burst_fraction();
        let dimension = |per_window: u64| (per_window > 0).then(|| Dimension::new(per_window, fraction, now));
        self.requests = self.quota.rpm.and_then(|rpm| dimension(u64::from(rpm)));
        self.tokens = self.quota.tpm.and_then(dimension);
    }

    /// Forgets admissions older than the record.
    pub fn prune(&mut self, now: Micros) {
        while self.entries.front().is_some_and(|first| first.at.saturating_add(self.record) <= now) {
            self.entries.pop_front();
        }
    }

    /// How long (µs) a request reserving `tokens` must wait from `now`; `None` when it may go.
    /// Call [`GcraState::prune`] first.
    pub fn wait(&self, now: Micros, tokens: u64) -> Option<Micros> {
        let mut wait = 0;
        if let Some(requests) = &self.requests {
            wait = wait.max(requests.wait(self.pace_window(), now, 1));
            // At most `rpm` admissions in the record ending now, this one included.
            wait = wait.max(self.record_wait(now, requests.quota.saturating_sub(1), |entry| entry.requests));
        }
        if let Some(dimension) = &self.tokens {
            wait = wait.max(dimension.wait(self.pace_window(), now, tokens));
            // At most `tpm` tokens in the record; a request larger than that needs it empty.
            wait = wait.max(self.record_wait(now, dimension.quota.saturating_sub(tokens), |entry| entry.tokens));
        }
        (wait > 0).then_some(wait)
    }

    /// How long until the record holds at most `allowed` of what `measure` counts.
    fn record_wait(&self, now: Micros, allowed: u64, measure: impl Fn(&Entry) -> u64) -> Micros {
        let mut in_record: u64 = self.entries.iter().map(&measure).fold(0, u64::saturating_add);
        let mut wait = 0;
        for entry in &self.entries {
            if in_record <= allowed {
                break;
            }
            in_record = in_record.saturating_sub(measure(entry));
            wait = entry.at.saturating_add(self.record).saturating_sub(now);
        }
        wait
    }

    /// Admits a request reserving `tokens` at `now` (after [`GcraState::wait`] said it may go).
    pub fn admit(&mut self, now: Micros, tokens: u64) -> Permit {
        let window = self.pace_window();
        if let Some(requests) = &mut self.requests {
            requests.charge(window, now, 1);
        }
        if let Some(dimension) = &mut self.tokens {
            dimension.charge(window, now, tokens);
        }
        let (ticket, at) = if let Some(index) = now.checked_div(self.slot) {
            (index, index.saturating_add(1).saturating_mul(self.slot))
        } else {
            self.next_ticket += 1;
            (self.next_ticket - 1, now)
        };
        if self.requests.is_some() || self.tokens.is_some() {
            match self.entries.back_mut() {
                Some(last) if last.ticket == ticket => {
                    last.requests += 1;
                    last.tokens = last.tokens.saturating_add(tokens);
                }
                _ => self.entries.push_back(Entry { ticket, at, requests: 1, tokens }),
            }
        }
        Permit::new(tokens, ticket, now)
    }

    /// Settles `permit` with the tokens actually `used`: refunds the rest (or charges an
    /// overrun). Returns whether anything was refunded.
    pub fn settle(&mut self, now: Micros, permit: &Permit, used: u64) -> bool {
        let window = self.pace_window();
        if let Some(dimension) = &mut self.tokens {
            if used < permit.reserved {
                dimension.refund(window, now, permit.reserved - used);
            } else {
                dimension.charge(window, now, used - permit.reserved);
            }
        }
        if let Ok(index) = self.entries.binary_search_by_key(&permit.ticket, |entry| entry.ticket) {
            let entry = &mut self.entries[index];
            entry.tokens = entry.tokens.saturating_sub(permit.reserved).saturating_add(used);
        }
        used < permit.reserved
    }

    /// Gives back a request that was never processed: its place in the GCRA and the record, and
    /// its tokens.
    pub fn release(&mut self, now: Micros, permit: &Permit) {
        let window = self.pace_window();
        if let Some(requests) = &mut self.requests {
            requests.refund(window, now, 1);
        }
        if let Some(dimension) = &mut self.tokens {
            dimension.refund(window, now, permit.reserved);
        }
        if let Ok(index) = self.entries.binary_search_by_key(&permit.ticket, |entry| entry.ticket) {
            let entry = &mut self.entries[index];
            entry.requests = entry.requests.saturating_sub(1);
            entry.tokens = entry.tokens.saturating_sub(permit.reserved);
        }
    }

    /// Requests and tokens admitted in the record ending at `now` (after pruning).
    pub fn in_record(&self) -> (u64, u64) {
        self.entries
            .iter()
            .fold((0, 0), |(requests, tokens), entry| (requests + entry.requests, tokens.saturating_add(entry.tokens)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Micros = 60_000_000;

    #[test]
    fn slots_merge_admissions_and_count_them_at_the_slot_end() {
        let quota = Quota { rpm: Some(3), tpm: None };
        let mut state = GcraState::new(quota, 1.0, MINUTE, MINUTE, 0).with_slots(1_000_000);
        for at in [100, 200, 300] {
            assert_eq!(state.wait(at, 1), None);
            let permit = state.admit(at, 1);
            assert_eq!(permit.ticket, 0);
        }
        assert_eq!(state.entries.len(), 1);
        assert_eq!(state.in_record(), (3, 3));
        // The three count until the end of their slot (1 s) plus the record.
        assert_eq!(state.wait(500, 1), Some(MINUTE + 1_000_000 - 500));
        state.prune(MINUTE + 1_000_000);
        assert!(state.entries.is_empty());
    }

    #[test]
    fn survives_a_round_trip_through_json() {
        let quota = Quota { rpm: Some(100), tpm: Some(10_000) };
        let mut state = GcraState::new(quota, 0.25, MINUTE, MINUTE, 5).with_slots(1_000_000);
        let permit = state.admit(10, 700);
        state.settle(20, &permit, 300);
        let json = serde_json::to_string(&state).unwrap();
        let back: GcraState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.in_record(), (1, 300));
    }

    #[test]
    fn a_lower_rate_spaces_admissions_but_keeps_the_window_bound() {
        let quota = Quota { rpm: Some(60), tpm: None };
        let mut state = GcraState::new(quota, 1.0 / 60.0, MINUTE, MINUTE, 0);
        let _ = state.admit(0, 1);
        assert_eq!(state.wait(0, 1), Some(1_000_000), "one a second at the whole quota");
        state.set_rate(0.5);
        assert_eq!(state.rate(), 0.5);
        // The TAT already reached stays; the next admission costs two seconds.
        let _ = state.admit(1_000_000, 1);
        assert_eq!(state.wait(1_000_000, 1), Some(2_000_000));
        // An old state without the field reads as the whole rate.
        let mut json: serde_json::Value = serde_json::to_value(&state).unwrap();
        json.as_object_mut().unwrap().remove("rate_ppm");
        let back: GcraState = serde_json::from_value(json).unwrap();
        assert_eq!(back.rate(), 1.0);
    }

    #[test]
    fn reconfiguring_keeps_the_record() {
        let mut state = GcraState::new(Quota { rpm: Some(2), tpm: None }, 1.0, MINUTE, MINUTE, 0);
        let _ = state.admit(0, 1);
        let _ = state.admit(0, 1);
        assert!(state.wait(0, 1).is_some());
        // A larger quota lets one more through now; the record still counts the two.
        state.reconfigure(Quota { rpm: Some(3), tpm: None }, 1.0, 0);
        assert_eq!(state.wait(0, 1), None);
        let _ = state.admit(0, 1);
        assert_eq!(state.wait(0, 1), Some(MINUTE));
        // The same configuration again changes nothing.
        let before = state.clone();
        state.reconfigure(Quota { rpm: Some(3), tpm: None }, 1.0, 7);
        assert_eq!(state, before);
    }
}
