//! The control plane's own PKI, generated fresh for every run: a CA, the API
//! server's serving certificate for 127.0.0.1, an admin client certificate in
//! `system:masters`, and the key that signs service-account tokens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Paths of the PEM files written by [`write`].
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// Signs service-account tokens (kube-apiserver and the token controller).
    pub service_account_key: PathBuf,
    /// Verifies them (kube-apiserver).
    pub service_account_public_key: PathBuf,
}

/// Generates every key and certificate into `dir`.
pub fn write(dir: &Path) -> anyhow::Result<Pki> {
    let file = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "chatscale test control plane CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_cert_path = file("ca.crt", ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "chatscale-test-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer)?;

    let service_account_key = KeyPair::generate()?;
    Ok(Pki {
        ca_cert: ca_cert_path,
        serving_cert: file("apiserver.crt", serving_cert.pem())?,
        serving_key: file("apiserver.key", serving_key.serialize_pem())?,
        admin_cert: file("admin.crt", admin_cert.pem())?,
        admin_key: file("admin.key", admin_key.serialize_pem())?,
        service_account_key: file("service-account.key", service_account_key.serialize_pem())?,
        service_account_public_key: file(
            "service-account.pub",
            service_account_key.public_key_pem(),
        )?,
    })
}
