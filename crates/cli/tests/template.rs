//! `deploy/template.yaml`: cfn-lint clean, and the policy checks of `deploy/policy/` (checkov)
//! pass on it and catch each rule broken. The tools come from the venv `./scripts/test`
//! installs (`BEACON_PYTHON`); without it the tests say so and pass, unless the test command
//! requires them (`BEACON_REQUIRE_MOTO=1`, set by `./scripts/test`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const POLICIES: [&str; 8] = [
    "CKV2_BEACON_1",
    "CKV2_BEACON_2",
    "CKV2_BEACON_3",
    "CKV2_BEACON_4",
    "CKV2_BEACON_5",
    "CKV2_BEACON_6",
    "CKV2_BEACON_7",
    "CKV2_BEACON_8",
];

fn template() -> PathBuf {
    repo_root().join("deploy/template.yaml")
}

#[test]
fn the_template_lints_clean() {
    let Some(cfn_lint) = venv_tool("cfn-lint") else { return };
    let out = Command::new(cfn_lint).arg(template()).output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(stdout(&out).trim(), "", "cfn-lint findings");
}

/// Runs the policies on `template`; returns the ids of the checks that failed, and how many
/// passed.
fn policy_failures(checkov: &Path, template: &Path) -> (Vec<String>, usize) {
    let out = Command::new(checkov)
        .args(["--framework", "cloudformation", "--skip-download", "-o", "json", "--check"])
        .arg(POLICIES.join(","))
        .arg("--external-checks-dir")
        .arg(repo_root().join("deploy/policy"))
        .arg("-f")
        .arg(template)
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("checkov's JSON ({e}):\n{}\n{}", stdout(&out), stderr(&out)));
    let ids = |key: &str| -> Vec<String> {
        report["results"][key]
            .as_array()
            .map(|checks| checks.iter().map(|c| c["check_id"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    };
    let mut failed = ids("failed_checks");
    failed.sort();
    failed.dedup();
    (failed, ids("passed_checks").len())
}

/// The template with `(from, to)` replaced, each exactly once.
fn broken(s: &Scratch, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(template()).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "the template no longer holds {from:?}: update this test");
        text = text.replacen(from, to, 1);
    }
    let path = s.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_template_passes_the_policy_checks_and_each_broken_rule_is_caught() {
    let Some(checkov) = venv_tool("checkov") else { return };
    let s = Scratch::new();
    let every_rule_broken = broken(
        &s,
        "broken.yaml",
        &[
            ("      BucketEncryption:", "      NoBucketEncryption:"),
            ("RestrictPublicBuckets: true", "RestrictPublicBuckets: false"),
            ("aws:SecureTransport: \"false\"", "aws:SecureTransport: \"true\""),
            ("                Action: s3:GetObject", "                Action: \"*\""),
            ("      RetentionInDays: !Ref LogRetentionDays", "      # no retention"),
            ("KmsMasterKeyId: alias/aws/sns", "# no key"),
            ("SSEEnabled: true", "SSEEnabled: false"),
        ],
    );
    let no_bucket_policy =
        broken(&s, "no-policy.yaml", &[("Type: AWS::S3::BucketPolicy", "Type: AWS::S3::AccessPoint")]);
    // Three checkov runs of ~10 s each: side by side.
    let (good, all_broken, no_policy) = std::thread::scope(|scope| {
        let good = scope.spawn(|| policy_failures(&checkov, &template()));
        let all_broken = scope.spawn(|| policy_failures(&checkov, &every_rule_broken));
        let no_policy = scope.spawn(|| policy_failures(&checkov, &no_bucket_policy));
        (good.join().unwrap(), all_broken.join().unwrap(), no_policy.join().unwrap())
    });
    assert_eq!(good.0, Vec::<String>::new(), "the template breaks no policy");
    assert!(good.1 >= POLICIES.len(), "every policy found resources to check ({} passed)", good.1);
    let expected: Vec<String> = POLICIES.iter().filter(|p| **p != "CKV2_BEACON_3").map(|p| p.to_string()).collect();
    assert_eq!(all_broken.0, expected, "each broken rule is caught by its policy");
    assert_eq!(no_policy.0, vec!["CKV2_BEACON_3".to_string()], "a bucket without the TLS policy is caught");
}
