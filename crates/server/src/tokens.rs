//! API tokens: created once, shown once, stored only as a SHA-256 hash in a JSON file.
//!
//! A token is `bkn_` and 32 random bytes in URL-safe base64 (256 bits: a hash of it cannot be
//! reversed or guessed, so no slow password hash is needed). Verification hashes the presented
//! token and compares it with every stored hash in constant time.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do. Each role can do everything the roles before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads executions, reports, history, metrics and alarms.
    Viewer,
    /// Also uploads documents and stops, resumes and redrives executions.
    Submitter,
    /// Also deletes documents.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "submitter" => Ok(Role::Submitter),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}' (expected admin, submitter or viewer)")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        })
    }
}

/// One stored token: its name, role and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    pub created_at: String,
}

/// Why a tokens file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the tokens file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write the tokens file {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("a token named '{0}' exists already (revoke it first, or choose another --name)")]
    Duplicate(String),
    #[error("no token named '{0}'")]
    Unknown(String),
    #[error("invalid token name '{0}': use 1 to 64 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
}

/// The tokens file.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
    entries: Vec<TokenEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    tokens: Vec<TokenEntry>,
}

/// The prefix of every token (so secret scanners and people can recognise one).
pub const TOKEN_PREFIX: &str = "bkn_";

impl TokenFile {
    /// The file at `path`; a missing file holds no tokens.
    pub fn load(path: &Path) -> Result<TokenFile, TokenError> {
        let read_error = |reason: String| TokenError::Read { path: path.display().to_string(), reason };
        let entries = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<FileFormat>(&bytes).map_err(|e| read_error(e.to_string()))?.tokens,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(read_error(e.to_string())),
        };
        Ok(TokenFile { path: path.to_path_buf(), entries })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Create a token with `role`, store its hash and return the token (the only time it is seen).
    pub fn create(&mut self, name: Option<&str>, role: Role) -> Result<(TokenEntry, String), TokenError> {
        let name = match name {
            Some(name) => name.to_string(),
            None => (1..)
                .map(|n| format!("{role}-{n}"))
                .find(|n| !self.entries.iter().any(|e| &e.name == n))
                .unwrap_or_default(),
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(TokenError::InvalidName(name));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(TokenError::Duplicate(name));
        }
        let secret: [u8; 32] = rand::random();
        let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let entry = TokenEntry {
            name,
            role,
            sha256: hash(&token),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        self.entries.push(entry.clone());
        self.save()?;
        Ok((entry, token))
    }

    /// Remove the token named `name`.
    pub fn revoke(&mut self, name: &str) -> Result<TokenEntry, TokenError> {
        let at = self.entries.iter().position(|e| e.name == name).ok_or_else(|| TokenError::Unknown(name.into()))?;
        let entry = self.entries.remove(at);
        self.save()?;
        Ok(entry)
    }

    /// The entry of `token`, if it is one of these.
    pub fn verify(&self, token: &str) -> Option<&TokenEntry> {
        let presented = Sha256::digest(token.as_bytes());
        let mut found = None;
        // Every entry is compared, each in constant time: the time says nothing about which
        // (or whether one) matched.
        for entry in &self.entries {
            let Ok(stored) = hex::decode(&entry.sha256) else { continue };
            if constant_time_eq(&stored, &presented) {
                found = Some(entry);
            }
        }
        found
    }

    /// Write the file atomically (a temporary file renamed over it), readable by its owner only.
    fn save(&self) -> Result<(), TokenError> {
        let write_error = |reason: String| TokenError::Write { path: self.path.display().to_string(), reason };
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| write_error(e.to_string()))?;
        let text = serde_json::to_vec_pretty(&FileFormat { tokens: self.entries.clone() })
            .map_err(|e| write_error(e.to_string()))?;
        let temporary = dir.join(format!(".tokens-{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&temporary).and_then(|mut file| {
            use std::io::Write;
            file.write_all(&text)?;
            file.sync_all()
        });
        written.and_then(|()| std::fs::rename(&temporary, &self.path)).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            write_error(e.to_string())
        })
    }
}

/// SHA-256 of `token`, hex.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_verifies_and_only_its_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut file = TokenFile::load(&path).unwrap();
        assert!(file.is_empty());
        let (entry, token) = file.create(Some("ci"), Role::Submitter).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&token), "the token itself must never be stored");
        assert!(stored.contains(&entry.sha256));
        let reloaded = TokenFile::load(&path).unwrap();
        assert_eq!(reloaded.verify(&token).map(|e| e.role), Some(Role::Submitter));
        assert!(reloaded.verify("bkn_wrong").is_none());
        assert!(reloaded.verify(&token[..token.len() - 1]).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn names_are_unique_and_revoking_removes_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = TokenFile::load(&dir.path().join("t.json")).unwrap();
        let (first, token) = file.create(None, Role::Viewer).unwrap();
        assert_eq!(first.name, "viewer-1");
        assert_eq!(file.create(None, Role::Viewer).unwrap().0.name, "viewer-2");
        assert!(matches!(file.create(Some("viewer-1"), Role::Admin), Err(TokenError::Duplicate(_))));
        assert!(matches!(file.create(Some("../x"), Role::Admin), Err(TokenError::InvalidName(_))));
        file.revoke("viewer-1").unwrap();
        assert!(file.verify(&token).is_none());
        assert!(matches!(file.revoke("viewer-1"), Err(TokenError::Unknown(_))));
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(TokenFile::load(&path), Err(TokenError::Read { .. })));
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Viewer < Role::Submitter && Role::Submitter < Role::Admin);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
