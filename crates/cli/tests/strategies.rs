//! The three strategies end to end: `beacon run` on documents of 30, 60 and 150 units against
//! `beacon sim` (Converse on demand, and the batch job API through the real aws-sdk-bedrock
//! client), compared with the same documents forced through the inline Map.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A text document of `n` pages (form feeds), each with its own facts (and none shared with a
/// document of another size, so the result cache never answers for another document).
fn pages(s: &Scratch, n: usize) -> PathBuf {
    let text: Vec<String> = (1..=n)
        .map(|i| {
            let day = i % 28 + 1;
            format!(
                "Section {i} of {n}\nInvoice INV-{n}-{i:04} is due on 2026-05-{day:02}. The total is ${i},250.00.\n"
            )
        })
        .collect();
    let path = s.path(&format!("pages-{n}.txt"));
    std::fs::write(&path, text.join("\x0c")).unwrap();
    path
}

/// Fast client retries, immediate batch polling (the simulator's jobs end at the first look
/// unless told otherwise), and any extra configuration.
fn config(s: &Scratch, extra: &str) -> PathBuf {
    let path = s.path("beacon.toml");
    let text = format!(
        "[retry]\nbase_delay_ms = 20\nmax_delay_ms = 200\nmax_attempts = 3\n\n[batch]\npoll_seconds = 0\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A simulator whose batch jobs read and write this scratch directory's store.
fn sim(s: &Scratch, extra: &[&str]) -> Sim {
    let store = s.path("data/store");
    std::fs::create_dir_all(&store).unwrap();
    let mut args = vec!["--store-dir".to_string(), store.display().to_string(), "--batch-step-ms".into(), "0".into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    Sim::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn run(s: &Scratch, sim: &Sim, file: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("--config")
        .arg(s.path("beacon.toml"))
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .args(["--provider", "bedrock", "--model", MODEL, "--no-progress-bar", "--endpoint"])
        .arg(sim.endpoint())
        .args(extra);
    cmd.output().unwrap()
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).unwrap()
}

/// What the units say and how the report merged it, without how it was run.
fn content(report: &Value) -> Value {
    let mut v = report.clone();
    for field in ["execution", "generated_at", "strategy", "strategy_note", "unit_paths", "usage"] {
        v[field] = Value::Null;
    }
    for unit in v["units"].as_array_mut().unwrap() {
        unit["path"] = Value::Null;
        unit["usage"] = Value::Null;
    }
    v
}

fn paths(report: &Value) -> Vec<String> {
    report["units"].as_array().unwrap().iter().map(|u| u["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn thirty_sixty_and_150_units_take_their_strategies_with_the_content_of_an_inline_run() {
    let s = Scratch::new();
    config(&s, "");
    let sim = sim(&s, &[]);
    for (units, strategy) in [(30, "inline"), (60, "distributed"), (150, "batch")] {
        let doc = pages(&s, units);
        let auto_out = s.path(&format!("auto-{units}"));
        let out = run(&s, &sim, &doc, &auto_out, &[]);
        assert_exit(&out, 0);
        let auto = report(&auto_out);
        assert_eq!(auto["strategy"], strategy, "{units} units");
        assert_eq!(auto["document"]["unit_count"], units);
        assert!(auto["units"].as_array().unwrap().iter().all(|u| u["status"] == "succeeded"), "{units}: complete");
        assert!(paths(&auto).iter().all(|p| p == strategy), "{units}: every unit took the {strategy} path");
        assert_eq!(auto["strategy_note"], Value::Null, "{units}: {}", auto["strategy_note"]);

        let inline_out = s.path(&format!("inline-{units}"));
        let out = run(&s, &sim, &doc, &inline_out, &["--strategy", "inline", "--no-cache"]);
        assert_exit(&out, 0);
        let inline = report(&inline_out);
        assert_eq!(inline["strategy"], "inline");
        assert_eq!(content(&auto), content(&inline), "{units} units: the same content as the inline run");
        if strategy == "batch" {
            // The same tokens at Bedrock's batch discount: half the price.
            assert_eq!(auto["usage"]["input_tokens"], inline["usage"]["input_tokens"]);
            assert_eq!(auto["usage"]["output_tokens"], inline["usage"]["output_tokens"]);
            let (batch, on_demand) =
                (auto["usage"]["cost_usd"].as_f64().unwrap(), inline["usage"]["cost_usd"].as_f64().unwrap());
            assert!((batch * 2.0 - on_demand).abs() < 1e-5, "batch {batch} vs on demand {on_demand}");
            assert!(stdout(&out).contains("150 of 150 units succeeded"));

            // A re-run pays for nothing: the batch answers went into the result cache.
            let before = sim.stats();
            let again_out = s.path("again-150");
            assert_exit(&run(&s, &sim, &doc, &again_out, &[]), 0);
            let again = report(&again_out);
            assert_eq!(content(&again), content(&auto));
            assert!(again["strategy_note"].as_str().unwrap().contains("result cache"), "{}", again["strategy_note"]);
            let after = sim.stats();
            assert_eq!(after["batch"]["jobs"], before["batch"]["jobs"], "no new batch job");
            assert_eq!(after["requests"], before["requests"], "no request at all");
        }
    }
    let stats = sim.stats();
    assert_eq!(stats["batch"]["jobs"], 1, "one batch job: {stats}");
    assert_eq!(stats["batch"]["records"], 150, "{stats}");
}

#[test]
fn the_distributed_runs_child_executions_are_listed_and_shown() {
    let s = Scratch::new();
    config(&s, "");
    let sim = sim(&s, &[]);
    let doc = pages(&s, 45);
    let out = run(&s, &sim, &doc, &s.out(), &[]);
    assert_exit(&out, 0);
    let execution = report(&s.out())["execution"].as_str().unwrap().to_string();
    let show = s.beacon().args(["executions", "show", &execution, "--json"]).output().unwrap();
    assert_exit(&show, 0);
    let shown: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let children = shown["childExecutions"].as_array().unwrap();
    assert_eq!(children.len(), 5, "45 units in batches of 10: {shown}");
    assert!(children.iter().all(|c| c["status"] == "SUCCEEDED"));
    let child = children[0]["name"].as_str().unwrap();
    let history = s.beacon().args(["executions", "show", child, "--json"]).output().unwrap();
    assert_exit(&history, 0);
    let events: Value = serde_json::from_str(&stdout(&history)).unwrap();
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"));
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    assert_eq!(types.iter().filter(|t| **t == "TaskSucceeded").count(), 10, "{types:?}");
}

#[test]
fn failed_batch_records_are_analysed_on_demand_and_the_report_is_complete() {
    let s = Scratch::new();
    config(&s, "");
    let sim = sim(&s, &["--batch-record-errors", "0.1", "--seed", "3"]);
    let doc = pages(&s, 120);
    let out = run(&s, &sim, &doc, &s.out(), &[]);
    assert_exit(&out, 0);
    let report = report(&s.out());
    assert_eq!(report["strategy"], "batch");
    assert!(report["units"].as_array().unwrap().iter().all(|u| u["status"] == "succeeded"), "complete");
    let on_demand = paths(&report).iter().filter(|p| *p == "on-demand").count();
    let batch = paths(&report).iter().filter(|p| *p == "batch").count();
    assert!(on_demand > 0 && batch > 0 && on_demand + batch == 120, "{on_demand} on demand, {batch} batch");
    assert_eq!(report["unit_paths"]["on-demand"], on_demand);
    let note = report["strategy_note"].as_str().unwrap();
    assert!(
        note.contains(&format!("{on_demand} of 120 batch records (")) && note.contains("failed in the job"),
        "{note}"
    );
    let stats = sim.stats();
    assert_eq!(stats["batch"]["record_errors"], on_demand, "every failed record was re-run: {stats}");
    assert_eq!(stats["succeeded"], on_demand, "and only those went on demand: {stats}");
    let md = std::fs::read_to_string(s.out().join("report.md")).unwrap();
    assert!(md.contains(&format!("| Strategy | batch ({batch} batch, {on_demand} on-demand) |")), "{md}");
}

#[test]
fn a_failed_job_falls_back_to_on_demand_and_an_expired_one_fails_as_configured() {
    let s = Scratch::new();
    config(&s, "");
    let failing = sim(&s, &["--batch-end", "failed"]);
    let doc = pages(&s, 110);
    let out = run(&s, &failing, &doc, &s.out(), &[]);
    assert_exit(&out, 0);
    let fallen_back = report(&s.out());
    assert_eq!(fallen_back["strategy"], "batch");
    assert!(paths(&fallen_back).iter().all(|p| p == "on-demand"));
    assert!(fallen_back["units"].as_array().unwrap().iter().all(|u| u["status"] == "succeeded"));
    let note = fallen_back["strategy_note"].as_str().unwrap();
    assert!(note.contains("ended Failed") && note.contains("simulated"), "{note}");
    assert_eq!(failing.stats()["succeeded"], 110);

    let s = Scratch::new();
    config(&s, "on_failure = \"fail\"");
    let expiring = sim(&s, &["--batch-end", "expired"]);
    let doc = pages(&s, 110);
    let out = run(&s, &expiring, &doc, &s.out(), &[]);
    assert_exit(&out, 1);
    let failed = report(&s.out());
    let units = failed["units"].as_array().unwrap();
    assert!(units.iter().all(|u| u["status"] == "failed"), "every unit failed, as configured");
    let cause = units[0]["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("ended Expired"), "the reason is in the report: {cause}");
    assert_eq!(expiring.stats()["succeeded"], 0, "nothing went on demand");
}

#[test]
fn forced_batch_without_bedrock_and_a_bad_strategy_are_usage_errors() {
    let s = Scratch::new();
    let doc = pages(&s, 3);
    let out = s.run(&doc, &["--strategy", "batch"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--provider bedrock"), "{}", stderr(&out));
    let out = s.run(&doc, &["--strategy", "sideways"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("unknown strategy 'sideways'"), "{}", stderr(&out));
    let out = s.run(&doc, &["--strategy", "distributed"]);
    assert_exit(&out, 0);
    assert_eq!(s.report()["strategy"], "distributed");
}

#[test]
fn two_small_batch_documents_pool_into_one_job_and_a_lone_one_goes_on_demand_after_the_window() {
    let s = Scratch::new();
    // A pool that fills does not wait for its window; this one is long so that a slow start of
    // one document cannot make the other give up.
    config(&s, "pool_window_secs = 60");
    let sim = sim(&s, &[]);
    let a = pages(&s, 70);
    let b = s.path("other-70.txt");
    // A different document of the same size (its own facts, so its own record file and id).
    let text: Vec<String> =
        (1..=70).map(|i| format!("Chapter {i}\nOrder ORD-{i:04} ships on 2026-06-{:02}.\n", i % 28 + 1)).collect();
    std::fs::write(&b, text.join("\x0c")).unwrap();
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("--config")
        .arg(s.path("beacon.toml"))
        .arg("run")
        .arg(&a)
        .arg(&b)
        .arg("--out")
        .arg(s.out())
        .args(["--strategy", "batch", "--provider", "bedrock", "--model", MODEL, "--no-progress-bar", "--endpoint"])
        .arg(sim.endpoint());
    let out = cmd.output().unwrap();
    assert_exit(&out, 0);
    for name in ["pages-70", "other-70"] {
        let report = report(&s.out().join(name));
        assert_eq!(report["strategy"], "batch", "{name}");
        assert!(paths(&report).iter().all(|p| p == "batch"), "{name}: every unit from the pooled job");
        assert!(report["units"].as_array().unwrap().iter().all(|u| u["status"] == "succeeded"));
    }
    let stats = sim.stats();
    assert_eq!(stats["batch"]["jobs"], 1, "one pooled job for both documents: {stats}");
    assert_eq!(stats["batch"]["records"], 140, "{stats}");
    assert_eq!(stats["succeeded"], 0, "nothing went on demand: {stats}");

    config(&s, "pool_window_secs = 1");
    let alone_out = s.path("alone");
    let out = run(&s, &sim, &a, &alone_out, &["--strategy", "batch", "--no-cache"]);
    assert_exit(&out, 0);
    let alone = report(&alone_out);
    assert_eq!(alone["strategy"], "batch");
    assert!(paths(&alone).iter().all(|p| p == "on-demand"), "the lone document went on demand");
    let note = alone["strategy_note"].as_str().unwrap();
    assert!(note.contains("70 records after 1 s, fewer than the 100"), "{note}");
    assert_eq!(sim.stats()["batch"]["jobs"], 1, "no job for the lone document");
    assert_eq!(content(&alone), content(&report(&s.out().join("pages-70"))), "same content either way");
}
