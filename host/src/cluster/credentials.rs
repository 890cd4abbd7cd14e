//! Everything secret a local control plane needs: a CA and a serving certificate for the
//! apiserver, a service-account signing key pair and the admin's bearer token.

use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::ClusterError;

/// The admin user of a local control plane (a member of `system:masters`).
pub const ADMIN_USER: &str = "kubewasm-admin";

/// Files written under `DIR/pki`, and the values the kubeconfig needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// PEM of the CA that signed the serving certificate.
    pub ca_pem: String,
    /// The CA certificate's file.
    pub ca_cert: PathBuf,
    /// The admin's bearer token.
    pub admin_token: String,
    /// Serving certificate (PEM).
    pub serving_cert: PathBuf,
    /// Serving key (PEM).
    pub serving_key: PathBuf,
    /// Service-account token verification key (public, PEM).
    pub service_account_public: PathBuf,
    /// Service-account token signing key (private, PEM).
    pub service_account_private: PathBuf,
    /// The static token file (`--token-auth-file`).
    pub token_file: PathBuf,
}

impl Credentials {
    /// Generates fresh credentials and writes them under `pki_dir` (mode 0600 files).
    pub fn generate(pki_dir: &Path) -> Result<Self, ClusterError> {
        let err = |e: rcgen::Error| ClusterError::Credentials(e.to_string());
        std::fs::create_dir_all(pki_dir)?;

        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kubewasm local CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;

        let serving_key = KeyPair::generate().map_err(err)?;
        let mut serving_params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .map_err(err)?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let serving = serving_params.signed_by(&serving_key, &ca).map_err(err)?;

        let service_account_key = KeyPair::generate().map_err(err)?;
        let admin_token = random_token();

        let credentials = Self {
            ca_pem: ca.pem(),
            ca_cert: pki_dir.join("ca.crt"),
            admin_token,
            serving_cert: pki_dir.join("apiserver.crt"),
            serving_key: pki_dir.join("apiserver.key"),
            service_account_public: pki_dir.join("service-account.pub"),
            service_account_private: pki_dir.join("service-account.key"),
            token_file: pki_dir.join("tokens.csv"),
        };
        write_private(&credentials.ca_cert, &credentials.ca_pem)?;
        write_private(&credentials.serving_cert, &serving.pem())?;
        write_private(&credentials.serving_key, &serving_key.serialize_pem())?;
        write_private(
            &credentials.service_account_public,
            &service_account_key.public_key_pem(),
        )?;
        write_private(
            &credentials.service_account_private,
            &service_account_key.serialize_pem(),
        )?;
        // token,user,uid,"group1,group2"
        write_private(
            &credentials.token_file,
            &format!(
                "{},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n",
                credentials.admin_token
            ),
        )?;
        Ok(credentials)
    }
}

fn random_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 40)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}
