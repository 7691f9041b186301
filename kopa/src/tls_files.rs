//! Where the listener's certificate comes from: the configured files, or a self-signed
//! certificate generated on first start under `<data_dir>/tls/` and reused afterwards.

use crate::StartError;
use kopa_config::Config;
use kopa_store::fsutil;
use kopa_web::ReloadableCert;
use std::net::SocketAddr;
use std::sync::Arc;

/// Validity of the generated certificate: browsers cap trust at about 13 months anyway, and
/// a self-signed certificate is for first contact, to be replaced by the operator's own.
const SELF_SIGNED_DAYS: i64 = 397;

/// Loads the configured certificate, or the generated one (creating it when missing).
/// Returns whether this call generated it.
pub(crate) fn load_or_create(
    config: &Config,
    addr: SocketAddr,
) -> Result<(Arc<ReloadableCert>, bool), StartError> {
    if let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file) {
        return Ok((ReloadableCert::open(cert, key)?, false));
    }
    let dir = config.server.data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((ReloadableCert::open(&cert, &key)?, false));
    }
    let io_err = |e: std::io::Error| StartError::DataDir {
        path: dir.clone(),
        reason: e.to_string(),
    };
    fsutil::ensure_private_dir(&dir).map_err(io_err)?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        names.push(addr.ip().to_string());
    }
    if let Some(host) = config.server.public_url.as_deref().and_then(url_host)
        && !names.iter().any(|n| n == host)
    {
        names.push(host.to_owned());
    }
    let generated = kopa_web::tls::self_signed(&names, SELF_SIGNED_DAYS)?;
    fsutil::write_private_file_atomic(&key, generated.key_pem.as_bytes()).map_err(io_err)?;
    fsutil::write_private_file_atomic(&cert, generated.cert_pem.as_bytes()).map_err(io_err)?;
    Ok((ReloadableCert::open(&cert, &key)?, true))
}

/// The host of an `https://host[:port][/path]` URL (IPv6 literals keep no brackets).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn hosts_of_public_urls() {
        assert_eq!(
            url_host("https://kopa.ventspils.lv"),
            Some("kopa.ventspils.lv")
        );
        assert_eq!(
            url_host("https://kopa.example:8443/sso"),
            Some("kopa.example")
        );
        assert_eq!(url_host("https://[2001:db8::1]:443/"), Some("2001:db8::1"));
        assert_eq!(url_host("http://plain.example"), None);
        assert_eq!(url_host("https://"), None);
    }
}
