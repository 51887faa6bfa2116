//! The server's side of the embedded engine: one queue of executions, a bounded number running
//! at once on the one client stack, stop and resume, and what a restarted server picks up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use beacon_asl::TaskRegistry;
use beacon_pipeline::plan::Strategy;
use beacon_pipeline::pool::BatchPool;
use beacon_pipeline::{Progress, Queued, RunError, RunOptions, RunOutcome, Runner, Services, UnitEnd, UnitOptions};

use beacon_store::journal::{ExecutionRecord, ExecutionState, Journal};
use tokio::sync::{Semaphore, watch};

use crate::alarms::{Alarms, Metric};
use crate::db::ServerDb;
use crate::metrics::Metrics;
use crate::webhooks::Webhooks;

/// Live counts of one execution this server runs, and a signal for whoever watches it.
#[derive(Debug)]
pub struct LiveProgress {
    pub planned: AtomicUsize,
    pub succeeded: AtomicUsize,
    pub failed: AtomicUsize,
    /// Bumped on every change (SSE streams wait on it).
    changed: watch::Sender<u64>,
}

impl LiveProgress {
    fn new() -> LiveProgress {
        LiveProgress {
            planned: AtomicUsize::new(0),
            succeeded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            changed: watch::channel(0).0,
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl Progress for LiveProgress {
    fn units_planned(&self, units: usize) {
        self.planned.store(units, Ordering::Relaxed);
        self.bump();
    }

    fn unit_finished(&self, _index: usize, end: UnitEnd) {
        match end {
            UnitEnd::Succeeded => self.succeeded.fetch_add(1, Ordering::Relaxed),
            UnitEnd::Failed => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        self.bump();
    }
}

/// An execution queued or running in this server.
struct Live {
    progress: Arc<LiveProgress>,
    abort: Option<tokio::task::AbortHandle>,
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({0} executions waiting); try again later")]
    QueueFull(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Runs executions for the API.
pub struct Executor {
    services: Services,
    journal: Journal,
    tasks: TaskRegistry,
    pool: Arc<BatchPool>,
    slots: Arc<Semaphore>,
    max_queued: usize,
    live: Mutex<HashMap<String, Live>>,
    metrics: Arc<Metrics>,
    alarms: Arc<Alarms>,
    webhooks: Arc<Webhooks>,
    db: Arc<ServerDb>,
    /// Uploads being stored now (they hold a place in the queue).
    submitting: Arc<AtomicUsize>,
    /// Announces every execution that starts or ends (SSE streams and the alarm loop wait on it).
    changed: watch::Sender<u64>,
}

impl Executor {
    /// What an executor tells about its executions: metrics, alarms' data points, webhooks
    /// (with the server's file for uploads' callback URLs).
    pub fn new(
        services: Services,
        journal: Journal,
        tasks: TaskRegistry,
        observers: (Arc<Metrics>, Arc<Alarms>, Arc<Webhooks>, Arc<ServerDb>),
    ) -> Arc<Executor> {
        let (metrics, alarms, webhooks, db) = observers;
        let pool = Arc::new(BatchPool::for_config(&services));
        let serve = &services.config.serve;
        Arc::new(Executor {
            slots: Arc::new(Semaphore::new(serve.max_running.max(1))),
            max_queued: serve.max_queued,
            services,
            journal,
            tasks,
            pool,
            live: Mutex::new(HashMap::new()),
            submitting: Arc::new(AtomicUsize::new(0)),
            metrics,
            alarms,
            webhooks,
            db,
            changed: watch::channel(0).0,
        })
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live counts of an execution this server has queued or runs.
    pub fn progress(&self, execution: &str) -> Option<Arc<LiveProgress>> {
        self.live().get(execution).map(|live| live.progress.clone())
    }

    /// Whether this server runs (or has queued) `execution`.
    pub fn is_live(&self, execution: &str) -> bool {
        self.live().contains_key(execution)
    }

    /// Whether `record` is `RUNNING` with no process running it (not this server, and the
    /// process that started it is gone), so `resume` would continue it.
    pub fn resumable(&self, record: &ExecutionRecord) -> bool {
        !self.is_live(&record.name) && beacon_pipeline::flow::check_resumable(record).is_ok()
    }

    /// A receiver bumped whenever an execution starts or ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Executions waiting for a slot, and running.
    pub fn counts(&self) -> (usize, usize) {
        let live = self.live().len();
        let running = self.services.config.serve.max_running.max(1) - self.slots.available_permits();
        (live.saturating_sub(running), running)
    }

    fn runner(&self, progress: Arc<LiveProgress>) -> Runner {
        Runner::new(self.services.clone(), self.journal.clone(), progress)
            .with_tasks(self.tasks.clone())
            .with_batch_pool(self.pool.clone())
    }

    /// Store the document, journal its execution as `QUEUED` (with its callback URL) and
    /// schedule it.
    pub async fn submit(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        strategy: Option<Strategy>,
        callback: Option<&str>,
        unit: UnitOptions,
    ) -> Result<Queued, SubmitError> {
        // A place in the queue is taken before the upload is stored, so that concurrent uploads
        // cannot all pass the check.
        let reserved = Reservation::take(&self.submitting);
        let (waiting, _) = self.counts();
        if waiting + reserved.others >= self.max_queued {
            return Err(SubmitError::QueueFull(waiting));
        }
        if self.slots.is_closed() {
            return Err(SubmitError::ShuttingDown);
        }
        if self.slots.available_permits() == 0 {
            // Admitted, but it waits for a slot: the server throttles executions.
            self.alarms.record(Metric::ThrottledExecutions, 1.0);
        }
        let progress = Arc::new(LiveProgress::new());
        let options = RunOptions { strategy, unit, ..RunOptions::default() };
        let queued = self.runner(progress.clone()).enqueue(name, bytes, options).await?;
        if let Some(url) = callback
            && let Err(e) = self.db.set_callback(&queued.execution, url)
        {
            tracing::error!(execution = queued.execution, "the callback URL is not stored: {}", e.message);
        }
        self.metrics.execution_started(strategy.map_or("auto".to_string(), |s| s.to_string()).as_str());
        self.claim(&queued.execution, progress.clone());
        self.schedule(queued.execution.clone(), progress, Start::Queued);
        Ok(queued)
    }

    /// Marks `execution` as this server's; false when it already is (a second resume or
    /// redrive of the same execution is refused).
    fn claim(&self, execution: &str, progress: Arc<LiveProgress>) -> bool {
        let mut live = self.live();
        if live.contains_key(execution) {
            return false;
        }
        live.insert(execution.to_string(), Live { progress, abort: None });
        true
    }

    /// Continue a `RUNNING` execution no process runs any more (the server was killed).
    pub fn resume(self: &Arc<Self>, execution: &str) -> Result<(), RunError> {
        let progress = Arc::new(LiveProgress::new());
        if !self.claim(execution, progress.clone()) {
            return Err(RunError::NotResumable(format!("execution {execution} is running in this server")));
        }
        if let Err(e) = self.runner(progress.clone()).resumable(execution) {
            self.live().remove(execution);
            return Err(e);
        }
        self.schedule(execution.to_string(), progress, Start::Resume);
        Ok(())
    }

    /// Run the failed units of a finished execution again (see [`Runner::redrive`]); returns
    /// how many units run again.
    pub async fn redrive(self: &Arc<Self>, execution: &str) -> Result<usize, RunError> {
        let progress = Arc::new(LiveProgress::new());
        if !self.claim(execution, progress.clone()) {
            return Err(RunError::NotResumable(format!("execution {execution} is running in this server")));
        }
        match self.runner(progress.clone()).prepare_redrive(execution).await {
            Ok((iterations, _)) => {
                self.schedule(execution.to_string(), progress, Start::Current);
                Ok(iterations)
            }
            Err(e) => {
                self.live().remove(execution);
                Err(e)
            }
        }
    }

    /// Stop a queued or running execution: it ends `ABORTED` (finished units keep their results).
    pub async fn stop(&self, execution: &str) -> Result<ExecutionState, RunError> {
        let record = self.journal.get(execution)?;
        if !matches!(record.status, ExecutionState::Queued | ExecutionState::Running) {
            return Ok(record.status);
        }
        if let Some(live) = self.live().remove(execution)
            && let Some(abort) = live.abort
        {
            abort.abort();
        }
        // If the run ended first, its end stands (the journal keeps the first end).
        self.journal
            .finish_execution(
                execution,
                ExecutionState::Aborted,
                None,
                Some("States.Aborted".into()),
                Some("stopped through the API".into()),
                now(),
            )
            .await?;
        let status = self.journal.get(execution)?.status;
        if status == ExecutionState::Aborted {
            self.metrics.execution_finished(ExecutionState::Aborted, None);
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(status)
    }

    /// Pick up what a previous server left: queued executions start, running ones resume.
    pub fn recover(self: &Arc<Self>) -> Result<usize, RunError> {
        let mut picked = 0;
        for record in self.journal.in_states(&[ExecutionState::Queued, ExecutionState::Running])? {
            if self.is_live(&record.name) {
                continue;
            }
            let progress = Arc::new(LiveProgress::new());
            let start = if record.status == ExecutionState::Queued {
                Start::Queued
            } else {
                match self.runner(progress.clone()).resumable(&record.name) {
                    Ok(_) => Start::Resume,
                    Err(e) => {
                        tracing::warn!(execution = record.name, "not resumed: {e}");
                        continue;
                    }
                }
            };
            tracing::info!(execution = record.name, "picked up after a restart");
            if self.claim(&record.name, progress.clone()) {
                self.schedule(record.name, progress, start);
            }
            picked += 1;
        }
        Ok(picked)
    }

    /// No new executions; the running ones stay journaled as `RUNNING` and resume on restart.
    pub fn shut_down(&self) {
        self.slots.close();
    }

    /// Runs a claimed execution when a slot frees.
    fn schedule(self: &Arc<Self>, execution: String, progress: Arc<LiveProgress>, start: Start) {
        let this = self.clone();
        let name = execution.clone();
        let handle = tokio::spawn(async move {
            let Ok(_slot) = this.slots.clone().acquire_owned().await else { return };
            if !this.is_live(&name) {
                return; // stopped while queued
            }
            this.changed.send_modify(|n| *n += 1);
            let started = std::time::Instant::now();
            let runner = this.runner(progress);
            let result = match start {
                Start::Queued => runner.start_queued(&name).await,
                Start::Resume => runner.resume(&name).await,
                Start::Current => runner.run_current_attempt(&name).await,
            };
            this.finished(&name, &result, started.elapsed());
        });
        if let Some(live) = self.live().get_mut(&execution) {
            live.abort = Some(handle.abort_handle());
        }
    }

    fn finished(&self, execution: &str, result: &Result<RunOutcome, RunError>, took: std::time::Duration) {
        let stopped = self.live().remove(execution).is_none();
        if stopped && self.journal.get(execution).is_ok_and(|r| r.status == ExecutionState::Aborted) {
            // A stop ended it (and counted it) first.
            return;
        }
        let (status, units_failed) = match result {
            Ok(outcome) => {
                self.metrics.report_finished(&outcome.report);
                (ExecutionState::Succeeded, outcome.report.usage.units_failed)
            }
            Err(RunError::Execution { error, .. }) if error == "States.Timeout" => (ExecutionState::TimedOut, 0),
            Err(e) => {
                tracing::warn!(execution, "execution failed: {e}");
                (ExecutionState::Failed, 0)
            }
        };
        self.metrics.execution_finished(status, Some(took));
        #[allow(clippy::cast_precision_loss)]
        {
            self.alarms.record(Metric::ExecutionTime, took.as_millis() as f64);
            if status == ExecutionState::Failed {
                self.alarms.record(Metric::FailedExecutions, 1.0);
            }
            if units_failed > 0 {
                self.alarms.record(Metric::FailedUnits, units_failed as f64);
            }
        }
        self.announce(execution, status, result);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The `execution.*` webhook of an execution that ended.
    fn announce(&self, execution: &str, status: ExecutionState, result: &Result<RunOutcome, RunError>) {
        let event = match status {
            ExecutionState::Succeeded => "execution.succeeded",
            ExecutionState::Failed => "execution.failed",
            ExecutionState::TimedOut => "execution.timed_out",
            _ => return,
        };
        let record = self.journal.get(execution).ok();
        let mut data = serde_json::json!({
            "execution": execution,
            "status": status.as_str(),
            "document": record.as_ref().map(|r| serde_json::json!({"id": crate::api::document_id(r), "name": r.label})),
            "startedAt": record.as_ref().map(|r| r.started_at.clone()),
            "finishedAt": record.as_ref().and_then(|r| r.finished_at.clone()),
            "location": format!("/v1/executions/{execution}"),
        });
        match result {
            Ok(outcome) => {
                let usage = &outcome.report.usage;
                data["units"] = serde_json::json!({"succeeded": usage.units_succeeded, "failed": usage.units_failed});
                data["costUsd"] = serde_json::json!(usage.cost_usd);
                data["report"] = serde_json::json!(format!("/v1/executions/{execution}/report"));
            }
            Err(e) => data["error"] = serde_json::json!(e.to_string()),
        }
        let callback = self.db.callback(execution).ok().flatten();
        self.webhooks.publish(event, data, callback.as_deref());
    }
}

/// A place held in the queue while an upload is stored; given back when dropped.
struct Reservation {
    counter: Arc<AtomicUsize>,
    /// Other uploads holding places.
    others: usize,
}

impl Reservation {
    fn take(counter: &Arc<AtomicUsize>) -> Reservation {
        let others = counter.fetch_add(1, Ordering::SeqCst);
        Reservation { counter: counter.clone(), others }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Copy)]
enum Start {
    Queued,
    Resume,
    /// The attempt the journal is on (a redrive began it).
    Current,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
