//! Ingestion speed, side by side with the tools people would otherwise use:
//!
//! - PDF pages per second, BEACON (`ingest`: page split + text in reading order) against
//!   poppler's `pdftotext -layout`, both as whole processes on the same files (startup included
//!   for both), on the shared corpus's PDFs and on a generated PDF of many text pages. The
//!   BEACON child also reports its CPU time, so CPU ÷ wall shows how many cores it used.
//! - Spreadsheet sheets per second, BEACON against Python's openpyxl (read-only mode, every
//!   cell's value), each in one long-lived process timing each file (interpreter startup and
//!   imports excluded on both sides), on the corpus's XLSX/XLSM files (openpyxl reads no other
//!   format) and on a generated large workbook.
//!
//! Every figure is the median of `--runs` runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use beacon_ingest::{Limits, ingest};
use clap::Args;
use serde_json::{Value, json};

#[derive(Args)]
pub struct IngestArgs {
    /// The corpus directory.
    #[arg(long, default_value = "../shared/corpus")]
    corpus: PathBuf,
    /// Pages of the generated PDF.
    #[arg(long, default_value_t = 1200)]
    pages: usize,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Python with openpyxl [default: $BEACON_PYTHON, else ~/.cache/beacon-venv/bin/python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Internal: ingest these files in this process, print one JSON line (wall and CPU time).
    #[arg(long, hide = true, num_args = 1..)]
    child: Vec<PathBuf>,
    /// Internal, with --child: time each file separately, `runs` times.
    #[arg(long, hide = true)]
    per_file: bool,
}

pub fn run(args: &IngestArgs) -> i32 {
    if !args.child.is_empty() {
        return child(args);
    }
    match compare(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// CPU time of this process so far (user + system), in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'; 100 ticks/s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn child(args: &IngestArgs) -> i32 {
    let limits = Limits { max_units: 100_000, ..Limits::default() };
    if args.per_file {
        // One line per file: the median time of `runs` reads.
        for path in &args.child {
            let Ok(bytes) = std::fs::read(path) else { continue };
            let mut times = Vec::new();
            let mut units = 0;
            for _ in 0..args.runs {
                let started = Instant::now();
                units = ingest(&bytes, &limits).map_or(0, |d| d.units.len());
                times.push(started.elapsed().as_secs_f64());
            }
            println!("{}", json!({"file": path, "units": units, "seconds": median(&mut times)}));
        }
        return 0;
    }
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut units = 0;
    for path in &args.child {
        let Ok(bytes) = std::fs::read(path) else { continue };
        units += ingest(&bytes, &limits).map_or(0, |d| d.units.len());
    }
    let wall = started.elapsed().as_secs_f64();
    println!("{}", json!({"units": units, "wall": wall, "cpu": cpu_seconds() - cpu}));
    0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Wall time of a command, the median of `runs`, and its last output.
fn time_process(runs: usize, mut make: impl FnMut() -> Command) -> Result<(f64, Vec<u8>), String> {
    let mut times = Vec::new();
    let mut stdout = Vec::new();
    for _ in 0..runs {
        let mut command = make();
        let started = Instant::now();
        let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        times.push(started.elapsed().as_secs_f64());
        if !out.status.success() {
            return Err(format!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        stdout = out.stdout;
    }
    Ok((median(&mut times), stdout))
}

fn corpus_pdfs(corpus: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![corpus.join("pdf"), corpus.join("ja")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "pdf") && !path.to_string_lossy().contains("password") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn corpus_workbooks(corpus: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["spreadsheets", "ja"]
        .iter()
        .filter_map(|d| std::fs::read_dir(corpus.join(d)).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xlsx" || e == "xlsm"))
        .collect();
    out.sort();
    out
}

/// A PDF of `pages` pages of running text (45 lines of Helvetica each), written to `path`.
fn write_text_pdf(path: &Path, pages: usize) -> Result<(), String> {
    use lopdf::{Document, Object, Stream, dictionary};
    const WORDS: [&str; 16] = [
        "quarterly",
        "revenue",
        "increased",
        "across",
        "all",
        "regions",
        "while",
        "operating",
        "costs",
        "remained",
        "stable",
        "and",
        "the",
        "board",
        "approved",
        "guidance",
    ];
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
    });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let mut kids = Vec::with_capacity(pages);
    for page in 0..pages {
        let mut content = String::from("BT /F1 10 Tf 14 TL 56 790 Td\n");
        for line in 0..45 {
            let words: Vec<&str> = (0..12).map(|w| WORDS[(page * 7 + line * 5 + w * 3) % WORDS.len()]).collect();
            content.push_str(&format!("(Page {} line {}: {}) '\n", page + 1, line + 1, words.join(" ")));
        }
        content.push_str("ET\n");
        let content = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()).with_compression(true));
        kids.push(Object::Reference(doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        })));
    }
    let count = kids.len() as i64;
    doc.objects
        .insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.compress();
    doc.save(path).map(|_| ()).map_err(|e| format!("{}: {e}", path.display()))
}

fn beacon_child(files: &[PathBuf], extra: &[&str]) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.arg("ingest").args(extra).arg("--child").args(files);
    Ok(command)
}

fn pdf_rows(files: &[PathBuf], runs: usize) -> Result<(usize, f64, f64, f64), String> {
    let (beacon_wall, out) = time_process(runs, || beacon_child(files, &[]).expect("own executable"))?;
    let report: Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
    let pages = report["units"].as_u64().unwrap_or(0) as usize;
    let cores = report["cpu"].as_f64().unwrap_or(f64::NAN) / report["wall"].as_f64().unwrap_or(f64::NAN);
    // pdftotext takes one file per process: the files one after another, as a script would.
    let mut pdftotext = 0.0;
    for file in files {
        let (seconds, _) = time_process(runs, || {
            let mut c = Command::new("pdftotext");
            c.arg("-layout").arg(file).arg("-");
            c
        })?;
        pdftotext += seconds;
    }
    Ok((pages, beacon_wall, pdftotext, cores))
}

const OPENPYXL_SCRIPT: &str = r#"
import json, statistics, sys, time
import openpyxl
runs = int(sys.argv[1])
for path in sys.argv[2:]:
    times, sheets = [], 0
    try:
        for _ in range(runs):
            started = time.perf_counter()
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            sheets = 0
            for sheet in book.worksheets:
                sheets += 1
                for row in sheet.iter_rows(values_only=True):
                    pass
            book.close()
            times.append(time.perf_counter() - started)
    except Exception as error:
        print(json.dumps({"file": path, "error": f"{type(error).__name__}: {error}"}))
        continue
    print(json.dumps({"file": path, "sheets": sheets, "seconds": statistics.median(times)}))
"#;

const MAKE_WORKBOOK_SCRIPT: &str = r#"
import datetime, sys
import openpyxl
book = openpyxl.Workbook(write_only=True)
for s in range(int(sys.argv[2])):
    sheet = book.create_sheet(f"Sheet{s + 1}")
    sheet.append(["id", "date", "region", "product", "units", "price", "revenue", "cost", "margin", "note"])
    for r in range(int(sys.argv[3])):
        sheet.append([r, datetime.date(2024, 1, 1) + datetime.timedelta(days=r % 365), f"region {r % 7}",
                      f"product {r % 31}", r % 97, 1.5 + r % 13, (r % 97) * (1.5 + r % 13), r % 50,
                      0.25, "ok" if r % 3 else "check"])
book.save(sys.argv[1])
"#;

fn python(args: &IngestArgs) -> PathBuf {
    args.python.clone().or_else(|| std::env::var_os("BEACON_PYTHON").map(PathBuf::from)).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/beacon-venv/bin/python")
    })
}

/// Sum of per-file median seconds and sheets, from the JSON lines `out` holds.
fn per_file_totals(out: &[u8], count_key: &str) -> (f64, u64) {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .fold((0.0, 0), |(s, n), v| (s + v["seconds"].as_f64().unwrap_or(0.0), n + v[count_key].as_u64().unwrap_or(0)))
}

/// Sheets, BEACON units (a large sheet is several), BEACON seconds, openpyxl seconds, and the
/// files openpyxl could not read (left out of every figure).
type SheetRow = (u64, u64, f64, f64, Vec<String>);

fn sheet_rows(files: &[PathBuf], runs: usize, python: &Path) -> Result<SheetRow, String> {
    let out = Command::new(python)
        .arg("-c")
        .arg(OPENPYXL_SCRIPT)
        .arg(runs.to_string())
        .args(files)
        .output()
        .map_err(|e| format!("{}: {e} (install openpyxl: ./scripts/test creates the venv)", python.display()))?;
    if !out.status.success() {
        return Err(format!("openpyxl: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let failed: Vec<String> = lines
        .iter()
        .filter(|v| v.get("error").is_some())
        .map(|v| format!("{}: {}", v["file"].as_str().unwrap_or("?"), v["error"].as_str().unwrap_or("?")))
        .collect();
    let read: Vec<PathBuf> = lines
        .iter()
        .filter(|v| v.get("error").is_none())
        .filter_map(|v| v["file"].as_str().map(PathBuf::from))
        .collect();
    let (openpyxl_seconds, sheets) = per_file_totals(&out.stdout, "sheets");
    let mut ours = beacon_child(&read, &["--per-file", "--runs", &runs.to_string()])?;
    let out = ours.output().map_err(|e| e.to_string())?;
    let (beacon_seconds, units) = per_file_totals(&out.stdout, "units");
    Ok((sheets, units, beacon_seconds, openpyxl_seconds, failed))
}

fn compare(args: &IngestArgs) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Ingestion speed, median of {} runs, {cores} cores\n", args.runs);

    let pdfs = corpus_pdfs(&args.corpus);
    let large = scratch.path().join("generated.pdf");
    write_text_pdf(&large, args.pages)?;
    println!(
        "| PDF set | pages | BEACON s | BEACON pages/s | BEACON cores used | pdftotext -layout s | pdftotext pages/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, files) in [
        (format!("corpus ({} files)", pdfs.len()), pdfs.clone()),
        (format!("generated, {} pages", args.pages), vec![large.clone()]),
    ] {
        let (pages, ours, theirs, used) = pdf_rows(&files, args.runs)?;
        println!(
            "| {name} | {pages} | {ours:.3} | {:.0} | {used:.2} | {theirs:.3} | {:.0} |",
            pages as f64 / ours,
            pages as f64 / theirs
        );
    }

    let python = python(args);
    let books = corpus_workbooks(&args.corpus);
    let generated = scratch.path().join("generated.xlsx");
    let made = Command::new(&python).arg("-c").arg(MAKE_WORKBOOK_SCRIPT).arg(&generated).args(["10", "10000"]).output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!("{} cannot write a workbook with openpyxl: {made:?}", python.display()));
    }
    let mut unread = Vec::new();
    println!(
        "\n| workbook set | sheets | BEACON units | BEACON s | BEACON sheets/s | openpyxl s | openpyxl sheets/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, files) in [
        (format!("corpus XLSX/XLSM ({} files)", books.len()), books),
        ("generated, 10 sheets × 10,000 rows".to_string(), vec![generated]),
    ] {
        let (sheets, units, ours, theirs, failed) = sheet_rows(&files, args.runs, &python)?;
        println!(
            "| {name} | {sheets} | {units} | {ours:.3} | {:.0} | {theirs:.3} | {:.0} |",
            sheets as f64 / ours,
            sheets as f64 / theirs
        );
        unread.extend(failed);
    }
    if !unread.is_empty() {
        println!("\nLeft out of both columns (openpyxl cannot read them; BEACON reads all):");
        for file in unread {
            println!("- {file}");
        }
    }
    std::io::stdout().flush().ok();
    Ok(())
}
