//! Relying parties: from `[[oidc_client]]` (secrets read from their files and kept only as
//! hashes) and from the admin API (stored in `idp.redb`).

use kopa_config::{ClientAuthMethod, OidcClientConfig, OidcConfig, SigningAlg};
use kopa_store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Shortest client secret accepted: secrets are compared by hash, so they must be
/// unguessable on their own.
pub const MIN_SECRET_CHARS: usize = 32;

/// Clients created through the admin API.
pub(crate) const STORED_CLIENTS: Table<String, Client> = Table::new("oidc_clients");

/// One registered relying party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Shown on the consent page.
    pub name: String,
    /// Token endpoint authentication.
    pub auth_method: ClientAuthMethod,
    /// Hex SHA-256 of the secret (confidential clients).
    pub secret_sha256: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Back-channel logout endpoint.
    pub backchannel_logout_uri: Option<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// No consent page.
    pub first_party: bool,
    /// Token signing algorithm.
    pub signing_alg: SigningAlg,
    /// Only this tenant's users, when set.
    pub tenant: Option<String>,
    /// Access token lifetime, seconds.
    pub access_token_secs: u64,
    /// ID token lifetime, seconds.
    pub id_token_secs: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_token_secs: u64,
    /// Defined in the configuration file (not changeable through the API).
    pub from_config: bool,
}

/// Hex SHA-256 of a client secret.
pub fn hash_secret(secret: &str) -> String {
    crate::session::hash_token(secret)
}

impl Client {
    /// A client from its configuration entry and secret (already read from its file).
    pub fn from_config(
        c: &OidcClientConfig,
        secret: Option<&str>,
        defaults: &OidcConfig,
    ) -> Result<Self, String> {
        let secret_sha256 = match (c.auth_method, secret) {
            (ClientAuthMethod::None, _) => None,
            (_, Some(s)) if s.trim().chars().count() >= MIN_SECRET_CHARS => {
                Some(hash_secret(s.trim()))
            }
            (_, _) => {
                return Err(format!(
                    "The secret of OIDC client {:?} must be at least {MIN_SECRET_CHARS} characters",
                    c.id
                ));
            }
        };
        Ok(Self {
            id: c.id.clone(),
            name: if c.name.is_empty() {
                c.id.clone()
            } else {
                c.name.clone()
            },
            auth_method: c.auth_method,
            secret_sha256,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            first_party: c.first_party,
            signing_alg: c.signing_alg,
            tenant: c.tenant.clone(),
            access_token_secs: c
                .access_token_lifetime_secs
                .unwrap_or(defaults.access_token_lifetime_secs),
            id_token_secs: c
                .id_token_lifetime_secs
                .unwrap_or(defaults.id_token_lifetime_secs),
            refresh_token_secs: c
                .refresh_token_lifetime_secs
                .unwrap_or(defaults.refresh_token_lifetime_secs),
            from_config: true,
        })
    }

    /// Whether the client has no secret (PKCE is then mandatory).
    pub fn is_public(&self) -> bool {
        self.auth_method == ClientAuthMethod::None
    }

    /// Whether `grant` is allowed.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether `secret` is this client's secret (constant-time over the hashes).
    pub fn secret_matches(&self, secret: &str) -> bool {
        self.secret_sha256
            .as_deref()
            .is_some_and(|h| kopa_web::cookie::secrets_match(h, &hash_secret(secret)))
    }

    /// What the admin API shows: everything but the secret hash.
    pub fn public_view(&self) -> serde_json::Value {
        serde_json::json!({
            "client_id": self.id, "name": self.name,
            "token_endpoint_auth_method": self.auth_method,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "grant_types": self.grant_types, "scopes": self.scopes,
            "first_party": self.first_party, "signing_alg": self.signing_alg,
            "tenant": self.tenant, "access_token_lifetime_secs": self.access_token_secs,
            "id_token_lifetime_secs": self.id_token_secs,
            "refresh_token_lifetime_secs": self.refresh_token_secs,
            "from_config": self.from_config,
        })
    }
}

/// Every registered client.
#[derive(Debug, Clone)]
pub struct Clients {
    store: Store,
    map: Arc<RwLock<HashMap<String, Arc<Client>>>>,
}

impl Clients {
    /// The configured clients plus those stored through the API (a configured id wins).
    pub async fn load(store: Store, configured: Vec<Client>) -> Result<Self, StoreError> {
        let stored = store.read(|txn| txn.iter(&STORED_CLIENTS)).await?;
        let mut map: HashMap<String, Arc<Client>> = stored
            .into_iter()
            .map(|(id, c)| (id, Arc::new(c)))
            .collect();
        for c in configured {
            map.insert(c.id.clone(), Arc::new(c));
        }
        Ok(Self {
            store,
            map: Arc::new(RwLock::new(map)),
        })
    }

    /// The client `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every client, by id.
    pub fn list(&self) -> Vec<Arc<Client>> {
        let mut all: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Stores a new client (durably) and makes it usable. Fails when the id is taken.
    pub async fn add(&self, client: Client) -> Result<bool, StoreError> {
        if self.get(&client.id).is_some() {
            return Ok(false);
        }
        let stored = client.clone();
        let added = self
            .store
            .write(move |txn| {
                if txn.get(&STORED_CLIENTS, &stored.id)?.is_some() {
                    return Ok(false);
                }
                txn.insert(&STORED_CLIENTS, &stored.id, &stored)?;
                Ok(true)
            })
            .await?;
        if added {
            self.map
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(client.id.clone(), Arc::new(client));
        }
        Ok(added)
    }

    /// Removes a client created through the API. Configured clients stay.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        if self.get(id).is_none_or(|c| c.from_config) {
            return Ok(false);
        }
        let key = id.to_owned();
        let removed = self
            .store
            .write(move |txn| Ok(txn.remove(&STORED_CLIENTS, &key)?.is_some()))
            .await?;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(removed)
    }
}
