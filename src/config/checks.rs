//! Checks of single values: URLs, versions, platforms, names, numbers, files, proxies.

use super::CaCert;
use super::messages::shown;
use super::schema::{CHECK_INTERVAL_S, MAX_REFRESH_BEFORE_S, MAX_TIMEOUT_S, Val};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use url::{Host, Url};

// ---------------------------------------------------------------------------------------------
// Checks of single values. Messages follow `KEY: `, so they need not repeat the key.
// ---------------------------------------------------------------------------------------------

pub(super) fn check_url(val: Val) -> Result<Val, String> {
    // The URL itself is never quoted: it could carry a password (`https://user:pass@host`).
    let Val::Str(text) = val else { return Ok(val) };
    if text.trim() != text {
        return Err("the URL starts or ends with whitespace; remove it".into());
    }
    let mut url = Url::parse(&text).map_err(|e| {
        format!(
            "not a valid URL ({e}); expected the instance root, e.g. https://acme.sugarondemand.com"
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!(
            "the URL must start with https:// (or http://), not `{}:`",
            shown(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL must not contain a user name or password; use `username` and a \
                    password source instead"
                .into(),
        );
    }
    if url.query().is_some() {
        return Err("the URL must not have a query (`?...`): give the instance root".into());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment (`#...`): give the instance root".into());
    }
    if url
        .path_segments()
        .is_some_and(|mut segments| segments.any(|s| s == "rest"))
    {
        return Err(
            "give the instance root, without `/rest/...`: the client adds \
                    /rest/{api}/ itself (set the version with `api`)"
                .into(),
        );
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(Val::Url(url))
}

pub(super) fn check_api(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if is_valid_api(text) {
        Ok(val)
    } else {
        Err(format!(
            "invalid REST API version `{}`: expected `v`, two digits and optionally `_` and one \
             or two digits (e.g. v10, v11, v11_16)",
            shown(text)
        ))
    }
}

pub(super) fn check_platform(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if is_valid_platform(text) {
        Ok(val)
    } else {
        Err(format!(
            "invalid platform `{}`: use 1 to 127 characters among a-z, A-Z, 0-9, `_` and `-`",
            shown(text)
        ))
    }
}

/// `username`, `client_id`: sent as written, so neither empty nor padded.
pub(super) fn check_plain_text(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if text.is_empty() {
        Err("must not be empty".into())
    } else if text.trim() != text {
        Err("starts or ends with whitespace, which would be sent as written; remove it".into())
    } else {
        Ok(val)
    }
}

pub(super) fn check_password(val: Val) -> Result<Val, String> {
    match &val {
        Val::Secret(s) if s.is_empty() => {
            Err("must not be empty (remove it to be asked for the password)".into())
        }
        _ => Ok(val),
    }
}

pub(super) fn check_env_name(val: Val) -> Result<Val, String> {
    // Not quoted: someone may have put the password itself here by mistake.
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    let bad = text.is_empty()
        || text
            .chars()
            .any(|c| c == '=' || c == '\0' || c.is_whitespace());
    if bad {
        Err("must be the name of an environment variable (not empty, without `=` or spaces)".into())
    } else {
        Ok(val)
    }
}

pub(super) fn check_command(val: Val) -> Result<Val, String> {
    let Some(text) = val.as_str() else {
        return Ok(val);
    };
    if text.trim().is_empty() {
        Err("must not be empty: a shell command that prints the password".into())
    } else {
        Ok(val)
    }
}

pub(super) fn check_timeout(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if !(1..=MAX_TIMEOUT_S).contains(&n) => Err(format!(
            "must be between 1 and {MAX_TIMEOUT_S} (seconds), found {n}"
        )),
        _ => Ok(val),
    }
}

pub(super) fn check_refresh_before(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if !(1..=MAX_REFRESH_BEFORE_S).contains(&n) => Err(format!(
            "must be between 1 and {MAX_REFRESH_BEFORE_S} (seconds), found {n}"
        )),
        _ => Ok(val),
    }
}

pub(super) fn check_check_interval(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if !CHECK_INTERVAL_S.contains(&n) => Err(format!(
            "must be between {} and {} (seconds), found {n}",
            CHECK_INTERVAL_S.start(),
            CHECK_INTERVAL_S.end()
        )),
        _ => Ok(val),
    }
}

/// A file name from the profiles file: `~/x` in the home directory, a relative one next to the
/// profiles file.
pub(super) fn resolve_path(text: &str, profiles_file: &Path) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    let path = Path::new(text);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match profiles_file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

/// The most a `ca_cert` file may hold (a bundle of every public CA is about 250 KiB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// Reads a `ca_cert` file: PEM, at least one certificate, each one usable as a trust anchor.
pub(super) fn check_ca_cert(val: Val) -> Result<Val, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Val::Path(path) = val else {
        return Ok(val);
    };
    let shown_path = path.display();
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read the CA certificate file `{shown_path}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "`{shown_path}` is not a file: give a PEM file with the CA certificate(s)"
        ));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(format!(
            "`{shown_path}` is larger than {} MiB: not a CA certificate file",
            MAX_CA_FILE / 1024 / 1024
        ));
    }
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read the CA certificate file `{shown_path}`: {e}"))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let cert = item.map_err(|e| format!("`{shown_path}` is not a valid PEM file: {e}"))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "`{shown_path}` holds no certificate: expected PEM text with \
             -----BEGIN CERTIFICATE----- blocks"
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "certificate {} in `{shown_path}` is not a valid CA certificate: {e}",
                i + 1
            )
        })?;
    }
    Ok(Val::Ca(CaCert {
        certs: Arc::new(certs.into_iter().map(|c| c.to_vec()).collect()),
        path,
    }))
}

/// `proxy`: http(s) or socks5(h), with a host, nothing after it. Never quoted: it may hold a password.
pub(super) fn check_proxy(val: Val) -> Result<Val, String> {
    let Val::Str(text) = val else { return Ok(val) };
    const EXAMPLE: &str = "e.g. http://proxy.example.com:3128 or socks5h://127.0.0.1:1080";
    if text.trim() != text {
        return Err("the proxy URL starts or ends with whitespace; remove it".into());
    }
    let url = Url::parse(&text).map_err(|e| format!("not a valid proxy URL ({e}); {EXAMPLE}"))?;
    if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "unsupported proxy scheme `{}:`: use http://, https://, socks5:// or socks5h:// \
             (socks5h resolves host names through the proxy, as an `ssh -D` tunnel needs)",
            shown(url.scheme())
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the proxy URL has no host; {EXAMPLE}"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the proxy URL must be only scheme, host and port; {EXAMPLE}"
        ));
    }
    Ok(Val::Url(url))
}

pub(super) fn check_count(val: Val) -> Result<Val, String> {
    match val {
        Val::Int(n) if n < 1 => Err(format!("must be at least 1, found {n}")),
        _ => Ok(val),
    }
}

/// `v` + two digits + optionally `_` and one or two digits: `v10`, `v11`, `v11_16`.
fn is_valid_api(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = match rest.split_once('_') {
        Some((major, minor)) => (major, Some(minor)),
        None => (rest, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    major.len() == 2
        && digits(major)
        && minor.is_none_or(|m| (1..=2).contains(&m.len()) && digits(m))
}

/// `[A-Za-z0-9_-]{1,127}`: Sugar's Platforms extension allows upper case (e.g. a registered `SCRIBE`).
fn is_valid_platform(text: &str) -> bool {
    (1..=127).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[A-Za-z0-9._-]+` (the length is checked on its own, with its own message).
pub(super) fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty() && crate::identity::profile_name_chars_ok(name)
}

/// localhost, 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z).
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for good in ["v10", "v11", "v11_1", "v11_16", "v99_99"] {
            assert!(is_valid_api(good), "{good}");
        }
        for bad in [
            "", "v", "v1", "v111", "11", "V11", "v11_", "v11_123", "v11-1", "v11_1a", " v11",
        ] {
            assert!(!is_valid_api(bad), "{bad}");
        }
    }

    #[test]
    fn platforms() {
        assert!(is_valid_platform("custom_api"));
        assert!(is_valid_platform("a-b_9"));
        assert!(is_valid_platform(&"a".repeat(127)));
        assert!(is_valid_platform("SCRIBE"));
        assert!(is_valid_platform("Acme_Sync-2"));
        for bad in ["", "my platform", "é", "a.b", "a/b"] {
            assert!(!is_valid_platform(bad), "{bad}");
        }
        assert!(!is_valid_platform(&"a".repeat(128)));
    }

    #[test]
    fn profile_names() {
        assert!(is_valid_profile_name("acme-prod.eu_2"));
        for bad in ["", "acme prod", "acmé", "a/b", "a:b"] {
            assert!(!is_valid_profile_name(bad), "{bad}");
        }
    }
}
