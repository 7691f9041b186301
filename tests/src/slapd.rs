//! Real OpenLDAP test directories. [`Slapd::start`] runs a `slapd` child on two
//! loopback ports (`ldap://` with StartTLS, `ldaps://`) serving `dc=ventspils,dc=lv`
//! and `dc=talsi,dc=lv`, with a throwaway CA and a server certificate for 127.0.0.1.
//! [`Slapd::replica`] starts a second server with the same data (failover tests);
//! [`Slapd::directory`] gives a `[[directory]]` entry for either municipality. The
//! users ([`USERS`]) have Latvian names; some are disabled or locked.
//!
//! [`raw_search_bind_rate`] measures what a plain ldap3 client achieves against the
//! same slapd, the baseline a directory-backed login is compared with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kopa_config::{DirectoryConfig, GroupLookup};

/// The two test municipalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Municipality {
    /// `dc=ventspils,dc=lv`, groups read from `memberOf`.
    Ventspils,
    /// `dc=talsi,dc=lv`, groups found by a `groupOfNames` search.
    Talsi,
}

impl Municipality {
    /// Both.
    pub const ALL: [Municipality; 2] = [Municipality::Ventspils, Municipality::Talsi];

    /// Directory id, tenant and domain label.
    pub fn id(self) -> &'static str {
        match self {
            Municipality::Ventspils => "ventspils",
            Municipality::Talsi => "talsi",
        }
    }

    /// The LDAP suffix.
    pub fn suffix(self) -> String {
        format!("dc={},dc=lv", self.id())
    }

    /// The login domain, e.g. `ventspils.lv`.
    pub fn domain(self) -> String {
        format!("{}.lv", self.id())
    }

    /// DN of the service account Kopa searches with.
    pub fn service_dn(self) -> String {
        format!("cn=kopa-svc,ou=system,{}", self.suffix())
    }

    /// Password of the service account.
    pub fn service_password(self) -> &'static str {
        match self {
            Municipality::Ventspils => "svc-Ventspils-Kopa-1",
            Municipality::Talsi => "svc-Talsi-Kopa-1",
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            Municipality::Ventspils => "Ventspils valstspilsētas pašvaldība",
            Municipality::Talsi => "Talsu novada pašvaldība",
        }
    }

    /// Group names (`cn`) and the roles `directory()` maps them to.
    fn groups(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Municipality::Ventspils => &[
                ("Speciālisti", &["specialist"]),
                ("Vadītāji", &["supervisor"]),
                ("IT-admini", &["tenant_admin"]),
                ("Drošība", &["security_officer", "auditor"]),
                ("Sports", &[]),
            ],
            Municipality::Talsi => &[
                ("Klientu centrs", &["specialist"]),
                ("Vadība", &["supervisor", "service_owner"]),
                ("IT", &["tenant_admin"]),
            ],
        }
    }
}

/// A user of a test directory.
#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    /// The `uid`, i.e. the login.
    pub uid: &'static str,
    /// Where the user lives.
    pub municipality: Municipality,
    /// The password.
    pub password: &'static str,
    /// `givenName`.
    pub given_name: &'static str,
    /// `sn`.
    pub surname: &'static str,
    /// Group `cn`s.
    pub groups: &'static [&'static str],
    /// Extra attributes (account state).
    pub extra: &'static [(&'static str, &'static str)],
}

impl TestUser {
    /// `cn`: given name and surname.
    pub fn cn(&self) -> String {
        format!("{} {}", self.given_name, self.surname)
    }

    /// The entry's DN.
    pub fn dn(&self) -> String {
        format!("uid={},ou=people,{}", self.uid, self.municipality.suffix())
    }

    /// `uid@domain`.
    pub fn login(&self) -> String {
        format!("{}@{}", self.uid, self.municipality.domain())
    }

    /// `mail`.
    pub fn mail(&self) -> String {
        self.login()
    }
}

/// Every test user. Between them their names use ā č ē ģ ī ķ ļ ņ š ū ž.
pub const USERS: &[TestUser] = &[
    TestUser {
        uid: "anna.berzina",
        municipality: Municipality::Ventspils,
        password: "Dzintara-Jūra-7",
        given_name: "Anna",
        surname: "Bērziņa",
        groups: &["Speciālisti", "Sports"],
        extra: &[("employeeNumber", "V-0042")],
    },
    TestUser {
        uid: "janis.kalnins",
        municipality: Municipality::Ventspils,
        password: "Ostas-Tilts-12",
        given_name: "Jānis",
        surname: "Kalniņš",
        groups: &["Speciālisti", "Vadītāji", "IT-admini"],
        extra: &[],
    },
    TestUser {
        uid: "zanis.cakste",
        municipality: Municipality::Ventspils,
        password: "Žubītes-Dziesma-3",
        given_name: "Žanis",
        surname: "Čakste",
        groups: &["Drošība"],
        extra: &[],
    },
    TestUser {
        uid: "liga.udre",
        municipality: Municipality::Ventspils,
        password: "Līgo-Vakars-24",
        given_name: "Līga",
        surname: "Ūdre",
        groups: &[],
        extra: &[],
    },
    TestUser {
        uid: "girts.kenins",
        municipality: Municipality::Ventspils,
        password: "Ķiploku-Zupa-5",
        given_name: "Ģirts",
        surname: "Ķēniņš",
        groups: &["Speciālisti"],
        extra: &[("pwdAccountLockedTime", "20260101000000Z")],
    },
    TestUser {
        uid: "nina.sumane",
        municipality: Municipality::Ventspils,
        password: "Šūpoles-Parkā-9",
        given_name: "Ņina",
        surname: "Šūmane",
        groups: &["Speciālisti"],
        extra: &[("nsAccountLock", "TRUE")],
    },
    TestUser {
        uid: "edgars.liepins",
        municipality: Municipality::Talsi,
        password: "Talsu-Pilskalns-8",
        given_name: "Edgars",
        surname: "Liepiņš",
        groups: &["Klientu centrs", "Vadība"],
        extra: &[],
    },
    TestUser {
        uid: "alona.klavina",
        municipality: Municipality::Talsi,
        password: "Kļavu-Lapa-4",
        given_name: "Aļona",
        surname: "Kļaviņa",
        groups: &["IT"],
        extra: &[],
    },
    TestUser {
        uid: "ilze.smite",
        municipality: Municipality::Talsi,
        password: "Sabiles-Vīns-6",
        given_name: "Ilze",
        surname: "Šmite",
        groups: &["Klientu centrs"],
        // Active Directory's NORMAL_ACCOUNT | ACCOUNTDISABLE.
        extra: &[("userAccountControl", "514")],
    },
    // XML-special characters in the name, for what identity protocols must escape.
    TestUser {
        uid: "marta.ozola",
        municipality: Municipality::Talsi,
        password: "Ozolu-Birzs-2",
        given_name: "Mārta \"M&M\"",
        surname: "<Ozola> & Co",
        groups: &["Klientu centrs"],
        extra: &[],
    },
];

/// The test user with this uid.
pub fn user(uid: &str) -> &'static TestUser {
    USERS
        .iter()
        .find(|u| u.uid == uid)
        .unwrap_or_else(|| panic!("no test user {uid}"))
}

/// `nsAccountLock` (389 DS) and `userAccountControl` (AD) are in no schema Debian
/// ships standalone; this defines just them, with their real OIDs.
const TEST_SCHEMA: &str = "\
attributetype ( 2.16.840.1.113730.3.1.610 NAME 'nsAccountLock'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'kopaTestAccount' SUP top AUXILIARY
  MAY ( nsAccountLock $ userAccountControl ) )
";

/// What every instance shares: certificates, schema, LDIF, secrets.
#[derive(Debug)]
struct Fixture {
    dir: tempfile::TempDir,
    slapd: PathBuf,
    slapadd: PathBuf,
    schema_dir: PathBuf,
    module_dir: Option<PathBuf>,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn create() -> Self {
        let slapd = find_tool("slapd");
        let slapadd = find_tool("slapadd");
        let schema_dir = ["/etc/ldap/schema", "/etc/openldap/schema"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.join("inetorgperson.schema").exists())
            .expect("OpenLDAP schema files (inetorgperson.schema) not found: install slapd");
        let module_dir = ["/usr/lib/ldap", "/usr/lib/openldap", "/usr/lib64/openldap"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.join("memberof.la").exists() || d.join("memberof.so").exists());
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
            slapd,
            slapadd,
            schema_dir,
            module_dir,
        };
        write_pki(fixture.dir.path());
        std::fs::write(fixture.path("kopa-test.schema"), TEST_SCHEMA).unwrap();
        for m in Municipality::ALL {
            std::fs::write(fixture.path(&format!("{}.ldif", m.id())), ldif(m)).unwrap();
            let secret = fixture.path(&format!("{}-svc.secret", m.id()));
            std::fs::write(&secret, format!("{}\n", m.service_password())).unwrap();
        }
        fixture
    }

    fn conf(&self, instance: &Path) -> String {
        let schema = &self.schema_dir;
        let mut conf = String::new();
        for file in ["core", "cosine", "nis", "inetorgperson"] {
            let _ = writeln!(
                conf,
                "include {}",
                schema.join(format!("{file}.schema")).display()
            );
        }
        let _ = writeln!(conf, "include {}", self.path("kopa-test.schema").display());
        if let Some(modules) = &self.module_dir {
            let _ = writeln!(conf, "modulepath {}", modules.display());
            // ppolicy defines pwdAccountLockedTime (its schema is built into the module).
            for module in ["back_mdb", "memberof", "ppolicy"] {
                let _ = writeln!(conf, "moduleload {module}");
            }
        }
        let _ = write!(
            conf,
            "loglevel none\npidfile {inst}/slapd.pid\nargsfile {inst}/slapd.args\n\
             TLSCACertificateFile {ca}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n",
            inst = instance.display(),
            ca = self.path("ca.pem").display(),
            cert = self.path("server.pem").display(),
            key = self.path("server.key").display(),
        );
        for m in Municipality::ALL {
            let suffix = m.suffix();
            let _ = write!(
                conf,
                "\ndatabase mdb\nsuffix \"{suffix}\"\nrootdn \"cn=admin,{suffix}\"\n\
                 rootpw {rootpw}\ndirectory {db}\nmaxsize 104857600\noverlay memberof\n\
                 access to attrs=userPassword\n  by anonymous auth\n  by * none\n\
                 access to *\n  by dn.exact=\"{svc}\" read\n  by self read\n  by * none\n",
                rootpw = ssha("admin-Kopa-1"),
                db = instance.join(m.id()).display(),
                svc = m.service_dn(),
            );
        }
        conf
    }
}

fn find_tool(name: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    from_path
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/libexec"].map(|d| Path::new(d).join(name)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: the LDAP tests need OpenLDAP's slapd and ldap-utils \
                 (`scripts/install-deps.sh test`, or apt-get install slapd ldap-utils)"
            )
        })
}

/// A test CA and a server certificate for 127.0.0.1 and localhost (rustls refuses a
/// self-signed leaf; OpenLDAP's GnuTLS matches IP addresses only against IP SANs).
fn write_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Kopa test directory CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();

    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// `{SSHA}` of a password, as slappasswd would write it.
fn ssha(password: &str) -> String {
    let salt: [u8; 8] =
        std::array::from_fn(|i| u8::try_from((i * 37 + password.len()) % 251).unwrap_or_default());
    let mut input = password.as_bytes().to_vec();
    input.extend_from_slice(&salt);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let mut raw = digest.as_ref().to_vec();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// One LDIF line; values that are not plain ASCII (Latvian letters) are base64.
fn ldif_line(out: &mut String, attribute: &str, value: &str) {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        let _ = writeln!(out, "{attribute}: {value}");
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        let _ = writeln!(out, "{attribute}:: {encoded}");
    }
}

fn entry(out: &mut String, dn: &str, attributes: &[(&str, String)]) {
    ldif_line(out, "dn", dn);
    for (attribute, value) in attributes {
        ldif_line(out, attribute, value);
    }
    out.push('\n');
}

/// The LDIF of one municipality. `memberOf` is written out: slapadd runs no overlays.
fn ldif(m: Municipality) -> String {
    let suffix = m.suffix();
    let group_dn = |cn: &str| format!("cn={cn},ou=groups,{suffix}");
    let mut out = String::new();
    entry(
        &mut out,
        &suffix,
        &[
            ("objectClass", "dcObject".into()),
            ("objectClass", "organization".into()),
            ("o", m.display_name().into()),
            ("dc", m.id().into()),
        ],
    );
    for ou in ["people", "groups", "system"] {
        entry(
            &mut out,
            &format!("ou={ou},{suffix}"),
            &[
                ("objectClass", "organizationalUnit".into()),
                ("ou", ou.into()),
            ],
        );
    }
    entry(
        &mut out,
        &m.service_dn(),
        &[
            ("objectClass", "applicationProcess".into()),
            ("objectClass", "simpleSecurityObject".into()),
            ("cn", "kopa-svc".into()),
            ("userPassword", ssha(m.service_password())),
        ],
    );
    let users: Vec<&TestUser> = USERS.iter().filter(|u| u.municipality == m).collect();
    for u in &users {
        let mut attrs: Vec<(&str, String)> = vec![
            ("objectClass", "inetOrgPerson".into()),
            ("objectClass", "kopaTestAccount".into()),
            ("uid", u.uid.into()),
            ("cn", u.cn()),
            ("givenName", u.given_name.into()),
            ("sn", u.surname.into()),
            ("mail", u.mail()),
            ("userPassword", ssha(u.password)),
        ];
        attrs.extend(u.extra.iter().map(|(a, v)| (*a, (*v).to_owned())));
        attrs.extend(u.groups.iter().map(|g| ("memberOf", group_dn(g))));
        entry(&mut out, &u.dn(), &attrs);
    }
    let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for u in &users {
        for g in u.groups {
            members.entry(g).or_default().push(u.dn());
        }
    }
    for (cn, _) in m.groups() {
        let mut attrs: Vec<(&str, String)> =
            vec![("objectClass", "groupOfNames".into()), ("cn", (*cn).into())];
        // groupOfNames needs a member; an empty group gets the service account.
        let list = members
            .get(cn)
            .cloned()
            .unwrap_or_else(|| vec![m.service_dn()]);
        attrs.extend(list.into_iter().map(|dn| ("member", dn)));
        entry(&mut out, &group_dn(cn), &attrs);
    }
    out
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running slapd serving both test municipalities. Killed when dropped.
#[derive(Debug)]
pub struct Slapd {
    fixture: Arc<Fixture>,
    instance: PathBuf,
    ldap_port: u16,
    ldaps_port: u16,
    child: Option<Child>,
}

impl Slapd {
    /// Starts a slapd with fresh certificates and data; ready when this returns.
    pub fn start() -> Self {
        Self::start_with(Arc::new(Fixture::create()))
    }

    /// Starts another slapd with the same CA and the same data on its own ports.
    pub fn replica(&self) -> Self {
        Self::start_with(self.fixture.clone())
    }

    fn start_with(fixture: Arc<Fixture>) -> Self {
        let instance = tempfile::Builder::new()
            .prefix("slapd-")
            .tempdir_in(fixture.dir.path())
            .unwrap()
            .keep();
        let conf = instance.join("slapd.conf");
        std::fs::write(&conf, fixture.conf(&instance)).unwrap();
        for m in Municipality::ALL {
            std::fs::create_dir(instance.join(m.id())).unwrap();
        }
        for m in Municipality::ALL {
            let out = Command::new(&fixture.slapadd)
                .arg("-q")
                .arg("-f")
                .arg(&conf)
                .args(["-b", &m.suffix(), "-l"])
                .arg(fixture.path(&format!("{}.ldif", m.id())))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "slapadd {} failed: {}",
                m.suffix(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A port taken between choosing and binding makes slapd exit; choose again.
        for _ in 0..5 {
            let mut slapd = Self {
                fixture: fixture.clone(),
                instance: instance.clone(),
                ldap_port: free_port(),
                ldaps_port: free_port(),
                child: None,
            };
            if slapd.spawn() {
                return slapd;
            }
        }
        panic!("slapd did not start; log:\n{}", read_log(&instance));
    }

    /// Starts the process on this instance's ports; false if it exited at once.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.instance.join("slapd.log")).unwrap();
        let urls = format!("{} {}", self.ldap_url(), self.ldaps_url());
        let child = Command::new(&self.fixture.slapd)
            .arg("-f")
            .arg(self.instance.join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.ldap_port) && up(self.ldaps_port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("slapd did not answer within 15 s; log:\n{}", self.log());
    }

    /// The process id of the running slapd, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The PEM file of the test CA.
    pub fn ca_file(&self) -> PathBuf {
        self.fixture.path("ca.pem")
    }

    /// What slapd wrote to stderr.
    pub fn log(&self) -> String {
        read_log(&self.instance)
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as in a crash; the data stays for [`Slapd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.kill();
        // The ports were ours a moment ago; retry briefly if the kernel still holds one.
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("slapd did not restart; log:\n{}", self.log());
    }

    /// A `[[directory]]` entry for `m` with these `urls`, trusting the test CA,
    /// mapping the groups to roles (Ventspils by group name or DN via `memberOf`,
    /// Talsi by group search).
    pub fn directory(&self, m: Municipality, urls: Vec<String>) -> DirectoryConfig {
        let suffix = m.suffix();
        let mut d = DirectoryConfig::ldap(m.id(), m.id(), m.display_name());
        d.domains = vec![m.domain()];
        d.urls = urls;
        d.ca_file = Some(self.ca_file());
        d.bind_dn = Some(m.service_dn());
        d.bind_password_file = Some(self.fixture.path(&format!("{}-svc.secret", m.id())));
        d.user_base = Some(format!("ou=people,{suffix}"));
        for (i, (cn, roles)) in m.groups().iter().enumerate() {
            if roles.is_empty() {
                continue;
            }
            // Alternate keys: lowercase names, and DNs in another case and spacing.
            let key = if i % 2 == 0 {
                cn.to_lowercase()
            } else {
                format!("CN={cn}, OU=groups, {}", suffix.to_uppercase())
            };
            d.role_map
                .insert(key, roles.iter().map(|r| (*r).to_owned()).collect());
        }
        if m == Municipality::Talsi {
            d.group_lookup = GroupLookup::GroupSearch;
            d.group_base = Some(format!("ou=groups,{suffix}"));
        }
        d
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_log(instance: &Path) -> String {
    std::fs::read_to_string(instance.join("slapd.log")).unwrap_or_default()
}

/// What [`raw_search_bind_rate`] measured.
#[derive(Debug, Clone, Copy)]
pub struct BenchRate {
    /// Completed search+bind logins.
    pub logins: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl BenchRate {
    /// Logins per second.
    pub fn per_sec(&self) -> f64 {
        self.logins as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// The raw rate of a plain ldap3 client: `pool` workers, each with one connection
/// bound as Ventspils' service account (search) and one for user binds, logging the
/// enabled Ventspils users in turn for `duration` against `url` (TCP_NODELAY, TLS
/// with the test CA). Each search asks for `attributes`: the list a Kopa directory
/// requests, so that both do the same directory work. This is the ceiling an
/// LDAP-backed Kopa login is measured against; not a test. Connecting is not timed.
pub async fn raw_search_bind_rate(
    slapd: &Slapd,
    url: &str,
    pool: usize,
    attributes: &[String],
    duration: Duration,
) -> BenchRate {
    RawPool::connect(slapd, url, pool, attributes)
        .await
        .run(duration)
        .await
}

/// The connections of [`raw_search_bind_rate`], kept open so that a benchmark can measure
/// in several slices, alternating with what it compares against.
#[derive(Debug)]
pub struct RawPool {
    /// Per worker: the service-bound search connection and the user-bind connection.
    workers: Vec<(ldap3::Ldap, ldap3::Ldap)>,
    users: Vec<&'static TestUser>,
    attributes: Vec<String>,
}

impl RawPool {
    /// Opens `pool` pairs of connections to `url`, the search ones bound as Ventspils'
    /// service account.
    pub async fn connect(slapd: &Slapd, url: &str, pool: usize, attributes: &[String]) -> Self {
        let tls = client_tls(&slapd.ca_file());
        let m = Municipality::Ventspils;
        let mut workers = Vec::new();
        for _ in 0..pool.max(1) {
            let mut search = connect(url, &tls).await;
            search
                .simple_bind(&m.service_dn(), m.service_password())
                .await
                .unwrap()
                .success()
                .unwrap();
            workers.push((search, connect(url, &tls).await));
        }
        let users = USERS
            .iter()
            .filter(|u| u.municipality == m && u.extra.iter().all(|(a, _)| *a == "employeeNumber"))
            .collect();
        Self {
            workers,
            users,
            attributes: attributes.to_vec(),
        }
    }

    /// Search+bind logins by every worker for `duration`.
    pub async fn run(&self, duration: Duration) -> BenchRate {
        let start = Instant::now();
        let deadline = start + duration;
        let base = format!("ou=people,{}", Municipality::Ventspils.suffix());
        let mut tasks = Vec::new();
        for (worker, (search, bind)) in self.workers.iter().enumerate() {
            let (mut search, mut bind) = (search.clone(), bind.clone());
            let (users, attributes, base) =
                (self.users.clone(), self.attributes.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    let u = users[(worker + usize::try_from(done).unwrap_or(0)) % users.len()];
                    let filter = format!(
                        "(&(objectClass=inetOrgPerson)(uid={}))",
                        ldap3::ldap_escape(u.uid)
                    );
                    let (entries, _) = search
                        .search(&base, ldap3::Scope::Subtree, &filter, &attributes)
                        .await
                        .unwrap()
                        .success()
                        .unwrap();
                    assert_eq!(entries.len(), 1);
                    let dn = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap()).dn;
                    bind.simple_bind(&dn, u.password)
                        .await
                        .unwrap()
                        .success()
                        .unwrap();
                    done += 1;
                }
                done
            }));
        }
        let mut logins = 0;
        for task in tasks {
            logins += task.await.unwrap();
        }
        BenchRate {
            logins,
            elapsed: start.elapsed(),
        }
    }
}

fn client_tls(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An ldap3 connection the way STACK.md says: own socket with TCP_NODELAY, the CA via
/// `set_config`, StartTLS for `ldap://`.
async fn connect(url: &str, tls: &Arc<rustls::ClientConfig>) -> ldap3::Ldap {
    let addr = url
        .split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let settings = ldap3::LdapConnSettings::new()
        .set_std_stream(ldap3::StdStream::Tcp(tcp.into_std().unwrap()))
        .set_config(tls.clone())
        .set_starttls(url.starts_with("ldap://"));
    let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, url)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.drive().await;
    });
    ldap
}
