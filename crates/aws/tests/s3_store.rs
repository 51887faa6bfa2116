//! The store on S3 (moto): objects in and out, listings by prefix, and the whole flow with its
//! distributed Map reading the unit list from the bucket and writing the Map Run's results to it.

mod support;

use std::sync::Arc;

use beacon_llm::offline::OfflineAnalyzer;
use beacon_pipeline::plan::Strategy;
use beacon_pipeline::{Config, NoProgress, RunOptions, Runner, Services};
use beacon_store::Store;
use beacon_store::journal::Journal;
use support::Moto;

const BUCKET: &str = "beacon-documents";

fn s3_store(moto: &Moto) -> Store {
    // The credentials only need to be present; moto accepts any.
    // SAFETY: set before any thread of this test reads the environment, to the same values by
    // every test in this file.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    Store::s3(BUCKET, Some("us-east-1"), Some(&moto.endpoint)).unwrap()
}

#[tokio::test]
async fn objects_go_in_and_out_of_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let store = s3_store(&moto);
    assert_eq!(store.description(), "s3://beacon-documents");
    store.put("units/abc/000001.json", b"{\"a\":1}".to_vec()).await.unwrap();
    store.put("units/abc/000000.json", b"{}".to_vec()).await.unwrap();
    store.put("units/abd.json", b"{}".to_vec()).await.unwrap();
    assert_eq!(store.get("units/abc/000001.json").await.unwrap().as_ref(), b"{\"a\":1}");
    let keys: Vec<String> = store.list("units/abc").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, vec!["units/abc/000000.json", "units/abc/000001.json"]);
    assert!(store.exists("units/abd.json").await.unwrap());
    store.delete("units/abd.json").await.unwrap();
    assert!(!store.exists("units/abd.json").await.unwrap());
    assert!(matches!(store.get("units/none").await, Err(beacon_store::StoreError::NotFound { .. })));
}

#[tokio::test]
async fn the_flow_runs_on_the_bucket_distributed_map_included() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_path_buf(), bucket: BUCKET.into(), ..Config::default() };
    let store = s3_store(&moto);
    let services = Services {
        store: store.clone(),
        llm: Arc::new(OfflineAnalyzer),
        config: Arc::new(config),
        unit_schema: Arc::new(beacon_pipeline::schema::default_unit_schema()),
    };
    let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
    let runner = Runner::new(services, journal, Arc::new(NoProgress));
    let text: Vec<String> = (1..=45).map(|i| format!("Part {i}\nItem {i} costs ${i}.00.")).collect();
    let options = RunOptions { strategy: Some(Strategy::Distributed), ..RunOptions::default() };
    let outcome = runner.run_bytes("parts.txt", text.join("\x0c").into_bytes(), options).await.unwrap();
    assert_eq!(outcome.report.strategy, "distributed");
    assert_eq!(outcome.report.units.len(), 45);
    assert_eq!(outcome.report.unit_paths.get("distributed"), Some(&45));
    // What the ItemReader read and the ResultWriter wrote are objects of the bucket.
    let id = &outcome.report.document.sha256;
    assert!(store.exists(&format!("units/{id}/items.json")).await.unwrap());
    let written = store.list("map-runs/").await.unwrap();
    assert!(written.iter().any(|o| o.key.ends_with("/manifest.json")), "{written:?}");
    assert!(store.exists(&format!("reports/{id}/{}/report.json", outcome.execution)).await.unwrap());
}
