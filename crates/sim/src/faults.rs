//! Injected failures: what fraction of requests fail, and how.
//!
//! Each request draws one number from the simulator's seeded fault RNG, so a run with the same
//! seed and the same request order fails the same requests. Faults are decided before the quota:
//! a faulty request takes no quota and no latency (except that a hung one never answers).

use rand::Rng;

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 (`ServiceUnavailableException` on Bedrock, `server_error` on OpenAI).
    Unavailable,
    /// The request is accepted and never answered.
    Hang,
    /// HTTP 200 whose body is not what a client can use.
    Malformed(Malformation),
}

/// How a malformed answer is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// The response body is cut off: not valid JSON at all.
    TruncatedBody,
    /// A well-formed response whose text is prose around a cut-off JSON object, as a model that
    /// ignored the instructions would write.
    ProseText,
}

/// The fractions of requests that fail, each in `0.0..=1.0`, summing to at most 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultPlan {
    pub unavailable: f64,
    pub hang: f64,
    pub malformed: f64,
}

impl FaultPlan {
    /// Whether no request ever fails.
    pub fn is_none(&self) -> bool {
        self.unavailable <= 0.0 && self.hang <= 0.0 && self.malformed <= 0.0
    }

    /// The fate of one request. Draws nothing when no fault is configured, so that adding faults
    /// is the only thing that changes the sequence.
    pub fn decide(&self, rng: &mut impl Rng) -> Option<Fault> {
        if self.is_none() {
            return None;
        }
        let draw: f64 = rng.random();
        if draw < self.unavailable {
            Some(Fault::Unavailable)
        } else if draw < self.unavailable + self.hang {
            Some(Fault::Hang)
        } else if draw < self.unavailable + self.hang + self.malformed {
            let how = if rng.random_bool(0.5) { Malformation::TruncatedBody } else { Malformation::ProseText };
            Some(Fault::Malformed(how))
        } else {
            None
        }
    }
}

/// What a model that ignored the JSON-only instruction writes: prose, then JSON cut short.
pub fn prose_around(answer_json: &str) -> String {
    let cut = answer_json.char_indices().nth(answer_json.chars().count() / 2).map_or(0, |(index, _)| index);
    format!("Sure! Here is the analysis you asked for:\n\n{}", &answer_json[..cut])
}

/// A response body cut off in the middle: never valid JSON.
pub fn truncated(body: &str) -> String {
    let cut = body.char_indices().nth(body.chars().count() / 2).map_or(0, |(index, _)| index);
    // A valid JSON document cannot end with a dangling `,`; this keeps tiny bodies invalid too.
    format!("{},", &body[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn counts(plan: FaultPlan, seed: u64, n: usize) -> [usize; 5] {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = [0; 5];
        for _ in 0..n {
            let slot = match plan.decide(&mut rng) {
                None => 0,
                Some(Fault::Unavailable) => 1,
                Some(Fault::Hang) => 2,
                Some(Fault::Malformed(Malformation::TruncatedBody)) => 3,
                Some(Fault::Malformed(Malformation::ProseText)) => 4,
            };
            counts[slot] += 1;
        }
        counts
    }

    #[test]
    fn fractions_are_respected_and_reproducible() {
        let plan = FaultPlan { unavailable: 0.1, hang: 0.05, malformed: 0.2 };
        let first = counts(plan, 42, 10_000);
        assert_eq!(first, counts(plan, 42, 10_000), "same seed, same faults");
        assert_ne!(first, counts(plan, 43, 10_000), "another seed, other faults");
        let near = |count: usize, fraction: f64| (count as f64 / 10_000.0 - fraction).abs() < 0.015;
        assert!(near(first[1], 0.1), "{first:?}");
        assert!(near(first[2], 0.05), "{first:?}");
        assert!(near(first[3] + first[4], 0.2), "{first:?}");
        assert!(first[3] > 0 && first[4] > 0, "both malformations occur: {first:?}");
    }

    #[test]
    fn extremes() {
        assert_eq!(counts(FaultPlan::default(), 1, 100), [100, 0, 0, 0, 0]);
        assert_eq!(counts(FaultPlan { unavailable: 1.0, ..FaultPlan::default() }, 1, 100), [0, 100, 0, 0, 0]);
        assert_eq!(counts(FaultPlan { hang: 1.0, ..FaultPlan::default() }, 1, 100)[2], 100);
    }

    #[test]
    fn no_faults_draw_nothing() {
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(FaultPlan::default().decide(&mut rng), None);
        let next: u64 = rng.random();
        assert_eq!(next, StdRng::seed_from_u64(7).random::<u64>());
    }

    #[test]
    fn malformed_bodies_do_not_parse_as_json() {
        for body in [r#"{"a":1}"#, "{}", r#"{"title":"売上","summary":"x"}"#] {
            assert!(serde_json::from_str::<serde_json::Value>(&truncated(body)).is_err(), "{body}");
            assert!(serde_json::from_str::<serde_json::Value>(&prose_around(body)).is_err(), "{body}");
        }
    }
}
