#!/usr/bin/env python3
"""The estimated AWS cost of one document per strategy, for docs/aws.md.

Units and tokens come from `beacon plan --json` (the same prompt code and token estimator as a
run; Bedrock's price is BEACON's own dated table); the AWS services' prices and the per-unit
assumptions are below, each stated. State transitions follow the definition: they were counted
from the journal of offline runs (`beacon executions show NAME --history --json`, child
executions included) and match the formulas in `transitions()`.

Run:  python3 scripts/make-sample-pdf.py --pages 30 /tmp/review-30.pdf   (and 80, 300)
      python3 scripts/aws-cost-estimate.py /tmp/review-30.pdf /tmp/review-80.pdf /tmp/review-300.pdf
Env:  BEACON=path/to/beacon (default: target/release/beacon, else `cargo run --release --`)
"""
import json
import math
import os
import subprocess
import sys

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

# us-east-1 list prices (USD). Lambda arm64 per GB-second and per request; Step Functions
# Standard per state transition; S3 Standard per request; DynamoDB on-demand per request unit
# (the November 2024 prices); CloudWatch Logs per GB ingested.
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
TRANSITION = 0.025 / 1000
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
DYNAMODB_WRITE = 0.625 / 1e6
DYNAMODB_READ = 0.125 / 1e6
LOGS_GB = 0.50

# Assumptions (the template's default memory sizes).
LLM_SECONDS = 4.0          # one unit's model call, llm-processor at 256 MB (waits on Bedrock)
DOC_SECONDS = 2.0          # document-processor at 1769 MB, plus 20 ms per unit written
INTEGRATE_SECONDS = 2.0    # result-integrator at 1024 MB, plus 10 ms per unit read
BATCH_JOB_HOURS = 1.0      # a Bedrock batch job's duration; polled every 60 s (3 transitions a poll)
POOL_WINDOW_SECONDS = 60   # a batch document under min_records waits this long for others
LOG_BYTES = 2000           # per invocation, the EMF line included
DISTRIBUTED_BATCH = 10     # units per child execution
BATCH_MIN_RECORDS = 100


def lambda_cost(mb, seconds):
    return mb / 1024 * seconds * LAMBDA_GB_SECOND + LAMBDA_REQUEST


def transitions(units, strategy):
    if strategy == "inline":
        return units + 5  # ProcessDocument, ChooseStrategy, InlineWork, AnalyseUnits, units, IntegrateResults
    if strategy == "distributed":
        return 4 + math.ceil(units / DISTRIBUTED_BATCH) + units  # each child: its inner Map + its units
    if units < BATCH_MIN_RECORDS:
        return units + 9  # the batch branch up to PoolNotFilled, then the inline Map
    return 10 + 3 * round(BATCH_JOB_HOURS * 60)


def estimate(plan, strategy):
    units = plan["units"]
    on_demand = not (strategy == "batch" and units >= BATCH_MIN_RECORDS)
    documents = lambda_cost(1769, DOC_SECONDS + 0.02 * units) + lambda_cost(1024, INTEGRATE_SECONDS + 0.01 * units)
    requests = 2 * units + 10
    s3 = requests * (S3_PUT + S3_GET)
    if on_demand:
        functions = documents + units * lambda_cost(256, LLM_SECONDS)
        invocations = units + 2
        dynamodb = units * (2 * DYNAMODB_WRITE + DYNAMODB_READ)
        if strategy == "batch":  # prepare, then wait in the pool for others
            functions += lambda_cost(256, 2) + lambda_cost(256, POOL_WINDOW_SECONDS)
            invocations += 2
        if strategy == "distributed":
            s3 += (2 * math.ceil(units / DISTRIBUTED_BATCH) + 5) * S3_PUT  # ItemReader/ResultWriter
        bedrock = plan["cost_on_demand_usd"]
    else:
        functions = documents + lambda_cost(256, 3) + lambda_cost(256, 1) + lambda_cost(1024, 5)
        invocations = 5
        dynamodb = 0.0
        s3 += 4 * (S3_PUT + S3_GET)  # batch input, output, manifest
        bedrock = plan["cost_batch_usd"]
    count = transitions(units, strategy)
    step_functions = count * TRANSITION
    other = s3 + dynamodb + invocations * LOG_BYTES / 1e9 * LOGS_GB
    return count, step_functions, functions, other, bedrock


def beacon():
    if os.environ.get("BEACON"):
        return [os.environ["BEACON"]]
    if os.path.exists("target/release/beacon"):
        return ["target/release/beacon"]
    return ["cargo", "run", "--release", "--quiet", "--"]


def main(paths):
    if not paths:
        sys.exit(__doc__)
    out = subprocess.run(beacon() + ["plan", "--provider", "bedrock", "--model", MODEL, "--json", *paths],
                         check=True, capture_output=True, text=True).stdout
    plans = [json.loads(line) for line in out.splitlines() if line.strip()]
    print("| document | units | strategy | transitions | Step Functions | Lambda | S3 + DynamoDB + Logs | Bedrock | total |")
    print("|---|---|---|---|---|---|---|---|---|")
    for plan in plans:
        if "file" not in plan:
            continue
        for strategy in ("inline", "distributed", "batch"):
            count, sfn, functions, other, bedrock = estimate(plan, strategy)
            total = sfn + functions + other + bedrock
            print(f"| {os.path.basename(plan['file'])} | {plan['units']} | {strategy} | {count} | ${sfn:.4f} "
                  f"| ${functions:.4f} | ${other:.4f} | ${bedrock:.4f} | ${total:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
