//! Case work over `portal.redb`: the organisation (institutions, centres, who works
//! where), the catalogue, clients and cases registered, moved and read by staff. Who may
//! see what is decided here, on every read and write, from the caller's [`Viewer`] —
//! never by the UI: a specialist sees the cases of their centres, a service owner those
//! of their institution's services, a platform administrator all. A record the caller
//! may not see is refused exactly like one that does not exist.
//!
//! Every write is one durable redb transaction; lists, searches and reports read the
//! in-memory [`Index`] that follows the database.

use crate::attachment::{self, Attachment};
use crate::case::{self, Channel, Indicators, Stages, State};
use crate::catalogue::{self, Bilingual, Service};
use crate::client::{ClientRecord, ClientView, NewClient};
use crate::index::{Dimension, Filter, Index};
use crate::org::{Assignment, Centre, Institution};
use crate::report::Summary;
use base64::Engine;
use kopa_core::{Clock, Role};
use kopa_store::{Store, StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

/// Services by code.
pub(crate) const SERVICES: Table<String, Service> = Table::new("services");
/// Cases by number.
pub(crate) const CASES: Table<u64, CaseRecord> = Table::new("cases");
/// The cases table, for tools that read it directly (the benchmark's baseline).
pub const CASES_TABLE: Table<u64, CaseRecord> = CASES;
/// Counters (`"case"`, `"client"`: the last number given).
pub(crate) const COUNTERS: Table<String, u64> = Table::new("counters");
/// Each case's history, by (case, sequence).
pub(crate) const HISTORY: Table<(u64, u64), HistoryEntry> = Table::new("history");
/// Clients by number.
pub(crate) const CLIENTS: Table<u64, ClientRecord> = Table::new("clients");
/// Institutions by tenant id.
pub(crate) const INSTITUTIONS: Table<String, Institution> = Table::new("institutions");
/// Customer service centres by id.
pub(crate) const CENTRES: Table<String, Centre> = Table::new("centres");
/// Where staff work, by subject.
pub(crate) const STAFF: Table<String, Assignment> = Table::new("staff");
/// Attachments of a case, by (case, number).
pub(crate) const ATTACHMENTS: Table<(u64, u64), Attachment> = Table::new("attachments");
/// Their bytes (base64), by (case, number).
pub(crate) const ATTACHMENT_DATA: Table<(u64, u64), String> = Table::new("attachment_data");
/// Saved list filters, by (subject, name).
pub(crate) const FILTERS: Table<(String, String), SavedFilter> = Table::new("filters");

/// Migration 1: the catalogue and cases.
pub(crate) fn create_tables(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&SERVICES)?;
    txn.open_table(&CASES)?;
    txn.open_table(&COUNTERS)
}

/// A case as migration 1 stored it (history inside the record).
const CASES_V1: Table<u64, serde_json::Value> = Table::new("cases");

/// Migration 2: the organisation, clients, saved filters; each case's history moves to
/// its own table.
pub(crate) fn organisation_and_clients(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&INSTITUTIONS)?;
    txn.open_table(&CENTRES)?;
    txn.open_table(&STAFF)?;
    txn.open_table(&CLIENTS)?;
    txn.open_table(&HISTORY)?;
    txn.open_table(&FILTERS)?;
    for (id, mut old) in txn.iter(&CASES_V1)? {
        let history = old
            .as_object_mut()
            .and_then(|o| o.remove("history"))
            .and_then(|h| h.as_array().cloned())
            .unwrap_or_default();
        for (seq, h) in history.iter().enumerate() {
            let to: State =
                serde_json::from_value(h["to"].clone()).map_err(|e| StoreError::Corrupt {
                    what: format!("case {id} history: {e}"),
                })?;
            let from: Option<State> = serde_json::from_value(h["from"].clone()).unwrap_or(None);
            let event = match from {
                None => Event::Registered,
                Some(from) => Event::Moved {
                    from,
                    to,
                    note: h["note"].as_str().map(str::to_owned),
                },
            };
            let entry = HistoryEntry {
                at: h["at"].as_u64().unwrap_or(0),
                by: h["by"].as_str().unwrap_or("").to_owned(),
                event,
            };
            txn.insert(&HISTORY, &(id, seq as u64), &entry)?;
        }
        txn.insert(&CASES_V1, &id, &old)?;
    }
    Ok(())
}

/// Migration 3: case attachments.
pub(crate) fn attachments_tables(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&ATTACHMENTS)?;
    txn.open_table(&ATTACHMENT_DATA)
}

/// Who is asking: their roles, the customer service centres they work at and the
/// institutions whose services they own (built from the SSO session and the staff
/// record by [`CaseWork::viewer`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    pub subject: String,
    pub roles: Vec<Role>,
    pub centres: Vec<String>,
    pub institutions: Vec<String>,
}

impl Viewer {
    pub(crate) fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub(crate) fn front_office(&self) -> bool {
        self.has(Role::Specialist) || self.has(Role::Supervisor)
    }

    /// Whether this caller may see `case`.
    pub fn sees(&self, case: &CaseRecord) -> bool {
        self.has(Role::PlatformAdmin)
            || (self.front_office() && self.centres.contains(&case.centre))
            || (self.has(Role::ServiceOwner) && self.institutions.contains(&case.owner))
    }

    /// Whether this caller administers `institution`'s records (catalogue, centres).
    fn administers(&self, institution: &str) -> bool {
        self.has(Role::PlatformAdmin)
            || (self.has(Role::TenantAdmin) && self.institutions.iter().any(|i| i == institution))
    }

    /// Whether this caller may see clients' whole personal codes (those who serve or
    /// decide for them; never a platform administrator, whatever else they hold).
    pub fn may_unmask(&self) -> bool {
        (self.front_office() || self.has(Role::ServiceOwner)) && !self.has(Role::PlatformAdmin)
    }

    /// The caller's roles that act on `case`: front-office roles at the case's centre,
    /// service owner for the owning institution. Seeing a case through another role
    /// (or the platform) gives no right to change it.
    pub fn roles_for(&self, case: &CaseRecord) -> Vec<Role> {
        let at_centre = self.centres.contains(&case.centre);
        let owns = self.institutions.contains(&case.owner);
        self.roles
            .iter()
            .copied()
            .filter(|r| match r {
                Role::Specialist | Role::Supervisor => at_centre,
                Role::ServiceOwner => owns,
                _ => false,
            })
            .collect()
    }
}

/// What happened to a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The case was registered.
    Registered,
    /// It moved between states, with an optional note.
    Moved {
        from: State,
        to: State,
        note: Option<String>,
    },
    /// A note was added.
    Note { text: String },
    /// It was given to someone (or to nobody).
    Assigned { to: Option<String> },
    /// A file was attached.
    Attached { n: u64, name: String },
}

/// One change in a case's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Milliseconds since the epoch.
    pub at: u64,
    /// The subject who made the change.
    pub by: String,
    #[serde(flatten)]
    pub event: Event,
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
    #[serde(default)]
    pub client: Option<u64>,
    pub assignee: Option<String>,
    pub state: State,
    pub stages: Stages,
    /// The service's statutory deadline when the case was registered.
    #[serde(default)]
    pub deadline_days: Option<u32>,
}

/// A case as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseView {
    pub id: u64,
    pub service: String,
    pub service_name: Bilingual,
    pub owner: String,
    pub centre: String,
    pub channel: Channel,
    pub client: Option<ClientView>,
    pub assignee: Option<String>,
    pub state: State,
    pub stages: Stages,
    /// When the decision is due (milliseconds), if the service has a deadline.
    pub due: Option<u64>,
    pub indicators: Indicators,
}

/// A case with its history and the moves the caller may make now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: CaseView,
    pub history: Vec<HistoryEntry>,
    pub next_states: Vec<State>,
    pub attachments: Vec<Attachment>,
}

/// A request to register a case.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub service: String,
    pub centre: String,
    pub channel: Channel,
    /// The client, registered before.
    #[serde(default)]
    pub client: Option<u64>,
    /// Or the client's whole code, as the client shows it (front office may register a
    /// case for any client whose code they are shown).
    #[serde(default)]
    pub client_code: Option<String>,
    /// When the client began to apply (milliseconds), if before registration.
    #[serde(default)]
    pub request_started: Option<u64>,
}

/// A named list filter (the query string of the case list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavedFilter {
    pub name: String,
    /// The list's query string, e.g. `view=queue&state=registered`.
    pub query: String,
}

/// The caller as the portal knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub subject: String,
    /// The name to show (from the ID token).
    pub name: String,
    pub roles: Vec<String>,
    pub centres: Vec<String>,
    pub institutions: Vec<String>,
    pub may_unmask: bool,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReportRow {
    /// The group: institution, service code, channel, centre, subject or `YYYY-MM`.
    pub key: String,
    #[serde(flatten)]
    pub summary: Summary,
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
    /// The upload is larger than the limit (in bytes).
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The upload's type or content is not accepted.
    #[error("{0}")]
    Unaccepted(attachment::Refused),
    /// A client with this code is already registered (its number).
    #[error("a client with this code is already registered as number {0}")]
    ClientExists(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest note, in characters.
pub const NOTE_MAX: usize = 4000;
/// Saved filters per person.
pub const FILTERS_MAX: usize = 50;

/// What a committed write changes in the index.
enum Change {
    Case(CaseRecord),
    Client(ClientRecord),
    Service(Service),
}

/// Case work on the portal database.
#[derive(Debug, Clone)]
pub struct CaseWork {
    store: Store,
    clock: Arc<dyn Clock>,
    index: Arc<RwLock<Index>>,
    /// Held across a commit and its index update, so the index follows commit order.
    writer: Arc<Mutex<()>>,
}

fn bad(message: impl Into<String>) -> WorkError {
    WorkError::Invalid(message.into())
}

fn check_note(text: &str) -> Result<(), WorkError> {
    if text.chars().count() > NOTE_MAX {
        return Err(bad(format!("note: at most {NOTE_MAX} characters")));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(bad("note: no control characters"));
    }
    Ok(())
}

/// Reads a whole table in chunks (a million cases need not sit decoded at once).
fn load_chunked<V: serde::de::DeserializeOwned>(
    store: &Store,
    table: &Table<u64, V>,
    mut each: impl FnMut(V),
) -> Result<(), StoreError> {
    let mut from = 0_u64;
    loop {
        let chunk = store.read_blocking(|txn| txn.range_from(table, &from, 20_000))?;
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        let done = *last == u64::MAX;
        from = last.saturating_add(1);
        for (_, v) in chunk {
            each(v);
        }
        if done {
            return Ok(());
        }
    }
}

impl CaseWork {
    /// Opens case work on `store`, building the index from it (blocking: call at start).
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut index = Index::default();
        for (_, s) in store.read_blocking(|txn| txn.iter(&SERVICES))? {
            index.put_service(&s);
        }
        load_chunked(&store, &CLIENTS, |c| index.put_client(&c))?;
        load_chunked(&store, &CASES, |c| index.put_case(&c))?;
        Ok(Self {
            store,
            clock,
            index: Arc::new(RwLock::new(index)),
            writer: Arc::default(),
        })
    }

    /// The same case work read through another clock (demo data, imports of past
    /// events); it shares the database, the index and the writers' lock.
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            ..self.clone()
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// One durable transaction; what it changed goes into the index after the commit.
    async fn commit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTxn) -> Result<Result<(T, Vec<Change>), WorkError>, StoreError>
        + Send
        + 'static,
    ) -> Result<T, WorkError> {
        let (store, index, writer) = (self.store.clone(), self.index.clone(), self.writer.clone());
        tokio::task::spawn_blocking(move || {
            let _turn = writer.lock().unwrap_or_else(|e| e.into_inner());
            let (value, changes) = store.write_or_abort(f)??;
            let mut index = index.write().unwrap_or_else(|e| e.into_inner());
            for change in changes {
                match change {
                    Change::Case(c) => index.put_case(&c),
                    Change::Client(c) => index.put_client(&c),
                    Change::Service(s) => index.put_service(&s),
                }
            }
            Ok(value)
        })
        .await
        .map_err(|e| WorkError::Store(StoreError::Join(e)))?
    }

    /// Runs `f` over the index off the async threads (a scan of a million rows takes
    /// milliseconds).
    async fn with_index<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || f(&index.read().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| WorkError::Store(StoreError::Join(e)))
    }

    /// The caller: roles from the IdP, their institution (tenant) and the centres the
    /// staff record gives them.
    pub async fn viewer(
        &self,
        subject: &str,
        roles: Vec<Role>,
        tenant: Option<String>,
    ) -> Result<Viewer, WorkError> {
        let key = subject.to_owned();
        let centres = self
            .store
            .read(move |txn| txn.get(&STAFF, &key))
            .await?
            .map(|a| a.centres)
            .unwrap_or_default();
        Ok(Viewer {
            subject: subject.to_owned(),
            roles,
            centres,
            institutions: tenant.into_iter().collect(),
        })
    }

    /// What the portal knows of the caller.
    pub fn me(&self, v: &Viewer) -> Me {
        Me {
            subject: v.subject.clone(),
            name: String::new(),
            roles: v.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            centres: v.centres.clone(),
            institutions: v.institutions.clone(),
            may_unmask: v.may_unmask(),
        }
    }

    // ---- organisation -------------------------------------------------------------

    /// Every institution (all staff may read them).
    pub async fn institutions(&self) -> Result<Vec<Institution>, WorkError> {
        let all = self.store.read(|txn| txn.iter(&INSTITUTIONS)).await?;
        Ok(all.into_iter().map(|(_, i)| i).collect())
    }

    /// Adds or renames an institution (platform administrators).
    pub async fn put_institution(&self, v: &Viewer, i: Institution) -> Result<(), WorkError> {
        if !v.has(Role::PlatformAdmin) {
            return Err(WorkError::Refused);
        }
        i.validate().map_err(bad)?;
        self.commit(move |txn| {
            txn.insert(&INSTITUTIONS, &i.id.clone(), &i)?;
            Ok(Ok(((), vec![])))
        })
        .await
    }

    /// Every centre (all staff may read them).
    pub async fn centres(&self) -> Result<Vec<Centre>, WorkError> {
        let all = self.store.read(|txn| txn.iter(&CENTRES)).await?;
        Ok(all.into_iter().map(|(_, c)| c).collect())
    }

    /// Adds or changes a centre (an administrator of the institution that runs it, before
    /// and after the change).
    pub async fn put_centre(&self, v: &Viewer, c: Centre) -> Result<(), WorkError> {
        c.validate().map_err(bad)?;
        let v = v.clone();
        self.commit(move |txn| {
            let previous = txn.get(&CENTRES, &c.id)?;
            if !(v.administers(&c.institution)
                && previous
                    .as_ref()
                    .is_none_or(|p| v.administers(&p.institution)))
            {
                return Ok(Err(WorkError::Refused));
            }
            for i in std::iter::once(&c.institution).chain(&c.serves) {
                if !txn.contains(&INSTITUTIONS, i)? {
                    return Ok(Err(bad(format!("no institution {i}"))));
                }
            }
            txn.insert(&CENTRES, &c.id.clone(), &c)?;
            Ok(Ok(((), vec![])))
        })
        .await
    }

    /// Staff records the caller administers: all for a platform administrator; those
    /// working at a centre of their institution for a tenant administrator.
    pub async fn assignments(&self, v: &Viewer) -> Result<Vec<Assignment>, WorkError> {
        if !(v.has(Role::PlatformAdmin) || v.has(Role::TenantAdmin)) {
            return Err(WorkError::Refused);
        }
        let v = v.clone();
        let list = self
            .store
            .read(move |txn| {
                let centres = txn.iter(&CENTRES)?;
                let mine: BTreeSet<String> = centres
                    .into_iter()
                    .filter(|(_, c)| v.administers(&c.institution))
                    .map(|(id, _)| id)
                    .collect();
                let platform = v.has(Role::PlatformAdmin);
                Ok(txn
                    .iter(&STAFF)?
                    .into_iter()
                    .filter_map(|(_, mut a)| {
                        // Another institution's centres of shared staff are not theirs
                        // to see.
                        if !platform {
                            a.centres.retain(|c| mine.contains(c));
                        }
                        (!a.centres.is_empty()).then_some(a)
                    })
                    .collect())
            })
            .await?;
        Ok(list)
    }

    /// Sets the centres a person works at. A tenant administrator may add or remove only
    /// centres their institution runs.
    pub async fn put_assignment(&self, v: &Viewer, a: Assignment) -> Result<(), WorkError> {
        if !(v.has(Role::PlatformAdmin) || v.has(Role::TenantAdmin)) {
            return Err(WorkError::Refused);
        }
        a.validate().map_err(bad)?;
        let v = v.clone();
        self.commit(move |txn| {
            let before: BTreeSet<String> = txn
                .get(&STAFF, &a.subject)?
                .map(|p| p.centres.into_iter().collect())
                .unwrap_or_default();
            let after: BTreeSet<String> = a.centres.iter().cloned().collect();
            for c in &after {
                if !txn.contains(&CENTRES, c)? {
                    return Ok(Err(bad(format!("centres: no centre {c}"))));
                }
            }
            for changed in before.symmetric_difference(&after) {
                let runs = txn.get(&CENTRES, changed)?.map(|c| c.institution);
                if !runs.is_some_and(|i| v.administers(&i)) {
                    return Ok(Err(WorkError::Refused));
                }
            }
            if after.is_empty() {
                txn.remove(&STAFF, &a.subject)?;
            } else {
                let record = Assignment {
                    subject: a.subject.clone(),
                    centres: after.into_iter().collect(),
                };
                txn.insert(&STAFF, &a.subject, &record)?;
            }
            Ok(Ok(((), vec![])))
        })
        .await
    }

    // ---- catalogue ----------------------------------------------------------------

    /// Adds or replaces a catalogue entry (a tenant administrator of the owning
    /// institution, or a platform administrator).
    pub async fn put_service(&self, v: &Viewer, service: Service) -> Result<(), WorkError> {
        service
            .validate()
            .map_err(|e: catalogue::Invalid| bad(e.to_string()))?;
        let v = v.clone();
        self.commit(move |txn| {
            let previous = txn.get(&SERVICES, &service.code)?;
            // Neither the new owner nor, when it changes hands, the old one may be
            // someone else's.
            let allowed = v.administers(&service.owner)
                && previous.as_ref().is_none_or(|p| v.administers(&p.owner));
            if !allowed {
                return Ok(Err(WorkError::Refused));
            }
            if !txn.contains(&INSTITUTIONS, &service.owner)? {
                return Ok(Err(bad(format!("owner: no institution {}", service.owner))));
            }
            txn.insert(&SERVICES, &service.code.clone(), &service)?;
            Ok(Ok(((), vec![Change::Service(service)])))
        })
        .await
    }

    /// The catalogue, in code order (every member of staff may read it).
    pub async fn services(&self) -> Result<Vec<Service>, WorkError> {
        let list = self.store.read(|txn| txn.iter(&SERVICES)).await?;
        Ok(list.into_iter().map(|(_, s)| s).collect())
    }

    // ---- clients ------------------------------------------------------------------

    /// Registers a client at one of the caller's centres.
    pub async fn add_client(&self, v: &Viewer, new: NewClient) -> Result<ClientView, WorkError> {
        if !(v.front_office() && v.centres.contains(&new.centre)) {
            return Err(WorkError::Refused);
        }
        let code = new.normalised_code().map_err(bad)?;
        let now = self.now();
        // Checked inside the commit: under the writers' lock the index holds every
        // client committed before, so two desks cannot both add the same person.
        let index = self.index.clone();
        self.commit(move |txn| {
            let existing = index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .client_by_code(&code);
            if let Some(id) = existing {
                return Ok(Err(WorkError::ClientExists(id)));
            }
            let id = txn.get(&COUNTERS, &"client".to_owned())?.unwrap_or(0) + 1;
            txn.insert(&COUNTERS, &"client".to_owned(), &id)?;
            let record = ClientRecord {
                id,
                kind: new.kind,
                name: new.name.trim().to_owned(),
                code,
                centre: new.centre,
                registered: now,
            };
            txn.insert(&CLIENTS, &id, &record)?;
            Ok(Ok((record.view(), vec![Change::Client(record)])))
        })
        .await
    }

    async fn client_record(&self, v: &Viewer, id: u64) -> Result<ClientRecord, WorkError> {
        let viewer = v.clone();
        if !self
            .with_index(move |ix| ix.sees_client(&viewer, id))
            .await?
        {
            return Err(WorkError::Refused);
        }
        self.store
            .read(move |txn| txn.get(&CLIENTS, &id))
            .await?
            .ok_or(WorkError::Refused)
    }

    /// Client `id`, masked, if the caller may see it.
    pub async fn client(&self, v: &Viewer, id: u64) -> Result<ClientView, WorkError> {
        Ok(self.client_record(v, id).await?.view())
    }

    /// The whole code of client `id`, for a role that may see it. The caller must audit
    /// the disclosure before showing it.
    pub async fn unmask(&self, v: &Viewer, id: u64) -> Result<String, WorkError> {
        if !v.may_unmask() {
            return Err(WorkError::Refused);
        }
        // Only through the roles that serve the client (may_unmask excludes the platform).
        Ok(self.client_record(v, id).await?.code)
    }

    /// Clients whose name has every word of `text` (diacritics ignored), or whose whole
    /// code it is.
    pub async fn search_clients(
        &self,
        v: &Viewer,
        text: &str,
        limit: usize,
    ) -> Result<Vec<ClientView>, WorkError> {
        let (v, text) = (v.clone(), text.to_owned());
        self.with_index(move |ix| {
            ix.search_clients(&v, &text, limit)
                .into_iter()
                .filter_map(|id| ix.client_view(id))
                .collect()
        })
        .await
    }

    // ---- cases --------------------------------------------------------------------

    /// Registers a case at one of the caller's centres; durable before it returns.
    pub async fn register(&self, v: &Viewer, new: NewCase) -> Result<CaseView, WorkError> {
        if !(v.front_office() && v.centres.contains(&new.centre)) {
            return Err(WorkError::Refused);
        }
        let now = self.now();
        if new.request_started.is_some_and(|s| s > now) {
            return Err(bad("request_started: must not be in the future"));
        }
        let mut new = new;
        if let Some(code) = new.client_code.take() {
            if new.client.is_some() {
                return Err(bad("client_code: give client or client_code, not both"));
            }
            let found = self
                .with_index(move |ix| ix.client_by_any_code(&code))
                .await?;
            new.client = Some(found.ok_or_else(|| bad("client_code: no client with this code"))?);
        } else if let Some(client) = new.client {
            let viewer = v.clone();
            // A client the caller cannot see is as good as none.
            let known = self
                .with_index(move |ix| ix.sees_client(&viewer, client))
                .await?;
            if !known {
                return Err(bad(format!("client: no client {client}")));
            }
        }
        let by = v.subject.clone();
        let record = self
            .commit(move |txn| {
                let Some(service) = txn.get(&SERVICES, &new.service)? else {
                    return Ok(Err(bad(format!(
                        "service: no service {} in the catalogue",
                        new.service
                    ))));
                };
                if !service.offers(new.channel) {
                    return Ok(Err(bad(
                        "channel: the service is not offered through this channel",
                    )));
                }
                let serves = txn
                    .get(&CENTRES, &new.centre)?
                    .is_some_and(|c| c.serves.contains(&service.owner));
                if !serves {
                    return Ok(Err(bad(
                        "service: this centre does not deliver the services of its owner",
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
                    client: new.client,
                    assignee: Some(by.clone()),
                    state: State::Registered,
                    stages: Stages {
                        request_started: new.request_started,
                        registered: now,
                        decided: None,
                        delivered: None,
                    },
                    deadline_days: service.deadline_days,
                };
                txn.insert(&CASES, &id, &record)?;
                let entry = HistoryEntry {
                    at: now,
                    by,
                    event: Event::Registered,
                };
                txn.insert(&HISTORY, &(id, 0), &entry)?;
                Ok(Ok((record.clone(), vec![Change::Case(record)])))
            })
            .await?;
        self.view(record).await
    }

    async fn view(&self, record: CaseRecord) -> Result<CaseView, WorkError> {
        let now = self.now();
        self.with_index(move |ix| ix.case_view(&record, now)).await
    }

    /// Case `id` with its history, if the caller may see it.
    pub async fn get(&self, v: &Viewer, id: u64) -> Result<CaseDetail, WorkError> {
        let (found, history, attachments) = self
            .store
            .read(move |txn| {
                Ok((
                    txn.get(&CASES, &id)?,
                    txn.scan_prefix(&HISTORY, &id)?,
                    txn.scan_prefix(&ATTACHMENTS, &id)?,
                ))
            })
            .await?;
        let case = found.filter(|c| v.sees(c)).ok_or(WorkError::Refused)?;
        let acting = v.roles_for(&case);
        let next_states = case
            .state
            .moves()
            .iter()
            .filter(|(_, roles)| roles.iter().any(|r| acting.contains(r)))
            .map(|(s, _)| *s)
            .collect();
        let now = self.now();
        let view = self.with_index(move |ix| ix.case_view(&case, now)).await?;
        Ok(CaseDetail {
            case: view,
            history: history.into_iter().map(|(_, h)| h).collect(),
            next_states,
            attachments: attachments.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// Changes case `id` by `change` (which gets the case and may refuse) and appends
    /// `event` to its history.
    async fn change_case(
        &self,
        v: &Viewer,
        id: u64,
        change: impl FnOnce(&mut CaseRecord, &WriteTxn) -> Result<Result<Event, WorkError>, StoreError>
        + Send
        + 'static,
    ) -> Result<CaseView, WorkError> {
        let now = self.now();
        let v = v.clone();
        let record = self
            .commit(move |txn| {
                let Some(mut case) = txn.get(&CASES, &id)?.filter(|c| v.sees(c)) else {
                    return Ok(Err(WorkError::Refused));
                };
                let event = match change(&mut case, txn)? {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(e)),
                };
                let seq = txn
                    .scan_prefix(&HISTORY, &id)?
                    .last()
                    .map_or(0, |((_, s), _)| s + 1);
                txn.insert(
                    &HISTORY,
                    &(id, seq),
                    &HistoryEntry {
                        at: now,
                        by: v.subject.clone(),
                        event,
                    },
                )?;
                txn.insert(&CASES, &id, &case)?;
                Ok(Ok((case.clone(), vec![Change::Case(case)])))
            })
            .await?;
        self.view(record).await
    }

    /// Moves case `id` to `to`, with an optional note, if the caller may; the stage
    /// times follow (a decision or refusal ends execution, delivery ends the case).
    pub async fn move_case(
        &self,
        v: &Viewer,
        id: u64,
        to: State,
        note: Option<String>,
    ) -> Result<CaseView, WorkError> {
        if let Some(n) = &note {
            check_note(n)?;
        }
        let now = self.now();
        let viewer = v.clone();
        self.change_case(v, id, move |case, _| {
            if let Err(e) = case::check_move(case.state, to, &viewer.roles_for(case)) {
                return Ok(Err(match e {
                    case::MoveError::Forbidden { .. } => WorkError::Refused,
                    other => bad(other.to_string()),
                }));
            }
            match to {
                State::Decided | State::Rejected | State::Withdrawn => {
                    case.stages.decided.get_or_insert(now);
                }
                State::ResultDelivered => case.stages.delivered = Some(now),
                _ => {}
            }
            let from = std::mem::replace(&mut case.state, to);
            Ok(Ok(Event::Moved { from, to, note }))
        })
        .await
    }

    /// Adds a note to case `id` (anyone who may see it).
    pub async fn add_note(&self, v: &Viewer, id: u64, text: String) -> Result<CaseView, WorkError> {
        if text.trim().is_empty() {
            return Err(bad("text: must not be empty"));
        }
        check_note(&text)?;
        let viewer = v.clone();
        self.change_case(v, id, move |case, _| {
            if viewer.roles_for(case).is_empty() {
                return Ok(Err(WorkError::Refused));
            }
            Ok(Ok(Event::Note { text }))
        })
        .await
    }

    /// Attaches a file to case `id` (anyone who may see the case), after checking its
    /// type by content and its size against `max`; stored with its SHA-256.
    pub async fn attach(
        &self,
        v: &Viewer,
        id: u64,
        name: String,
        declared_type: &str,
        bytes: Vec<u8>,
        max: u64,
    ) -> Result<Attachment, WorkError> {
        if bytes.len() as u64 > max {
            return Err(WorkError::TooLarge(max));
        }
        let media =
            attachment::check(&name, declared_type, &bytes).map_err(WorkError::Unaccepted)?;
        let (now, by) = (self.now(), v.subject.clone());
        // The slow part before the writers' lock is taken.
        let (size, sha256) = (bytes.len() as u64, attachment::sha256(&bytes));
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        drop(bytes);
        let record = Arc::new(Mutex::new(None));
        let saved = record.clone();
        let viewer = v.clone();
        self.change_case(v, id, move |case, txn| {
            if viewer.roles_for(case).is_empty() {
                return Ok(Err(WorkError::Refused));
            }
            let n = txn
                .scan_prefix(&ATTACHMENTS, &id)?
                .last()
                .map_or(1, |((_, n), _)| n + 1);
            let a = Attachment {
                n,
                name: name.trim().to_owned(),
                media_type: media.to_owned(),
                size,
                sha256,
                at: now,
                by,
            };
            txn.insert(&ATTACHMENTS, &(id, n), &a)?;
            txn.insert(&ATTACHMENT_DATA, &(id, n), &data)?;
            let event = Event::Attached {
                n,
                name: a.name.clone(),
            };
            *saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
            Ok(Ok(event))
        })
        .await?;
        let a = record.lock().unwrap_or_else(|e| e.into_inner()).take();
        a.ok_or(WorkError::Refused)
    }

    /// Attachment `n` of case `id` with its bytes, if the caller may see the case; the
    /// bytes are checked against the recorded SHA-256 first.
    pub async fn attachment(
        &self,
        v: &Viewer,
        id: u64,
        n: u64,
    ) -> Result<(Attachment, Vec<u8>), WorkError> {
        let viewer = v.clone();
        let found = self
            .store
            .read(move |txn| {
                if !txn.get(&CASES, &id)?.is_some_and(|c| viewer.sees(&c)) {
                    return Ok(None);
                }
                Ok(txn
                    .get(&ATTACHMENTS, &(id, n))?
                    .zip(txn.get(&ATTACHMENT_DATA, &(id, n))?))
            })
            .await?;
        let Some((meta, data)) = found else {
            return Err(WorkError::Refused);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()
            .filter(|b| attachment::sha256(b) == meta.sha256)
            .ok_or_else(|| {
                WorkError::Store(StoreError::Corrupt {
                    what: format!("attachment {n} of case {id}: checksum mismatch"),
                })
            })?;
        Ok((meta, bytes))
    }

    /// Gives case `id` to someone working at its centre, or to nobody (front office of
    /// the case's centre).
    pub async fn assign(
        &self,
        v: &Viewer,
        id: u64,
        to: Option<String>,
    ) -> Result<CaseView, WorkError> {
        let viewer = v.clone();
        self.change_case(v, id, move |case, txn| {
            let front_here = viewer
                .roles_for(case)
                .iter()
                .any(|r| matches!(r, Role::Specialist | Role::Supervisor));
            if !front_here {
                return Ok(Err(WorkError::Refused));
            }
            if let Some(who) = &to {
                let works_there = txn
                    .get(&STAFF, who)?
                    .is_some_and(|a| a.centres.contains(&case.centre));
                if !works_there {
                    return Ok(Err(bad("assignee: does not work at the case's centre")));
                }
            }
            case.assignee.clone_from(&to);
            Ok(Ok(Event::Assigned { to }))
        })
        .await
    }

    /// A page of cases for `filter`, newest first.
    pub async fn list(&self, v: &Viewer, filter: Filter) -> Result<Vec<CaseView>, WorkError> {
        let (v, now) = (v.clone(), self.now());
        self.with_index(move |ix| {
            ix.list(&v, &filter, now)
                .into_iter()
                .filter_map(|id| ix.row_view(id, now))
                .collect()
        })
        .await
    }

    /// The report over cases registered in `[from, to)` that the caller may see.
    pub async fn report(
        &self,
        v: &Viewer,
        from: u64,
        to: u64,
        by: Dimension,
    ) -> Result<Vec<ReportRow>, WorkError> {
        if from >= to {
            return Err(bad("from: must be before to"));
        }
        let (v, now) = (v.clone(), self.now());
        self.with_index(move |ix| {
            ix.report(&v, from, to, by, now)
                .into_iter()
                .map(|(key, summary)| ReportRow { key, summary })
                .collect()
        })
        .await
    }

    /// Takes clients and cases as they are (numbers, times and states included), as a
    /// move from the previous case system brings them; the counters move past them and
    /// each case gets an `imported` history entry. One durable transaction.
    pub async fn import(
        &self,
        clients: Vec<ClientRecord>,
        cases: Vec<CaseRecord>,
    ) -> Result<(), WorkError> {
        if clients.iter().any(|c| c.id == 0) || cases.iter().any(|c| c.id == 0) {
            return Err(bad("numbers start at 1"));
        }
        let now = self.now();
        self.commit(move |txn| {
            let mut changes = Vec::with_capacity(clients.len() + cases.len());
            let bump = |name: &str, id: u64| -> Result<(), StoreError> {
                let key = name.to_owned();
                if txn.get(&COUNTERS, &key)?.unwrap_or(0) < id {
                    txn.insert(&COUNTERS, &key, &id)?;
                }
                Ok(())
            };
            if let Some(last) = clients.iter().map(|c| c.id).max() {
                bump("client", last)?;
            }
            if let Some(last) = cases.iter().map(|c| c.id).max() {
                bump("case", last)?;
            }
            for c in clients {
                txn.insert(&CLIENTS, &c.id, &c)?;
                changes.push(Change::Client(c));
            }
            for c in cases {
                txn.insert(&CASES, &c.id, &c)?;
                let entry = HistoryEntry {
                    at: now,
                    by: "import".into(),
                    event: Event::Note {
                        text: "imported".into(),
                    },
                };
                txn.insert(&HISTORY, &(c.id, 0), &entry)?;
                changes.push(Change::Case(c));
            }
            Ok(Ok(((), changes)))
        })
        .await
    }

    // ---- saved filters ------------------------------------------------------------

    /// The caller's saved filters.
    pub async fn filters(&self, v: &Viewer) -> Result<Vec<SavedFilter>, WorkError> {
        let me = v.subject.clone();
        let list = self
            .store
            .read(move |txn| txn.scan_prefix(&FILTERS, &me))
            .await?;
        Ok(list.into_iter().map(|(_, f)| f).collect())
    }

    /// Saves (or replaces) one of the caller's filters.
    pub async fn put_filter(&self, v: &Viewer, f: SavedFilter) -> Result<(), WorkError> {
        let name_ok = !f.name.trim().is_empty()
            && f.name.chars().count() <= 100
            && !f.name.chars().any(char::is_control);
        if !name_ok {
            return Err(bad("name: 1-100 characters without control characters"));
        }
        if f.query.len() > 2000 || f.query.chars().any(char::is_control) {
            return Err(bad(
                "query: at most 2000 characters without control characters",
            ));
        }
        let me = v.subject.clone();
        self.commit(move |txn| {
            let key = (me.clone(), f.name.clone());
            if !txn.contains(&FILTERS, &key)?
                && txn.scan_prefix(&FILTERS, &me)?.len() >= FILTERS_MAX
            {
                return Ok(Err(bad(format!("at most {FILTERS_MAX} saved filters"))));
            }
            txn.insert(&FILTERS, &key, &f)?;
            Ok(Ok(((), vec![])))
        })
        .await
    }

    /// Deletes one of the caller's filters (no error when there is none).
    pub async fn delete_filter(&self, v: &Viewer, name: &str) -> Result<(), WorkError> {
        let key = (v.subject.clone(), name.to_owned());
        self.commit(move |txn| {
            txn.remove(&FILTERS, &key)?;
            Ok(Ok(((), vec![])))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientKind;
    use crate::index::View;
    use crate::org::InstitutionKind;
    use kopa_core::FixedClock;

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_800_000_000_000;

    fn viewer(subject: &str, roles: &[Role], centres: &[&str], institutions: &[&str]) -> Viewer {
        Viewer {
            subject: subject.into(),
            roles: roles.to_vec(),
            centres: centres.iter().map(|s| (*s).to_owned()).collect(),
            institutions: institutions.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn both(lv: &str, en: &str) -> Bilingual {
        Bilingual {
            lv: lv.into(),
            en: en.into(),
        }
    }

    fn service(code: &str, owner: &str) -> Service {
        Service {
            code: code.into(),
            name: both("Dzīvesvietas deklarēšana", "Declaring a residence"),
            owner: owner.into(),
            channels: vec![Channel::InPerson, Channel::Email],
            deadline_days: Some(10),
            required_documents: vec![],
            instructions: None,
        }
    }

    fn open(dir: &std::path::Path, clock: Arc<FixedClock>) -> CaseWork {
        let store = Store::open(dir, &crate::SCHEMA).unwrap();
        CaseWork::new(store, clock).unwrap()
    }

    /// Two municipalities, each with a centre serving itself; Talsi's also serves the
    /// state revenue service. Anna works in Talsi, Jānis in Ventspils.
    async fn organisation(work: &CaseWork) {
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        for (id, kind) in [
            ("talsi", InstitutionKind::Municipal),
            ("ventspils", InstitutionKind::Municipal),
            ("vid", InstitutionKind::State),
        ] {
            let i = Institution {
                id: id.into(),
                name: both(id, id),
                kind,
            };
            work.put_institution(&admin, i).await.unwrap();
        }
        for (id, inst, serves) in [
            ("talsi-kac", "talsi", vec!["talsi", "vid"]),
            ("ventspils-kac", "ventspils", vec!["ventspils"]),
        ] {
            let c = Centre {
                id: id.into(),
                name: both(id, id),
                institution: inst.into(),
                serves: serves.into_iter().map(str::to_owned).collect(),
            };
            work.put_centre(&admin, c).await.unwrap();
        }
        for (who, centre) in [
            ("anna", "talsi-kac"),
            ("ilze", "talsi-kac"),
            ("janis", "ventspils-kac"),
        ] {
            let a = Assignment {
                subject: who.into(),
                centres: vec![centre.into()],
            };
            work.put_assignment(&admin, a).await.unwrap();
        }
    }

    /// The organisation and two services: `T-1` of Talsi and `VID-7` of the state.
    async fn with_services(dir: &std::path::Path) -> (CaseWork, Arc<FixedClock>, Viewer) {
        let clock = Arc::new(FixedClock::at(T0));
        let work = open(dir, clock.clone());
        organisation(&work).await;
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        for (code, owner) in [("T-1", "talsi"), ("VID-7", "vid")] {
            work.put_service(&admin, service(code, owner))
                .await
                .unwrap();
        }
        (work, clock, admin)
    }

    /// `who` with `role`, at the centres their staff record gives.
    async fn staff(work: &CaseWork, who: &str, role: Role) -> Viewer {
        work.viewer(who, vec![role], None).await.unwrap()
    }

    #[tokio::test]
    async fn cases_are_seen_and_moved_only_by_those_they_concern() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::at(T0));
        let work = open(dir.path(), clock.clone());
        organisation(&work).await;
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        let talsi_admin = viewer("ta", &[Role::TenantAdmin], &[], &["talsi"]);
        let anna = work
            .viewer("anna", vec![Role::Specialist], None)
            .await
            .unwrap();
        assert_eq!(anna.centres, ["talsi-kac"]);
        let janis = work
            .viewer("janis", vec![Role::Specialist], None)
            .await
            .unwrap();
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
        assert!(matches!(
            work.put_service(&admin, service("X-1", "nowhere")).await,
            Err(WorkError::Invalid(_))
        ));
        assert_eq!(work.services().await.unwrap().len(), 2);
        // Staff: a tenant administrator moves people only in and out of their centres.
        let move_janis = Assignment {
            subject: "janis".into(),
            centres: vec!["talsi-kac".into()],
        };
        assert!(matches!(
            work.put_assignment(&talsi_admin, move_janis).await,
            Err(WorkError::Refused)
        ));

        // Registration: at one's own centre, for a channel the service offers, of a
        // service whose owner the centre serves.
        let new = |centre: &str, service: &str, channel| NewCase {
            service: service.into(),
            centre: centre.into(),
            channel,
            client: None,
            client_code: None,
            request_started: Some(T0 - 600_000),
        };
        assert!(matches!(
            work.register(&anna, new("ventspils-kac", "T-1", Channel::InPerson))
                .await,
            Err(WorkError::Refused)
        ));
        assert!(matches!(
            work.register(&anna, new("talsi-kac", "T-1", Channel::EService))
                .await,
            Err(WorkError::Invalid(_))
        ));
        assert!(matches!(
            work.register(&anna, new("talsi-kac", "V-1", Channel::InPerson))
                .await,
            Err(WorkError::Invalid(_))
        ));
        let case = work
            .register(&anna, new("talsi-kac", "T-1", Channel::InPerson))
            .await
            .unwrap();
        assert_eq!(
            (case.id, case.state, case.owner.as_str(), case.due),
            (1, State::Registered, "talsi", Some(T0 + 10 * DAY))
        );

        // Seen by its centre, its owner institution and the platform; refused to others
        // exactly as a case that does not exist.
        for v in [&anna, &owner, &admin] {
            assert_eq!(work.get(v, 1).await.unwrap().case, case);
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
        assert_eq!(
            work.get(&anna, 1).await.unwrap().next_states,
            [State::InProgress, State::Rejected, State::Withdrawn]
        );

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
        work.add_note(&owner, 1, "Saņemts".into()).await.unwrap();
        assert!(matches!(
            work.assign(&anna, 1, Some("janis".into())).await,
            Err(WorkError::Invalid(_))
        ));
        work.assign(&anna, 1, Some("ilze".into())).await.unwrap();
        clock.advance(3 * DAY);
        work.move_case(&owner, 1, State::Decided, None)
            .await
            .unwrap();
        clock.advance(DAY);
        let done = work
            .move_case(&anna, 1, State::ResultDelivered, None)
            .await
            .unwrap();
        let detail = work.get(&anna, 1).await.unwrap();
        let kinds: Vec<&Event> = detail.history.iter().map(|h| &h.event).collect();
        assert_eq!(kinds.len(), 7);
        assert_eq!(*kinds[0], Event::Registered);
        assert_eq!(
            *kinds[2],
            Event::Moved {
                from: State::InProgress,
                to: State::ForwardedToInstitution,
                note: Some("uz Talsiem".into())
            }
        );
        assert_eq!(detail.history[3].by, "owner");
        assert_eq!(
            *kinds[4],
            Event::Assigned {
                to: Some("ilze".into())
            }
        );
        assert!(detail.next_states.is_empty());
        assert_eq!(done.assignee.as_deref(), Some("ilze"));
        let i = done.indicators;
        assert_eq!(i.time_to_apply, Some(600_000));
        assert_eq!(i.execution_time, Some(3 * DAY));
        assert_eq!(i.time_to_deliver, Some(DAY));
        assert!(!i.deadline_breached);

        // Durable: a reopened database has it all, and so does its index.
        drop(work);
        let again = open(dir.path(), clock);
        assert_eq!(again.get(&admin, 1).await.unwrap(), detail);
        let next = again
            .register(&anna, new("talsi-kac", "T-1", Channel::Email))
            .await
            .unwrap();
        assert_eq!(next.id, 2);
        let listed = again
            .list(
                &anna,
                Filter {
                    limit: 10,
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [2, 1]);
    }

    #[tokio::test]
    async fn clients_are_found_without_diacritics_and_unmasked_only_by_those_who_serve_them() {
        let dir = tempfile::tempdir().unwrap();
        let (work, _clock, admin) = with_services(dir.path()).await;
        let anna = staff(&work, "anna", Role::Specialist).await;
        let janis = staff(&work, "janis", Role::Specialist).await;
        let vid_owner = viewer("vo", &[Role::ServiceOwner], &[], &["vid"]);

        let person = |name: &str, code: &str| NewClient {
            kind: ClientKind::Natural,
            name: name.into(),
            code: code.into(),
            centre: "talsi-kac".into(),
        };
        let berzins = work
            .add_client(&anna, person("Jānis Bērziņš", "321234-56789"))
            .await
            .unwrap();
        assert_eq!(berzins.code, "******-***89");
        assert!(matches!(
            work.add_client(&anna, person("J. Bērziņš", "32123456789"))
                .await,
            Err(WorkError::ClientExists(1))
        ));
        assert!(matches!(
            work.add_client(&janis, person("Cits", "320000-00001"))
                .await,
            Err(WorkError::Refused)
        ));
        work.add_client(&anna, person("Anna Kalniņa", "320000-00002"))
            .await
            .unwrap();

        // Diacritics ignored both ways, prefixes, every word must match.
        for q in ["berzins", "BĒRZ", "janis berz", "Bērziņš Jānis"] {
            let found = work.search_clients(&anna, q, 10).await.unwrap();
            assert_eq!(found.len(), 1, "{q}");
            assert_eq!(found[0].name, "Jānis Bērziņš");
        }
        assert!(
            work.search_clients(&anna, "berzins anna", 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Another centre does not find the client by name, only by the whole code the
        // client shows them.
        assert!(
            work.search_clients(&janis, "berzins", 10)
                .await
                .unwrap()
                .is_empty()
        );
        let by_code = work
            .search_clients(&janis, "321234-56789", 10)
            .await
            .unwrap();
        assert_eq!(by_code.len(), 1);
        assert!(matches!(
            work.client(&janis, 1).await,
            Err(WorkError::Refused)
        ));

        // A case for the client; the owner institution then sees the client too.
        let case = work
            .register(
                &anna,
                NewCase {
                    service: "VID-7".into(),
                    centre: "talsi-kac".into(),
                    channel: Channel::Email,
                    client: Some(1),
                    client_code: None,
                    request_started: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            case.client.as_ref().map(|c| c.code.as_str()),
            Some("******-***89")
        );
        assert_eq!(
            work.client(&vid_owner, 1).await.unwrap().name,
            "Jānis Bērziņš"
        );
        assert_eq!(work.unmask(&vid_owner, 1).await.unwrap(), "321234-56789");
        assert_eq!(work.unmask(&anna, 1).await.unwrap(), "321234-56789");
        // An administrator sees the client but never the whole code.
        assert!(work.client(&admin, 1).await.is_ok());
        assert!(matches!(
            work.unmask(&admin, 1).await,
            Err(WorkError::Refused)
        ));
        assert!(matches!(
            work.unmask(&janis, 1).await,
            Err(WorkError::Refused)
        ));

        // Case search: by the client's name without diacritics, by service words, by
        // number; scoped by the caller.
        let text = |q: &str| Filter {
            text: Some(q.into()),
            limit: 10,
            ..Filter::default()
        };
        for q in ["berzins", "deklaresana", "vid-7", "1", "321234-56789"] {
            let found = work.list(&anna, text(q)).await.unwrap();
            assert_eq!(found.len(), 1, "{q}");
        }
        assert!(work.list(&janis, text("berzins")).await.unwrap().is_empty());
        assert!(work.list(&anna, text("kalnina")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn views_and_reports_follow_the_caller_and_the_deadlines() {
        let dir = tempfile::tempdir().unwrap();
        let (work, clock, admin) = with_services(dir.path()).await;
        let anna = staff(&work, "anna", Role::Specialist).await;
        let ilze = staff(&work, "ilze", Role::Supervisor).await;
        let vid_owner = viewer("vo", &[Role::ServiceOwner], &[], &["vid"]);
        let reg = |service: &str| NewCase {
            service: service.into(),
            centre: "talsi-kac".into(),
            channel: Channel::InPerson,
            client: None,
            client_code: None,
            request_started: None,
        };
        work.register(&anna, reg("T-1")).await.unwrap();
        work.register(&ilze, reg("VID-7")).await.unwrap();
        clock.advance(9 * DAY);
        work.register(&anna, reg("VID-7")).await.unwrap();
        work.move_case(&anna, 3, State::InProgress, None)
            .await
            .unwrap();
        work.move_case(&anna, 3, State::Decided, None)
            .await
            .unwrap();

        let ids = |list: Vec<CaseView>| list.into_iter().map(|c| c.id).collect::<Vec<_>>();
        let view = |view| Filter {
            view,
            limit: 50,
            ..Filter::default()
        };
        assert_eq!(
            ids(work.list(&anna, view(View::Mine)).await.unwrap()),
            [3, 1]
        );
        // A decided case waits for delivery: still in the queue.
        assert_eq!(
            ids(work.list(&ilze, view(View::Queue)).await.unwrap()),
            [3, 2, 1]
        );
        // Cases 1 and 2 are due in a day; 3 is decided.
        assert_eq!(
            ids(work
                .list(&anna, view(View::Deadline { days: 3 }))
                .await
                .unwrap()),
            [2, 1]
        );
        assert!(
            work.list(&anna, view(View::Deadline { days: 0 }))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(work.list(&vid_owner, view(View::All)).await.unwrap()),
            [3, 2]
        );
        let page = Filter {
            limit: 2,
            ..Filter::default()
        };
        assert_eq!(ids(work.list(&anna, page).await.unwrap()), [3, 2]);
        let rest = Filter {
            limit: 2,
            before: Some(2),
            ..Filter::default()
        };
        assert_eq!(ids(work.list(&anna, rest).await.unwrap()), [1]);
        let states = Filter {
            states: vec![State::Decided],
            limit: 9,
            ..Filter::default()
        };
        assert_eq!(ids(work.list(&anna, states).await.unwrap()), [3]);

        clock.advance(2 * DAY);
        let year = (T0 - 100 * DAY, T0 + 100 * DAY);
        let by_service = work
            .report(&anna, year.0, year.1, Dimension::Service)
            .await
            .unwrap();
        let keys: Vec<&str> = by_service.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["T-1", "VID-7"]);
        // Case 1 and 2 are now past their 10 days; 3 was decided in time.
        assert_eq!(by_service[1].summary.cases, 2);
        assert_eq!(by_service[1].summary.deadline_breached, 1);
        assert_eq!(by_service[1].summary.execution_time.median, Some(0));
        let by_owner = work
            .report(&vid_owner, year.0, year.1, Dimension::Institution)
            .await
            .unwrap();
        assert_eq!(
            by_owner.len(),
            1,
            "a service owner sees only their services"
        );
        let workload = work
            .report(&admin, year.0, year.1, Dimension::Specialist)
            .await
            .unwrap();
        let per: Vec<(&str, u64)> = workload
            .iter()
            .map(|r| (r.key.as_str(), r.summary.cases))
            .collect();
        assert_eq!(per, [("anna", 2), ("ilze", 1)]);
        let months = work
            .report(&admin, year.0, year.1, Dimension::Month)
            .await
            .unwrap();
        assert_eq!(months.iter().map(|r| r.summary.cases).sum::<u64>(), 3);
        assert!(matches!(
            work.report(&admin, year.1, year.0, Dimension::Month).await,
            Err(WorkError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_second_role_adds_no_rights_beyond_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let work = open(dir.path(), Arc::new(FixedClock::at(T0)));
        organisation(&work).await;
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        work.put_service(&admin, service("T-1", "talsi"))
            .await
            .unwrap();
        let anna = work
            .viewer("anna", vec![Role::Specialist], None)
            .await
            .unwrap();
        let person = NewClient {
            kind: ClientKind::Natural,
            name: "Līga Vītola".into(),
            code: "320000-00007".into(),
            centre: "talsi-kac".into(),
        };
        let client = work.add_client(&anna, person).await.unwrap();
        let new = NewCase {
            service: "T-1".into(),
            centre: "talsi-kac".into(),
            channel: Channel::InPerson,
            client: Some(client.id),
            client_code: None,
            request_started: None,
        };
        let case = work.register(&anna, new.clone()).await.unwrap();

        // A platform administrator who is also a specialist elsewhere sees the case but
        // may neither move it, note it, nor see the client's whole code.
        let both = viewer(
            "boss",
            &[Role::PlatformAdmin, Role::Specialist],
            &["ventspils-kac"],
            &[],
        );
        assert!(
            work.get(&both, case.id)
                .await
                .unwrap()
                .next_states
                .is_empty()
        );
        for refused in [
            work.move_case(&both, case.id, State::InProgress, None)
                .await
                .err(),
            work.add_note(&both, case.id, "x".into()).await.err(),
            work.assign(&both, case.id, None).await.err(),
        ] {
            assert!(matches!(refused, Some(WorkError::Refused)), "{refused:?}");
        }
        assert!(matches!(
            work.unmask(&both, client.id).await,
            Err(WorkError::Refused)
        ));
        // Nor does a code search confirm a guessed code for them.
        let by_name_only = work.search_clients(&both, "320000-00007", 5).await.unwrap();
        assert!(by_name_only.is_empty(), "{by_name_only:?}");

        // Only administrators record where people work, even unchanged.
        let same = Assignment {
            subject: "anna".into(),
            centres: vec!["talsi-kac".into()],
        };
        assert!(matches!(
            work.put_assignment(&anna, same).await,
            Err(WorkError::Refused)
        ));

        // Jānis, at another centre, is shown the client's code: he may register a case
        // for the client by it, though he cannot find them by name.
        let janis = work
            .viewer("janis", vec![Role::Specialist], None)
            .await
            .unwrap();
        let by_code = NewCase {
            centre: "ventspils-kac".into(),
            client: None,
            client_code: Some("32000000007".into()),
            service: "V-none".into(),
            ..new.clone()
        };
        assert!(matches!(
            work.register(&janis, by_code.clone()).await,
            Err(WorkError::Invalid(_))
        ));
        work.put_service(&admin, service("V-1", "ventspils"))
            .await
            .unwrap();
        let theirs = work
            .register(
                &janis,
                NewCase {
                    service: "V-1".into(),
                    ..by_code
                },
            )
            .await
            .unwrap();
        assert_eq!(theirs.client.map(|c| c.id), Some(client.id));

        // Two desks registering the same person at once make one client.
        let twice = |name: &str| NewClient {
            kind: ClientKind::Natural,
            name: name.into(),
            code: "320000-00099".into(),
            centre: "talsi-kac".into(),
        };
        let (a, b) = tokio::join!(
            work.add_client(&anna, twice("Ēriks Balodis")),
            work.add_client(&anna, twice("E. Balodis"))
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "{a:?} {b:?}"
        );
    }

    static V1: kopa_store::Schema = kopa_store::Schema {
        service: "portal",
        cache_bytes: None,
        migrations: &[kopa_store::Migration {
            version: 1,
            description: "service catalogue and cases",
            apply: create_tables,
        }],
    };

    #[tokio::test]
    async fn migration_2_moves_each_case_history_to_its_own_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let v1 = Store::open(dir.path(), &V1).unwrap();
            let old = serde_json::json!({
                "id": 1, "service": "T-1", "owner": "talsi", "centre": "talsi-kac",
                "channel": "in_person", "assignee": "anna", "state": "in_progress",
                "stages": {"request_started": null, "registered": 5, "decided": null, "delivered": null},
                "history": [
                    {"at": 5, "by": "anna", "from": null, "to": "registered", "note": null},
                    {"at": 6, "by": "anna", "from": "registered", "to": "in_progress", "note": "sāku"}
                ]
            });
            v1.write_blocking(|txn| txn.insert(&CASES_V1, &1, &old))
                .unwrap();
        }
        let work = open(dir.path(), Arc::new(FixedClock::at(T0)));
        let admin = viewer("admin", &[Role::PlatformAdmin], &[], &[]);
        let detail = work.get(&admin, 1).await.unwrap();
        assert_eq!(detail.case.state, State::InProgress);
        assert_eq!(detail.history.len(), 2);
        assert_eq!(
            detail.history[1].event,
            Event::Moved {
                from: State::Registered,
                to: State::InProgress,
                note: Some("sāku".into())
            }
        );
    }
}
