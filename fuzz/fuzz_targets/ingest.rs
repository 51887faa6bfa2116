//! The ingest entry point on arbitrary bytes: any input must give a document or an error, in
//! bounded time and memory. A panic in BEACON's own code is a finding (the hook aborts, libFuzzer
//! saves the input); a panic inside a dependency's parser that BEACON's guard turns into a clear
//! error is a handled case (logged once per location) so the run goes on to find what is not.
#![no_main]

use std::collections::HashSet;
use std::sync::{Mutex, Once};

use beacon_ingest::{Limits, ingest, panic_is_guarded};
use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let in_dependency = location.contains("/.cargo/registry/");
            if panic_is_guarded() && in_dependency {
                let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
                if seen.get_or_insert_with(HashSet::new).insert(location.clone()) {
                    eprintln!("handled dependency panic at {location}: {info}");
                }
                return;
            }
            default(info);
            std::process::abort();
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
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
