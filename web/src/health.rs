//! `/healthz` (the process serves) and `/readyz` (every service can do its work), both JSON
//! with the version, both public: load balancers and the image's watchdog call them.

use futures_util::future::BoxFuture;
use kopa_core::VERSION;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

/// How long one readiness check may take before it counts as not ready.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing `/readyz` asks about (a service's database, a directory pool…).
pub trait ReadinessProbe: Send + Sync + std::fmt::Debug {
    /// The service's name in the report.
    fn name(&self) -> String;
    /// `Ok` when ready; otherwise a short reason, safe to show.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The set of probes, plus the draining flag raised at shutdown.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    probes: Arc<Vec<Arc<dyn ReadinessProbe>>>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness over `probes`.
    pub fn new(probes: Vec<Arc<dyn ReadinessProbe>>) -> Self {
        Self {
            probes: Arc::new(probes),
            draining: Arc::default(),
        }
    }

    /// From now on `/readyz` answers 503, so balancers stop sending new work.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every probe; `true` when all are ready and we are not draining.
    pub async fn report(&self) -> (bool, serde_json::Value) {
        let checks = self.probes.iter().map(|p| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, p.check()).await {
                Ok(r) => r,
                Err(_) => Err("check timed out".to_owned()),
            };
            (p.name(), outcome)
        });
        let results = futures_util::future::join_all(checks).await;
        let draining = self.draining.load(Ordering::SeqCst);
        let mut services = BTreeMap::new();
        let mut ready = !draining;
        for (name, outcome) in results {
            let entry = match outcome {
                Ok(()) => json!({"status": "ready"}),
                Err(reason) => {
                    ready = false;
                    json!({"status": "not_ready", "reason": reason})
                }
            };
            services.insert(name, entry);
        }
        let status = match (ready, draining) {
            (true, _) => "ready",
            (false, true) => "draining",
            (false, false) => "not_ready",
        };
        (
            ready,
            json!({"status": status, "version": VERSION, "services": services}),
        )
    }
}

/// GET `/healthz` and GET `/readyz`.
pub fn health_routes(
    readiness: Readiness,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok", "version": VERSION})).into_response());
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(warp::any().map(move || readiness.clone()))
        .then(|readiness: Readiness| async move {
            let (ready, body) = readiness.report().await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        });
    healthz.or(readyz).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, Result<(), String>);

    impl ReadinessProbe for Fixed {
        fn name(&self) -> String {
            self.0.to_owned()
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            let r = self.1.clone();
            Box::pin(async move { r })
        }
    }

    #[tokio::test]
    async fn ready_only_when_every_probe_is() {
        let ok = Readiness::new(vec![Arc::new(Fixed("idp", Ok(())))]);
        let resp = warp::test::request()
            .path("/readyz")
            .reply(&health_routes(ok.clone()))
            .await;
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["services"]["idp"]["status"], "ready");
        assert_eq!(v["version"], VERSION);

        let bad = Readiness::new(vec![
            Arc::new(Fixed("idp", Ok(()))),
            Arc::new(Fixed("monitor", Err("database closed".into()))),
        ]);
        let resp = warp::test::request()
            .path("/readyz")
            .reply(&health_routes(bad))
            .await;
        assert_eq!(resp.status(), 503);

        ok.set_draining();
        let resp = warp::test::request()
            .path("/readyz")
            .reply(&health_routes(ok))
            .await;
        assert_eq!(resp.status(), 503);
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["status"], "draining");
    }
}
