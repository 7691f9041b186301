//! The port through which the hypervisor publishes its virtual servers' metrics and the
//! monitor reads them. The hypervisor keeps the latest figures in memory; the monitor asks
//! for them on its own schedule.

use crate::TenantId;
use serde::{Deserialize, Serialize};

/// The latest figures of one virtual server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    /// The municipality (tenant) that owns it.
    pub tenant: TenantId,
    /// Its name, unique within the tenant.
    pub vm: String,
    pub running: bool,
    pub vcpus: u32,
    /// CPU time used since it started, in seconds (a counter).
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// Whether the tenant is over one of its quotas (CPU, memory or disk).
    pub quota_exceeded: bool,
}

/// Implemented by the hypervisor (and by test doubles).
pub trait VmMetricsSource: Send + Sync + std::fmt::Debug {
    /// Every virtual server's latest figures, or a short reason why there are none.
    fn vm_samples(&self) -> Result<Vec<VmSample>, String>;
}
