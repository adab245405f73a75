//! The TLS client configuration the probe verifies a primary's certificate with: the Web PKI
//! roots plus the CA bundle a domain may give. Validation uses the same function to reject a
//! bundle that holds no usable certificate, so both agree on what a valid bundle is.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A TLS client configuration that verifies certificates against the Web PKI roots and the
/// extra PEM-encoded CA certificates given.
pub fn verifying(extra_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
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
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
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
}
