//! The host, through sysinfo: CPU, memory, disks, load, processes, network and uptime.

use crate::series::Sample;
use sysinfo::{Disks, Networks, ProcessRefreshKind, ProcessesToUpdate, System};

/// Keeps sysinfo's state between samples (CPU usage and network rates need two readings).
#[derive(Debug)]
pub struct Host {
    system: Option<System>,
    disks: Option<Disks>,
    networks: Option<Networks>,
}

/// File systems that say nothing about the host's storage.
const PSEUDO_FS: [&str; 9] = [
    "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup2", "nsfs", "ramfs",
];

impl Host {
    pub fn new() -> Self {
        let mut system = System::new().ok();
        if let Some(s) = system.as_mut() {
            s.refresh_cpu_usage();
        }
        Self {
            system,
            disks: Disks::new_with_refreshed_list().ok(),
            networks: Networks::new_with_refreshed_list().ok(),
        }
    }

    /// One reading; what sysinfo cannot read on this platform is left out.
    pub fn sample(&mut self, now: u64) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut put = |name: &str, labels: &[(&str, &str)], v: f64| {
            out.push(Sample::new(name, labels, v, now));
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if let Some(s) = self.system.as_mut() {
            s.refresh_cpu_usage();
            s.refresh_memory();
            put(
                "host.cpu.usage_ratio",
                &[],
                f64::from(s.global_cpu_usage()) / 100.0,
            );
            let total = s.total_memory();
            if total > 0 {
                put("host.memory.total_bytes", &[], total as f64);
                put(
                    "host.memory.used_ratio",
                    &[],
                    1.0 - s.available_memory() as f64 / total as f64,
                );
            }
            if s.total_swap() > 0 {
                put(
                    "host.swap.used_ratio",
                    &[],
                    s.used_swap() as f64 / s.total_swap() as f64,
                );
            }
            s.refresh_processes_specifics(
                ProcessesToUpdate::All,
                true,
                ProcessRefreshKind::nothing(),
            );
            put("host.processes", &[], s.processes().len() as f64);
        }
        if let Ok(load) = System::load_average() {
            put("host.load1", &[], load.one);
            put("host.load1_per_core", &[], load.one / cores as f64);
            put("host.load5", &[], load.five);
        }
        if let Ok(up) = System::uptime() {
            put("host.uptime_seconds", &[], up as f64);
        }
        if let Some(disks) = self.disks.as_mut() {
            disks.refresh(true);
            for d in disks.iter() {
                let fs = d.file_system().to_string_lossy();
                if PSEUDO_FS.contains(&fs.as_ref()) || d.total_space() == 0 {
                    continue;
                }
                let mount = d.mount_point().to_string_lossy();
                put(
                    "host.disk.free_ratio",
                    &[("mount", &mount)],
                    d.available_space() as f64 / d.total_space() as f64,
                );
                put(
                    "host.disk.free_bytes",
                    &[("mount", &mount)],
                    d.available_space() as f64,
                );
            }
        }
        if let Some(nets) = self.networks.as_mut() {
            nets.refresh(true);
            let (rx, tx) = nets
                .iter()
                .filter(|(name, _)| name.as_os_str() != "lo")
                .fold((0u64, 0u64), |(r, t), (_, n)| {
                    (r + n.total_received(), t + n.total_transmitted())
                });
            put("host.network.received_bytes_total", &[], rx as f64);
            put("host.network.transmitted_bytes_total", &[], tx as f64);
        }
        out
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

/// The free share of the disk holding `path` (the longest mount point that contains it).
pub fn free_ratio_of(path: &std::path::Path) -> Option<f64> {
    let disks = Disks::new_with_refreshed_list().ok()?;
    let path = std::fs::canonicalize(path).ok()?;
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()) && d.total_space() > 0)
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.available_space() as f64 / d.total_space() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_has_cpu_memory_and_load() {
        let mut host = Host::new();
        let got = host.sample(1);
        let names: Vec<_> = got.iter().map(|s| s.name.as_str()).collect();
        for want in [
            "host.cpu.usage_ratio",
            "host.memory.used_ratio",
            "host.load1",
            "host.processes",
            "host.uptime_seconds",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let mem = got
            .iter()
            .find(|s| s.name == "host.memory.used_ratio")
            .unwrap();
        assert!((0.0..=1.0).contains(&mem.value), "{}", mem.value);
        assert!(free_ratio_of(std::path::Path::new("/")).is_some_and(|r| (0.0..=1.0).contains(&r)));
    }
}
