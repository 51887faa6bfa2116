//! Bearer tokens on every route but health, and a request rate per token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::tokens::{Role, TokenFile};

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (`anonymous` on a loopback server without tokens).
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// 403 unless this principal's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {role} role; token '{}' is a {}", self.name, self.role)))
        }
    }
}

/// The tokens the server accepts: the file is read again whenever it changed, so `beacon serve
/// token create` and `revoke` take effect from the next request.
pub struct Tokens {
    file: RwLock<(TokenFile, Option<FileStamp>)>,
    /// A loopback server may run without tokens; once the file holds one, every request needs one.
    loopback: bool,
}

/// When a file was last changed, its size and (on Unix) its inode: the tokens file is replaced
/// by a rename, so a rewrite within one mtime tick still shows as a new inode.
type FileStamp = (std::time::SystemTime, u64, u64);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

impl Tokens {
    pub fn new(file: TokenFile, loopback: bool) -> Tokens {
        let stamped = stamp(file.path());
        Tokens { file: RwLock::new((file, stamped)), loopback }
    }

    /// Whether requests need no token now: a loopback server whose tokens file holds none.
    pub fn is_open(&self) -> bool {
        self.refresh();
        self.loopback && self.file.read().unwrap_or_else(PoisonError::into_inner).0.is_empty()
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self) {
        let path = self.file.read().unwrap_or_else(PoisonError::into_inner).0.path().to_path_buf();
        let now = stamp(&path);
        if now != self.file.read().unwrap_or_else(PoisonError::into_inner).1 {
            match TokenFile::load(&path) {
                Ok(reloaded) => *self.file.write().unwrap_or_else(PoisonError::into_inner) = (reloaded, now),
                // A file being rewritten is renamed into place whole; a broken one keeps the last good list.
                Err(e) => tracing::warn!("the tokens file cannot be read again: {e}"),
            }
        }
    }

    fn verify(&self, bearer: &str) -> Option<Principal> {
        self.refresh();
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
        file.0.verify(bearer).map(|e| Principal { name: e.name.clone(), role: e.role })
    }

    /// The principal of a request with these headers: 401 without a valid token.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        match bearer {
            Some(token) => self
                .verify(token)
                .ok_or_else(|| ApiError::unauthorized("the token is not valid (revoked, or never created)")),
            None if self.is_open() => Ok(Principal { name: "anonymous".into(), role: Role::Admin }),
            None => {
                Err(ApiError::unauthorized("send a token: Authorization: Bearer <token> (beacon serve token create)"))
            }
        }
    }
}

/// A per-token request budget: a token bucket of a minute's requests, refilled continuously.
pub struct RateLimit {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit { per_minute: f64::from(per_minute.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `who` has no request left.
    fn take(&self, who: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (level, at) = buckets.entry(who.to_string()).or_insert((self.per_minute, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.per_minute / 60.0;
        *level = (*level + refill).min(self.per_minute);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *level) * 60.0 / self.per_minute;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// The middleware: authenticate, rate-limit, and hand the principal to the handler.
pub async fn require_token(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let principal = match state.tokens.authenticate(request.headers()) {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if let Err(wait) = state.rate.take(&principal.name) {
        return ApiError::too_many(format!("token '{}' is over its request rate; wait {wait} s", principal.name), wait)
            .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}
