//! The object key layout, decided in one place.
//!
//! ```text
//! documents/<sha256>/source              the uploaded bytes
//! documents/<sha256>/manifest.json       the document's units (index, kind, title, flags)
//! units/<sha256>/<index>.json            one unit (text, table)
//! units/<sha256>/items.json              the units as a JSON array: the distributed Map's items
//! results/<sha256>/<run>/<index>.json    one unit's analysis in one run
//! reports/<sha256>/<run>/report.json     the integrated report (and report.md)
//! batch/<sha256>/<run>/input/records.jsonl    batch inference records of one run
//! batch/pools/<pool>/input/<doc>-<run>.jsonl  one document's records in a pooled batch job
//! batch/pools/<pool>/output/<job id>/...  what the pooled job wrote (<file>.out, manifest.json.out)
//! map-runs/<map run id>/...               a distributed Map's ResultWriter output
//! ```
//! Unit indexes are zero-padded so that listings sort in document order. What a run only needs
//! while it runs (`units/`, `results/`, `batch/`, `map-runs/`) has a top-level prefix of its
//! own, so that an S3 lifecycle rule can expire it; `documents/` and `reports/` stay.

/// The uploaded bytes of a document.
pub fn document_source(document_id: &str) -> String {
    format!("documents/{document_id}/source")
}

/// The manifest of a document's units.
pub fn manifest(document_id: &str) -> String {
    format!("documents/{document_id}/manifest.json")
}

/// The document's units as a JSON array of manifest entries, which the distributed Map's
/// `ItemReader` reads.
pub fn unit_items(document_id: &str) -> String {
    format!("units/{document_id}/items.json")
}

/// One unit of a document.
pub fn unit(document_id: &str, index: usize) -> String {
    format!("units/{document_id}/{index:06}.json")
}

/// One unit's result within one run (`run` names the execution).
pub fn unit_result(document_id: &str, run: &str, index: usize) -> String {
    format!("results/{document_id}/{run}/{index:06}.json")
}

/// The prefix of every unit result of one run.
pub fn unit_results(document_id: &str, run: &str) -> String {
    format!("results/{document_id}/{run}/")
}

/// The batch inference input (JSONL records) of one run.
pub fn batch_input(document_id: &str, run: &str) -> String {
    format!("batch/{document_id}/{run}/input/records.jsonl")
}

/// The input prefix of a pooled batch job: one records file per document.
pub fn batch_pool_input(pool: &str) -> String {
    format!("batch/pools/{pool}/input/")
}

/// Where a pooled batch job writes its output (the job adds `<job id>/`).
pub fn batch_pool_output(pool: &str) -> String {
    format!("batch/pools/{pool}/output/")
}

/// The JSON report of one run.
pub fn report_json(document_id: &str, run: &str) -> String {
    format!("reports/{document_id}/{run}/report.json")
}

/// The Markdown report of one run.
pub fn report_markdown(document_id: &str, run: &str) -> String {
    format!("reports/{document_id}/{run}/report.md")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_keys_sort_in_document_order() {
        let mut keys = vec![super::unit("d", 10), super::unit("d", 2), super::unit("d", 1)];
        keys.sort();
        assert_eq!(keys, vec![super::unit("d", 1), super::unit("d", 2), super::unit("d", 10)]);
    }
}
