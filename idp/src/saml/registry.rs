//! Where the trusted service providers come from: `[[saml_sp]]` entries (metadata in a
//! file, or at a URL) and registrations through the admin API (stored in `idp.redb`,
//! metadata given inline or as a URL). Metadata at a URL is fetched at start and again on
//! schedule — every `metadata_refresh_secs`, sooner when its `cacheDuration` says so, never
//! more often than `[saml] metadata_min_refresh_secs` — and a document that fails any
//! check (signature with the trusted certificate, `validUntil`, certificates, a changed
//! entityID) is refused while the last good one stays in use until its own `validUntil`.

use super::dsig::VerifyKey;
use super::metadata;
use super::{Provider, ServiceProvider, lock};
use kopa_config::SamlSpConfig;
use kopa_store::{StoreError, Table, WriteTxn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Service providers registered through the admin API, by entityID.
pub(crate) const STORED_SPS: Table<String, StoredSp> = Table::new("saml_sps");

/// Largest metadata document fetched.
const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn create_tables(txn: &WriteTxn<'_>) -> Result<(), StoreError> {
    txn.open_table(&STORED_SPS)
}

/// A registration made through the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSp {
    /// Settings (`metadata_file` unset; `metadata_url` when fetched).
    pub config: SamlSpConfig,
    /// The metadata document, when given inline.
    pub metadata_xml: Option<String>,
    /// PEM certificate the metadata must be signed with.
    pub trust_pem: Option<String>,
}

/// One source of service provider metadata and how its last load went.
#[derive(Debug, Clone)]
pub struct Source {
    /// Names the source while it is registered (positions change on removal).
    key: u64,
    pub config: SamlSpConfig,
    /// Registered through the admin API (removable there).
    pub from_api: bool,
    inline: Option<String>,
    trust: Option<VerifyKey>,
    trust_pem: Option<String>,
    /// The entityID, once metadata was loaded.
    pub entity_id: Option<String>,
    next_fetch_ms: u64,
    /// When metadata was last loaded, ms since the epoch.
    pub last_ok_ms: Option<u64>,
    /// Why the last load failed.
    pub last_error: Option<String>,
}

fn next_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The trust certificate's key (RSA ≥ 2048, currently valid).
fn trust_key(pem: &str, now: i64) -> Result<VerifyKey, String> {
    let der = super::dsig::pem_body(pem, "CERTIFICATE")
        .ok_or("The metadata signing certificate is not a PEM CERTIFICATE")?;
    metadata::certificate_der_key(&der, now)
}

impl Source {
    /// A `[[saml_sp]]` entry; its trust certificate is read now.
    pub fn configured(config: &SamlSpConfig, now: i64) -> Result<Self, String> {
        let (trust, trust_pem) = match &config.metadata_signing_cert {
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let key = trust_key(&pem, now).map_err(|e| format!("{}: {e}", path.display()))?;
                (Some(key), Some(pem))
            }
            None => (None, None),
        };
        Ok(Self {
            key: next_key(),
            config: config.clone(),
            from_api: false,
            inline: None,
            trust,
            trust_pem,
            entity_id: config.entity_id.clone(),
            next_fetch_ms: 0,
            last_ok_ms: None,
            last_error: None,
        })
    }

    /// A registration from the admin API, stored under `entity_id` (which its metadata
    /// must keep naming).
    pub fn stored(s: &StoredSp, entity_id: Option<&str>, now: i64) -> Result<Self, String> {
        let trust = s
            .trust_pem
            .as_deref()
            .map(|p| trust_key(p, now))
            .transpose()?;
        Ok(Self {
            key: next_key(),
            config: s.config.clone(),
            from_api: true,
            inline: s.metadata_xml.clone(),
            trust,
            trust_pem: s.trust_pem.clone(),
            entity_id: entity_id.map(str::to_owned),
            next_fetch_ms: 0,
            last_ok_ms: None,
            last_error: None,
        })
    }

    /// What identifies the source in messages: its URL or file.
    pub fn label(&self) -> String {
        match (&self.config.metadata_url, &self.config.metadata_file) {
            (Some(u), _) => u.clone(),
            (None, Some(f)) => f.display().to_string(),
            (None, None) => "(inline metadata)".into(),
        }
    }

    fn stored_form(&self) -> StoredSp {
        StoredSp {
            config: self.config.clone(),
            metadata_xml: self.inline.clone(),
            trust_pem: self.trust_pem.clone(),
        }
    }

    /// The metadata document: read, fetched, or inline.
    async fn document(&self) -> Result<String, String> {
        if let Some(url) = &self.config.metadata_url {
            return fetch(url).await;
        }
        if let Some(path) = &self.config.metadata_file {
            return std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the metadata: {e}"));
        }
        self.inline.clone().ok_or_else(|| "no metadata".to_owned())
    }

    /// Loads the provider: the document, every check, and the settings.
    async fn load(&self, now: i64) -> Result<ServiceProvider, String> {
        let xml = self.document().await?;
        let meta = metadata::parse_sp(&xml, now, self.trust.as_ref())?;
        if let Some(known) = &self.entity_id
            && *known != meta.entity_id
        {
            return Err(format!(
                "the metadata now names entityID {:?} instead of {known:?}",
                meta.entity_id
            ));
        }
        ServiceProvider::checked(&self.config, meta)
    }
}

/// GETs metadata over HTTP(S): 200 and at most 1 MiB of UTF-8.
async fn fetch(url: &str) -> Result<String, String> {
    let answer = tokio::time::timeout(
        FETCH_TIMEOUT,
        crate::outbound::exchange(
            hyper::Method::GET,
            url,
            "application/samlmetadata+xml, application/xml, text/xml",
            None,
            MAX_METADATA_BYTES,
        ),
    )
    .await
    .map_err(|_| "fetching the metadata timed out".to_owned())?
    .map_err(|e| format!("fetching the metadata failed ({e})"))?;
    if answer.status != 200 {
        return Err(format!(
            "fetching the metadata failed (HTTP {})",
            answer.status
        ));
    }
    let body = answer
        .body
        .ok_or_else(|| format!("the metadata is larger than {MAX_METADATA_BYTES} bytes"))?;
    String::from_utf8(body.to_vec()).map_err(|_| "the metadata is not UTF-8".to_owned())
}

/// Why an admin API registration was refused.
#[derive(Debug)]
pub enum AddError {
    /// The metadata or settings fail a check.
    Invalid(String),
    /// The entityID is already registered.
    Taken(String),
    Store(StoreError),
}

impl Provider {
    fn now_ms(&self) -> u64 {
        self.clock.now_millis()
    }

    /// When the source loaded now (with the metadata's `cacheDuration` and `validUntil`)
    /// should be loaded again, ms since the epoch: by its schedule, and at the latest
    /// halfway to `validUntil`, so a renewed document arrives before the old one expires.
    fn next_refresh(&self, source: &Source, loaded: Option<&ServiceProvider>) -> u64 {
        let min = self.config.metadata_min_refresh_secs;
        let mut secs = source.config.metadata_refresh_secs;
        if let Some(sp) = loaded {
            if let Some(c) = sp.meta.cache_duration_secs {
                secs = secs.min(c);
            }
            if let Some(v) = sp.meta.valid_until {
                let left = u64::try_from(v - self.now_secs()).unwrap_or(0);
                secs = secs.min(left / 2);
            }
        }
        self.now_ms() + secs.max(min) * 1000
    }

    /// Loads the configured providers and those registered through the admin API.
    /// A configured file that fails its checks stops the start (with the reason); a URL
    /// that cannot be fetched now is retried on schedule, as is a stored registration
    /// whose metadata no longer passes.
    pub async fn load_sources(
        &self,
        configured: &[SamlSpConfig],
        store: Option<kopa_store::Store>,
    ) -> Result<(), String> {
        let now = self.now_secs();
        let mut sources = Vec::new();
        for c in configured {
            sources.push(Source::configured(c, now)?);
        }
        if let Some(store) = &store {
            let stored = store
                .read(|txn| txn.iter(&STORED_SPS))
                .await
                .map_err(|e| format!("stored SAML service providers: {e}"))?;
            for (id, s) in stored {
                match Source::stored(&s, Some(&id), now) {
                    Ok(src) => sources.push(src),
                    Err(e) => {
                        tracing::error!(sp = %id, error = %e, "stored SAML service provider is unusable")
                    }
                }
            }
        }
        for mut source in sources {
            match source.load(now).await {
                Ok(sp) => {
                    let id = sp.meta.entity_id.clone();
                    if self.sp(&id).is_some() {
                        let message = format!(
                            "{}: service provider {id:?} is registered twice",
                            source.label()
                        );
                        if source.from_api {
                            tracing::error!("{message}; the stored registration is ignored");
                            continue;
                        }
                        return Err(message);
                    }
                    source.entity_id = Some(id.clone());
                    source.last_ok_ms = Some(self.now_ms());
                    source.next_fetch_ms = self.next_refresh(&source, Some(&sp));
                    self.put_sp(sp);
                }
                Err(e) if source.config.metadata_url.is_none() && !source.from_api => {
                    return Err(format!("{}: {e}", source.label()));
                }
                Err(e) => {
                    tracing::error!(source = %source.label(), error = %e, "SAML metadata not loaded; retrying on schedule");
                    source.last_error = Some(e);
                    source.next_fetch_ms =
                        self.now_ms() + self.config.metadata_min_refresh_secs * 1000;
                }
            }
            lock(&self.sources).push(source);
        }
        if let Some(store) = store {
            let _ = self.store.set(store);
        }
        Ok(())
    }

    fn put_sp(&self, sp: ServiceProvider) {
        self.sps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sp.meta.entity_id.clone(), Arc::new(sp));
    }

    /// Refreshes metadata URLs as they fall due, about once a second, until the provider
    /// is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        // Weak: the refresher must not keep the provider (and the databases) alive.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                me.refresh_due().await;
            }
        })
    }

    /// Fetches again every URL source that is due.
    pub async fn refresh_due(&self) {
        let now = self.now_ms();
        let due: Vec<u64> = lock(&self.sources)
            .iter()
            .filter(|s| s.config.metadata_url.is_some() && s.next_fetch_ms <= now)
            .map(|s| s.key)
            .collect();
        for key in due {
            let _ = self.reload(key).await;
        }
    }

    /// Loads source `key` again; its new metadata replaces the old only when it passes.
    async fn reload(&self, key: u64) -> Result<(), String> {
        let find = |s: &Source| s.key == key;
        let Some(source) = lock(&self.sources).iter().find(|s| find(s)).cloned() else {
            return Err("no such source".into());
        };
        let result = source.load(self.now_secs()).await;
        let mut sources = lock(&self.sources);
        let Some(slot) = sources.iter_mut().find(|s| find(s)) else {
            return Err("the service provider was removed meanwhile".into());
        };
        match result {
            Ok(sp) => {
                let id = sp.meta.entity_id.clone();
                let clash = slot.entity_id.is_none() && self.sp(&id).is_some();
                if clash {
                    let e = format!("service provider {id:?} is registered twice");
                    slot.last_error = Some(e.clone());
                    slot.next_fetch_ms = self.next_refresh(slot, None);
                    return Err(e);
                }
                slot.entity_id = Some(id);
                slot.last_ok_ms = Some(self.now_ms());
                slot.last_error = None;
                slot.next_fetch_ms = self.next_refresh(slot, Some(&sp));
                drop(sources);
                self.put_sp(sp);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(source = %slot.label(), error = %e, "SAML metadata refresh refused; the last good metadata stays");
                slot.last_error = Some(e.clone());
                slot.next_fetch_ms = self.now_ms() + self.config.metadata_min_refresh_secs * 1000;
                Err(e)
            }
        }
    }

    /// Loads the metadata of `entity_id` again now (admin API). Err with the reason
    /// when the new document is refused (the old one stays).
    pub async fn refresh_sp(&self, entity_id: &str) -> Option<Result<(), String>> {
        let key = lock(&self.sources)
            .iter()
            .find(|s| s.entity_id.as_deref() == Some(entity_id))?
            .key;
        Some(self.reload(key).await)
    }

    /// Every source, for the admin API: settings, where the metadata comes from, its
    /// validity and how the last load went.
    pub fn list_sps(&self) -> Vec<serde_json::Value> {
        let sources = lock(&self.sources).clone();
        sources
            .iter()
            .map(|s| {
                let sp = s.entity_id.as_deref().and_then(|id| self.sp(id));
                serde_json::json!({
                    "entity_id": s.entity_id,
                    "name": s.config.name,
                    "origin": if s.from_api { "api" } else { "config" },
                    "metadata_url": s.config.metadata_url,
                    "metadata_file": s.config.metadata_file,
                    "metadata_signature_required": s.trust.is_some(),
                    "valid_until": sp.as_ref().and_then(|p| p.meta.valid_until).map(super::response::instant),
                    "last_loaded": s.last_ok_ms.map(|ms| super::response::instant(i64::try_from(ms / 1000).unwrap_or(0))),
                    "last_error": s.last_error,
                    "sign": s.config.sign,
                    "name_id_format": s.config.name_id_format,
                    "attributes": s.config.attributes,
                    "require_signed_requests": s.config.require_signed_requests,
                    "allow_idp_initiated": s.config.allow_idp_initiated,
                    "tenant": s.config.tenant,
                    "acs": sp.as_ref().map(|p| p.meta.acs.iter().map(|e| e.location.clone()).collect::<Vec<_>>()),
                })
            })
            .collect()
    }

    /// Registers a service provider (admin API): its metadata loaded and checked now,
    /// then stored durably before it is used. Returns its entityID.
    pub async fn add_sp(&self, stored: StoredSp) -> Result<String, AddError> {
        let store = self
            .store
            .get()
            .cloned()
            .ok_or_else(|| AddError::Invalid("registrations cannot be stored".into()))?;
        let now = self.now_secs();
        let pinned = stored.config.entity_id.clone();
        let mut source =
            Source::stored(&stored, pinned.as_deref(), now).map_err(AddError::Invalid)?;
        let sp = source.load(now).await.map_err(AddError::Invalid)?;
        let id = sp.meta.entity_id.clone();
        if self.sp(&id).is_some() {
            return Err(AddError::Taken(id));
        }
        let record = source.stored_form();
        let key = id.clone();
        let added = store
            .write(move |txn| {
                if txn.get(&STORED_SPS, &key)?.is_some() {
                    return Ok(false);
                }
                txn.insert(&STORED_SPS, &key, &record)?;
                Ok(true)
            })
            .await
            .map_err(AddError::Store)?;
        if !added {
            return Err(AddError::Taken(id));
        }
        source.entity_id = Some(id.clone());
        source.last_ok_ms = Some(self.now_ms());
        source.next_fetch_ms = self.next_refresh(&source, Some(&sp));
        self.put_sp(sp);
        lock(&self.sources).push(source);
        Ok(id)
    }

    /// Removes a registration made through the admin API. `Ok(false)` when there is no
    /// such registration (configured providers are changed in the configuration).
    pub async fn remove_sp(&self, entity_id: &str) -> Result<bool, StoreError> {
        let is_api = lock(&self.sources)
            .iter()
            .any(|s| s.from_api && s.entity_id.as_deref() == Some(entity_id));
        let Some(store) = self.store.get().cloned().filter(|_| is_api) else {
            return Ok(false);
        };
        let key = entity_id.to_owned();
        let existed = store
            .write(move |txn| Ok(txn.remove(&STORED_SPS, &key)?.is_some()))
            .await?;
        if !existed {
            tracing::warn!(sp = %entity_id, "removing an API registration that was not stored");
        }
        lock(&self.sources).retain(|s| !(s.from_api && s.entity_id.as_deref() == Some(entity_id)));
        self.sps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(entity_id);
        Ok(true)
    }
}
