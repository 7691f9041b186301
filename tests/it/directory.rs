//! Federated directories against real OpenLDAP: search-then-bind over StartTLS and
//! LDAPS, attributes and roles of users with Latvian names, refusals (wrong password,
//! unknown, disabled, locked, injection, empty password, wrong domain), failover
//! between two slapds and recovery, and what an outage looks like.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kopa_config::{DirectoryConfig, Secret};
use kopa_core::{Role, SystemClock};
use kopa_idp::directory::{AuthFailure, Directories, Directory, LdapDirectory, ResolveError};
use kopa_idp::{LocalAccounts, NewAccount};
use kopa_tests::slapd::{Municipality, Slapd, raw_search_bind_rate, user};

fn pw(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

/// Validates the entry as `kopa check-config` would, then builds the directory.
fn ldap(config: &DirectoryConfig) -> LdapDirectory {
    let problems = valid(vec![config.clone()]);
    assert!(problems.is_empty(), "the test entry is valid: {problems:?}");
    LdapDirectory::from_config(config).unwrap()
}

fn valid(directories: Vec<DirectoryConfig>) -> Vec<kopa_config::Problem> {
    kopa_config::Config {
        directories,
        ..kopa_config::Config::default()
    }
    .validate()
}

async fn sign_in(
    d: &dyn Directory,
    uid: &str,
) -> Result<kopa_idp::directory::DirectoryUser, AuthFailure> {
    d.authenticate(uid, &pw(user(uid).password)).await
}

/// A loopback port with nothing listening.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("ldap://127.0.0.1:{port}")
}

#[tokio::test]
async fn starttls_sign_in_reads_attributes_and_maps_roles_by_member_of() {
    let slapd = Slapd::start();
    let d = ldap(&slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]));
    d.check().await.unwrap();

    let anna = sign_in(&d, "anna.berzina").await.unwrap();
    assert_eq!(anna.directory_id, "ventspils");
    assert_eq!(anna.tenant.as_str(), "ventspils");
    assert_eq!(anna.login, "anna.berzina");
    assert_eq!(anna.display_name, "Anna Bērziņa");
    assert_eq!(anna.given_name.as_deref(), Some("Anna"));
    assert_eq!(anna.surname.as_deref(), Some("Bērziņa"));
    assert_eq!(anna.mail.as_deref(), Some("anna.berzina@ventspils.lv"));
    assert_eq!(anna.employee_id.as_deref(), Some("V-0042"));
    assert_eq!(
        anna.dn.as_deref(),
        Some("uid=anna.berzina,ou=people,dc=ventspils,dc=lv")
    );
    assert_eq!(anna.groups, ["Speciālisti", "Sports"]);
    assert_eq!(anna.roles, [Role::Specialist]);
    assert_eq!(anna.server.as_deref(), Some(slapd.ldap_url().as_str()));
    // entryUUID, not the DN: stable across renames.
    assert_eq!(anna.subject.len(), 36, "{}", anna.subject);
    assert_eq!(anna.subject.matches('-').count(), 4);

    let janis = sign_in(&d, "janis.kalnins").await.unwrap();
    assert_eq!(janis.display_name, "Jānis Kalniņš");
    assert_eq!(
        janis.roles,
        [Role::Specialist, Role::Supervisor, Role::TenantAdmin],
        "by name, by DN in another case, by name"
    );
    let zanis = sign_in(&d, "zanis.cakste").await.unwrap();
    assert_eq!(zanis.display_name, "Žanis Čakste");
    assert_eq!(zanis.roles, [Role::SecurityOfficer, Role::Auditor]);
    let liga = sign_in(&d, "liga.udre").await.unwrap();
    assert_eq!(
        (liga.display_name.as_str(), liga.roles.len()),
        ("Līga Ūdre", 0)
    );
    assert_ne!(anna.subject, janis.subject);
}

#[tokio::test]
async fn ldaps_sign_in_with_group_search() {
    let slapd = Slapd::start();
    let d = ldap(&slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]));
    let edgars = sign_in(&d, "edgars.liepins").await.unwrap();
    assert_eq!(edgars.display_name, "Edgars Liepiņš");
    assert_eq!(edgars.groups, ["Klientu centrs", "Vadība"]);
    assert_eq!(
        edgars.roles,
        [Role::Specialist, Role::Supervisor, Role::ServiceOwner]
    );
    assert_eq!(edgars.server.as_deref(), Some(slapd.ldaps_url().as_str()));
    let alona = sign_in(&d, "alona.klavina").await.unwrap();
    assert_eq!(alona.display_name, "Aļona Kļaviņa");
    assert_eq!(alona.roles, [Role::TenantAdmin], "mapped by DN");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_told_apart() {
    let slapd = Slapd::start();
    let d = ldap(&slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]));
    for _ in 0..3 {
        assert_eq!(
            d.authenticate("anna.berzina", &pw("Dzintara-Jura-7")).await,
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            d.authenticate("anna.berzina", &pw("dzintara-jūra-7")).await,
            Err(AuthFailure::WrongPassword)
        );
        assert_eq!(
            d.authenticate("nav.tada", &pw("Dzintara-Jūra-7")).await,
            Err(AuthFailure::UnknownUser)
        );
    }
    // The failures left the pooled connections usable.
    assert!(sign_in(&d, "anna.berzina").await.is_ok());
    // The service account is not a user.
    assert_eq!(
        d.authenticate("kopa-svc", &pw(Municipality::Ventspils.service_password()))
            .await,
        Err(AuthFailure::UnknownUser)
    );
}

#[tokio::test]
async fn a_login_that_matches_several_entries_is_refused() {
    let slapd = Slapd::start();
    for (filter, matches) in [
        (
            "(&(objectClass=inetOrgPerson)(|(uid={login})(uid=janis.kalnins)))",
            2,
        ),
        (
            "(&(objectClass=inetOrgPerson)(|(uid={login})\
             (memberOf=cn=Speciālisti,ou=groups,dc=ventspils,dc=lv)))",
            4,
        ),
    ] {
        let mut config = slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]);
        config.user_filter = filter.to_owned();
        let d = ldap(&config);
        assert_eq!(
            sign_in(&d, "anna.berzina").await,
            Err(AuthFailure::UnknownUser),
            "{matches} entries match"
        );
        assert!(
            sign_in(&d, "liga.udre").await.is_err(),
            "liga and janis match"
        );
    }
}

#[tokio::test]
async fn disabled_and_locked_accounts_are_refused_even_with_the_right_password() {
    let slapd = Slapd::start();
    let ventspils = ldap(&slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]));
    let talsi = ldap(&slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]));
    // nsAccountLock=TRUE (389 DS style)
    assert_eq!(
        sign_in(&ventspils, "nina.sumane").await,
        Err(AuthFailure::Disabled)
    );
    // pwdAccountLockedTime (OpenLDAP password policy)
    assert_eq!(
        sign_in(&ventspils, "girts.kenins").await,
        Err(AuthFailure::Locked)
    );
    // userAccountControl with ACCOUNTDISABLE (Active Directory style)
    assert_eq!(
        sign_in(&talsi, "ilze.smite").await,
        Err(AuthFailure::Disabled)
    );
    // The same answers with a wrong password: the state is read before any bind.
    assert_eq!(
        ventspils.authenticate("girts.kenins", &pw("x")).await,
        Err(AuthFailure::Locked)
    );
}

#[tokio::test]
async fn injection_attempts_never_authenticate() {
    let slapd = Slapd::start();
    let d = ldap(&slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]));
    let anna = pw(user("anna.berzina").password);
    // Unescaped, several of these would find exactly anna.berzina and bind as her.
    for login in [
        "*",
        "anna*",
        "anna.berz*",
        "*berzina",
        "*)(uid=*",
        "anna.berzina)(uid=*",
        "*)(|(uid=*",
        "anna.berzina)(|(objectClass=*",
        "anna.berzina)(&",
        "\\2a",
        "anna.berzina\\00",
        "(uid=anna.berzina)",
        "uid=anna.berzina,ou=people,dc=ventspils,dc=lv",
    ] {
        assert_eq!(
            d.authenticate(login, &anna).await,
            Err(AuthFailure::UnknownUser),
            "{login:?}"
        );
    }
    let overlong = format!("anna.berzina{}", "*".repeat(300));
    for login in [
        "anna.berzina\0",
        "\0",
        "anna\0.berzina",
        "anna.berzina\n",
        overlong.as_str(),
        "",
    ] {
        assert_eq!(
            d.authenticate(login, &anna).await,
            Err(AuthFailure::InvalidInput),
            "{login:?}"
        );
    }
    // The directory still works for the real name.
    assert!(sign_in(&d, "anna.berzina").await.is_ok());
}

#[tokio::test]
async fn the_domain_picks_the_directory_and_a_wrong_one_gets_nobody_in() {
    let slapd = Slapd::start();
    let data = tempfile::tempdir().unwrap();
    let store = kopa_store::Store::open(data.path(), &kopa_idp::SCHEMA).unwrap();
    let accounts = LocalAccounts::new(store, Arc::new(SystemClock));
    accounts
        .create(NewAccount {
            username: "kopa-admin".into(),
            display_name: "Kopa administrators".into(),
            tenant: None,
            roles: vec![Role::PlatformAdmin],
            password: Some(pw("Salauzt-Stiklu-1")),
        })
        .await
        .unwrap();
    let mut local = DirectoryConfig::local("kopa-local", "ventspils", "Kopa lokālie konti");
    local.domains = vec!["kopa.local".into()];
    let configs = vec![
        slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]),
        slapd.directory(Municipality::Talsi, vec![slapd.ldaps_url()]),
        local,
    ];
    assert_eq!(valid(configs.clone()), []);
    let dirs = Directories::from_config(&configs, Some(&accounts)).unwrap();
    let ids: Vec<String> = dirs.list().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["ventspils", "talsi", "kopa-local"]);
    assert_eq!(dirs.list()[1].display_name_lv, "Talsu novada pašvaldība");

    let anna = user("anna.berzina");
    let (d, login) = dirs.resolve("anna.berzina@Ventspils.LV").unwrap();
    assert_eq!(d.id(), "ventspils");
    assert!(d.authenticate(&login, &pw(anna.password)).await.is_ok());

    // The right password under the other municipality's domain finds nobody there.
    let (d, login) = dirs.resolve("anna.berzina@talsi.lv").unwrap();
    assert_eq!(d.id(), "talsi");
    assert_eq!(
        d.authenticate(&login, &pw(anna.password)).await,
        Err(AuthFailure::UnknownUser)
    );
    assert_eq!(
        dirs.resolve("anna.berzina@riga.lv").err(),
        Some(ResolveError::UnknownDomain)
    );
    assert_eq!(
        dirs.resolve("anna.berzina").err(),
        Some(ResolveError::NoDomain)
    );
    let (d, login) = dirs.resolve("*@ventspils.lv").unwrap();
    assert_eq!(
        d.authenticate(&login, &pw(anna.password)).await,
        Err(AuthFailure::UnknownUser)
    );

    let (d, login) = dirs.resolve("kopa-admin@kopa.local").unwrap();
    let admin = d
        .authenticate(&login, &pw("Salauzt-Stiklu-1"))
        .await
        .unwrap();
    assert_eq!(admin.roles, [Role::PlatformAdmin]);
    assert_eq!(admin.server, None);
    assert_eq!(
        d.authenticate(&login, &pw("nepareiza")).await,
        Err(AuthFailure::WrongPassword)
    );
    for d in dirs.iter() {
        d.check().await.unwrap();
    }
}

#[tokio::test]
async fn empty_password_is_refused_before_any_network() {
    // Nothing listens: any network attempt would answer Unavailable.
    let slapd = Slapd::start();
    let dead = ldap(&slapd.directory(Municipality::Ventspils, vec![dead_url()]));
    let live = ldap(&slapd.directory(Municipality::Ventspils, vec![slapd.ldap_url()]));
    for d in [&dead, &live] {
        assert_eq!(
            d.authenticate("anna.berzina", &pw("")).await,
            Err(AuthFailure::InvalidInput)
        );
        assert_eq!(
            d.authenticate("anna.berzina", &pw("Dzintara\0Jūra")).await,
            Err(AuthFailure::InvalidInput)
        );
    }
    assert_eq!(
        sign_in(&dead, "anna.berzina").await,
        Err(AuthFailure::Unavailable)
    );
}

#[tokio::test]
async fn failover_to_the_second_server_and_back_after_retry_after() {
    let mut first = Slapd::start();
    let mut second = first.replica();
    let mut config = first.directory(
        Municipality::Ventspils,
        vec![first.ldap_url(), second.ldap_url()],
    );
    config.retry_after_secs = 2;
    let connect_timeout = Duration::from_secs(config.connect_timeout_secs);
    let d = ldap(&config);
    let served_by = |u: Result<kopa_idp::directory::DirectoryUser, AuthFailure>| {
        u.unwrap_or_else(|e| panic!("sign-in failed: {e}"))
            .server
            .unwrap()
    };

    assert_eq!(
        served_by(sign_in(&d, "anna.berzina").await),
        first.ldap_url()
    );
    assert_eq!(
        served_by(sign_in(&d, "janis.kalnins").await),
        first.ldap_url()
    );

    // The first server dies in the middle of the test, with pooled connections to it.
    first.kill();
    let started = Instant::now();
    assert_eq!(
        served_by(sign_in(&d, "anna.berzina").await),
        second.ldap_url()
    );
    assert!(
        started.elapsed() < connect_timeout,
        "{:?}",
        started.elapsed()
    );
    let marked_down = Instant::now();

    // Back, but in back-off: the second keeps serving until retry_after has passed.
    first.restart();
    if marked_down.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            served_by(sign_in(&d, "janis.kalnins").await),
            second.ldap_url()
        );
    }
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(marked_down.elapsed())).await;
    assert_eq!(
        served_by(sign_in(&d, "anna.berzina").await),
        first.ldap_url(),
        "the first server is preferred again after retry_after"
    );

    // Proof that it really serves: without the second server sign-ins go on.
    second.kill();
    assert_eq!(
        served_by(sign_in(&d, "janis.kalnins").await),
        first.ldap_url()
    );
    assert_eq!(
        sign_in(&d, "anna.berzina").await.unwrap().roles,
        [Role::Specialist]
    );

    // Everything down: "unavailable", never "wrong password", and quickly.
    first.kill();
    for _ in 0..2 {
        let started = Instant::now();
        assert_eq!(
            sign_in(&d, "anna.berzina").await,
            Err(AuthFailure::Unavailable)
        );
        assert!(
            started.elapsed() < connect_timeout,
            "{:?}",
            started.elapsed()
        );
    }
    assert!(d.check().await.is_err());
}

#[tokio::test]
async fn a_hung_server_is_skipped_after_the_connect_timeout() {
    let slapd = Slapd::start();
    // Accepts TCP connections (the kernel's backlog) but never says a word.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("ldap://{}", hung.local_addr().unwrap());
    let mut config = slapd.directory(Municipality::Ventspils, vec![hung_url, slapd.ldap_url()]);
    config.connect_timeout_secs = 1;
    let d = ldap(&config);

    let started = Instant::now();
    let anna = sign_in(&d, "anna.berzina").await.unwrap();
    let took = started.elapsed();
    assert_eq!(anna.server.as_deref(), Some(slapd.ldap_url().as_str()));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "{took:?}"
    );

    // In back-off now: the next sign-in does not wait for it.
    let started = Instant::now();
    assert!(sign_in(&d, "janis.kalnins").await.is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    drop(hung);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_not_trusted() {
    let slapd = Slapd::start();
    let stranger = Slapd::start();
    for url in [slapd.ldap_url(), slapd.ldaps_url()] {
        let mut config = slapd.directory(Municipality::Ventspils, vec![url.clone()]);
        config.ca_file = Some(stranger.ca_file());
        let d = ldap(&config);
        assert_eq!(
            sign_in(&d, "anna.berzina").await,
            Err(AuthFailure::Unavailable),
            "{url}"
        );
        let refusal = d.check().await.unwrap_err();
        assert!(refusal.reason.contains("certificate"), "{url}: {refusal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ins_share_a_small_pool() {
    let slapd = Slapd::start();
    let mut config = slapd.directory(Municipality::Ventspils, vec![slapd.ldaps_url()]);
    config.pool_size = 2;
    let d: Arc<dyn Directory> = Arc::new(ldap(&config));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let d = d.clone();
        tasks.spawn(async move {
            let (uid, password) = match i % 3 {
                0 => ("anna.berzina", user("anna.berzina").password),
                1 => ("janis.kalnins", user("janis.kalnins").password),
                _ => ("anna.berzina", "nepareiza-parole"),
            };
            (i, d.authenticate(uid, &pw(password)).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.unwrap();
        match i % 3 {
            2 => assert_eq!(outcome.err(), Some(AuthFailure::WrongPassword)),
            _ => assert!(outcome.is_ok(), "{i}: {outcome:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ldap3_baseline_helper_measures_logins() {
    let slapd = Slapd::start();
    let attributes = ["cn".to_owned(), "entryUUID".to_owned()];
    let rate = raw_search_bind_rate(
        &slapd,
        &slapd.ldap_url(),
        2,
        &attributes,
        Duration::from_millis(300),
    )
    .await;
    assert!(rate.logins > 0, "{rate:?}");
    assert!(rate.per_sec() > 0.0);
}
