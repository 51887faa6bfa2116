//! `document-processor`: bytes in the store → units and a manifest in the store.

use beacon_asl::{TaskContext, TaskFailure};
use beacon_ingest::{Document, ingest_with_password};
use beacon_store::keys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::info;

use futures::StreamExt;

use super::{STORE_CONCURRENCY, Services, errors, failure, store_failure, task_input};

/// Where the uploaded document is.
#[derive(Debug, Deserialize)]
struct Input {
    document: DocumentRef,
}

#[derive(Debug, Deserialize)]
struct DocumentRef {
    /// Object key of the uploaded bytes.
    key: String,
    /// The file name the user gave (for the report; never used to detect the format).
    name: String,
}

/// The manifest stored next to the units.
#[derive(Debug, Serialize)]
struct ManifestEntry<'a> {
    index: usize,
    kind: beacon_ingest::UnitKind,
    title: &'a str,
    chars: usize,
    flags: &'a [String],
    key: String,
}

/// Read the uploaded bytes, split them into units, store units and manifest.
pub async fn process_document(services: Services, input: Value, _ctx: TaskContext) -> Result<Value, TaskFailure> {
    let mut input: Input = task_input("document-processor", input)?;
    let bytes = match services.store.get(&input.document.key).await {
        Err(beacon_store::StoreError::NotFound { key }) if form_decoded(&key) != key => {
            // An S3 event (the uploads rule) gives the key URL-encoded as a form: "報告書 v2.pdf"
            // arrives as "%E5%A0%B1%E5%91%8A%E6%9B%B8+v2.pdf".
            let decoded = form_decoded(&key);
            let bytes = services.store.get(&decoded).await.map_err(store_failure)?;
            if input.document.name == key {
                input.document.name = decoded.clone();
            }
            input.document.key = decoded;
            bytes
        }
        read => read.map_err(store_failure)?,
    };
    let document_id = hex::encode(Sha256::digest(&bytes));
    let limits = services.config.limits.clone();
    let password = services.config.document_password.clone();
    let size = bytes.len() as u64;
    // Splitting is CPU-bound (PDF parsing, decompression): keep it off the async workers.
    let document: Document = tokio::task::spawn_blocking(move || {
        ingest_with_password(&bytes, &limits, password.as_ref().map(|p| p.expose()))
    })
    .await
    .map_err(|e| failure(errors::INVALID_DOCUMENT, format!("the splitter crashed: {e}")))?
    .map_err(|e| failure(errors::INVALID_DOCUMENT, e))?;
    info!(document_id, format = %document.format, units = document.units.len(), "document split");

    let mut manifest = Vec::with_capacity(document.units.len());
    // Stores answer with latency (a thread hand-off locally, a round trip on S3): write the
    // units concurrently.
    let mut writes = Vec::with_capacity(document.units.len());
    for unit in &document.units {
        let bytes = serde_json::to_vec(unit).map_err(|e| failure(errors::STORE, e))?;
        let store = services.store.clone();
        let key = keys::unit(&document_id, unit.index);
        writes.push(async move { store.put(&key, bytes).await });
    }
    let written: Vec<Result<(), beacon_store::StoreError>> =
        futures::stream::iter(writes).buffer_unordered(STORE_CONCURRENCY).collect().await;
    written.into_iter().collect::<Result<(), _>>().map_err(store_failure)?;
    for unit in &document.units {
        manifest.push(ManifestEntry {
            index: unit.index,
            kind: unit.kind,
            title: &unit.title,
            chars: unit.text.chars().count(),
            flags: &unit.flags,
            key: keys::unit(&document_id, unit.index),
        });
    }
    // The distributed Map's ItemReader reads a JSON array: the same entries, on their own.
    let items_key = keys::unit_items(&document_id);
    services.store.put_json(&items_key, &manifest).await.map_err(store_failure)?;
    let manifest_key = keys::manifest(&document_id);
    let manifest_doc = serde_json::json!({
        "documentId": document_id,
        "name": input.document.name,
        "format": document.format,
        "language": document.language,
        "title": document.title,
        "encoding": document.encoding,
        "unitCount": document.units.len(),
        "units": manifest,
    });
    services.store.put_json(&manifest_key, &manifest_doc).await.map_err(store_failure)?;

    // The Map's items are unit indexes only: everything else about a unit stays in the store,
    // so 10,000 units are ~50 KB of state, well inside the 256 KiB payload limit.
    let units: Vec<usize> = document.units.iter().map(|u| u.index).collect();
    Ok(serde_json::json!({
        "documentId": document_id,
        "name": input.document.name,
        "key": input.document.key,
        "format": document.format,
        "bytes": size,
        "language": document.language,
        "title": document.title,
        "unitCount": document.units.len(),
        "manifestKey": manifest_key,
        "itemsKey": items_key,
        "units": units,
    }))
}

/// `text` decoded as `application/x-www-form-urlencoded` (`+` is a space, `%XX` a byte), as S3
/// event notifications encode object keys; malformed escapes stay as they are.
fn form_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::form_decoded;

    #[test]
    fn s3_event_keys_decode_as_forms() {
        assert_eq!(form_decoded("uploads/%E5%A0%B1%E5%91%8A%E6%9B%B8+v2.pdf"), "uploads/報告書 v2.pdf");
        assert_eq!(form_decoded("uploads/a%2Bb%20c.pdf"), "uploads/a+b c.pdf");
        assert_eq!(form_decoded("uploads/plain.pdf"), "uploads/plain.pdf");
        assert_eq!(form_decoded("100%"), "100%");
        assert_eq!(form_decoded("50%zz"), "50%zz");
        assert_eq!(form_decoded("%E5"), "\u{FFFD}");
    }
}
