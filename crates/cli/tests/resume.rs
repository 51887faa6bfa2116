//! Crash and resume: `kill -9` a 50-unit run (the distributed Map: its child executions journal
//! into the parent) at pseudo-random points, resume it, and check that
//! the report equals an uninterrupted run's and that no unit journaled before the kill was sent
//! to the model again.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const UNITS: u64 = 50;

fn document(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("fifty-pages.txt");
    let pages: Vec<String> = (1..=UNITS)
        .map(|i| format!("Section {i}\n\nItem {i} costs ${i},000 and ships on 2026-05-{:02}.", i % 28 + 1))
        .collect();
    std::fs::write(&path, pages.join("\n\x0c")).unwrap();
    path
}

fn beacon_flow(s: &Scratch, sim: &Sim, data: &Path) -> Command {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("--config")
        .arg(s.path("beacon.toml"))
        .env("BEACON_DATA_DIR", data)
        .env("BEACON_PROVIDER", "bedrock")
        .env("BEACON_MODEL", "sim-model")
        .env("BEACON_ENDPOINT", sim.endpoint());
    cmd
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    stdout(out).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// The "(N sent by this process)" figure of the summary line.
fn sent_by_process(out: &std::process::Output) -> u64 {
    let text = stdout(out);
    let before = text.split(" sent by this process").next().unwrap_or_default();
    before
        .rsplit('(')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in {text}"))
}

fn succeeded_calls(sim: &Sim) -> u64 {
    sim.stats()["succeeded"].as_u64().unwrap()
}

#[test]
fn kill_nine_at_random_points_then_resume() {
    let sim = Sim::start(&["--latency-ms", "20"]);
    let s = Scratch::new();
    std::fs::write(s.path("beacon.toml"), "[strategy]\ninline_max_concurrency = 4\n").unwrap();
    let doc = document(s.dir.path());

    // The reference: one uninterrupted run.
    let before = succeeded_calls(&sim);
    let reference_out = s.path("reference");
    let out = beacon_flow(&s, &sim, &s.path("reference-data"))
        .arg("run")
        .arg(&doc)
        .arg("--out")
        .arg(&reference_out)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(succeeded_calls(&sim) - before, UNITS, "one model call per unit");
    let reference = comparable_report(&reference_out.join("report.json"));

    // Kill points spread over the run: before, during and after the units (xorshift, fixed seed).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for round in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let kill_after = x % (UNITS + 1);
        let data = s.path(&format!("data-{round}"));
        let out_dir = s.path(&format!("out-{round}"));
        let start_calls = succeeded_calls(&sim);
        let mut child = beacon_flow(&s, &sim, &data)
            .arg("run")
            .arg(&doc)
            .arg("--out")
            .arg(&out_dir)
            .arg("--no-cache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait (polling, with a deadline) until the run has made `kill_after` model calls and its
        // execution is journaled, or it finished on its own.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let journaled = data.join("journal.sqlite").exists();
            if journaled && succeeded_calls(&sim) - start_calls >= kill_after {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: the run made no progress");
            std::thread::yield_now();
        }
        child.kill().ok(); // SIGKILL: no chance to clean up
        child.wait().unwrap();

        let list = beacon_flow(&s, &sim, &data).args(["executions", "list", "--json"]).output().unwrap();
        assert_exit(&list, 0);
        let Some(execution) = json_lines(&list).into_iter().next() else {
            // Killed before the execution was journaled: nothing ran, nothing to resume.
            continue;
        };
        let name = execution["name"].as_str().unwrap().to_string();
        let show = beacon_flow(&s, &sim, &data).args(["executions", "show", &name, "--json"]).output().unwrap();
        assert_exit(&show, 0);
        let shown: Value = serde_json::from_str(&stdout(&show)).unwrap();
        let journaled_units =
            shown["tasks"].as_array().unwrap().iter().filter(|k| k.as_str().unwrap().contains("ProcessUnit")).count()
                as u64;

        // Without the result cache, so that only the journal can spare a unit its model call.
        let resumed =
            beacon_flow(&s, &sim, &data).args(["executions", "resume", &name, "--no-cache"]).output().unwrap();
        if shown["status"] == "SUCCEEDED" {
            assert_exit(&resumed, 2);
            assert!(stderr(&resumed).contains("nothing to resume"), "{}", stderr(&resumed));
        } else {
            assert_exit(&resumed, 0);
            assert_eq!(
                sent_by_process(&resumed),
                UNITS - journaled_units,
                "round {round} (killed after {kill_after} calls): units journaled before the kill are not analysed again"
            );
        }
        assert_eq!(
            comparable_report(&out_dir.join("report.json")),
            reference,
            "round {round}: same report as an uninterrupted run"
        );
        let after = beacon_flow(&s, &sim, &data).args(["executions", "show", &name, "--json"]).output().unwrap();
        let after: Value = serde_json::from_str(&stdout(&after)).unwrap();
        assert_eq!(after["status"], "SUCCEEDED");
    }
}

#[test]
fn executions_list_and_show_describe_a_finished_run() {
    let s = Scratch::new();
    let out = s.run(&repo_root().join("samples/operations-review.pdf"), &[]);
    assert_exit(&out, 0);
    let list = s.beacon().args(["executions", "list"]).output().unwrap();
    assert_exit(&list, 0);
    assert!(
        stdout(&list).contains("SUCCEEDED") && stdout(&list).contains("operations-review.pdf"),
        "{}",
        stdout(&list)
    );
    let json = s.beacon().args(["executions", "list", "--json"]).output().unwrap();
    let name = json_lines(&json)[0]["name"].as_str().unwrap().to_string();
    let show = s.beacon().args(["executions", "show", &name, "--history", "--json"]).output().unwrap();
    assert_exit(&show, 0);
    let shown: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let types: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    assert_eq!(types.iter().filter(|t| **t == "MapIterationSucceeded").count(), 12);
    for (i, e) in shown["events"].as_array().unwrap().iter().enumerate() {
        assert_eq!(e["id"], i as u64 + 1, "ids are consecutive");
    }
    assert!(shown["events"][0]["executionStartedEventDetails"]["input"].is_string(), "AWS's details shape");
    let unknown = s.beacon().args(["executions", "show", "no-such-execution"]).output().unwrap();
    assert_exit(&unknown, 2);
    assert!(stderr(&unknown).contains("no-such-execution"));
}

/// A batch run killed while its job runs: the resumed execution watches the job it submitted
/// (journaled) instead of submitting another, and collects its answers.
#[test]
fn a_batch_run_killed_while_its_job_runs_resumes_with_the_same_job() {
    let s = Scratch::new();
    let data = s.path("data");
    let store = data.join("store");
    std::fs::create_dir_all(&store).unwrap();
    // Four statuses of 1.5 s each: the job runs for about six seconds.
    let sim = Sim::start(&["--store-dir", store.to_str().unwrap(), "--batch-step-ms", "1500"]);
    std::fs::write(s.path("beacon.toml"), "[batch]\npoll_seconds = 1\n").unwrap();
    let doc = s.path("batch.txt");
    let pages: Vec<String> = (1..=120).map(|i| format!("Part {i}\n\nLot {i} weighs {i} kg.")).collect();
    std::fs::write(&doc, pages.join("\n\x0c")).unwrap();
    let mut child = beacon_flow(&s, &sim, &data)
        .arg("run")
        .arg(&doc)
        .arg("--out")
        .arg(s.out())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (polling, with a deadline) until the job's submission is journaled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let name = loop {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its job was submitted");
        let list = beacon_flow(&s, &sim, &data).args(["executions", "list", "--json"]).output().unwrap();
        if let Some(execution) = json_lines(&list).into_iter().next() {
            let name = execution["name"].as_str().unwrap().to_string();
            let show = beacon_flow(&s, &sim, &data).args(["executions", "show", &name, "--json"]).output().unwrap();
            let shown: Value = serde_json::from_str(&stdout(&show)).unwrap();
            if shown["tasks"].as_array().unwrap().iter().any(|k| k.as_str().unwrap().starts_with("SubmitBatchJob")) {
                break name;
            }
        }
        assert!(Instant::now() < deadline, "the job was never submitted");
        std::thread::yield_now();
    };
    child.kill().ok();
    child.wait().unwrap();

    let resumed = beacon_flow(&s, &sim, &data).args(["executions", "resume", &name]).output().unwrap();
    assert_exit(&resumed, 0);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(s.out().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["strategy"], "batch");
    let units = report["units"].as_array().unwrap();
    assert_eq!(units.len(), 120);
    assert!(units.iter().all(|u| u["status"] == "succeeded" && u["path"] == "batch"), "every answer from the one job");
    let stats = sim.stats();
    assert_eq!(stats["batch"]["jobs"], 1, "no second job was submitted: {stats}");
    assert_eq!(stats["succeeded"], 0, "nothing went on demand: {stats}");
}
