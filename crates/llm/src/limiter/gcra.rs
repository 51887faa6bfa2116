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

/// The tokens of the last 24 hours (a day of the quota's windows: 1,440 of them), for a
/// tokens-per-day quota. Admissions are merged per slot (a window in process, an hour in a
/// shared item, so it stays small), each slot counted until a day after its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DayRecord {
    tpd: u64,
    /// The length of a slot.
    slot: Micros,
    /// `(slot index, tokens)`, oldest first.
    slots: VecDeque<(u64, u64)>,
}

/// How many windows a day holds.
const WINDOWS_PER_DAY: u64 = 24 * 60;

impl DayRecord {
    fn day(&self, window: Micros) -> Micros {
        window.saturating_mul(WINDOWS_PER_DAY)
    }

    /// When slot `index`'s tokens stop counting.
    fn expires(&self, window: Micros, index: u64) -> Micros {
        index.saturating_add(1).saturating_mul(self.slot).saturating_add(self.day(window))
    }

    fn prune(&mut self, window: Micros, now: Micros) {
        while let Some(&(index, _)) = self.slots.front() {
            if self.expires(window, index) > now {
                break;
            }
            self.slots.pop_front();
        }
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(|&(_, tokens)| tokens).fold(0, u64::saturating_add)
    }

    /// How long until `tokens` more fit in the day (a request larger than the whole day's quota
    /// needs the record empty).
    fn wait(&self, window: Micros, now: Micros, tokens: u64) -> Micros {
        let allowed = self.tpd.saturating_sub(tokens);
        let mut total = self.total();
        let mut wait = 0;
        for &(index, slot_tokens) in &self.slots {
            if total <= allowed {
                break;
            }
            total = total.saturating_sub(slot_tokens);
            wait = self.expires(window, index).saturating_sub(now);
        }
        wait
    }

    fn index(&self, at: Micros) -> u64 {
        at.checked_div(self.slot).unwrap_or(0)
    }

    fn add(&mut self, at: Micros, tokens: u64) {
        let index = self.index(at);
        match self.slots.back_mut() {
            Some((last, sum)) if *last == index => *sum = sum.saturating_add(tokens),
            _ => self.slots.push_back((index, tokens)),
        }
    }

    /// Replaces `before` tokens admitted at `at` by `after`.
    fn adjust(&mut self, at: Micros, before: u64, after: u64) {
        let index = self.index(at);
        if let Some((_, sum)) = self.slots.iter_mut().find(|(i, _)| *i == index) {
            *sum = sum.saturating_sub(before).saturating_add(after);
        }
    }
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
    /// The tokens of the last day, when a tokens-per-day quota is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<DayRecord>,
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
            day: None,
            next_ticket: 0,
        };
        state.set_dimensions(now);
        state.set_day(window);
        state
    }

    /// Keeps (or drops) the day record for the quota's `tpd`; its slot is `slot`.
    fn set_day(&mut self, slot: Micros) {
        match (self.quota.tpd.filter(|&t| t > 0), &mut self.day) {
            (None, day) => *day = None,
            (Some(tpd), Some(day)) => day.tpd = tpd,
            (Some(tpd), day) => *day = Some(DayRecord { tpd, slot: slot.max(1), slots: VecDeque::new() }),
        }
    }

    /// Merges record entries per `slot` (each counted as if admitted at its slot's end), so the
    /// record holds at most `record / slot + 1` entries. Costs up to one slot of throughput per
    /// record; the window guarantee is unchanged.
    pub fn with_slots(mut self, slot: Micros) -> Self {
        self.slot = slot;
        if let Some(day) = &mut self.day
            && day.slots.is_empty()
        {
            // The day is merged per hour (3,600 slots), so the item holds at most 25 of them.
            day.slot = slot.saturating_mul(3_600).max(1);
        }
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
            let day_slot = self.day.as_ref().map_or(if self.slot > 0 { self.slot * 3_600 } else { window }, |d| d.slot);
            self.quota = quota;
            self.burst_fraction_ppm = fresh.burst_fraction_ppm;
            self.set_dimensions(now);
            self.set_day(day_slot);
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
        if let Some(day) = &mut self.day {
            day.prune(self.window, now);
        }
    }

    /// How long (µs) a request reserving `tokens` must wait from `now` for the day's tokens
    /// alone; `None` when the day has room. Call [`GcraState::prune`] first.
    pub fn day_wait(&self, now: Micros, tokens: u64) -> Option<Micros> {
        let wait = self.day.as_ref().map_or(0, |day| day.wait(self.window, now, tokens));
        (wait > 0).then_some(wait)
    }

    /// Tokens counted against the day's quota (the last 24 h), when one is set.
    pub fn day_tokens(&self) -> Option<u64> {
        self.day.as_ref().map(DayRecord::total)
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
        wait = wait.max(self.day_wait(now, tokens).unwrap_or(0));
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
        if let Some(day) = &mut self.day {
            day.add(now, tokens);
        }
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
        if let Some(day) = &mut self.day {
            day.adjust(permit.admitted_at, permit.reserved, used);
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
        if let Some(day) = &mut self.day {
            day.adjust(permit.admitted_at, permit.reserved, 0);
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
        let quota = Quota { rpm: Some(3), tpm: None, tpd: None };
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
        let quota = Quota { rpm: Some(100), tpm: Some(10_000), tpd: None };
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
        let quota = Quota { rpm: Some(60), tpm: None, tpd: None };
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
    fn a_day_quota_holds_requests_until_the_tokens_of_24_hours_ago_leave() {
        const DAY: Micros = 24 * 60 * MINUTE;
        let quota = Quota { rpm: None, tpm: None, tpd: Some(1_000) };
        let mut state = GcraState::new(quota, 1.0, MINUTE, MINUTE, 0);
        let first = state.admit(0, 600);
        // Settled to what it used: 400 tokens, so 600 more fit today.
        state.settle(10, &first, 400);
        assert_eq!(state.day_tokens(), Some(400));
        assert_eq!(state.wait(2 * MINUTE, 600), None);
        let _ = state.admit(2 * MINUTE, 600);
        // Full: the next waits until the first minute's 400 leave, a day after that minute ends.
        state.prune(3 * MINUTE);
        assert_eq!(state.wait(3 * MINUTE, 1), Some(MINUTE + DAY - 3 * MINUTE));
        state.prune(MINUTE + DAY);
        assert_eq!(state.day_tokens(), Some(600));
        assert_eq!(state.wait(MINUTE + DAY, 400), None);
        // It survives a round trip (as a shared item stores it) and a change of the quota.
        let back: GcraState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
        state.reconfigure(Quota { tpd: Some(2_000), ..quota }, 1.0, MINUTE + DAY);
        assert_eq!(state.day_tokens(), Some(600));
        assert_eq!(state.wait(MINUTE + DAY, 1_400), None);
    }

    #[test]
    fn reconfiguring_keeps_the_record() {
        let mut state = GcraState::new(Quota { rpm: Some(2), tpm: None, tpd: None }, 1.0, MINUTE, MINUTE, 0);
        let _ = state.admit(0, 1);
        let _ = state.admit(0, 1);
        assert!(state.wait(0, 1).is_some());
        // A larger quota lets one more through now; the record still counts the two.
        state.reconfigure(Quota { rpm: Some(3), tpm: None, tpd: None }, 1.0, 0);
        assert_eq!(state.wait(0, 1), None);
        let _ = state.admit(0, 1);
        assert_eq!(state.wait(0, 1), Some(MINUTE));
        // The same configuration again changes nothing.
        let before = state.clone();
        state.reconfigure(Quota { rpm: Some(3), tpm: None, tpd: None }, 1.0, 7);
        assert_eq!(state, before);
    }
}
