//! `kopa demo seed`: a small, living portal for a newcomer — state and municipal
//! institutions, two customer service centres, a catalogue of real-sounding services,
//! three local staff accounts, clients and a few hundred cases spread over the last four
//! months in every state. Everything goes through the same checked paths as the API.
//! The names and codes are invented; the personal codes are of the post-2017 form
//! (`32…`), so none is anyone's real code.

use crate::services::Services;
use kopa_core::{FixedClock, Role, TenantId};
use kopa_idp::local::NewAccount;
use kopa_portal_server::case::{Channel, State};
use kopa_portal_server::catalogue::{Bilingual, Service};
use kopa_portal_server::client::{ClientKind, NewClient};
use kopa_portal_server::org::{Assignment, Centre, Institution, InstitutionKind};
use kopa_portal_server::work::{NewCase, Viewer, WorkError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the seed made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedReport {
    pub institutions: usize,
    pub centres: usize,
    pub services: usize,
    pub clients: usize,
    pub cases: usize,
    /// Demo accounts created now, with their generated passwords (shown once).
    pub accounts: Vec<(String, String)>,
}

const DAY: u64 = 86_400_000;
const HOUR: u64 = 3_600_000;

fn both(lv: &str, en: &str) -> Bilingual {
    Bilingual {
        lv: lv.into(),
        en: en.into(),
    }
}

/// Demo data: the same each time.
struct Rng(kopa_core::sample::Sample);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn pick<'a, T>(&mut self, list: &'a [T]) -> &'a T {
        // Every list here is a non-empty constant.
        let i = usize::try_from(self.below(list.len() as u64)).unwrap_or(0);
        &list[i.min(list.len().saturating_sub(1))]
    }
}

const INSTITUTIONS: [(&str, &str, &str, InstitutionKind); 5] = [
    (
        "vid",
        "Valsts ieņēmumu dienests",
        "State Revenue Service",
        InstitutionKind::State,
    ),
    (
        "pmlp",
        "Pilsonības un migrācijas lietu pārvalde",
        "Office of Citizenship and Migration Affairs",
        InstitutionKind::State,
    ),
    (
        "vsaa",
        "Valsts sociālās apdrošināšanas aģentūra",
        "State Social Insurance Agency",
        InstitutionKind::State,
    ),
    (
        "talsi",
        "Talsu novada pašvaldība",
        "Talsi Municipality",
        InstitutionKind::Municipal,
    ),
    (
        "ventspils",
        "Ventspils valstspilsētas pašvaldība",
        "Ventspils City Municipality",
        InstitutionKind::Municipal,
    ),
];

/// Code, owner, LV and EN names, channels, deadline in days.
type ServiceRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [Channel],
    Option<u32>,
);

const ALL: &[Channel] = &Channel::ALL;
const DESK: &[Channel] = &[Channel::InPerson, Channel::Email, Channel::EService];

const SERVICES: [ServiceRow; 10] = [
    (
        "VID-EDS",
        "vid",
        "Pieteikšanās VID Elektroniskās deklarēšanas sistēmā",
        "Registering for the SRS Electronic Declaration System",
        ALL,
        None,
    ),
    (
        "VID-GID",
        "vid",
        "Gada ienākumu deklarācijas iesniegšana",
        "Submitting the annual income declaration",
        DESK,
        Some(30),
    ),
    (
        "PMLP-DZV",
        "pmlp",
        "Dzīvesvietas deklarēšana",
        "Declaring a place of residence",
        DESK,
        Some(1),
    ),
    (
        "PMLP-PAS",
        "pmlp",
        "Personu apliecinoša dokumenta pieteikšana",
        "Applying for an identity document",
        &[Channel::InPerson],
        Some(10),
    ),
    (
        "VSAA-BKP",
        "vsaa",
        "Bērna kopšanas pabalsta pieprasīšana",
        "Claiming the childcare benefit",
        ALL,
        Some(10),
    ),
    (
        "VSAA-PEN",
        "vsaa",
        "Vecuma pensijas pieprasīšana",
        "Claiming the old-age pension",
        DESK,
        Some(10),
    ),
    (
        "TAL-SOC",
        "talsi",
        "Trūcīgas personas statusa noteikšana",
        "Determining needy person status",
        DESK,
        Some(30),
    ),
    (
        "TAL-NIN",
        "talsi",
        "Nekustamā īpašuma nodokļa atvieglojuma piešķiršana",
        "Granting a real estate tax relief",
        ALL,
        Some(30),
    ),
    (
        "VEN-BV",
        "ventspils",
        "Bērna reģistrācija pirmsskolas izglītības iestādes rindā",
        "Registering a child for a pre-school place",
        ALL,
        Some(30),
    ),
    (
        "VEN-PAR",
        "ventspils",
        "Iedzīvotāja stāvvietas atļaujas izsniegšana",
        "Issuing a resident's parking permit",
        DESK,
        Some(5),
    ),
];

const GIVEN: [&str; 12] = [
    "Jānis",
    "Anna",
    "Pēteris",
    "Līga",
    "Andris",
    "Ilze",
    "Mārtiņš",
    "Inese",
    "Kārlis",
    "Dace",
    "Edgars",
    "Žanna",
];
const FAMILY: [(&str, &str); 10] = [
    ("Bērziņš", "Bērziņa"),
    ("Kalniņš", "Kalniņa"),
    ("Ozols", "Ozola"),
    ("Jansons", "Jansone"),
    ("Liepiņš", "Liepiņa"),
    ("Krūmiņš", "Krūmiņa"),
    ("Zariņš", "Zariņa"),
    ("Vītols", "Vītola"),
    ("Ķeniņš", "Ķeniņa"),
    ("Šmits", "Šmite"),
];

/// Demo staff: username, display name, role, centre.
const STAFF: [(&str, &str, Role, &str); 3] = [
    ("anna", "Anna Bērziņa", Role::Specialist, "talsi-vpvkac"),
    ("ilze", "Ilze Kalniņa", Role::Supervisor, "talsi-vpvkac"),
    ("janis", "Jānis Ozols", Role::Specialist, "ventspils-vpvkac"),
];

/// The local directory's id: staff subjects are `local:<username>`.
const LOCAL_DIRECTORY: &str = "local";

fn err(e: WorkError) -> String {
    e.to_string()
}

/// Fills an empty portal with the demo; refuses when the demo institutions are there.
pub async fn seed(services: &Services, now: u64) -> Result<SeedReport, String> {
    let clock = Arc::new(FixedClock::at(now.saturating_sub(125 * DAY)));
    let work = services.portal.with_clock(clock.clone());
    let admin = Viewer {
        subject: "demo-seed".into(),
        roles: vec![Role::PlatformAdmin],
        ..Viewer::default()
    };
    let existing = work.institutions().await.map_err(err)?;
    if existing.iter().any(|i| i.id == "talsi") {
        return Err("The demo data is already there.".into());
    }
    let mut report = SeedReport::default();
    for (id, lv, en, kind) in INSTITUTIONS {
        let i = Institution {
            id: id.into(),
            name: both(lv, en),
            kind,
        };
        work.put_institution(&admin, i).await.map_err(err)?;
        report.institutions += 1;
    }
    let centres = [
        (
            "talsi-vpvkac",
            "Talsu VPVKAC",
            "Talsi one-stop centre",
            "talsi",
        ),
        (
            "ventspils-vpvkac",
            "Ventspils VPVKAC",
            "Ventspils one-stop centre",
            "ventspils",
        ),
    ];
    for (id, lv, en, runs) in centres {
        let c = Centre {
            id: id.into(),
            name: both(lv, en),
            institution: runs.into(),
            serves: vec![runs.into(), "vid".into(), "pmlp".into(), "vsaa".into()],
        };
        work.put_centre(&admin, c).await.map_err(err)?;
        report.centres += 1;
    }
    for (code, owner, lv, en, channels, deadline) in SERVICES {
        let s = Service {
            code: code.into(),
            name: both(lv, en),
            owner: owner.into(),
            channels: channels.to_vec(),
            deadline_days: deadline,
            required_documents: vec![both("Personu apliecinošs dokuments", "Identity document")],
            instructions: Some(both(
                "Pārbaudiet klienta identitāti un pilnvaru, ja klients rīkojas cita vārdā.",
                "Check the client's identity, and the mandate when they act for someone else.",
            )),
        };
        work.put_service(&admin, s).await.map_err(err)?;
        report.services += 1;
    }
    for (username, display, role, centre) in STAFF {
        let subject = format!("{LOCAL_DIRECTORY}:{username}");
        let a = Assignment {
            subject,
            centres: vec![centre.into()],
        };
        work.put_assignment(&admin, a).await.map_err(err)?;
        let new = NewAccount {
            username: username.into(),
            display_name: display.into(),
            tenant: None::<TenantId>,
            roles: vec![role],
            password: None,
        };
        match services.accounts.create(new).await {
            Ok((_, Some(pw))) => report
                .accounts
                .push((username.into(), pw.expose().to_owned())),
            Ok((_, None)) | Err(kopa_idp::IdpError::AccountExists(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    cases(&work, &clock, now, &mut report).await?;
    Ok(report)
}

/// Clients and cases over the last 120 days, each taken as far through its life as its
/// age allows.
async fn cases(
    work: &kopa_portal_server::work::CaseWork,
    clock: &FixedClock,
    now: u64,
    report: &mut SeedReport,
) -> Result<(), String> {
    let mut rng = Rng(kopa_core::sample::Sample::new(0x6b6f_7061_2026));
    let staff: Vec<Viewer> = STAFF
        .iter()
        .map(|(user, _, role, centre)| Viewer {
            subject: format!("{LOCAL_DIRECTORY}:{user}"),
            roles: vec![*role],
            centres: vec![(*centre).into()],
            institutions: vec![],
        })
        .collect();
    let start = now.saturating_sub(120 * DAY);
    let total = 240_u64;
    let mut clients: Vec<(u64, String)> = Vec::new();
    for n in 0..total {
        // Working hours, spread evenly over the period.
        let at = start + n * (120 * DAY / total) + 8 * HOUR + rng.below(8 * HOUR);
        clock.set(at);
        let who = rng.pick(&staff).clone();
        let centre = who.centres[0].clone();
        let (code, owner, _, _, channels, _) = *rng.pick(&SERVICES);
        if !["vid", "pmlp", "vsaa"].contains(&owner) && !centre.starts_with(owner) {
            continue;
        }
        let channel = *rng.pick(channels);
        let client = if rng.below(10) < 3 && clients.iter().any(|(_, c)| *c == centre) {
            clients
                .iter()
                .rev()
                .find(|(_, c)| *c == centre)
                .map(|(id, _)| *id)
        } else {
            let given = *rng.pick(&GIVEN);
            let (he, she) = *rng.pick(&FAMILY);
            let female = matches!(given, "Anna" | "Līga" | "Ilze" | "Inese" | "Dace" | "Žanna");
            let name = format!("{given} {}", if female { she } else { he });
            let digits = rng.below(1_000_000_000);
            let new = NewClient {
                kind: ClientKind::Natural,
                name,
                code: format!("32{:04}-{:05}", digits / 100_000, digits % 100_000),
                centre: centre.clone(),
            };
            match work.add_client(&who, new).await {
                Ok(c) => {
                    clients.push((c.id, centre.clone()));
                    report.clients += 1;
                    Some(c.id)
                }
                Err(WorkError::ClientExists(id)) => Some(id),
                Err(e) => return Err(err(e)),
            }
        };
        let new = NewCase {
            service: code.into(),
            centre,
            channel,
            client,
            client_code: None,
            request_started: (channel == Channel::InPerson).then(|| at - rng.below(40) * 60_000),
        };
        let case = work.register(&who, new).await.map_err(err)?;
        report.cases += 1;
        life(work, clock, &mut rng, &who, case.id, at, now).await?;
    }
    Ok(())
}

/// Takes a case through its states while its time is before `now`.
async fn life(
    work: &kopa_portal_server::work::CaseWork,
    clock: &FixedClock,
    rng: &mut Rng,
    who: &Viewer,
    id: u64,
    registered: u64,
    now: u64,
) -> Result<(), String> {
    let mut t = registered + rng.below(4 * HOUR);
    let mut path = vec![State::InProgress];
    match rng.below(20) {
        0 => path.push(State::Withdrawn),
        1 => path.push(State::Rejected),
        2..=5 => path.extend([
            State::WaitingForClient,
            State::InProgress,
            State::Decided,
            State::ResultDelivered,
        ]),
        6..=11 => path.extend([
            State::ForwardedToInstitution,
            State::Decided,
            State::ResultDelivered,
        ]),
        _ => path.extend([State::Decided, State::ResultDelivered]),
    }
    for to in path {
        if t >= now {
            break;
        }
        clock.set(t);
        let note = (to == State::WaitingForClient)
            .then(|| "Jāiesniedz izziņa no darba vietas.".to_owned());
        work.move_case(who, id, to, note).await.map_err(err)?;
        t += match to {
            State::InProgress => HOUR + rng.below(2 * DAY),
            State::ForwardedToInstitution | State::WaitingForClient => DAY + rng.below(12 * DAY),
            _ => HOUR + rng.below(3 * DAY),
        };
    }
    Ok(())
}
