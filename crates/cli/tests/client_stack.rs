//! The client stack end to end against `beacon sim`: cache, known quota, OpenAI-compatible API.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn sent_by_process(out: &std::process::Output) -> u64 {
    let text = stdout(out);
    let before = text.split(" sent by this process").next().unwrap_or_default();
    before
        .rsplit('(')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in {text}"))
}

fn run_bedrock(s: &Scratch, sim: &Sim, doc: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = s.beacon();
    with_fake_aws(&mut cmd)
        .arg("run")
        .arg(doc)
        .arg("--out")
        .arg(s.out())
        .args(["--provider", "bedrock", "--model", "sim-model", "--endpoint"])
        .arg(sim.endpoint())
        .args(extra);
    cmd.output().unwrap()
}

fn pages(n: usize, changed: Option<usize>) -> String {
    (1..=n)
        .map(|i| if Some(i) == changed { format!("Page {i} was edited.") } else { format!("Page {i} is unchanged.") })
        .collect::<Vec<_>>()
        .join("\n\x0c")
}

#[test]
fn a_rerun_is_free_and_an_edited_page_pays_for_itself() {
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let doc = s.path("doc.txt");
    std::fs::write(&doc, pages(6, None)).unwrap();
    let first = run_bedrock(&s, &sim, &doc, &[]);
    assert_exit(&first, 0);
    assert_eq!(sent_by_process(&first), 6);
    let report: Value = s.report();

    let again = run_bedrock(&s, &sim, &doc, &[]);
    assert_exit(&again, 0);
    assert_eq!(sent_by_process(&again), 0, "every unit came from the cache");
    let cached: Value = s.report();
    assert_eq!(cached["units"][0]["result"], report["units"][0]["result"]);
    assert_eq!(cached["usage"]["requests"], 0, "cache hits cost no requests");

    std::fs::write(&doc, pages(6, Some(3))).unwrap();
    let edited = run_bedrock(&s, &sim, &doc, &[]);
    assert_exit(&edited, 0);
    assert_eq!(sent_by_process(&edited), 1, "only the edited page is analysed again");

    let uncached = run_bedrock(&s, &sim, &doc, &["--no-cache"]);
    assert_exit(&uncached, 0);
    assert_eq!(sent_by_process(&uncached), 6);
}

#[test]
fn a_known_quota_is_respected_without_throttles() {
    // The simulator enforces 60 requests per sliding minute; BEACON is told the same quota.
    let sim = Sim::start(&["--rpm", "60"]);
    let s = Scratch::new();
    let doc = s.path("doc.txt");
    std::fs::write(&doc, pages(14, None)).unwrap();
    let out = run_bedrock(&s, &sim, &doc, &["--rpm", "60", "--no-cache", "--max-concurrency", "20"]);
    assert_exit(&out, 0);
    let stats = sim.stats();
    assert_eq!(stats["throttled"], 0, "paced below the quota: {stats}");
    assert!(stats["max_rpm_observed"].as_u64().unwrap() <= 60, "{stats}");
    assert_eq!(s.report()["usage"]["units_succeeded"], 14);
}

#[test]
fn openai_compatible_servers_are_a_provider() {
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let doc = s.path("doc.txt");
    std::fs::write(&doc, pages(3, None)).unwrap();
    let out = s
        .beacon()
        .arg("run")
        .arg(&doc)
        .arg("--out")
        .arg(s.out())
        .args(["--provider", "openai", "--model", "local-model", "--endpoint"])
        .arg(format!("{}/v1", sim.endpoint()))
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["model"], "local-model");
    assert_eq!(report["usage"]["units_succeeded"], 3);
    assert!(report["units"][0]["result"]["summary"].is_string());
}

#[path = "../../aws/tests/support/mod.rs"]
mod moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_limiter_keeps_its_state_in_dynamodb() {
    let Some(moto) = moto::Moto::start() else { return };
    let sim = Sim::start(&["--rpm", "60"]);
    let s = Scratch::new();
    let doc = s.path("doc.txt");
    std::fs::write(&doc, pages(5, None)).unwrap();
    let mut cmd = s.beacon();
    cmd.env("BEACON_QUOTA_ENDPOINT", &moto.endpoint);
    let out = tokio::task::block_in_place(|| {
        with_fake_aws(&mut cmd)
            .arg("run")
            .arg(&doc)
            .arg("--out")
            .arg(s.out())
            .args(["--provider", "bedrock", "--model", "sim-model", "--endpoint"])
            .arg(sim.endpoint())
            .args(["--rpm", "60", "--limiter-table", "beacon-limits", "--no-cache"])
            .output()
            .unwrap()
    });
    assert_exit(&out, 0);
    assert_eq!(sim.stats()["throttled"], 0);
    // The process created the table and admitted its five requests through the model's item.
    let item = moto
        .dynamodb()
        .await
        .get_item()
        .table_name("beacon-limits")
        .key("modelId", aws_sdk_dynamodb::types::AttributeValue::S("sim-model".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the model's rate-limit item");
    let state: Value = serde_json::from_str(item["state"].as_s().unwrap()).unwrap();
    let admitted: u64 =
        state["entries"].as_array().unwrap().iter().map(|entry| entry["requests"].as_u64().unwrap()).sum();
    assert_eq!(admitted, 5, "{state}");

    // Without a quota there is nothing to share: a clear configuration error.
    let out = s.run(&doc, &["--limiter-table", "beacon-limits"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--limiter-table") && stderr(&out).contains("--rpm"), "{}", stderr(&out));
}

#[test]
fn pdf_pages_can_be_sent_as_documents() {
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let doc = repo_root().join("samples/operations-review.pdf");
    let out = run_bedrock(&s, &sim, &doc, &["--attach-pages", "--no-cache"]);
    assert_exit(&out, 0);
    let report = s.report();
    let pages = report["document"]["unit_count"].as_u64().unwrap();
    assert_eq!(report["usage"]["units_succeeded"].as_u64(), Some(pages));
    // Every page went as a Converse document block the simulator checked (a PDF, a valid name).
    assert_eq!(sim.stats()["attachments"].as_u64(), Some(pages), "{}", sim.stats());
    // Without the flag, text only.
    let sim = Sim::start(&[]);
    let out = run_bedrock(&s, &sim, &doc, &["--no-cache"]);
    assert_exit(&out, 0);
    assert_eq!(sim.stats()["attachments"], 0);
}

#[test]
fn scanned_pdf_pages_go_to_the_model_as_pictures() {
    let Some(doc) = corpus("pdf/007-imagemagick-images/imagemagick-images.pdf") else { return };
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let out = run_bedrock(&s, &sim, &doc, &["--no-cache"]);
    assert_exit(&out, 0);
    let report = s.report();
    // Six pages of images without a text layer: each rendered and sent as an image block the
    // simulator checked (PNG magic bytes, base64), each analysed.
    assert_eq!(report["usage"]["units_succeeded"], 6, "{report}");
    assert_eq!(sim.stats()["attachments"], 6, "{}", sim.stats());
    assert_eq!(sim.stats()["requests"], 6, "{}", sim.stats());

    // Turned off (for a text-only model): nothing is sent for those pages.
    let config = s.path("beacon.toml");
    std::fs::write(&config, "[llm]\nrender_scanned_pages = false\n").unwrap();
    let sim = Sim::start(&[]);
    let out = run_bedrock(&s, &sim, &doc, &["--no-cache", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(sim.stats()["attachments"], 0, "{}", sim.stats());
}

/// A 2×2 grey, uncompressed TIFF, written field by field: header, one IFD of eight entries
/// (width, height, bits, compression, photometric, strip offset, rows per strip, strip bytes),
/// then the four pixels.
fn tiny_tiff() -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes());
    let entries: [(u16, u16, u32); 8] =
        [(256, 3, 2), (257, 3, 2), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 110), (278, 3, 2), (279, 4, 4)];
    t.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        t.extend(tag.to_le_bytes());
        t.extend(kind.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        t.extend(value.to_le_bytes());
    }
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len(), 110);
    t.extend([0, 80, 160, 240]);
    t
}

#[test]
fn a_tiff_goes_to_the_model_as_a_png() {
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let image = s.path("fax.tif");
    std::fs::write(&image, tiny_tiff()).unwrap();
    let out = run_bedrock(&s, &sim, &image, &["--no-cache"]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["format"], "tiff");
    assert_eq!(report["units"][0]["title"], "Image (2×2)");
    assert_eq!(report["usage"]["units_succeeded"], 1);
    // The simulator checks image blocks as Bedrock does: PNG magic bytes under format "png".
    assert_eq!(sim.stats()["attachments"], 1, "{}", sim.stats());
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0x64, 0x60, 0xF8, 0x5F, 0x0F, 0x00, 0x02, 0x87, 0x01, 0x80, 0xEB, 0x47, 0xBA,
    0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[test]
fn an_image_goes_to_the_model_as_an_image_block() {
    let sim = Sim::start(&[]);
    let s = Scratch::new();
    let image = s.path("scan.png");
    std::fs::write(&image, PNG).unwrap();
    let out = run_bedrock(&s, &sim, &image, &["--no-cache"]);
    assert_exit(&out, 0);
    let report = s.report();
    assert_eq!(report["document"]["format"], "png");
    assert_eq!(report["units"][0]["title"], "Image (1×1)");
    assert_eq!(report["usage"]["units_succeeded"], 1);
    assert_eq!(sim.stats()["attachments"], 1, "{}", sim.stats());

    // The offline analyzer reads no images: the unit succeeds, flagged, with nothing made up.
    let out = s.run(&image, &[]);
    assert_exit(&out, 0);
    let units = s.beacon().arg("units").arg(&image).output().unwrap();
    assert!(stdout(&units).contains("needs_ocr"), "{}", stdout(&units));
}
