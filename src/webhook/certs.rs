//! The webhook's serving certificate: `tls.crt` and `tls.key` in a directory (the layout of a
//! `kubernetes.io/tls` Secret mounted as a volume, which cert-manager renews in place). The
//! files are read again whenever their modification time changes, so a renewed certificate is
//! served from the next handshake on without a restart. A pair that fails to load (a renewal
//! caught half-written) keeps the previous one in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tracing::{info, warn};

use crate::{Error, Result};

/// The certificate file in the directory.
pub const CERT_FILE: &str = "tls.crt";
/// The private key file in the directory.
pub const KEY_FILE: &str = "tls.key";

/// Serves the pair in a directory, reloading it when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    dir: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

impl ReloadingCert {
    /// Loads the pair in `dir`; fails when it is missing or unusable, so a misconfigured
    /// webhook is seen at start, not at the first admission request.
    pub fn load(dir: &Path) -> Result<Self> {
        let stamp = stamp(dir);
        let key = read_pair(dir).map_err(Error::Config)?;
        Ok(Self {
            dir: dir.to_owned(),
            loaded: Mutex::new(Loaded {
                stamp,
                key: Arc::new(key),
            }),
        })
    }

    /// The pair to serve now.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stamp = stamp(&self.dir);
        if stamp != loaded.stamp {
            match read_pair(&self.dir) {
                Ok(key) => {
                    info!(dir = %self.dir.display(), "webhook certificate reloaded");
                    loaded.key = Arc::new(key);
                    loaded.stamp = stamp;
                }
                // Not recording the stamp retries at the next handshake.
                Err(error) => {
                    warn!(dir = %self.dir.display(), %error, "webhook certificate not reloaded; serving the previous one")
                }
            }
        }
        loaded.key.clone()
    }

    /// A TLS server configuration serving this pair.
    pub fn server_config(self) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("webhook TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(dir: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |file| std::fs::metadata(dir.join(file)).and_then(|m| m.modified()).ok();
    (modified(CERT_FILE), modified(KEY_FILE))
}

fn read_pair(dir: &Path) -> std::result::Result<CertifiedKey, String> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| format!("webhook certificate {}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "webhook certificate {} holds no certificate",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("webhook private key {}: {e}", key_path.display()))?;
    let signing = any_supported_type(&key).map_err(|e| format!("webhook private key {}: {e}", key_path.display()))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()
        .map_err(|e| format!("webhook certificate and key in {} do not match: {e}", dir.display()))?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> Vec<u8> {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        std::fs::write(dir.join(CERT_FILE), certified.cert.pem()).unwrap();
        std::fs::write(dir.join(KEY_FILE), certified.signing_key.serialize_pem()).unwrap();
        certified.cert.der().to_vec()
    }

    fn served(cert: &ReloadingCert) -> Vec<u8> {
        cert.current().cert[0].to_vec()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("continuity-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_renewed_pair_is_served_and_a_broken_one_is_not() {
        let dir = temp_dir("renew");
        let first = write_pair(&dir, "first.example");
        let cert = ReloadingCert::load(&dir).unwrap();
        assert_eq!(served(&cert), first);

        // Write the new pair with a distinct modification time, as a renewal does.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        let second = write_pair(&dir, "second.example");
        for file in [CERT_FILE, KEY_FILE] {
            std::fs::File::options()
                .append(true)
                .open(dir.join(file))
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        assert_eq!(served(&cert), second);

        // Half-written renewal: the key is garbage; the previous pair stays in service.
        std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
        let file = std::fs::File::options().append(true).open(dir.join(KEY_FILE)).unwrap();
        file.set_modified(later + std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(served(&cert), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_mismatched_pair_fails_at_start() {
        let dir = temp_dir("missing");
        let error = ReloadingCert::load(&dir).unwrap_err().to_string();
        assert!(error.contains(CERT_FILE), "{error}");

        write_pair(&dir, "a.example");
        let other = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        std::fs::write(dir.join(KEY_FILE), other.signing_key.serialize_pem()).unwrap();
        let error = ReloadingCert::load(&dir).unwrap_err().to_string();
        assert!(error.contains("do not match"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
