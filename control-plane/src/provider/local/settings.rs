//! The settings a local sandbox is created with (network, memory, CPUs,
//! processes, disk, template): what it asks for within the configured
//! maxima, the defaults for the rest, kept so a resume gives the same again.

use super::{LocalProvider, SandboxRef, Settings, cgroup, quota};
use crate::error::{Error, Result};
use crate::ids::TemplateName;

/// What a sandbox was created with, kept in its record's `provider_data` so
/// a resume gives it the same again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Chosen {
    pub(super) internet: bool,
    pub(super) memory_mb: u64,
    pub(super) cpu_count: u32,
    pub(super) process_limit: u64,
    /// Its workspace's quota; `None` for none (and for sandboxes made
    /// before quotas existed).
    #[serde(default)]
    pub(super) disk_size_mb: Option<u64>,
    /// The template it runs on; `None` (and in records from before
    /// templates): this machine's system.
    #[serde(default)]
    pub(super) template: Option<String>,
}

impl Chosen {
    pub(super) fn of(sandbox: SandboxRef<'_>) -> Option<Chosen> {
        serde_json::from_value(sandbox.provider_data.clone()).ok()
    }

    pub(super) fn limits(&self) -> cgroup::Limits {
        cgroup::Limits {
            memory_bytes: Some(self.memory_mb.saturating_mul(1 << 20)),
            cpu_count: Some(self.cpu_count),
            pids: Some(self.process_limit),
        }
    }
}

impl LocalProvider {
    /// The settings of a new sandbox: what it asks for within the maxima,
    /// the defaults for the rest.
    pub(super) fn choose(
        &self,
        asked: &Settings,
        template: Option<TemplateName>,
    ) -> Result<Chosen> {
        let c = &self.config;
        let within = |name: &str, value: u64, max: u64| {
            if value == 0 || value > max {
                Err(Error::Invalid(format!(
                    "{name} must be between 1 and {max}"
                )))
            } else {
                Ok(value)
            }
        };
        let internet = match asked.allow_internet_access {
            Some(true) if self.bwrap.is_some() => match &self.protections.internet {
                Ok(_) => true,
                Err(why) => {
                    return Err(Error::Invalid(format!(
                        "this host cannot give sandboxes internet access ({why}): \
                         install slirp4netns and nftables"
                    )));
                }
            },
            Some(false) => false,
            // Without isolation the sandbox shares this machine's network.
            _ => self.bwrap.is_none() || self.protections.internet.is_ok(),
        };
        Ok(Chosen {
            internet,
            memory_mb: within(
                "memory_mb",
                asked.memory_mb.unwrap_or(c.default_memory_mb),
                c.max_memory_mb,
            )?,
            cpu_count: within(
                "cpu_count",
                u64::from(asked.cpu_count.unwrap_or(c.default_cpu_count)),
                u64::from(c.max_cpu_count),
            )? as u32,
            process_limit: within(
                "process_limit",
                asked.process_limit.unwrap_or(c.default_process_limit),
                c.max_process_limit,
            )?,
            disk_size_mb: match (asked.disk_size_mb, &self.protections.quota) {
                (Some(mb), Ok(_)) if (quota::MIN_MB..=c.max_disk_size_mb).contains(&mb) => Some(mb),
                (Some(_), Ok(_)) => {
                    return Err(Error::Invalid(format!(
                        "disk_size_mb must be between {} and {}",
                        quota::MIN_MB,
                        c.max_disk_size_mb
                    )));
                }
                (Some(_), Err(why)) => {
                    return Err(Error::Invalid(format!(
                        "this host cannot give sandboxes a disk quota ({why})"
                    )));
                }
                (None, Ok(_)) if c.default_disk_size_mb > 0 => Some(c.default_disk_size_mb),
                (None, _) => None,
            },
            template: template.map(|t| t.to_string()),
        })
    }
}
