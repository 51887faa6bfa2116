//! The Lambda functions' code: one zip holding `bootstrap`, the `beacon-lambda` binary for the
//! `provided.al2023` runtime, built with cargo-lambda or taken prebuilt.
//!
//! Every function of the template runs that one zip (`BEACON_TASK` selects the task), so it is
//! uploaded once, under a key derived from its content: an unchanged binary leaves the
//! functions unchanged, a new one updates all of them.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use super::{DeployError, Upload};

/// A Lambda instruction set (`--arch`, the template's `Architecture` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Arm64,
    X86_64,
}

impl Arch {
    /// The name Lambda and the template use.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// cargo-lambda's flag selecting the target.
    fn cargo_lambda_flag(self) -> &'static str {
        match self {
            Arch::Arm64 => "--arm64",
            Arch::X86_64 => "--x86-64",
        }
    }

    /// ELF `e_machine` of an executable for this architecture.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm64 => 0xB7,
            Arch::X86_64 => 0x3E,
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            "x86_64" | "x86-64" | "amd64" => Ok(Arch::X86_64),
            other => Err(format!("unknown architecture {other:?}: use arm64 or x86_64")),
        }
    }
}

/// The zip Lambda runs, uploaded as `lambda/beacon-lambda-<content hash>.zip`.
fn lambda_zip(bytes: Vec<u8>) -> Upload {
    Upload::new("lambda", "beacon-lambda", "zip", bytes)
}

/// Zips a `bootstrap` executable built for `arch` (checked, so an x86_64 build never ends up
/// on arm64 functions).
pub fn from_binary(path: &Path, arch: Arch) -> Result<Upload, DeployError> {
    let binary = std::fs::read(path).map_err(|e| DeployError::Artifact(format!("{}: {e}", path.display())))?;
    check_executable(&binary, arch, &path.display().to_string())?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // A fixed timestamp: the same binary gives the same zip, hence the same key.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o755);
    let written = zip
        .start_file("bootstrap", options)
        .and_then(|()| zip.write_all(&binary).map_err(Into::into))
        .and_then(|()| zip.finish());
    let bytes = written.map_err(|e| DeployError::Artifact(format!("cannot zip {}: {e}", path.display())))?;
    Ok(lambda_zip(bytes.into_inner()))
}

/// A zip built elsewhere (`cargo lambda build --output-format zip`): it must hold a
/// `bootstrap` for `arch`.
pub fn from_zip(path: &Path, arch: Arch) -> Result<Upload, DeployError> {
    let bytes = std::fs::read(path).map_err(|e| DeployError::Artifact(format!("{}: {e}", path.display())))?;
    let what = path.display().to_string();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
        .map_err(|e| DeployError::Artifact(format!("{what} is not a zip: {e}")))?;
    let mut bootstrap = archive
        .by_name("bootstrap")
        .map_err(|_| DeployError::Artifact(format!("{what} has no `bootstrap` at its root")))?;
    let mut head = Vec::new();
    bootstrap
        .by_ref()
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| DeployError::Artifact(format!("{what}: cannot read bootstrap: {e}")))?;
    check_executable(&head, arch, &format!("{what}'s bootstrap"))?;
    drop(bootstrap);
    drop(archive);
    Ok(lambda_zip(bytes))
}

/// Builds `beacon-lambda` for `arch` with cargo-lambda in the workspace `source` and zips it.
pub fn build(source: &Path, arch: Arch, out_dir: &Path) -> Result<Upload, DeployError> {
    if !source.join("crates/aws/src/bin/beacon-lambda.rs").is_file() {
        return Err(DeployError::Artifact(format!(
            "{} is not a BEACON checkout (no crates/aws/src/bin/beacon-lambda.rs): run beacon deploy from the \
             repository, pass --source DIR, or give a prebuilt --lambda-zip / --lambda-binary",
            source.display()
        )));
    }
    let lambda_dir = out_dir.join("cargo-lambda");
    eprintln!("building beacon-lambda for {} with cargo-lambda (a release build takes minutes)", arch.lambda_name());
    let status = Command::new("cargo")
        .current_dir(source)
        .args(["lambda", "build", "--release", arch.cargo_lambda_flag()])
        // The workspace's default member is the CLI: name the binary's package.
        .args(["--package", "beacon-aws", "--bin", "beacon-lambda"])
        .args(["--output-format", "zip", "--lambda-dir"])
        .arg(&lambda_dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Err(DeployError::Artifact(format!(
                "cargo lambda build failed ({status}): see its output above. cargo-lambda needs Zig to cross-compile; \
                 `pip install cargo-lambda` installs both (https://www.cargo-lambda.info)"
            )));
        }
        Err(e) => return Err(DeployError::Artifact(format!("cannot run cargo: {e}"))),
    }
    let zip = lambda_dir.join("beacon-lambda").join("bootstrap.zip");
    if !zip.is_file() {
        return Err(DeployError::Artifact(format!("cargo lambda build wrote no {}", zip.display())));
    }
    from_zip(&zip, arch)
}

/// Whether `cargo lambda` can be run here.
pub fn cargo_lambda_available() -> bool {
    Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `bytes` (at least its first 20) must be a Linux ELF executable for `arch`.
fn check_executable(bytes: &[u8], arch: Arch, what: &str) -> Result<(), DeployError> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(DeployError::Artifact(format!(
            "{what} is not a Linux executable: Lambda's provided.al2023 runtime needs an ELF binary for {}",
            arch.lambda_name()
        )));
    }
    // e_machine, in the byte order EI_DATA (byte 5) declares.
    let machine = if bytes[5] == 2 {
        u16::from_be_bytes([bytes[18], bytes[19]])
    } else {
        u16::from_le_bytes([bytes[18], bytes[19]])
    };
    if machine != arch.elf_machine() {
        let found = [Arch::Arm64, Arch::X86_64]
            .into_iter()
            .find(|a| a.elf_machine() == machine)
            .map_or_else(|| format!("machine type {machine:#x}"), |a| a.lambda_name().to_string());
        return Err(DeployError::Artifact(format!(
            "{what} is built for {found}, but the functions run on {}: build for that architecture or pass --arch {found}",
            arch.lambda_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // 64-bit
        bytes[5] = 1; // little endian
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes
    }

    #[test]
    fn binaries_for_another_architecture_or_no_elf_are_refused() {
        assert!(check_executable(&elf(0xB7), Arch::Arm64, "b").is_ok());
        let wrong = check_executable(&elf(0x3E), Arch::Arm64, "b").unwrap_err().to_string();
        assert!(wrong.contains("built for x86_64") && wrong.contains("--arch x86_64"), "{wrong}");
        let script = check_executable(b"#!/bin/sh\necho hello world\n", Arch::X86_64, "b").unwrap_err();
        assert!(script.to_string().contains("not a Linux executable"));
    }

    #[test]
    fn a_binary_zips_as_an_executable_bootstrap_with_a_content_key() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("beacon-lambda");
        std::fs::write(&binary, elf(0x3E)).unwrap();
        let zip = from_binary(&binary, Arch::X86_64).unwrap();
        assert_eq!(zip.key, from_binary(&binary, Arch::X86_64).unwrap().key, "reproducible");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&zip.bytes)).unwrap();
        let mut bootstrap = archive.by_name("bootstrap").unwrap();
        assert_eq!(bootstrap.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut content = Vec::new();
        bootstrap.read_to_end(&mut content).unwrap();
        assert_eq!(content, elf(0x3E));
        drop(bootstrap);
        drop(archive);

        let path = dir.path().join("bootstrap.zip");
        std::fs::write(&path, &zip.bytes).unwrap();
        assert_eq!(from_zip(&path, Arch::X86_64).unwrap().key, zip.key);
        assert!(from_zip(&path, Arch::Arm64).is_err());
        assert!(from_zip(&binary, Arch::X86_64).unwrap_err().to_string().contains("not a zip"));
    }
}
