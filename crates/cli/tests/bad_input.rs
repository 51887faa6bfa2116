//! Bad input: a clear one-line error naming the file, exit code 3, never a panic.

mod common;

use common::*;

fn assert_input_error(s: &Scratch, file: &std::path::Path, extra: &[&str], cause: &str) {
    let out = s.run(file, extra);
    assert_exit(&out, 3);
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(last.starts_with("error: ") && last.contains(name.as_ref()), "names the file: {err}");
    assert!(last.to_lowercase().contains(cause), "says {cause:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!s.out().join("report.json").exists(), "no report for unusable input");
}

#[test]
fn empty_file() {
    let s = Scratch::new();
    let f = s.path("empty.pdf");
    std::fs::write(&f, b"").unwrap();
    assert_input_error(&s, &f, &[], "empty");
}

#[test]
fn random_bytes() {
    let s = Scratch::new();
    let f = s.path("noise.bin");
    // A fixed pseudo-random sequence (xorshift) so the test is reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&f, bytes).unwrap();
    assert_input_error(&s, &f, &[], "unsupported");
}

#[test]
fn truncated_pdf() {
    let s = Scratch::new();
    let whole = std::fs::read(repo_root().join("samples/operations-review.pdf")).unwrap();
    let f = s.path("truncated.pdf");
    std::fs::write(&f, &whole[..whole.len() * 2 / 5]).unwrap();
    assert_input_error(&s, &f, &[], "pdf");
}

/// py-pdf/sample-files' password-protected PDF; its README gives the user password.
const ENCRYPTED_PDF: &str = "pdf/005-libreoffice-writer-password/libreoffice-writer-password.pdf";
const ENCRYPTED_PDF_PASSWORD: &str = "openpassword";

#[test]
fn encrypted_pdf() {
    let Some(pdf) = corpus(ENCRYPTED_PDF) else { return };
    let s = Scratch::new();
    assert_input_error(&s, &pdf, &[], "encrypted");
    assert!(stderr(&s.run(&pdf, &[])).contains("--password"), "says how to give the password");
    assert_input_error(&s, &pdf, &["--password", "not-it"], "password given does not open it");
}

#[test]
fn encrypted_pdf_opens_with_its_password_which_is_never_stored() {
    let Some(pdf) = corpus(ENCRYPTED_PDF) else { return };
    let s = Scratch::new();
    let out = s
        .beacon()
        .env("BEACON_DOCUMENT_PASSWORD", ENCRYPTED_PDF_PASSWORD)
        .arg("run")
        .arg(&pdf)
        .arg("--out")
        .arg(s.out())
        .output()
        .expect("run beacon");
    assert_exit(&out, 0);
    assert_eq!(s.report()["units"].as_array().map(Vec::len), Some(1));
    let mut stack = vec![s.path("data"), s.out()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let found = bytes.windows(ENCRYPTED_PDF_PASSWORD.len()).any(|w| w == ENCRYPTED_PDF_PASSWORD.as_bytes());
                assert!(!found, "the password is written to {}", path.display());
            }
        }
    }
}

#[test]
fn encrypted_workbook() {
    let Some(xls) = corpus("spreadsheets/password_2002_40_basecrypto.xls") else { return };
    let s = Scratch::new();
    assert_input_error(&s, &xls, &[], "encrypted");
}

#[test]
fn missing_path() {
    let s = Scratch::new();
    assert_input_error(&s, &s.path("does-not-exist.pdf"), &[], "no such file");
}

#[test]
fn directory() {
    let s = Scratch::new();
    let d = s.path("a-directory");
    std::fs::create_dir(&d).unwrap();
    assert_input_error(&s, &d, &[], "directory");
}

#[test]
fn file_over_the_size_limit() {
    let s = Scratch::new();
    assert_input_error(
        &s,
        &repo_root().join("samples/operations-review.pdf"),
        &["--max-file-bytes", "1000"],
        "over the limit",
    );
}

#[test]
fn unknown_provider_is_a_usage_error() {
    let s = Scratch::new();
    let out = s.run(&repo_root().join("samples/operations-review.pdf"), &["--provider", "nope"]);
    assert_exit(&out, 2);
}

#[test]
fn bedrock_without_model_is_a_usage_error() {
    let s = Scratch::new();
    let out = s.run(&repo_root().join("samples/operations-review.pdf"), &["--provider", "bedrock"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--model"), "{}", stderr(&out));
}
