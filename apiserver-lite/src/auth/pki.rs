//! The cluster's certificates: a CA, the API server's serving certificate and the admin's
//! client certificate, kept in `DIR/pki/` the way kubeadm keeps `/etc/kubernetes/pki`.
//!
//! The CA is created once and never replaced: every kubeconfig and kubelet certificate
//! trusts it. Leaf certificates are re-issued from it whenever they no longer fit (a host
//! was added, they near expiry, they were signed by another CA). A file that exists but
//! cannot be parsed is an error naming it, never silently overwritten: it may be the only
//! copy of a key someone cares about.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::atomic_file;

/// Who the admin kubeconfig authenticates as: kubeadm's name, in the group that the
/// authorizer lets do anything.
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const MASTERS_GROUP: &str = "system:masters";

/// Names the in-cluster clients reach the API server by (the `kubernetes` Service and its
/// first cluster IP), always in the serving certificate.
const BUILTIN_HOSTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

const CA_LIFETIME: Duration = Duration::days(3650);
const LEAF_LIFETIME: Duration = Duration::days(365);
/// A leaf certificate with less than this left is re-issued at start.
const RENEW_BEFORE: Duration = Duration::days(30);
/// Certificates start a little in the past so a node whose clock lags still accepts them.
const BACKDATE: Duration = Duration::hours(1);

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("create directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a usable certificate: {reason}")]
    BadCert { path: PathBuf, reason: String },
    #[error("{path} is not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{key} does not hold the private key of {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "{cert} exists but {key} is missing: restore the key, or remove both to start a new CA \
         (every kubeconfig and kubelet certificate must then be re-issued)"
    )]
    MissingCaKey { cert: PathBuf, key: PathBuf },
    #[error("host {host:?} for the serving certificate is neither an IP address nor a DNS name")]
    BadHost { host: String },
    #[error("serving certificate for {name}: no host names or addresses given")]
    NoHosts { name: String },
    #[error("client certificate subject {user:?}: {reason}")]
    BadSubject { user: String, reason: String },
    #[error("sign certificate for {subject}: {source}")]
    Sign {
        subject: String,
        source: rcgen::Error,
    },
}

pub type Result<T> = std::result::Result<T, PkiError>;

/// A certificate with its private key, both PEM.
#[derive(Debug, Clone)]
struct Pair {
    cert_pem: String,
    key_pem: String,
}

/// The loaded (or freshly made) cluster PKI.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_key: KeyPair,
    serving: Pair,
    admin: Pair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Load `dir/pki/`, creating what is missing and re-issuing leaf certificates that no
    /// longer fit. `hosts` (IP addresses or DNS names) are added to the serving
    /// certificate's names.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki> {
        let dir = dir.join("pki");
        create_private_dir(&dir)?;
        let (ca_cert_pem, ca_key) = load_or_create_ca(&dir)?;
        let ca = Ca::new(&dir, &ca_cert_pem, &ca_key)?;

        let wanted = serving_names(hosts)?;
        let serving = load_or_issue(
            &dir,
            "apiserver",
            &ca,
            |cert| covers(cert, &wanted),
            || issue_serving(&ca, "kube-apiserver", &wanted),
        )?;
        let admin = load_or_issue(
            &dir,
            "admin",
            &ca,
            |cert| subject_is(cert, ADMIN_USER, &[MASTERS_GROUP]),
            || issue_client(&ca, ADMIN_USER, &[MASTERS_GROUP]),
        )?;
        drop(ca);
        Ok(Pki {
            dir,
            ca_cert_pem,
            ca_key,
            serving,
            admin,
        })
    }

    /// A client certificate signed by the cluster CA, for `user` in `groups` (at most two,
    /// a limit of rcgen's subject names); returns (certificate PEM, private key PEM). Kubelets get
    /// `system:node:NAME` in `system:nodes`.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        let ca = Ca::new(&self.dir, &self.ca_cert_pem, &self.ca_key)?;
        let pair = issue_client(&ca, user, groups)?;
        Ok((pair.cert_pem, pair.key_pem))
    }

    /// A serving certificate signed by the cluster CA for `name` (its CN) answering to
    /// `hosts` (IP addresses or DNS names); returns (certificate PEM, private key PEM).
    /// For a kubelet's HTTPS endpoint, which the API server reaches trusting the CA.
    pub fn issue_serving_cert(&self, name: &str, hosts: &[String]) -> Result<(String, String)> {
        let ca = Ca::new(&self.dir, &self.ca_cert_pem, &self.ca_key)?;
        let names = host_names(hosts.iter().map(String::as_str))?;
        if names.is_empty() {
            return Err(PkiError::BadHost {
                host: String::new(),
            });
        }
        let pair = issue_serving(&ca, name, &names)?;
        Ok((pair.cert_pem, pair.key_pem))
    }

    /// The directory holding the files (`DIR/pki`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The CA's private key (PEM), for the CSR signer (kube-controller-manager's
    /// --cluster-signing-key-file).
    pub fn ca_key_pem(&self) -> String {
        self.ca_key.serialize_pem()
    }

    pub fn serving_cert_pem(&self) -> &str {
        &self.serving.cert_pem
    }

    pub fn serving_key_pem(&self) -> &str {
        &self.serving.key_pem
    }

    pub fn admin_cert_pem(&self) -> &str {
        &self.admin.cert_pem
    }

    pub fn admin_key_pem(&self) -> &str {
        &self.admin.key_pem
    }
}

/// The CA as a signer, with its parsed certificate for checking what it signed.
struct Ca<'a> {
    issuer: Issuer<'a, &'a KeyPair>,
    der: Vec<u8>,
}

impl<'a> Ca<'a> {
    fn new(dir: &Path, cert_pem: &str, key: &'a KeyPair) -> Result<Ca<'a>> {
        let path = dir.join("ca.crt");
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| PkiError::BadCert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let der = pem_der(&path, cert_pem)?;
        Ok(Ca { issuer, der })
    }

    fn cert(&self) -> X509Certificate<'_> {
        // Parsed successfully when loaded; the bytes do not change.
        x509_parser::parse_x509_certificate(&self.der)
            .expect("CA parsed at load")
            .1
    }

    fn signed(&self, cert: &X509Certificate<'_>) -> bool {
        let ca = self.cert();
        cert.issuer().as_raw() == ca.subject().as_raw()
            // x509-parser's `verify` feature, which rcgen's `ring` feature turns on.
            && cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let err = |source| PkiError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    atomic_file::write(path, contents.as_bytes(), mode).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Key first, then certificate: a crash in between leaves a key without a certificate,
/// which nothing can have trusted yet, so the next start may safely replace it.
fn write_pair(dir: &Path, base: &str, pair: &Pair) -> Result<()> {
    write_file(&dir.join(format!("{base}.key")), &pair.key_pem, KEY_MODE)?;
    write_file(&dir.join(format!("{base}.crt")), &pair.cert_pem, CERT_MODE)
}

fn pem_der(path: &Path, pem: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| PkiError::BadCert {
        path: path.to_path_buf(),
        reason,
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    if pem.label != "CERTIFICATE" {
        return Err(bad(format!(
            "PEM block is {:?}, not CERTIFICATE",
            pem.label
        )));
    }
    Ok(pem.contents)
}

fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| PkiError::BadCert {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair)> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let key = parse_key(&key_path, &key_pem)?;
            let der = pem_der(&cert_path, &cert_pem)?;
            let cert = parse_cert(&cert_path, &der)?;
            if !cert.is_ca() {
                let reason = "not a CA certificate (basicConstraints CA:FALSE)".to_string();
                return Err(PkiError::BadCert {
                    path: cert_path,
                    reason,
                });
            }
            if !cert.validity().is_valid() {
                let reason = format!(
                    "outside its validity ({} to {}); remove {} to start a new CA",
                    cert.validity().not_before,
                    cert.validity().not_after,
                    dir.display()
                );
                return Err(PkiError::BadCert {
                    path: cert_path,
                    reason,
                });
            }
            if !key_matches(&cert, &key) {
                return Err(PkiError::KeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            Ok((cert_pem, key))
        }
        (Some(_), None) => Err(PkiError::MissingCaKey {
            cert: cert_path,
            key: key_path,
        }),
        // No certificate: a lone key is the residue of an interrupted first start.
        (None, _) => {
            let pair = create_ca()?;
            write_pair(dir, "ca", &pair)?;
            let key = parse_key(&key_path, &pair.key_pem)?;
            Ok((pair.cert_pem, key))
        }
    }
}

fn sign_err(subject: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Sign {
        subject: subject.to_string(),
        source,
    }
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

fn create_ca() -> Result<Pair> {
    const SUBJECT: &str = "kubernetes";
    let key = KeyPair::generate().map_err(sign_err(SUBJECT))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, SUBJECT);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    validity(&mut params, CA_LIFETIME);
    let cert = params.self_signed(&key).map_err(sign_err(SUBJECT))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Reuse `DIR/BASE.{crt,key}` if both parse, belong together, were signed by `ca`, are not
/// near expiry and satisfy `fits`; otherwise issue and write a new pair.
fn load_or_issue(
    dir: &Path,
    base: &str,
    ca: &Ca<'_>,
    fits: impl Fn(&X509Certificate<'_>) -> bool,
    issue: impl FnOnce() -> Result<Pair>,
) -> Result<Pair> {
    let cert_path = dir.join(format!("{base}.crt"));
    let key_path = dir.join(format!("{base}.key"));
    if let (Some(cert_pem), Some(key_pem)) = (read_optional(&cert_path)?, read_optional(&key_path)?)
    {
        let key = parse_key(&key_path, &key_pem)?;
        let der = pem_der(&cert_path, &cert_pem)?;
        let cert = parse_cert(&cert_path, &der)?;
        let renew_at = cert.validity().not_after.timestamp() - RENEW_BEFORE.whole_seconds();
        let fresh = OffsetDateTime::now_utc().unix_timestamp() < renew_at;
        if key_matches(&cert, &key) && ca.signed(&cert) && fresh && fits(&cert) {
            return Ok(Pair { cert_pem, key_pem });
        }
        tracing::info!(cert = %cert_path.display(), "re-issuing certificate");
    }
    let pair = issue()?;
    write_pair(dir, base, &pair)?;
    Ok(pair)
}

/// A name in a certificate's subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

fn serving_names(hosts: &[String]) -> Result<Vec<San>> {
    host_names(
        BUILTIN_HOSTS
            .iter()
            .copied()
            .chain(hosts.iter().map(String::as_str)),
    )
}

fn host_names<'a>(hosts: impl Iterator<Item = &'a str>) -> Result<Vec<San>> {
    let mut names: Vec<San> = Vec::new();
    for host in hosts {
        let host = host.trim();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) if is_dns_name(host) => San::Dns(host.to_ascii_lowercase()),
            Err(_) => {
                return Err(PkiError::BadHost {
                    host: host.to_string(),
                });
            }
        };
        if !names.contains(&san) {
            names.push(san);
        }
    }
    Ok(names)
}

/// RFC 1123 host names, with a leading `*.` wildcard allowed.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn cert_sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_ascii_lowercase())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => Some(San::Ip(IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?))),
                16 => Some(San::Ip(IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn covers(cert: &X509Certificate<'_>, wanted: &[San]) -> bool {
    let have = cert_sans(cert);
    wanted.iter().all(|san| have.contains(san))
}

fn subject_is(cert: &X509Certificate<'_>, user: &str, groups: &[&str]) -> bool {
    let (cn, orgs) = subject_names(cert);
    cn.as_deref() == Some(user) && groups.iter().all(|g| orgs.iter().any(|o| o == g))
}

/// The first common name and all organization names of a certificate's subject: what the
/// API server reads as user name and groups.
pub(crate) fn subject_names(cert: &X509Certificate<'_>) -> (Option<String>, Vec<String>) {
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .find_map(|a| a.as_str().ok())
        .map(str::to_string);
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    (cn, orgs)
}

fn issue_serving(ca: &Ca<'_>, subject: &str, names: &[San]) -> Result<Pair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, subject);
    params.subject_alt_names = names
        .iter()
        .map(|san| match san {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(dns) => dns
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| PkiError::BadHost { host: dns.clone() }),
        })
        .collect::<Result<_>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign_leaf(ca, params, subject)
}

/// OID of the X.520 organizationName attribute.
const ORGANIZATION_OID: &[u64] = &[2, 5, 4, 10];

/// Subject CN=`user`, one O= per group. rcgen's `DistinguishedName` holds one value per
/// attribute type, so a second group goes in as the same attribute under its raw OID;
/// no client in this project needs more than two.
fn client_params(user: &str, groups: &[&str]) -> Result<CertificateParams> {
    let bad = |reason: &str| PkiError::BadSubject {
        user: user.to_string(),
        reason: reason.to_string(),
    };
    if user.trim().is_empty() {
        return Err(bad("the user name (common name) is empty"));
    }
    if groups.iter().any(|g| g.trim().is_empty()) {
        return Err(bad("a group (organization) is empty"));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    match groups {
        [] => {}
        [one] => params
            .distinguished_name
            .push(DnType::OrganizationName, *one),
        [one, two] => {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *one);
            params
                .distinguished_name
                .push(DnType::CustomDnType(ORGANIZATION_OID.to_vec()), *two);
        }
        _ => return Err(bad("at most two groups fit in a certificate issued here")),
    }
    params.distinguished_name.push(DnType::CommonName, user);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn issue_client(ca: &Ca<'_>, user: &str, groups: &[&str]) -> Result<Pair> {
    sign_leaf(ca, client_params(user, groups)?, user)
}

fn sign_leaf(ca: &Ca<'_>, mut params: CertificateParams, subject: &str) -> Result<Pair> {
    let key = KeyPair::generate().map_err(sign_err(subject))?;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_LIFETIME);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(sign_err(subject))?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// DER of the first certificate in a PEM string, for handing to rustls.
pub(crate) fn cert_der(what: &str, pem: &str) -> Result<Vec<u8>> {
    pem_der(Path::new(what), pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pem: &str) -> Vec<u8> {
        cert_der("test", pem).unwrap()
    }

    #[test]
    fn creates_all_files_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        for (name, mode) in [
            ("ca.crt", 0o644),
            ("ca.key", 0o600),
            ("apiserver.crt", 0o644),
            ("apiserver.key", 0o600),
            ("admin.crt", 0o644),
            ("admin.key", 0o600),
        ] {
            let meta = fs::metadata(pki.dir().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
        }
        assert_eq!(
            fs::read_to_string(pki.dir().join("ca.crt")).unwrap(),
            pki.ca_cert_pem()
        );
    }

    #[test]
    fn serving_cert_names_builtin_and_given_hosts_and_is_signed_by_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["10.1.2.3".to_string(), "Node-A.example".to_string()];
        let pki = Pki::load_or_create(dir.path(), &hosts).unwrap();
        let der = parsed(pki.serving_cert_pem());
        let cert = x509_parser::parse_x509_certificate(&der).unwrap().1;
        let sans = cert_sans(&cert);
        for want in [
            San::Dns("localhost".into()),
            San::Dns("kubernetes.default.svc.cluster.local".into()),
            San::Ip("127.0.0.1".parse().unwrap()),
            San::Ip("::1".parse().unwrap()),
            San::Ip("10.96.0.1".parse().unwrap()),
            San::Ip("10.1.2.3".parse().unwrap()),
            San::Dns("node-a.example".into()),
        ] {
            assert!(sans.contains(&want), "{want:?} missing from {sans:?}");
        }
        let ca_key =
            KeyPair::from_pem(&fs::read_to_string(pki.dir().join("ca.key")).unwrap()).unwrap();
        let ca = Ca::new(pki.dir(), pki.ca_cert_pem(), &ca_key).unwrap();
        assert!(ca.signed(&cert));
    }

    #[test]
    fn reload_keeps_everything_and_a_new_host_reissues_only_the_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &[]).unwrap();
        let again = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca_cert_pem(), again.ca_cert_pem());
        assert_eq!(first.serving_cert_pem(), again.serving_cert_pem());
        assert_eq!(first.admin_key_pem(), again.admin_key_pem());

        let more = Pki::load_or_create(dir.path(), &["192.168.7.7".to_string()]).unwrap();
        assert_eq!(first.ca_cert_pem(), more.ca_cert_pem());
        assert_eq!(first.admin_cert_pem(), more.admin_cert_pem());
        assert_ne!(first.serving_cert_pem(), more.serving_cert_pem());
        let der = parsed(more.serving_cert_pem());
        let cert = x509_parser::parse_x509_certificate(&der).unwrap().1;
        assert!(cert_sans(&cert).contains(&San::Ip("192.168.7.7".parse().unwrap())));
    }

    #[test]
    fn leaf_signed_by_another_ca_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let ours = Pki::load_or_create(dir.path(), &[]).unwrap();
        let theirs = Pki::load_or_create(other.path(), &[]).unwrap();
        for f in ["admin.crt", "admin.key"] {
            fs::copy(theirs.dir().join(f), ours.dir().join(f)).unwrap();
        }
        let reloaded = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_ne!(reloaded.admin_cert_pem(), theirs.admin_cert_pem());
        let ca_key =
            KeyPair::from_pem(&fs::read_to_string(ours.dir().join("ca.key")).unwrap()).unwrap();
        let ca = Ca::new(ours.dir(), ours.ca_cert_pem(), &ca_key).unwrap();
        let der = parsed(reloaded.admin_cert_pem());
        assert!(ca.signed(&x509_parser::parse_x509_certificate(&der).unwrap().1));
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        for name in ["ca.crt", "ca.key", "apiserver.crt", "admin.key"] {
            let dir = tempfile::tempdir().unwrap();
            let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
            fs::write(pki.dir().join(name), "garbage").unwrap();
            let err = Pki::load_or_create(dir.path(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn ca_cert_without_key_is_an_error_but_a_lone_key_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        fs::remove_file(pki.dir().join("ca.key")).unwrap();
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::MissingCaKey { .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        fs::remove_file(pki.dir().join("ca.crt")).unwrap();
        let fresh = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_ne!(fresh.ca_cert_pem(), pki.ca_cert_pem());
    }

    #[test]
    fn ca_key_from_another_ca_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let theirs = Pki::load_or_create(other.path(), &[]).unwrap();
        fs::copy(theirs.dir().join("ca.key"), pki.dir().join("ca.key")).unwrap();
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn kubelet_serving_certs_name_only_the_given_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let hosts = vec!["node-a".to_string(), "10.0.0.5".to_string()];
        let (cert_pem, key_pem) = pki.issue_serving_cert("node-a", &hosts).unwrap();
        let der = parsed(&cert_pem);
        let cert = x509_parser::parse_x509_certificate(&der).unwrap().1;
        assert_eq!(
            cert_sans(&cert),
            vec![
                San::Dns("node-a".into()),
                San::Ip("10.0.0.5".parse().unwrap())
            ]
        );
        assert!(key_matches(&cert, &KeyPair::from_pem(&key_pem).unwrap()));
        assert!(pki.issue_serving_cert("node-a", &[]).is_err());
    }

    #[test]
    fn bad_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Pki::load_or_create(dir.path(), &["bad host!".to_string()]).unwrap_err();
        assert!(err.to_string().contains("bad host!"), "{err}");
    }

    #[test]
    fn client_certs_carry_user_and_up_to_two_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let (cert_pem, key_pem) = pki
            .issue_client_cert("system:node:a", &["system:nodes", "extra"])
            .unwrap();
        let der = parsed(&cert_pem);
        let cert = x509_parser::parse_x509_certificate(&der).unwrap().1;
        let (cn, orgs) = subject_names(&cert);
        assert_eq!(cn.as_deref(), Some("system:node:a"));
        assert_eq!(orgs, vec!["system:nodes".to_string(), "extra".to_string()]);
        assert!(key_matches(&cert, &KeyPair::from_pem(&key_pem).unwrap()));

        let admin_der = parsed(pki.admin_cert_pem());
        let admin = x509_parser::parse_x509_certificate(&admin_der).unwrap().1;
        assert_eq!(
            subject_names(&admin),
            (
                Some(ADMIN_USER.to_string()),
                vec![MASTERS_GROUP.to_string()]
            )
        );

        assert!(pki.issue_client_cert("u", &["a", "b", "c"]).is_err());
        assert!(pki.issue_client_cert("", &[]).is_err());
    }
}
