//! Memory stays bounded on hostile files: every allocation of this test binary is counted (a
//! counting global allocator), and each hostile input is read alone in one test, so the peak
//! seen is that input's. Bounds are a few times what a correct reader needs, far below what a
//! bomb would take if it went off.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use beacon_ingest::{Limits, ingest};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

/// Peak bytes allocated while `read` runs, above what was allocated before it.
fn peak_during(read: impl FnOnce()) -> usize {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    read();
    PEAK.load(Ordering::Relaxed) - before
}

#[test]
fn hostile_files_are_read_in_bounded_memory() {
    let mut rows = Vec::new();
    let mut check = |name: &str, bytes: Vec<u8>, limits: Limits, bound: usize| {
        let mut outcome = String::new();
        let peak = peak_during(|| {
            outcome = match ingest(&bytes, &limits) {
                Ok(doc) => format!("{} units", doc.units.len()),
                Err(e) => format!("error: {e}"),
            };
        });
        rows.push(format!(
            "{name}: {} KiB input, peak {:.1} MiB ({outcome})",
            bytes.len() / 1024,
            peak as f64 / MIB as f64
        ));
        assert!(peak < bound, "{name}: peak {peak} bytes over the bound of {bound}");
    };

    // 10,000 empty pages: one small unit each.
    let limits = Limits { max_units: 20_000, ..Limits::default() };
    check("10,000-page PDF", support::empty_pages_pdf(10_000), limits, 96 * MIB);
    // A 64 MiB zip bomb in a DOCX, refused from the ZIP directory before it is inflated.
    let zeros = vec![b' '; 64 * MIB];
    let bomb = support::docx_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", &zeros)]);
    drop(zeros);
    let limits = Limits { max_decompressed_bytes: 16 * MIB as u64, ..Limits::default() };
    check("64 MiB zip bomb (DOCX)", bomb, limits, 4 * MIB);
    // The same bomb as a workbook's sheet.
    let zeros = vec![b' '; 64 * MIB];
    let sheet_bomb = support::docx_with(&[("xl/workbook.xml", b"<workbook/>"), ("xl/worksheets/sheet1.xml", &zeros)]);
    drop(zeros);
    let limits = Limits { max_decompressed_bytes: 16 * MIB as u64, ..Limits::default() };
    check("64 MiB zip bomb (XLSX)", sheet_bomb, limits, 4 * MIB);
    // Billion laughs in a workbook's shared strings and in a Word document.
    let laughs = format!(
        r#"<?xml version="1.0"?>{}<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&l9;</t></si></sst>"#,
        support::billion_laughs("sst")
    );
    check("billion laughs (XLSX)", support::xlsx_with_shared_strings(&laughs), Limits::default(), 16 * MIB);
    let body = format!(
        "<?xml version=\"1.0\"?>{}<w:document><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>",
        support::billion_laughs("w:document")
    );
    let docx = support::docx_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", body.as_bytes())]);
    check("billion laughs (DOCX)", docx, Limits::default(), 16 * MIB);
    // Images that claim 100,000 × 100,000 pixels (40 GB decoded): refused from the header.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend(100_000u32.to_be_bytes());
    png.extend(100_000u32.to_be_bytes());
    png.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
    check("100k × 100k PNG header", png, Limits::default(), MIB);

    for row in &rows {
        println!("{row}");
    }
    // The bombs were refused, not read.
    assert!(rows.iter().filter(|r| r.contains("error")).count() >= 3, "{rows:#?}");
}
