//! The ingest entry point on arbitrary bytes: any input must give a document or an error. The
//! crate's panic guard re-raises under `cfg(fuzzing)`, so a panic in any parser is a finding.
#![no_main]

use beacon_ingest::{Limits, ingest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Tighter than the defaults so each run is quick; the limits themselves are under test too.
    let limits = Limits {
        max_file_bytes: 4 << 20,
        max_units: 500,
        max_decompressed_bytes: 32 << 20,
        max_image_pixels: 4_000_000,
        ..Limits::default()
    };
    if let Ok(document) = ingest(data, &limits) {
        assert!(document.units.len() <= limits.max_units);
    }
});
