//! The admin API for SAML service providers (platform administrators only):
//!
//! - `GET /api/admin/saml/sps`: every provider, its settings, where its metadata comes
//!   from, its `validUntil` and how the last load went;
//! - `POST /api/admin/saml/sps`: registers one from inline metadata or a metadata URL
//!   (optionally with the certificate its metadata must be signed with); the metadata is
//!   loaded and checked before the registration is stored;
//! - `DELETE /api/admin/saml/sps?entity_id=…`: removes a registration made here;
//! - `POST /api/admin/saml/sps/refresh?entity_id=…`: loads its metadata again now.

use super::Provider;
use super::registry::{AddError, StoredSp};
use crate::http::{Ctx, admin, json, no_store, platform_admin};
use crate::login::Login;
use kopa_config::{NameIdFormat, SamlAttribute, SamlSigning, SamlSpConfig};
use kopa_core::ErrorCode;
use kopa_store::audit::{AuditEvent, Category, Outcome};
use kopa_web::ApiError;
use serde::Deserialize;
use std::sync::Arc;
use warp::Rejection;
use warp::http::{Response, StatusCode};

const WHAT: &str = "SAML service providers";

/// A registration as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSp {
    #[serde(default)]
    name: String,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    metadata_xml: Option<String>,
    #[serde(default)]
    metadata_url: Option<String>,
    #[serde(default)]
    metadata_signing_cert_pem: Option<String>,
    #[serde(default)]
    metadata_refresh_secs: Option<u64>,
    #[serde(default)]
    sign: SamlSigning,
    #[serde(default)]
    name_id_format: NameIdFormat,
    #[serde(default)]
    attributes: Vec<SamlAttribute>,
    #[serde(default)]
    require_signed_requests: Option<bool>,
    #[serde(default)]
    allow_idp_initiated: bool,
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct EntityQuery {
    #[serde(default)]
    entity_id: String,
}

fn bad(message: impl Into<String>) -> Rejection {
    ApiError::new(ErrorCode::BadRequest, message).into()
}

fn unavailable(e: &dyn std::fmt::Display) -> Rejection {
    tracing::error!(error = %e, "storing a SAML service provider failed");
    ApiError::new(ErrorCode::Unavailable, "Service providers are unavailable").into()
}

/// The platform administrator making the call; a change (`mutating`) must carry the
/// double-submit token of our own pages in `csrf`.
async fn caller(
    login: &Login,
    ctx: &Ctx,
    csrf: Option<&str>,
    mutating: bool,
) -> Result<crate::session::Session, Rejection> {
    let session = admin(login, ctx, csrf, mutating).await?;
    platform_admin(&session, WHAT)?;
    Ok(session)
}

async fn record(saml: &Provider, action: &str, caller: &str, ctx: &Ctx, entity: &str) {
    let mut e = AuditEvent::new(Category::Configuration, action, Outcome::Success);
    e.user_resolved = Some(caller.to_owned());
    e.client = Some(entity.chars().take(256).collect());
    e.source_ip = Some(ctx.ip);
    if let Err(err) = saml.audit.append(e).await {
        tracing::error!(error = %err, "could not record a SAML administration change");
    }
}

pub(super) async fn list(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
) -> Result<warp::reply::Response, Rejection> {
    caller(&login, &ctx, None, false).await?;
    Ok(no_store(json(
        &serde_json::json!({ "service_providers": saml.list_sps() }),
    )))
}

pub(super) async fn create(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    body: NewSp,
) -> Result<warp::reply::Response, Rejection> {
    let caller = caller(&login, &ctx, csrf.as_deref(), true).await?;
    let inline = body.metadata_xml.filter(|x| !x.trim().is_empty());
    if inline.is_some() == body.metadata_url.is_some() {
        return Err(bad("Give exactly one of metadata_xml and metadata_url"));
    }
    let defaults = SamlSpConfig::new(std::path::PathBuf::new());
    let config = SamlSpConfig {
        name: body.name,
        entity_id: body.entity_id,
        metadata_file: None,
        metadata_url: body.metadata_url,
        // Only for the check that http:// metadata is signed; the PEM itself is stored.
        metadata_signing_cert: body
            .metadata_signing_cert_pem
            .as_ref()
            .map(|_| "(given inline)".into()),
        metadata_refresh_secs: body
            .metadata_refresh_secs
            .unwrap_or(defaults.metadata_refresh_secs),
        sign: body.sign,
        name_id_format: body.name_id_format,
        attributes: body.attributes,
        require_signed_requests: body
            .require_signed_requests
            .unwrap_or(defaults.require_signed_requests),
        allow_idp_initiated: body.allow_idp_initiated,
        tenant: body.tenant,
    };
    let mut problems = Vec::new();
    config.validate(0, &mut problems);
    // Inline metadata is neither a file nor a URL.
    problems.retain(|p| !(inline.is_some() && p.key == "saml_sp[0].metadata_file"));
    if let Some(p) = problems.first() {
        let field = p.key.trim_start_matches("saml_sp[0].");
        return Err(bad(format!("{field}: {}", p.message)));
    }
    let stored = StoredSp {
        config: SamlSpConfig {
            metadata_signing_cert: None,
            ..config
        },
        metadata_xml: inline,
        trust_pem: body.metadata_signing_cert_pem,
    };
    let id = match saml.add_sp(stored).await {
        Ok(id) => id,
        Err(AddError::Invalid(m)) => return Err(bad(format!("The metadata is refused: {m}"))),
        Err(AddError::Taken(id)) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("Service provider {id:?} is already registered"),
            )
            .into());
        }
        Err(AddError::Store(e)) => return Err(unavailable(&e)),
    };
    record(&saml, "saml-sp-created", &caller.data.subject, &ctx, &id).await;
    let view = saml
        .list_sps()
        .into_iter()
        .find(|v| v["entity_id"] == id.as_str())
        .unwrap_or_default();
    let mut resp = json(&view);
    *resp.status_mut() = StatusCode::CREATED;
    Ok(no_store(resp))
}

pub(super) async fn delete(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    q: EntityQuery,
) -> Result<warp::reply::Response, Rejection> {
    let caller = caller(&login, &ctx, csrf.as_deref(), true).await?;
    let removed = saml
        .remove_sp(&q.entity_id)
        .await
        .map_err(|e| unavailable(&e))?;
    if !removed {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "No service provider registered through the API has that entity_id \
             (configured ones are changed in the configuration)",
        )
        .into());
    }
    record(
        &saml,
        "saml-sp-deleted",
        &caller.data.subject,
        &ctx,
        &q.entity_id,
    )
    .await;
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Vec::new().into())
        .unwrap_or_default())
}

pub(super) async fn refresh(
    saml: Arc<Provider>,
    login: Arc<Login>,
    ctx: Ctx,
    csrf: Option<String>,
    q: EntityQuery,
) -> Result<warp::reply::Response, Rejection> {
    let caller = caller(&login, &ctx, csrf.as_deref(), true).await?;
    match saml.refresh_sp(&q.entity_id).await {
        None => Err(ApiError::new(ErrorCode::NotFound, "No such service provider").into()),
        Some(Err(reason)) => Err(ApiError::new(
            ErrorCode::BadGateway,
            format!("The new metadata is refused ({reason}); the last good metadata stays in use"),
        )
        .into()),
        Some(Ok(())) => {
            record(
                &saml,
                "saml-sp-refreshed",
                &caller.data.subject,
                &ctx,
                &q.entity_id,
            )
            .await;
            let view = saml
                .list_sps()
                .into_iter()
                .find(|v| v["entity_id"] == q.entity_id.as_str())
                .unwrap_or_default();
            Ok(no_store(json(&view)))
        }
    }
}
