//! The web console: a page and its assets, embedded in the binary (no CDN, no network), served
//! at `/` without a token. The page signs in with a token kept in the browser's session storage
//! and calls the same `/v1` API as everyone else, so it can do nothing the token may not.
//!
//! Plain HTML, CSS and JavaScript modules (`crates/server/console/`), no build step: what is
//! committed is what is served.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The files, by the name they are served under.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../console/app.js")),
    ("i18n.js", "text/javascript; charset=utf-8", include_str!("../console/i18n.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("../console/dom.js")),
    ("graph.js", "text/javascript; charset=utf-8", include_str!("../console/graph.js")),
    ("report.js", "text/javascript; charset=utf-8", include_str!("../console/report.js")),
    ("overview.js", "text/javascript; charset=utf-8", include_str!("../console/overview.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("../console/app.css")),
    ("icon.svg", "image/svg+xml", include_str!("../console/icon.svg")),
];

const INDEX: &str = include_str!("../console/index.html");

/// Only our own scripts, styles and API: an injected script or a framing page gets nowhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the console's page.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /console/{file}`: one of its assets.
pub async fn asset(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, *body),
        None => crate::error::ApiError::not_found(format!("no console file '{file}'")).into_response(),
    }
}

/// `GET /console/access.json`: whether this server wants a token (a loopback server without
/// tokens does not), so the sign-in page can say so without a request that is refused.
pub async fn access(axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::AppState>>) -> Response {
    page("application/json", serde_json::json!({"tokens": !state.tokens.is_open()}).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_asset_the_page_names_is_served() {
        for reference in ["/console/app.js", "/console/app.css", "/console/icon.svg"] {
            assert!(super::INDEX.contains(reference), "{reference}");
        }
        // And every module a module imports.
        for (_, _, body) in super::FILES {
            for import in body.split("from \"/console/").skip(1) {
                let file = &import[..import.find('"').unwrap()];
                assert!(super::FILES.iter().any(|(name, _, _)| *name == file), "{file} is imported and not served");
            }
        }
    }
}
