//! Progress on the terminal: a bar when stderr is a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beacon_llm::ClientStats;
use beacon_pipeline::{Progress, UnitEnd};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Display {
    bar: Option<ProgressBar>,
    name: String,
    stats: ClientStats,
    started: Instant,
    total: AtomicUsize,
    succeeded: AtomicUsize,
    failed: AtomicUsize,
}

impl Display {
    /// A display for one document; on a terminal its bar joins `bars` (one line per document).
    pub fn new(label: &str, stats: ClientStats, allow_bar: bool, bars: &MultiProgress) -> Display {
        let name = label.to_string();
        let bar = (allow_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = bars.add(ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()));
            let style = ProgressStyle::with_template(
                "{spinner} {prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} units {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(name.clone());
            bar.set_message("splitting…");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("[beacon] {name}: starting");
        }
        Display {
            bar,
            name,
            stats,
            started: Instant::now(),
            total: AtomicUsize::new(0),
            succeeded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        }
    }

    fn status(&self) -> String {
        let s = self.stats.snapshot();
        let failed = self.failed.load(Ordering::Relaxed);
        let mut msg = format!("· throttles {} · retries {}", s.throttles, s.retries);
        if failed > 0 {
            msg.push_str(&format!(" · failed {failed}"));
        }
        msg
    }

    /// Refresh the bar's counters (throttles change between unit completions).
    pub fn start_ticker(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(bar) = &self.bar
                    && self.total.load(Ordering::Relaxed) > 0
                {
                    bar.set_message(self.status());
                }
            }
        })
    }

    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                let done = self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
                if done > 0 {
                    eprintln!(
                        "[beacon] {}: finished {done}/{} units {} · elapsed {:.1}s",
                        self.name,
                        self.total.load(Ordering::Relaxed),
                        self.status(),
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
}

impl Progress for Display {
    fn units_planned(&self, units: usize) {
        self.total.store(units, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.set_length(units as u64);
                bar.set_message(self.status());
            }
            None => eprintln!("[beacon] {}: {units} units to analyse", self.name),
        }
    }

    fn unit_finished(&self, index: usize, end: UnitEnd) {
        let counter = match end {
            UnitEnd::Succeeded => &self.succeeded,
            UnitEnd::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let done = self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(self.status());
            }
            None => eprintln!(
                "[beacon] {}: unit {} {} · {done}/{} done {} · elapsed {:.1}s",
                self.name,
                index + 1,
                if end == UnitEnd::Succeeded { "done" } else { "FAILED" },
                self.total.load(Ordering::Relaxed),
                self.status(),
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}
