//! Case work over `portal.redb`: the catalogue, and cases registered, moved and read by
//! staff. Who may see what is decided here, on every read and write, from the caller's
//! [`Viewer`] — never by the UI: a specialist sees the cases of their centres, a service
//! owner those of their institution's services, a platform administrator all. A case the
//! caller may not see is refused exactly like one that does not exist.

use crate::case::{self, Channel, Stages, State};
use crate::catalogue::{self, Service};
use kopa_core::{Clock, Role};
use kopa_store::{Store, StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Services by code.
pub(crate) const SERVICES: Table<String, Service> = Table::new("services");
/// Cases by number.
pub(crate) const CASES: Table<u64, CaseRecord> = Table::new("cases");
/// Counters (`"case"`: the last case number given).
pub(crate) const COUNTERS: Table<String, u64> = Table::new("counters");

/// Migration 1: the catalogue and cases.
pub(crate) fn create_tables(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&SERVICES)?;
    txn.open_table(&CASES)?;
    txn.open_table(&COUNTERS)
}

/// Who is asking: their roles, the customer service centres they work at and the
/// institutions whose services they own (the API builds it from the SSO session).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    pub subject: String,
    pub roles: Vec<Role>,
    pub centres: Vec<String>,
    pub institutions: Vec<String>,
}

impl Viewer {
    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn front_office(&self) -> bool {
        self.has(Role::Specialist) || self.has(Role::Supervisor)
    }

    /// Whether this caller may see `case`.
    pub fn sees(&self, case: &CaseRecord) -> bool {
        self.has(Role::PlatformAdmin)
            || (self.front_office() && self.centres.contains(&case.centre))
            || (self.has(Role::ServiceOwner) && self.institutions.contains(&case.owner))
    }

    /// Whether this caller may change the catalogue entry of `owner`'s service.
    fn edits_catalogue_of(&self, owner: &str) -> bool {
        self.has(Role::PlatformAdmin)
            || (self.has(Role::TenantAdmin) && self.institutions.iter().any(|i| i == owner))
    }
}

/// One change in a case's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: u64,
    pub by: String,
    pub from: Option<State>,
    pub to: State,
    pub note: Option<String>,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub id: u64,
    pub service: String,
    /// The institution that owns the service (copied at registration).
    pub owner: String,
    pub centre: String,
    pub channel: Channel,
    pub assignee: Option<String>,
    pub state: State,
    pub stages: Stages,
    pub history: Vec<HistoryEntry>,
}

/// A request to register a case.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub service: String,
    pub centre: String,
    pub channel: Channel,
    /// When the client began to apply, if before registration.
    #[serde(default)]
    pub request_started: Option<u64>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// Not allowed, or no such record: the two are not told apart.
    #[error("not allowed, or no such record")]
    Refused,
    /// The request itself is wrong (the message says how).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest note on a move, in characters.
pub const NOTE_MAX: usize = 4000;

/// Case work on the portal database.
#[derive(Debug, Clone)]
pub struct CaseWork {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl CaseWork {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Adds or replaces a catalogue entry (a tenant administrator of the owning
    /// institution, or a platform administrator).
    pub async fn put_service(&self, viewer: &Viewer, service: Service) -> Result<(), WorkError> {
        service
            .validate()
            .map_err(|e: catalogue::Invalid| WorkError::Invalid(e.to_string()))?;
        let viewer = viewer.clone();
        self.store
            .write(move |txn| {
                let previous = txn.get(&SERVICES, &service.code)?;
                // Neither the new owner nor, when it changes hands, the old one may be
                // someone else's.
                let allowed = viewer.edits_catalogue_of(&service.owner)
                    && previous
                        .as_ref()
                        .is_none_or(|p| viewer.edits_catalogue_of(&p.owner));
                if !allowed {
                    return Ok(Err(WorkError::Refused));
                }
                txn.insert(&SERVICES, &service.code.clone(), &service)?;
                Ok(Ok(()))
            })
            .await?
    }

    /// The catalogue, in code order (every member of staff may read it).
    pub async fn services(&self) -> Result<Vec<Service>, WorkError> {
        let list = self
            .store
            .read(|txn| Ok(txn.iter(&SERVICES)?.into_iter().map(|(_, s)| s).collect()))
            .await?;
        Ok(list)
    }

    /// Registers a case at one of the caller's centres; durable before it returns.
    pub async fn register(&self, viewer: &Viewer, new: NewCase) -> Result<CaseRecord, WorkError> {
        if !(viewer.front_office() && viewer.centres.contains(&new.centre)) {
            return Err(WorkError::Refused);
        }
        let now = self.clock.now_millis();
        if new.request_started.is_some_and(|s| s > now) {
            return Err(WorkError::Invalid(
                "request_started: must not be in the future".into(),
            ));
        }
        let by = viewer.subject.clone();
        self.store
            .write(move |txn| {
                let Some(service) = txn.get(&SERVICES, &new.service)? else {
                    return Ok(Err(WorkError::Invalid(format!(
                        "service: no service {} in the catalogue",
                        new.service
                    ))));
                };
                if !service.offers(new.channel) {
                    return Ok(Err(WorkError::Invalid(
                        "channel: the service is not offered through this channel".into(),
                    )));
                }
                let id = txn.get(&COUNTERS, &"case".to_owned())?.unwrap_or(0) + 1;
                txn.insert(&COUNTERS, &"case".to_owned(), &id)?;
                let record = CaseRecord {
                    id,
                    service: service.code,
                    owner: service.owner,
                    centre: new.centre,
                    channel: new.channel,
                    assignee: Some(by.clone()),
                    state: State::Registered,
                    stages: Stages {
                        request_started: new.request_started,
                        registered: now,
                        decided: None,
                        delivered: None,
                    },
                    history: vec![HistoryEntry {
                        at: now,
                        by,
                        from: None,
                        to: State::Registered,
                        note: None,
                    }],
                };
                txn.insert(&CASES, &id, &record)?;
                Ok(Ok(record))
            })
            .await?
    }

    /// Case `id`, if the caller may see it.
    pub async fn get(&self, viewer: &Viewer, id: u64) -> Result<CaseRecord, WorkError> {
        let found = self.store.read(move |txn| txn.get(&CASES, &id)).await?;
        found.filter(|c| viewer.sees(c)).ok_or(WorkError::Refused)
    }

    /// Moves case `id` to `to`, with an optional note, if the caller may; the stage
    /// times follow (a decision or refusal ends execution, delivery ends the case).
    pub async fn move_case(
        &self,
        viewer: &Viewer,
        id: u64,
        to: State,
        note: Option<String>,
    ) -> Result<CaseRecord, WorkError> {
        if note.as_ref().is_some_and(|n| n.chars().count() > NOTE_MAX) {
            return Err(WorkError::Invalid(format!(
                "note: at most {NOTE_MAX} characters"
            )));
        }
        let now = self.clock.now_millis();
        let viewer = viewer.clone();
        self.store
            .write(move |txn| {
                let Some(mut case) = txn.get(&CASES, &id)?.filter(|c| viewer.sees(c)) else {
                    return Ok(Err(WorkError::Refused));
                };
                if let Err(e) = case::check_move(case.state, to, &viewer.roles) {
                    return Ok(Err(match e {
                        case::MoveError::Forbidden { .. } => WorkError::Refused,
                        other => WorkError::Invalid(other.to_string()),
                    }));
                }
                match to {
                    State::Decided | State::Rejected | State::Withdrawn => {
                        case.stages.decided.get_or_insert(now);
                    }
                    State::ResultDelivered => {
                        case.stages.delivered = Some(now);
                    }
                    _ => {}
                }
                case.history.push(HistoryEntry {
                    at: now,
                    by: viewer.subject.clone(),
                    from: Some(case.state),
                    to,
                    note,
                });
                case.state = to;
                txn.insert(&CASES, &id, &case)?;
                Ok(Ok(case))
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Bilingual;
    use kopa_core::FixedClock;

    const DAY: u64 = 86_400_000;

    fn viewer(subject: &str, roles: &[Role], centres: &[&str], institutions: &[&str]) -> Viewer {
        Viewer {
            subject: subject.into(),
            roles: roles.to_vec(),
            centres: centres.iter().map(|s| (*s).to_owned()).collect(),
            institutions: institutions.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn service(code: &str, owner: &str) -> Service {
        Service {
            code: code.into(),
            name: Bilingual {
                lv: "Pakalpojums".into(),
                en: "Service".into(),
            },
            owner: owner.into(),
            channels: vec![Channel::InPerson, Channel::Email],
            deadline_days: Some(10),
            required_documents: vec![],
            instructions: None,
        }
    }

    fn open(dir: &std::path::Path, clock: Arc<FixedClock>) -> CaseWork {
        let store = Store::open(dir, &crate::SCHEMA).unwrap();
        CaseWork::new(store, clock)
    }

    #[tokio::test]
    async fn cases_are_seen_and_moved_only_by_those_they_concern() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(1_800_000_000_000));
        let work = open(dir.path(), clock.clone());
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        let talsi_admin = viewer("ta", &[Role::TenantAdmin], &[], &["talsi"]);
        let anna = viewer("anna", &[Role::Specialist], &["talsi-kac"], &[]);
        let janis = viewer("janis", &[Role::Specialist], &["ventspils-kac"], &[]);
        let owner = viewer("owner", &[Role::ServiceOwner], &[], &["talsi"]);
        let other_owner = viewer("vo", &[Role::ServiceOwner], &[], &["ventspils"]);

        // The catalogue: a tenant administrator only for their institution.
        work.put_service(&talsi_admin, service("T-1", "talsi"))
            .await
            .unwrap();
        assert!(matches!(
            work.put_service(&talsi_admin, service("V-1", "ventspils"))
                .await,
            Err(WorkError::Refused)
        ));
        work.put_service(&admin, service("V-1", "ventspils"))
            .await
            .unwrap();
        // Nor may they take over another institution's service.
        assert!(matches!(
            work.put_service(&talsi_admin, service("V-1", "talsi"))
                .await,
            Err(WorkError::Refused)
        ));
        assert!(matches!(
            work.put_service(&talsi_admin, service("bad code", "talsi"))
                .await,
            Err(WorkError::Invalid(_))
        ));
        assert_eq!(work.services().await.unwrap().len(), 2);

        // Registration: at one's own centre, for a channel the service offers.
        let new = |centre: &str, channel| NewCase {
            service: "T-1".into(),
            centre: centre.into(),
            channel,
            request_started: Some(1_800_000_000_000 - 600_000),
        };
        assert!(matches!(
            work.register(&anna, new("ventspils-kac", Channel::InPerson))
                .await,
            Err(WorkError::Refused)
        ));
        assert!(matches!(
            work.register(&anna, new("talsi-kac", Channel::EService))
                .await,
            Err(WorkError::Invalid(_))
        ));
        let case = work
            .register(&anna, new("talsi-kac", Channel::InPerson))
            .await
            .unwrap();
        assert_eq!(
            (case.id, case.state, case.owner.as_str()),
            (1, State::Registered, "talsi")
        );

        // Seen by its centre, its owner institution and the platform; refused to others
        // exactly as a case that does not exist.
        for v in [&anna, &owner, &admin] {
            assert_eq!(work.get(v, 1).await.unwrap(), case);
        }
        for v in [&janis, &other_owner, &talsi_admin] {
            assert!(matches!(work.get(v, 1).await, Err(WorkError::Refused)));
        }
        assert!(matches!(
            work.get(&admin, 99).await,
            Err(WorkError::Refused)
        ));
        assert!(matches!(
            work.move_case(&janis, 1, State::InProgress, None).await,
            Err(WorkError::Refused)
        ));

        // Through its life; a wrong move is a clear error, a move by the wrong role a
        // refusal.
        work.move_case(&anna, 1, State::InProgress, None)
            .await
            .unwrap();
        assert!(matches!(
            work.move_case(&anna, 1, State::ResultDelivered, None).await,
            Err(WorkError::Invalid(_))
        ));
        assert!(matches!(
            work.move_case(&owner, 1, State::Decided, None).await,
            Err(WorkError::Refused)
        ));
        work.move_case(
            &anna,
            1,
            State::ForwardedToInstitution,
            Some("uz Talsiem".into()),
        )
        .await
        .unwrap();
        clock.advance(3 * DAY);
        work.move_case(&owner, 1, State::Decided, None)
            .await
            .unwrap();
        clock.advance(DAY);
        let done = work
            .move_case(&anna, 1, State::ResultDelivered, None)
            .await
            .unwrap();
        let states: Vec<State> = done.history.iter().map(|h| h.to).collect();
        assert_eq!(
            states,
            [
                State::Registered,
                State::InProgress,
                State::ForwardedToInstitution,
                State::Decided,
                State::ResultDelivered
            ]
        );
        assert_eq!(done.history[2].note.as_deref(), Some("uz Talsiem"));
        assert_eq!(done.history[3].by, "owner");
        let i = done.stages.indicators(Some(10), clock.now_millis());
        assert_eq!(i.time_to_apply, Some(600_000));
        assert_eq!(i.execution_time, Some(3 * DAY));
        assert_eq!(i.time_to_deliver, Some(DAY));
        assert!(!i.deadline_breached);

        // Durable: a reopened database has it all.
        drop(work);
        let again = open(dir.path(), clock);
        assert_eq!(again.get(&admin, 1).await.unwrap(), done);
        let next = again
            .register(&anna, new("talsi-kac", Channel::Email))
            .await
            .unwrap();
        assert_eq!(next.id, 2);
    }
}
