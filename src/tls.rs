//! The TLS client configuration the probe verifies a primary's certificate with: the Web PKI
//! roots plus the CA bundle a domain may give. Validation uses the same function to reject a
//! bundle that holds no usable certificate, so both agree on what a valid bundle is.
//!
//! Sessions are never resumed: a resumed TLS 1.3 session skips the certificate check the
//! probe exists to make, and rustls' default session cache reserves room for 256 servers in
//! every configuration, which at one configuration per domain was most of a domain's memory.
//! Domains without a bundle of their own share one configuration.

use std::sync::{Arc, LazyLock};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A TLS client configuration that verifies certificates against the Web PKI roots and the
/// extra PEM-encoded CA certificates given.
pub fn verifying(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    static WEB_PKI_ONLY: LazyLock<Result<Arc<ClientConfig>, String>> = LazyLock::new(|| build(None));
    match extra_ca_pem {
        None => WEB_PKI_ONLY.clone(),
        Some(pem) => build(Some(pem)),
    }
}

fn build(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("caBundle is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("caBundle holds an unusable certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("caBundle holds no certificate".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_cas_must_be_certificates() {
        assert!(verifying(None).is_ok());
        assert!(
            verifying(Some("not a certificate"))
                .unwrap_err()
                .contains("no certificate")
        );
    }

    #[test]
    fn domains_without_a_bundle_share_one_configuration_that_never_resumes() {
        let (first, second) = (verifying(None).unwrap(), verifying(None).unwrap());
        assert!(Arc::ptr_eq(&first, &second));
        // Resumption has no equality; its store's name says which one it is.
        assert!(format!("{:?}", first.resumption).contains("NoClientSessionStorage"));
    }
}
