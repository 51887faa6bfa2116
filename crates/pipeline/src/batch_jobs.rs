//! The batch inference jobs this process submitted or looked at, by their last known status,
//! for `beacon_batch_jobs{status}`. The Bedrock tasks (`beacon_aws::bedrock_batch`) record what
//! the API answered; nothing here calls it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// How many jobs are remembered; the oldest goes first (a process submits a few an hour).
const REMEMBERED: usize = 1_000;

/// Bedrock's job statuses (`ModelInvocationJobStatus`), so every series exists from zero.
pub const STATUSES: [&str; 10] = [
    "Submitted",
    "Validating",
    "Scheduled",
    "InProgress",
    "Stopping",
    "Stopped",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Expired",
];

/// Shared by the tasks that see jobs and whoever reports on them; cheap to clone.
#[derive(Debug, Default, Clone)]
pub struct BatchJobs(Arc<Mutex<VecDeque<(String, String)>>>);

impl BatchJobs {
    /// The API said job `arn` is in `status`.
    pub fn saw(&self, arn: &str, status: &str) {
        let mut jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(job) = jobs.iter_mut().find(|(known, _)| known == arn) {
            job.1 = status.to_string();
            return;
        }
        if jobs.len() == REMEMBERED {
            jobs.pop_front();
        }
        jobs.push_back((arn.to_string(), status.to_string()));
    }

    /// Jobs by last known status; every status in [`STATUSES`] is present.
    pub fn by_status(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = STATUSES.iter().map(|s| ((*s).to_string(), 0)).collect();
        for (_, status) in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            *counts.entry(status.clone()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_counts_once_under_its_last_status() {
        let jobs = BatchJobs::default();
        jobs.saw("arn:job/a", "Submitted");
        jobs.saw("arn:job/b", "Submitted");
        jobs.saw("arn:job/a", "InProgress");
        let counts = jobs.by_status();
        assert_eq!(counts["Submitted"], 1);
        assert_eq!(counts["InProgress"], 1);
        assert_eq!(counts["Completed"], 0);
        for i in 0..REMEMBERED {
            jobs.saw(&format!("arn:job/n{i}"), "Completed");
        }
        assert_eq!(jobs.by_status().values().sum::<u64>(), REMEMBERED as u64, "memory stays bounded");
    }
}
