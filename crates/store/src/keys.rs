//! The object key layout, decided in one place.
//!
//! ```text
//! documents/<sha256>/source              the uploaded bytes
//! documents/<sha256>/manifest.json       the document's units (index, kind, title, flags)
//! documents/<sha256>/units/<index>.json  one unit (text, table)
//! results/<sha256>/<run>/<index>.json    one unit's analysis in one run
//! reports/<sha256>/<run>/report.json     the integrated report (and report.md)
//! ```
//! Unit indexes are zero-padded so that listings sort in document order.

/// The uploaded bytes of a document.
pub fn document_source(document_id: &str) -> String {
    format!("documents/{document_id}/source")
}

/// The manifest of a document's units.
pub fn manifest(document_id: &str) -> String {
    format!("documents/{document_id}/manifest.json")
}

/// One unit of a document.
pub fn unit(document_id: &str, index: usize) -> String {
    format!("documents/{document_id}/units/{index:06}.json")
}

/// One unit's result within one run (`run` names the execution).
pub fn unit_result(document_id: &str, run: &str, index: usize) -> String {
    format!("results/{document_id}/{run}/{index:06}.json")
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
