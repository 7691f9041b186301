//! The in-memory view of case work that lists, searches and reports read: one compact
//! row per case (about 80 bytes), clients' folded name words and codes, and the words of
//! the service names. It is rebuilt from `portal.redb` at start and updated after every
//! commit (under the writers' lock, so it follows the database in commit order); the
//! database stays the only record. A million cases make about 100 MB.

use crate::case::{Channel, Indicators, Stages, State};
use crate::catalogue::{Bilingual, Service};
use crate::client::{self, ClientKind, ClientRecord, ClientView};
use crate::work::{CaseRecord, CaseView, Viewer};
use kopa_core::Role;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Strings that many rows share (services, institutions, centres, staff), by number.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

/// The number of "nobody" (no assignee).
pub(crate) const NONE: u32 = u32::MAX;

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        self.names.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// One case, as lists and reports need it. Times in milliseconds; 0 = not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub id: u64,
    pub client: u64,
    pub request_started: u64,
    pub registered: u64,
    pub decided: u64,
    pub delivered: u64,
    pub service: u32,
    pub owner: u32,
    pub centre: u32,
    pub assignee: u32,
    /// Statutory days; 0 = none.
    pub deadline_days: u32,
    pub channel: Channel,
    pub state: State,
}

const DAY_MS: u64 = 86_400_000;

fn opt(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

impl Row {
    pub(crate) fn stages(&self) -> Stages {
        Stages {
            request_started: opt(self.request_started),
            registered: self.registered,
            decided: opt(self.decided),
            delivered: opt(self.delivered),
        }
    }

    pub(crate) fn deadline(&self) -> Option<u32> {
        (self.deadline_days != 0).then_some(self.deadline_days)
    }

    pub(crate) fn indicators(&self, now: u64) -> Indicators {
        self.stages().indicators(self.deadline(), now)
    }

    /// When the decision is due, if the service has a deadline.
    pub(crate) fn due(&self) -> Option<u64> {
        self.deadline()
            .map(|d| self.registered + u64::from(d) * DAY_MS)
    }
}

/// A client, as search and lists need it.
#[derive(Debug, Clone)]
pub(crate) struct ClientEntry {
    pub name: String,
    pub kind: ClientKind,
    pub shown_code: String,
    pub centre: u32,
    /// Case numbers, ascending.
    pub cases: Vec<u64>,
    /// The (centre, owner institution) of its cases, each once: who may see the client
    /// follows from these without reading the cases.
    pub places: Vec<(u32, u32)>,
}

/// The caller, in interned numbers.
#[derive(Debug)]
pub(crate) struct Scope {
    platform: bool,
    front: bool,
    owner: bool,
    centres: Vec<u32>,
    institutions: Vec<u32>,
}

impl Scope {
    pub(crate) fn sees(&self, r: &Row) -> bool {
        self.sees_place(r.centre, r.owner)
    }

    fn sees_place(&self, centre: u32, owner: u32) -> bool {
        self.platform
            || (self.front && self.centres.contains(&centre))
            || (self.owner && self.institutions.contains(&owner))
    }
}

/// Which cases a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Every case the caller may see.
    #[default]
    All,
    /// Cases assigned to the caller.
    Mine,
    /// Open cases of the caller's centres.
    Queue,
    /// Open cases whose deadline has passed or comes within `days`.
    Deadline { days: u32 },
}

/// A list request, checked.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub view: View,
    pub states: Vec<State>,
    pub service: Option<String>,
    pub channel: Option<Channel>,
    pub centre: Option<String>,
    /// Free text: words of the client's name (any diacritics), the service code or
    /// name, the case number, or a client's whole code.
    pub text: Option<String>,
    /// Only cases with a lower number (the cursor of the previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

/// The words of a text query and what each may match.
struct Word {
    clients: HashSet<u64>,
    services: HashSet<u32>,
    number: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub strings: Interner,
    /// Ascending by id.
    pub rows: Vec<Row>,
    pub clients: HashMap<u64, ClientEntry>,
    client_words: BTreeMap<String, Vec<u64>>,
    client_codes: HashMap<String, u64>,
    service_words: BTreeMap<String, HashSet<u32>>,
    service_names: HashMap<u32, Bilingual>,
}

/// Every key of `map` that starts with `prefix`.
fn with_prefix<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = &'a V> + 'a {
    map.range(prefix.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

impl Index {
    pub(crate) fn scope(&self, v: &Viewer) -> Scope {
        let has = |r| v.roles.contains(&r);
        Scope {
            platform: has(Role::PlatformAdmin),
            front: has(Role::Specialist) || has(Role::Supervisor),
            owner: has(Role::ServiceOwner),
            centres: v
                .centres
                .iter()
                .filter_map(|c| self.strings.get(c))
                .collect(),
            institutions: v
                .institutions
                .iter()
                .filter_map(|i| self.strings.get(i))
                .collect(),
        }
    }

    pub(crate) fn put_service(&mut self, s: &Service) {
        let id = self.strings.intern(&s.code);
        for set in self.service_words.values_mut() {
            set.remove(&id);
        }
        let text = format!("{} {} {}", s.code, s.name.lv, s.name.en);
        // The whole code is a word too, so "vid-7" finds the service `VID-7`.
        let code = crate::person::fold(&s.code);
        for w in client::words(&text).into_iter().chain([code]) {
            self.service_words.entry(w).or_default().insert(id);
        }
        self.service_words.retain(|_, set| !set.is_empty());
        self.service_names.insert(id, s.name.clone());
    }

    pub(crate) fn put_client(&mut self, c: &ClientRecord) {
        let (cases, places) = self
            .clients
            .get(&c.id)
            .map(|e| (e.cases.clone(), e.places.clone()))
            .unwrap_or_default();
        let centre = self.strings.intern(&c.centre);
        self.client_codes.insert(c.code.clone(), c.id);
        for w in c.words() {
            let ids = self.client_words.entry(w).or_default();
            if !ids.contains(&c.id) {
                ids.push(c.id);
            }
        }
        self.clients.insert(
            c.id,
            ClientEntry {
                name: c.name.clone(),
                kind: c.kind,
                shown_code: c.shown_code(),
                centre,
                cases,
                places,
            },
        );
    }

    pub(crate) fn put_case(&mut self, c: &CaseRecord) {
        let assignee = c
            .assignee
            .as_deref()
            .map_or(NONE, |a| self.strings.intern(a));
        let row = Row {
            id: c.id,
            client: c.client.unwrap_or(0),
            request_started: c.stages.request_started.unwrap_or(0),
            registered: c.stages.registered,
            decided: c.stages.decided.unwrap_or(0),
            delivered: c.stages.delivered.unwrap_or(0),
            service: self.strings.intern(&c.service),
            owner: self.strings.intern(&c.owner),
            centre: self.strings.intern(&c.centre),
            assignee,
            deadline_days: c.deadline_days.unwrap_or(0),
            channel: c.channel,
            state: c.state,
        };
        match self.rows.binary_search_by_key(&c.id, |r| r.id) {
            Ok(i) => self.rows[i] = row,
            Err(i) => {
                self.rows.insert(i, row);
                if let Some(e) = c.client.and_then(|id| self.clients.get_mut(&id))
                    && let Err(at) = e.cases.binary_search(&c.id)
                {
                    e.cases.insert(at, c.id);
                    // A case's centre and owner never change after registration.
                    let place = (row.centre, row.owner);
                    if !e.places.contains(&place) {
                        e.places.push(place);
                    }
                }
            }
        }
    }

    pub(crate) fn client_by_code(&self, code: &str) -> Option<u64> {
        self.client_codes.get(code).copied()
    }

    pub(crate) fn client_view(&self, id: u64) -> Option<ClientView> {
        self.clients.get(&id).map(|e| ClientView {
            id,
            kind: e.kind,
            name: e.name.clone(),
            code: e.shown_code.clone(),
        })
    }

    /// A stored case as the API shows it (names of its service and client from here).
    pub(crate) fn case_view(&self, c: &CaseRecord, now: u64) -> CaseView {
        let service_name = self
            .strings
            .get(&c.service)
            .and_then(|id| self.service_names.get(&id))
            .cloned()
            .unwrap_or_else(|| Bilingual {
                lv: c.service.clone(),
                en: c.service.clone(),
            });
        let due = c
            .deadline_days
            .map(|d| c.stages.registered + u64::from(d) * DAY_MS);
        CaseView {
            id: c.id,
            service: c.service.clone(),
            service_name,
            owner: c.owner.clone(),
            centre: c.centre.clone(),
            channel: c.channel,
            client: c.client.and_then(|id| self.client_view(id)),
            assignee: c.assignee.clone(),
            state: c.state,
            stages: c.stages,
            due,
            indicators: c.stages.indicators(c.deadline_days, now),
        }
    }

    /// Case `id` as the API shows it, from its row.
    pub(crate) fn row_view(&self, id: u64, now: u64) -> Option<CaseView> {
        let r = self.row(id)?;
        let name = |n: u32| self.strings.name(n).to_owned();
        let record = CaseRecord {
            id,
            service: name(r.service),
            owner: name(r.owner),
            centre: name(r.centre),
            channel: r.channel,
            client: opt(r.client),
            assignee: (r.assignee != NONE).then(|| name(r.assignee)),
            state: r.state,
            stages: r.stages(),
            deadline_days: r.deadline(),
        };
        Some(self.case_view(&record, now))
    }

    /// The client whose whole code (a personal code or a registration number, in any
    /// accepted spelling) is `code`.
    pub(crate) fn client_by_any_code(&self, code: &str) -> Option<u64> {
        [ClientKind::Natural, ClientKind::Legal]
            .iter()
            .filter_map(|k| client::normalise_code(*k, code).ok())
            .find_map(|c| self.client_codes.get(&c).copied())
    }

    pub(crate) fn row(&self, id: u64) -> Option<&Row> {
        self.rows
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|i| &self.rows[i])
    }

    fn word(&self, w: &str, codes: bool) -> Word {
        let mut clients: HashSet<u64> = HashSet::new();
        // A whole code (with or without its hyphen) names one client, for those who may
        // see whole codes: for anyone else, matching would confirm a guessed code.
        if codes && let Some(id) = self.client_by_any_code(w) {
            clients.insert(id);
        }
        if w.chars().count() >= 2 {
            for ids in with_prefix(&self.client_words, w) {
                clients.extend(ids);
            }
        }
        let services = if w.chars().count() >= 2 {
            with_prefix(&self.service_words, w)
                .flatten()
                .copied()
                .collect()
        } else {
            HashSet::new()
        };
        Word {
            clients,
            services,
            number: w.parse().ok(),
        }
    }

    /// The words of a query: letters and digits, folded; a personal code with its hyphen
    /// stays one word.
    fn query_words(&self, text: &str, codes: bool) -> Vec<Word> {
        text.split_whitespace()
            .flat_map(|part| {
                let code = [ClientKind::Natural, ClientKind::Legal]
                    .iter()
                    .any(|k| client::normalise_code(*k, part).is_ok());
                let folded = crate::person::fold(part);
                let service_code = with_prefix(&self.service_words, &folded).next().is_some();
                if code {
                    vec![part.to_owned()]
                } else if service_code {
                    vec![folded]
                } else {
                    client::words(part)
                }
            })
            .take(8)
            .map(|w| self.word(&w, codes))
            .collect()
    }

    /// Cases for `f`, newest first; the ids only (the caller reads what it shows).
    pub(crate) fn list(&self, v: &Viewer, f: &Filter, now: u64) -> Vec<u64> {
        let scope = self.scope(v);
        let me = self.strings.get(&v.subject);
        let service = f.service.as_deref().map(|s| self.strings.get(s));
        let centre = f.centre.as_deref().map(|c| self.strings.get(c));
        if service == Some(None) || centre == Some(None) {
            return Vec::new();
        }
        let words = f
            .text
            .as_deref()
            .map(|t| self.query_words(t, v.may_unmask()))
            .unwrap_or_default();
        let matches = |r: &Row| -> bool {
            if !scope.sees(r) {
                return false;
            }
            let view_ok = match f.view {
                View::All => true,
                View::Mine => me.is_some_and(|m| r.assignee == m),
                View::Queue => !r.state.is_final() && scope.centres.contains(&r.centre),
                View::Deadline { days } => {
                    !r.state.is_final()
                        && r.decided == 0
                        && r.due()
                            .is_some_and(|due| due <= now + u64::from(days) * DAY_MS)
                }
            };
            view_ok
                && (f.states.is_empty() || f.states.contains(&r.state))
                && service.is_none_or(|s| s == Some(r.service))
                && centre.is_none_or(|c| c == Some(r.centre))
                && f.channel.is_none_or(|c| c == r.channel)
                && words.iter().all(|w| {
                    w.clients.contains(&r.client)
                        || w.services.contains(&r.service)
                        || w.number == Some(r.id)
                })
        };
        let before = f.before.unwrap_or(u64::MAX);
        let limit = f.limit.clamp(1, 500);
        // When a word can only match clients, their cases are the only candidates.
        let narrow = words
            .iter()
            .filter(|w| w.services.is_empty() && w.number.is_none())
            .min_by_key(|w| w.clients.len());
        match narrow {
            Some(w) => {
                let mut ids: Vec<u64> = w
                    .clients
                    .iter()
                    .filter_map(|c| self.clients.get(c))
                    .flat_map(|e| e.cases.iter().copied())
                    .filter(|&id| id < before)
                    .collect();
                ids.sort_unstable_by(|a, b| b.cmp(a));
                ids.into_iter()
                    .filter(|&id| self.row(id).is_some_and(&matches))
                    .take(limit)
                    .collect()
            }
            None => self
                .rows
                .iter()
                .rev()
                .skip_while(|r| r.id >= before)
                .filter(|r| matches(r))
                .take(limit)
                .map(|r| r.id)
                .collect(),
        }
    }

    /// Whether the caller may see client `id`: one of their centres registered it, or
    /// they may see one of its cases.
    pub(crate) fn sees_client(&self, v: &Viewer, id: u64) -> bool {
        self.sees_client_in(&self.scope(v), id)
    }

    fn sees_client_in(&self, scope: &Scope, id: u64) -> bool {
        self.clients.get(&id).is_some_and(|e| {
            scope.platform
                || (scope.front && scope.centres.contains(&e.centre))
                || e.places.iter().any(|(c, o)| scope.sees_place(*c, *o))
        })
    }

    /// Clients for a text query, in name order: those the caller may see whose name has
    /// every word, and the client whose whole code was typed (front office may find any
    /// client by the code the client shows them).
    pub(crate) fn search_clients(&self, v: &Viewer, text: &str, limit: usize) -> Vec<u64> {
        let words = self.query_words(text, v.may_unmask());
        let Some(first) = words.first() else {
            return Vec::new();
        };
        let front = v.may_unmask()
            && (v.roles.contains(&Role::Specialist) || v.roles.contains(&Role::Supervisor));
        let scope = self.scope(v);
        let by_code: Vec<u64> = text
            .split_whitespace()
            .filter_map(|p| self.client_by_any_code(p))
            .collect();
        let mut found: Vec<u64> = first
            .clients
            .iter()
            .copied()
            .filter(|id| words.iter().all(|w| w.clients.contains(id)))
            .filter(|id| (front && by_code.contains(id)) || self.sees_client_in(&scope, *id))
            .collect();
        found.sort_by(|a, b| {
            let name = |id| self.clients.get(id).map_or("", |e| e.name.as_str());
            name(a).cmp(name(b)).then(a.cmp(b))
        });
        found.truncate(limit.clamp(1, 200));
        found
    }
}

/// What a report groups by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The institution owning the service.
    Institution,
    Service,
    Channel,
    Centre,
    /// The assigned member of staff (workload).
    Specialist,
    /// The calendar month of registration (UTC, `YYYY-MM`).
    Month,
}

/// The year and month of a time in milliseconds (UTC), by the civil-from-days algorithm.
pub fn year_month(ms: u64) -> (i64, u32) {
    let days = i64::try_from(ms / DAY_MS).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1))
}

fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "in_person",
        Channel::VpvkacPhone => "vpvkac_phone",
        Channel::LatvijaLvPhone => "latvija_lv_phone",
        Channel::Email => "email",
        Channel::EService => "e_service",
    }
}

impl Index {
    /// Summaries of the cases the caller may see that were registered in `[from, to)`,
    /// grouped by `by`, in key order.
    pub(crate) fn report(
        &self,
        v: &Viewer,
        from: u64,
        to: u64,
        by: Dimension,
        now: u64,
    ) -> Vec<(String, crate::report::Summary)> {
        let scope = self.scope(v);
        let mut groups: HashMap<i64, Vec<Indicators>> = HashMap::new();
        for r in &self.rows {
            if r.registered < from || r.registered >= to || !scope.sees(r) {
                continue;
            }
            let key = match by {
                Dimension::Institution => i64::from(r.owner),
                Dimension::Service => i64::from(r.service),
                Dimension::Channel => r.channel as i64,
                Dimension::Centre => i64::from(r.centre),
                Dimension::Specialist => i64::from(r.assignee),
                Dimension::Month => {
                    let (y, m) = year_month(r.registered);
                    y * 12 + i64::from(m) - 1
                }
            };
            groups.entry(key).or_default().push(r.indicators(now));
        }
        let name = |key: i64| -> String {
            match by {
                Dimension::Channel => Channel::ALL
                    .iter()
                    .find(|c| **c as i64 == key)
                    .map_or_else(String::new, |c| channel_name(*c).to_owned()),
                Dimension::Month => {
                    format!("{:04}-{:02}", key.div_euclid(12), key.rem_euclid(12) + 1)
                }
                _ => u32::try_from(key)
                    .ok()
                    .filter(|k| *k != NONE)
                    .map_or_else(String::new, |k| self.strings.name(k).to_owned()),
            }
        };
        let mut out: Vec<(String, crate::report::Summary)> = groups
            .into_iter()
            .map(|(k, list)| (name(k), crate::report::summarize(&list)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
