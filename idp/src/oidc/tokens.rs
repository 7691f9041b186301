//! The token endpoint's grants, and what reads tokens back: userinfo, introspection,
//! revocation and RP-initiated logout.

use super::grants::{self, CODES, FAMILIES, REFRESH, REVOKED, SID_CLIENTS, SID_FAMILIES};
use super::{
    Client, ClientCredentials, OAuthError, Origin, Params, Provider, hash, jose, new_family,
    refresh_record, scope_string,
};
use crate::session::{SessionData, new_token};
use kopa_store::audit::Outcome;
use openidconnect::core::CoreGenderClaim;
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, AuthenticationContextClass,
    AuthenticationMethodReference, AuthorizationCode, EndUserEmail, EndUserFamilyName,
    EndUserGivenName, EndUserName, EndUserUsername, IdTokenClaims, IssuerUrl, LocalizedClaim,
    Nonce, StandardClaims, SubjectIdentifier,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Kopa's own claims in ID tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KopaClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
}
impl AdditionalClaims for KopaClaims {}

type IdToken = openidconnect::IdToken<
    KopaClaims,
    CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJwsSigningAlgorithm,
>;

/// `acr` for a sign-in with or without a second factor.
fn acr(amr: &[String]) -> &'static str {
    if amr.iter().any(|m| m == "otp" || m == "mfa") {
        "urn:kopa:acr:mfa"
    } else {
        "urn:kopa:acr:password"
    }
}

fn has(scope: &[String], s: &str) -> bool {
    scope.iter().any(|x| x == s)
}

/// Claims about the user that `scope` releases (shared by access tokens and userinfo).
fn user_claims(data: &SessionData, scope: &[String], out: &mut serde_json::Map<String, Value>) {
    if has(scope, "profile") {
        out.insert("name".into(), json!(data.display_name));
        out.insert("preferred_username".into(), json!(data.login));
        if let Some(g) = &data.given_name {
            out.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &data.family_name {
            out.insert("family_name".into(), json!(f));
        }
    }
    if has(scope, "email")
        && let Some(m) = &data.email
    {
        out.insert("email".into(), json!(m));
    }
    if has(scope, "roles") {
        let roles: Vec<&str> = data.roles.iter().map(|r| r.as_str()).collect();
        out.insert("roles".into(), json!(roles));
        out.insert("groups".into(), json!(data.groups));
    }
    if let Some(t) = &data.tenant {
        out.insert("tenant".into(), json!(t.as_str()));
    }
}

/// What a user granted a client, as the token endpoint needs it.
struct UserGrant<'a> {
    sid: &'a str,
    data: &'a SessionData,
    scope: &'a [String],
    auth_time_ms: u64,
}

struct Subject<'a> {
    sub: &'a str,
    sid: Option<&'a str>,
    data: Option<&'a SessionData>,
}

impl Provider {
    fn access_token(
        &self,
        client: &Client,
        who: &Subject<'_>,
        scope: &[String],
        now_ms: u64,
    ) -> Result<(String, String, u64), OAuthError> {
        let jti = new_token();
        let now = now_ms / 1000;
        let exp = now + client.access_token_secs;
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(who.sub));
        claims.insert("aud".into(), json!(client.id));
        claims.insert("client_id".into(), json!(client.id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        claims.insert("scope".into(), json!(scope_string(scope)));
        if let Some(sid) = who.sid {
            claims.insert("sid".into(), json!(sid));
        }
        if let Some(data) = who.data {
            user_claims(data, scope, &mut claims);
        }
        let keys = self.keyring();
        let token = keys
            .signer(client.signing_alg)
            .encode("at+jwt", &Value::Object(claims))
            .map_err(|_| OAuthError::server_error())?;
        Ok((token, jti, exp * 1000))
    }

    #[allow(clippy::too_many_arguments)]
    fn id_token(
        &self,
        client: &Client,
        sid: &str,
        data: &SessionData,
        scope: &[String],
        auth_time_ms: u64,
        nonce: Option<&str>,
        access_token: &str,
        code: Option<&str>,
    ) -> Result<String, OAuthError> {
        let now = self.clock.now_millis() / 1000;
        let at = |secs: u64| {
            chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
                .unwrap_or_default()
        };
        let mut standard = StandardClaims::new(SubjectIdentifier::new(data.subject.clone()));
        if has(scope, "profile") {
            standard = standard
                .set_name(Some(LocalizedClaim::from(EndUserName::new(
                    data.display_name.clone(),
                ))))
                .set_preferred_username(Some(EndUserUsername::new(data.login.clone())))
                .set_given_name(
                    data.given_name
                        .clone()
                        .map(|g| LocalizedClaim::from(EndUserGivenName::new(g))),
                )
                .set_family_name(
                    data.family_name
                        .clone()
                        .map(|f| LocalizedClaim::from(EndUserFamilyName::new(f))),
                );
        }
        if has(scope, "email") {
            standard = standard.set_email(data.email.clone().map(EndUserEmail::new));
        }
        let roles = has(scope, "roles");
        let extra = KopaClaims {
            sid: Some(sid.to_owned()),
            tenant: data.tenant.as_ref().map(|t| t.as_str().to_owned()),
            roles: roles.then(|| data.roles.iter().map(|r| r.as_str().to_owned()).collect()),
            groups: roles.then(|| data.groups.clone()),
        };
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|_| OAuthError::server_error())?;
        let claims: IdTokenClaims<KopaClaims, CoreGenderClaim> = IdTokenClaims::new(
            issuer,
            vec![Audience::new(client.id.clone())],
            at(now + client.id_token_secs),
            at(now),
            standard,
            extra,
        )
        .set_auth_time(Some(at(auth_time_ms / 1000)))
        .set_nonce(nonce.map(|n| Nonce::new(n.to_owned())))
        .set_auth_context_ref(Some(AuthenticationContextClass::new(acr(&data.amr).into())))
        .set_auth_method_refs(Some(
            data.amr
                .iter()
                .map(|m| AuthenticationMethodReference::new(m.clone()))
                .collect(),
        ))
        .set_authorized_party(None);
        let keys = self.keyring();
        let signer = keys.signer(client.signing_alg);
        let token = IdToken::new(
            claims,
            signer.as_ref(),
            signer.jws_alg(),
            Some(&AccessToken::new(access_token.to_owned())),
            code.map(|c| AuthorizationCode::new(c.to_owned())).as_ref(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "signing an ID token failed");
            OAuthError::server_error()
        })?;
        Ok(token.to_string())
    }

    /// The token response for a user's grant: the access token, an ID token when `openid`
    /// was granted, and the refresh token if any.
    fn user_tokens(
        &self,
        client: &Client,
        grant: &UserGrant<'_>,
        access: &str,
        nonce: Option<&str>,
        code: Option<&str>,
        refresh: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let mut body = json!({
            "access_token": access, "token_type": "Bearer",
            "expires_in": client.access_token_secs, "scope": scope_string(grant.scope),
        });
        if has(grant.scope, "openid") {
            let id = self.id_token(
                client,
                grant.sid,
                grant.data,
                grant.scope,
                grant.auth_time_ms,
                nonce,
                access,
                code,
            )?;
            body["id_token"] = json!(id);
        }
        if let Some(rt) = refresh {
            body["refresh_token"] = json!(rt);
        }
        Ok(body)
    }

    /// Appends (durably) the record of tokens issued for a user's grant.
    async fn audit_issued(
        &self,
        client: &Client,
        grant: &UserGrant<'_>,
        action: &str,
        grant_type: &str,
        origin: &Origin,
    ) -> Result<(), OAuthError> {
        let mut e = self.event(action, Outcome::Success, &client.id, origin);
        e.details.insert("grant_type".into(), grant_type.into());
        e.user_resolved = Some(grant.data.subject.clone());
        e.tenant = grant.data.tenant.clone();
        e.session_id = Some(grant.sid.to_owned());
        self.audit
            .append(e)
            .await
            .map(drop)
            .map_err(|_| OAuthError::server_error())
    }

    /// The token endpoint (RFC 6749 §3.2).
    pub async fn token(
        &self,
        form: &Params,
        creds: &ClientCredentials,
        origin: &Origin,
    ) -> Result<Value, OAuthError> {
        let grant = form.get("grant_type").unwrap_or("").to_owned();
        let result = self.token_inner(&grant, form, creds, origin).await;
        if let Err(err) = &result {
            let client = creds
                .basic
                .as_ref()
                .map(|(id, _)| id.clone())
                .or_else(|| creds.form_id.clone())
                .unwrap_or_default();
            let action = match err.error {
                "invalid_grant" if err.description.contains("reused") => {
                    if grant == "refresh_token" {
                        "oidc-refresh-reuse"
                    } else {
                        "oidc-code-reuse"
                    }
                }
                _ => "oidc-token-failed",
            };
            let mut e = self.event(action, Outcome::Failure, &client, origin);
            e.reason = Some(err.error.into());
            e.details
                .insert("grant_type".into(), grant.chars().take(64).collect());
            self.record(e).await;
        }
        result
    }

    async fn token_inner(
        &self,
        grant: &str,
        form: &Params,
        creds: &ClientCredentials,
        origin: &Origin,
    ) -> Result<Value, OAuthError> {
        if let Some(name) = form.duplicated() {
            return Err(OAuthError::invalid_request(format!(
                "Parameter {name} is repeated"
            )));
        }
        let client = self.authenticate_client(creds)?;
        let supported = ["authorization_code", "refresh_token", "client_credentials"];
        if grant.is_empty() {
            return Err(OAuthError::invalid_request("grant_type is missing"));
        }
        if !supported.contains(&grant) {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                "This grant type is not supported",
            ));
        }
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                "This client may not use this grant type",
            ));
        }
        match grant {
            "authorization_code" => self.code_grant(&client, form, origin).await,
            "refresh_token" => self.refresh_grant(&client, form, origin).await,
            _ => self.client_credentials(&client, form, origin).await,
        }
    }

    async fn client_credentials(
        &self,
        client: &Arc<Client>,
        form: &Params,
        origin: &Origin,
    ) -> Result<Value, OAuthError> {
        let scope: Vec<String> = match form.get("scope") {
            Some(s) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => client
                .scopes
                .iter()
                .filter(|s| *s == "api")
                .cloned()
                .collect(),
        };
        if let Some(bad) = scope.iter().find(|s| {
            !client.scopes.contains(s) || matches!(s.as_str(), "openid" | "offline_access")
        }) {
            return Err(OAuthError::new(
                400,
                "invalid_scope",
                format!("Scope {bad:?} is not allowed here"),
            ));
        }
        let now = self.clock.now_millis();
        let who = Subject {
            sub: &client.id,
            sid: None,
            data: None,
        };
        let (token, _, _) = self.access_token(client, &who, &scope, now)?;
        let mut e = self.event("oidc-token-issued", Outcome::Success, &client.id, origin);
        e.details
            .insert("grant_type".into(), "client_credentials".into());
        // Durable before the answer, like every audited action.
        self.audit
            .append(e)
            .await
            .map_err(|_| OAuthError::server_error())?;
        Ok(json!({
            "access_token": token, "token_type": "Bearer",
            "expires_in": client.access_token_secs, "scope": scope_string(&scope),
        }))
    }

    async fn code_grant(
        &self,
        client: &Arc<Client>,
        form: &Params,
        origin: &Origin,
    ) -> Result<Value, OAuthError> {
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("code is missing"))?
            .to_owned();
        let redirect_uri = form.get("redirect_uri").unwrap_or("").to_owned();
        let verifier = form.get("code_verifier").map(str::to_owned);
        if let Some(v) = &verifier
            && !(43..=128).contains(&v.len())
        {
            return Err(OAuthError::invalid_request(
                "code_verifier must be 43 to 128 characters",
            ));
        }
        let now = self.clock.now_millis();
        let client_id = client.id.clone();
        let key = hash(&code);
        // Everything the answer needs is prepared outside the write: tokens are signed
        // once the code is known good, then stored in the same transaction that spends it.
        let record = {
            let key = key.clone();
            self.store
                .read(move |txn| txn.get(&CODES, &key))
                .await
                .map_err(|_| OAuthError::server_error())?
        };
        let Some(record) = record else {
            return Err(OAuthError::invalid_grant("The code is invalid or expired"));
        };
        let checks = (|| {
            if record.client_id != client_id {
                return Err("The code was issued to another client");
            }
            if record.redirect_uri != redirect_uri {
                return Err("redirect_uri does not match the authorization request");
            }
            if now > record.expires_ms {
                return Err("The code is invalid or expired");
            }
            match (&record.code_challenge, &verifier) {
                (Some(challenge), Some(v)) if jose::pkce_s256(v) == *challenge => Ok(()),
                (Some(_), _) => Err("PKCE verification failed"),
                (None, Some(_)) => Err("PKCE verification failed"),
                (None, None) => Ok(()),
            }
        })();
        let offline = has(&record.scope, "offline_access");
        let wants_refresh = client.allows_grant("refresh_token");
        let who = Subject {
            sub: &record.data.subject,
            sid: Some(&record.sid),
            data: Some(&record.data),
        };
        let (access, jti, access_exp) = self.access_token(client, &who, &record.scope, now)?;
        let refresh = wants_refresh.then(new_token);
        let family = refresh.as_ref().map(|_| {
            new_family(
                &client_id,
                &record.sid,
                offline,
                now + client.refresh_token_secs * 1000,
            )
        });
        let issued = grants::Issued {
            access_jti: jti,
            access_expires_ms: access_exp,
            family: family.as_ref().map(|(id, _)| id.clone()),
        };
        let (rt_key, rt_record) = match (&refresh, &family) {
            (Some(rt), Some((fid, f))) => (
                Some(hash(rt)),
                Some(refresh_record(
                    fid,
                    &client_id,
                    &record.scope,
                    &record.sid,
                    &record.data,
                    record.auth_time_ms,
                    f.expires_ms,
                )),
            ),
            _ => (None, None),
        };
        let check_failure = checks.err();
        let sid = record.sid.clone();
        let spent = self
            .store
            .write(move |txn| {
                let Some(mut current) = txn.get(&CODES, &key)? else {
                    return Ok(Err("The code is invalid or expired"));
                };
                if let Some(previous) = current.used.take() {
                    // A second presentation: whoever holds the code is not to be trusted,
                    // so what the first exchange issued is revoked (RFC 6749 §4.1.2).
                    txn.insert(&REVOKED, &previous.access_jti, &previous.access_expires_ms)?;
                    if let Some(f) = &previous.family {
                        grants::revoke_family(txn, f)?;
                    }
                    return Ok(Err("The code was already used; it is reused"));
                }
                if let Some(reason) = check_failure {
                    // A failed attempt spends the code too: it can not be retried.
                    txn.remove(&CODES, &key)?;
                    return Ok(Err(reason));
                }
                current.used = Some(issued.clone());
                txn.insert(&CODES, &key, &current)?;
                if let (Some(k), Some(r), Some((fid, f))) = (&rt_key, &rt_record, &family) {
                    txn.insert(&REFRESH, k, r)?;
                    txn.insert(&FAMILIES, fid, f)?;
                    txn.insert(&SID_FAMILIES, &(sid.clone(), fid.clone()), &now)?;
                }
                txn.insert(&SID_CLIENTS, &(sid.clone(), client_id.clone()), &now)?;
                Ok(Ok(()))
            })
            .await
            .map_err(|_| OAuthError::server_error())?;
        spent.map_err(OAuthError::invalid_grant)?;
        if self.sid_ended(&record.sid).await {
            return Err(OAuthError::invalid_grant("The session has ended"));
        }
        let grant = UserGrant {
            sid: &record.sid,
            data: &record.data,
            scope: &record.scope,
            auth_time_ms: record.auth_time_ms,
        };
        let body = self.user_tokens(
            client,
            &grant,
            &access,
            record.nonce.as_deref(),
            Some(&code),
            refresh.as_deref(),
        )?;
        self.audit_issued(
            client,
            &grant,
            "oidc-token-issued",
            "authorization_code",
            origin,
        )
        .await?;
        Ok(body)
    }

    async fn refresh_grant(
        &self,
        client: &Arc<Client>,
        form: &Params,
        origin: &Origin,
    ) -> Result<Value, OAuthError> {
        let presented = form
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
        let key = hash(presented);
        let now = self.clock.now_millis();
        let client_id = client.id.clone();
        let new_token = new_token();
        let new_key = hash(&new_token);
        let requested: Option<Vec<String>> = form.get("scope").map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        });
        let outcome = self
            .store
            .write(move |txn| {
                let Some(mut old) = txn.get(&REFRESH, &key)? else {
                    return Ok(Err("The refresh token is invalid"));
                };
                if old.client_id != client_id {
                    return Ok(Err("The refresh token was issued to another client"));
                }
                let family = txn.get(&FAMILIES, &old.family)?;
                if family.as_ref().is_none_or(|f| f.revoked) {
                    return Ok(Err("The refresh token has been revoked"));
                }
                if old.rotated {
                    // Reuse of a replaced token: someone else holds a copy. Revoke the chain.
                    grants::revoke_family(txn, &old.family)?;
                    return Ok(Err("The refresh token was already used; it is reused"));
                }
                if now > old.expires_ms {
                    return Ok(Err("The refresh token has expired"));
                }
                let scope = match &requested {
                    Some(r) if r.iter().all(|s| old.scope.contains(s)) => r.clone(),
                    Some(_) => return Ok(Err("scope exceeds the original grant")),
                    None => old.scope.clone(),
                };
                old.rotated = true;
                txn.insert(&REFRESH, &key, &old)?;
                let mut next = old.clone();
                next.rotated = false;
                next.scope = scope;
                txn.insert(&REFRESH, &new_key, &next)?;
                Ok(Ok(next))
            })
            .await
            .map_err(|_| OAuthError::server_error())?;
        let record = outcome.map_err(|reason| {
            if reason.starts_with("scope") {
                OAuthError::new(400, "invalid_scope", reason)
            } else {
                OAuthError::invalid_grant(reason)
            }
        })?;
        let offline = has(&record.scope, "offline_access");
        if !offline && self.sid_ended(&record.sid).await {
            return Err(OAuthError::invalid_grant("The session has ended"));
        }
        let who = Subject {
            sub: &record.data.subject,
            sid: Some(&record.sid),
            data: Some(&record.data),
        };
        let (access, _, _) = self.access_token(client, &who, &record.scope, now)?;
        let grant = UserGrant {
            sid: &record.sid,
            data: &record.data,
            scope: &record.scope,
            auth_time_ms: record.auth_time_ms,
        };
        let body = self.user_tokens(client, &grant, &access, None, None, Some(&new_token))?;
        self.audit_issued(
            client,
            &grant,
            "oidc-token-refreshed",
            "refresh_token",
            origin,
        )
        .await?;
        Ok(body)
    }

    /// Verifies one of our access tokens and that it is still active: not expired, not
    /// revoked, and its session not ended.
    pub async fn active_access_token(&self, token: &str) -> Option<Value> {
        let keys = self.keyring();
        let claims = jose::verify(keys.published.iter(), token, Some("at+jwt")).ok()?;
        let now = self.clock.now_millis() / 1000;
        if claims["iss"] != json!(self.issuer) || claims["exp"].as_u64().is_none_or(|e| e <= now) {
            return None;
        }
        let jti = claims["jti"].as_str()?;
        if self.token_dead(jti, claims["sid"].as_str()).await {
            return None;
        }
        Some(claims)
    }

    /// The userinfo endpoint (OIDC Core §5.3): claims of an active access token with the
    /// `openid` scope. `None` means `invalid_token`.
    pub async fn userinfo(&self, token: &str) -> Option<Value> {
        let claims = self.active_access_token(token).await?;
        let scope: Vec<String> = claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .map(str::to_owned)
            .collect();
        if !has(&scope, "openid") {
            return None;
        }
        let mut out = serde_json::Map::new();
        for k in [
            "sub",
            "name",
            "preferred_username",
            "given_name",
            "family_name",
            "email",
            "tenant",
            "roles",
            "groups",
        ] {
            if let Some(v) = claims.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        Some(Value::Object(out))
    }

    /// RFC 7662 introspection. A client learns only about tokens issued to it.
    pub async fn introspect(
        &self,
        form: &Params,
        creds: &ClientCredentials,
    ) -> Result<Value, OAuthError> {
        let client = self.authenticate_client(creds)?;
        if client.is_public() {
            return Err(OAuthError::invalid_client());
        }
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let inactive = json!({"active": false});
        if form.get("token_type_hint") != Some("refresh_token")
            && let Some(mut claims) = self.active_access_token(token).await
        {
            if claims["client_id"] != json!(client.id) {
                return Ok(inactive);
            }
            claims["active"] = json!(true);
            claims["token_type"] = json!("Bearer");
            return Ok(claims);
        }
        let key = hash(token);
        let found = self
            .store
            .read(move |txn| {
                let Some(r) = txn.get(&REFRESH, &key)? else {
                    return Ok(None);
                };
                let f = txn.get(&FAMILIES, &r.family)?;
                Ok(Some((r, f)))
            })
            .await
            .map_err(|_| OAuthError::server_error())?;
        let now = self.clock.now_millis();
        match found {
            Some((r, Some(f)))
                if !r.rotated && !f.revoked && now <= r.expires_ms && r.client_id == client.id =>
            {
                if !f.offline && self.sid_ended(&r.sid).await {
                    return Ok(inactive);
                }
                Ok(json!({
                    "active": true, "client_id": r.client_id, "sub": r.data.subject,
                    "scope": scope_string(&r.scope), "exp": r.expires_ms / 1000,
                    "token_type": "refresh_token", "iss": self.issuer, "sid": r.sid,
                }))
            }
            _ => Ok(inactive),
        }
    }

    /// RFC 7009 revocation: always succeeds for a well-formed request, whether or not the
    /// token was known (§2.2), but revokes only the caller's own tokens.
    pub async fn revoke(
        &self,
        form: &Params,
        creds: &ClientCredentials,
        origin: &Origin,
    ) -> Result<(), OAuthError> {
        let client = self.authenticate_client(creds)?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
        let keys = self.keyring();
        let mut revoked = None;
        if let Ok(claims) = jose::verify(keys.published.iter(), token, Some("at+jwt"))
            && claims["client_id"] == json!(client.id)
            && let (Some(jti), Some(exp)) = (claims["jti"].as_str(), claims["exp"].as_u64())
        {
            let jti = jti.to_owned();
            self.store
                .write(move |txn| txn.insert(&REVOKED, &jti, &(exp * 1000)).map(|_| ()))
                .await
                .map_err(|_| OAuthError::server_error())?;
            revoked = Some("access_token");
        } else {
            let key = hash(token);
            let client_id = client.id.clone();
            let hit = self
                .store
                .write(move |txn| {
                    let Some(r) = txn.get(&REFRESH, &key)? else {
                        return Ok(false);
                    };
                    if r.client_id != client_id {
                        return Ok(false);
                    }
                    grants::revoke_family(txn, &r.family)?;
                    Ok(true)
                })
                .await
                .map_err(|_| OAuthError::server_error())?;
            if hit {
                revoked = Some("refresh_token");
            }
        }
        if let Some(kind) = revoked {
            let mut e = self.event("oidc-token-revoked", Outcome::Success, &client.id, origin);
            e.details.insert("token_type".into(), kind.into());
            self.audit
                .append(e)
                .await
                .map_err(|_| OAuthError::server_error())?;
        }
        Ok(())
    }

    /// Checks an RP-initiated logout request (OpenID RP-Initiated Logout 1.0 §2-3).
    /// Returns the session id the hint names (if any) and where to send the user after.
    pub fn end_session_request(&self, p: &Params) -> Result<LogoutRequest, String> {
        if let Some(name) = p.duplicated() {
            return Err(format!("Parameter {name} is repeated"));
        }
        let mut client = p.get("client_id").map(str::to_owned);
        let mut sid = None;
        let mut hinted = false;
        if let Some(hint) = p.get("id_token_hint") {
            let keys = self.keyring();
            // Expired hints are fine (§2): only the signature and issuer count.
            let claims = jose::verify(keys.published.iter(), hint, None)
                .map_err(|_| "id_token_hint is not an ID token of this provider".to_owned())?;
            if claims["iss"] != json!(self.issuer) {
                return Err("id_token_hint was not issued here".into());
            }
            let aud = match &claims["aud"] {
                Value::String(a) => Some(a.clone()),
                Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            if client.is_some() && client != aud {
                return Err("client_id does not match id_token_hint".into());
            }
            client = aud;
            sid = claims["sid"].as_str().map(str::to_owned);
            hinted = true;
        }
        let redirect = match p.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let registered = client
                    .as_deref()
                    .and_then(|c| self.clients.get(c))
                    .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
                if !registered {
                    return Err("post_logout_redirect_uri is not registered for this client".into());
                }
                let mut pairs = Vec::new();
                if let Some(s) = p.get("state") {
                    pairs.push(("state", s));
                }
                Some(if pairs.is_empty() {
                    uri.to_owned()
                } else {
                    super::append_query(uri, &pairs)
                })
            }
        };
        Ok(LogoutRequest {
            sid,
            hinted,
            redirect,
            client,
        })
    }

    /// A back-channel logout token (OpenID Back-Channel Logout 1.0 §2.4).
    pub(super) fn logout_token(
        &self,
        client: &Client,
        ended: &crate::login::EndedSession,
    ) -> Result<String, jose::JoseError> {
        let now = self.clock.now_millis() / 1000;
        let claims = json!({
            "iss": self.issuer, "aud": client.id, "iat": now, "exp": now + 120,
            "jti": new_token(), "sub": ended.subject, "sid": ended.id,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        self.keyring()
            .signer(client.signing_alg)
            .encode("logout+jwt", &claims)
    }
}

/// A checked RP-initiated logout request.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    /// The session the `id_token_hint` was issued in.
    pub sid: Option<String>,
    /// Whether a valid `id_token_hint` came with it (then no confirmation is asked).
    pub hinted: bool,
    /// Where to send the browser afterwards, with `state`.
    pub redirect: Option<String>,
    /// The client asking.
    pub client: Option<String>,
}
