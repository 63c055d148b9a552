//! The `local` provider: each sandbox is an `mcp-tools` process on this
//! machine, with its own folder under the data folder:
//!
//! ```text
//! <data>/sandboxes/<id>/workspace   the agent's files (kept across pause)
//! <data>/sandboxes/<id>/disk.img    its file system, when it has a disk quota
//! <data>/sandboxes/<id>/state       mcp-tools' job logs
//! <data>/sandboxes/<id>/run         where mcp-tools makes its socket (seen as /run/mcp-tools)
//! <data>/sandboxes/<id>/mcp.sock    that socket, moved out of the sandbox's reach
//! <data>/sandboxes/<id>/pid         the process to stop, checked before signalling
//! <data>/sandboxes/<id>/slirp.pid   its user-mode network, when it has internet access
//! <data>/sandboxes/<id>/mcp-tools.log
//! <data>/sandboxes/<id>/template    the template it runs on, if any
//! <data>/sandboxes/<id>/passwd, group   that template's, plus the sandbox's user
//! ```
//!
//! A sandbox runs on a local [`template`] (a Debian root filesystem, the
//! default one unless create names another): it sees that root read-only as
//! `/`, its workspace at `/home/user` as on E2B, and a writable `/tmp`; the
//! static mcp-tools is bound in. With `--default-template none` it sees
//! this machine's system instead.
//!
//! With bubblewrap a sandbox is a boundary: it sees its root read-only
//! (on this machine's, minus home folders, `/run` and the data folder), plus its own folders; it
//! has its own pid, IPC, UTS and network namespaces ([`network`]), its own
//! host user when the control plane is root ([`identity`]), cgroup
//! limits ([`cgroup`]) and a disk quota ([`quota`]). Clients reach its MCP server and ports only through
//! the control plane (`api::forward`), which connects to the socket, or
//! into the namespace.
//!
//! Processes outlive a SIGKILLed control plane on purpose: at the next start
//! [`Provider::inspect`] finds them through the pid file and they are re-adopted.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{
    Capabilities, CreateSpec, Endpoint, Inspection, Metrics, Provider, Route, RouteStream, Running,
    SandboxRef, Settings,
};
use crate::config::{Isolation, LocalConfig};
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::{ProviderId, SandboxId, TemplateName};
use crate::model::TemplateInfo;
use crate::provider::{BuildLog, TemplateSpec};
use crate::public_url::PublicUrl;

mod bwrap;
mod cgroup;
mod identity;
mod network;
mod procs;
mod quota;
pub mod template;

pub use identity::UidRange;

/// How long a new mcp-tools may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a health check over the socket may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a sandbox was created with, kept in its record's `provider_data` so
/// a resume gives it the same again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Chosen {
    internet: bool,
    memory_mb: u64,
    cpu_count: u32,
    process_limit: u64,
    /// Its workspace's quota; `None` for none (and for sandboxes made
    /// before quotas existed).
    #[serde(default)]
    disk_size_mb: Option<u64>,
    /// The template it runs on; `None` (and in records from before
    /// templates): this machine's system.
    #[serde(default)]
    template: Option<String>,
}

impl Chosen {
    fn of(sandbox: SandboxRef<'_>) -> Option<Chosen> {
        serde_json::from_value(sandbox.provider_data.clone()).ok()
    }

    fn limits(&self) -> cgroup::Limits {
        cgroup::Limits {
            memory_bytes: Some(self.memory_mb.saturating_mul(1 << 20)),
            cpu_count: Some(self.cpu_count),
            pids: Some(self.process_limit),
        }
    }
}

/// The protections a sandbox boundary is made of, and whether each holds here.
#[derive(Debug, Clone)]
struct Protections {
    /// bubblewrap: files, processes, IPC.
    filesystem: bool,
    /// A network namespace each; `Err` says what is missing for internet access.
    network: bool,
    internet: std::result::Result<network::NetworkTools, String>,
    /// A host user each (control plane running as root).
    user: bool,
    /// cgroup limits; `Err` says why not.
    cgroups: std::result::Result<cgroup::Cgroups, String>,
    /// Disk quotas; `Err` says why not.
    quota: std::result::Result<quota::Quotas, String>,
}

/// Runs each sandbox as an mcp-tools process on this machine (under
/// bubblewrap when isolation is on).
pub struct LocalProvider {
    data_dir: PathBuf,
    sandboxes_dir: PathBuf,
    mcp_tools: PathBuf,
    /// The bwrap binary when sandboxes are isolated.
    bwrap: Option<PathBuf>,
    /// setsid(1), which starts each sandbox in a session of its own.
    setsid: PathBuf,
    /// `setpriv`, to become a sandbox's own user (control plane running as root).
    setpriv: Option<PathBuf>,
    protections: Protections,
    identities: identity::Identities,
    /// The local templates.
    templates: template::Templates,
    /// The template of a create that names none.
    default_template: Option<TemplateName>,
    /// The static mcp-tools bound into sandboxes on a template, or why there is none.
    static_mcp_tools: std::result::Result<PathBuf, String>,
    /// The nftables rules of sandboxes with internet access.
    firewall: String,
    /// Bound over `/etc/resolv.conf` in sandboxes with internet access.
    resolv_conf: PathBuf,
    config: LocalConfig,
    /// Where clients reach the control plane, through which sandboxes are routed.
    public_url: PublicUrl,
    /// Children started by this process, so they can be waited for (no zombies).
    children: Mutex<HashMap<SandboxId, Vec<Child>>>,
}

impl LocalProvider {
    /// A provider keeping its sandboxes in `<data_dir>/sandboxes`, routed
    /// through the API at `public_url`.
    ///
    /// Errors: the folder cannot be made, mcp-tools is not found, or
    /// `--isolation on` while a protection does not hold here.
    pub async fn new(
        config: &LocalConfig,
        data_dir: &Path,
        public_url: PublicUrl,
    ) -> Result<Self, StartError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StartError::Io { what, path, source }
        };
        let sandboxes_dir = data_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir).map_err(io("cannot create", &sandboxes_dir))?;
        let sandboxes_dir = sandboxes_dir
            .canonicalize()
            .map_err(io("cannot use", &sandboxes_dir))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io("cannot use", data_dir))?;
        let mcp_tools = find_mcp_tools(config.mcp_tools_bin.as_deref())?;
        let static_mcp_tools = find_static_mcp_tools(config, &mcp_tools);
        let templates_dir = config
            .templates_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("templates"));
        let apt_cache = config
            .template_apt_cache
            .clone()
            .unwrap_or_else(|| templates_dir.join(".apt-cache"));
        let templates = template::Templates::open(&templates_dir, &apt_cache)
            .map_err(io("cannot use the templates folder", &templates_dir))?;
        if config.default_memory_mb > config.max_memory_mb
            || config.default_cpu_count > config.max_cpu_count
            || config.default_process_limit > config.max_process_limit
            || config.default_disk_size_mb > config.max_disk_size_mb
        {
            return Err(StartError::Config(
                "a --default-* limit is above its --max-* limit".into(),
            ));
        }
        let bwrap = match config.isolation {
            Isolation::Off => None,
            Isolation::Auto | Isolation::On => bwrap::find_working_bwrap().await,
        };
        let identities = identity::Identities::new(config.sandbox_uids);
        let setpriv = network::find_program("setpriv");
        let protections = Protections {
            filesystem: bwrap.is_some(),
            network: bwrap.is_some(),
            internet: match &bwrap {
                Some(_) => network::NetworkTools::find(),
                None => Err("no bubblewrap".into()),
            },
            user: bwrap.is_some() && identities.per_sandbox() && setpriv.is_some(),
            cgroups: match (&bwrap, identities.per_sandbox()) {
                (Some(_), true) => cgroup::Cgroups::detect(),
                (Some(_), false) => Err("the control plane does not run as root".into()),
                (None, _) => Err("no bubblewrap".into()),
            },
            quota: match &bwrap {
                Some(_) => quota::Quotas::detect(&data_dir, config.default_disk_size_mb),
                None => Err("no bubblewrap".into()),
            },
        };
        if config.isolation == Isolation::On {
            let missing = missing_protections(&protections);
            if !missing.is_empty() {
                return Err(StartError::Config(format!(
                    "--isolation on, but these protections do not hold here: {}",
                    missing.join("; ")
                )));
            }
        }
        if let Ok(quotas) = &protections.quota {
            // The first create need not wait for a mkfs.
            quotas.refill();
        }
        let resolv_conf = data_dir.join("resolv.conf");
        std::fs::write(&resolv_conf, network::RESOLV_CONF)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&resolv_conf, PermissionsExt::from_mode(0o644))
            })
            .map_err(io("cannot write", &resolv_conf))?;
        let setsid = find_on_path("setsid").ok_or_else(|| {
            StartError::Config(
                "the local provider needs setsid (util-linux, or busybox) on PATH".into(),
            )
        })?;
        let default_template = config.default_template.name().cloned();
        if let Some(name) = &default_template
            && templates.get(name).is_none()
        {
            if config.build_default_template {
                build_at_start(&templates, name).await?;
            } else {
                tracing::warn!(
                    "the default template {name} is not built: creates without template_id \
                     fail until `control-plane template build {name}` (or start with \
                     --build-default-template, or --default-template none)"
                );
            }
        }
        if let (Some(_), Err(why)) = (&default_template, &static_mcp_tools) {
            tracing::warn!("sandboxes on a template cannot start: {why}");
        }
        Ok(LocalProvider {
            data_dir,
            sandboxes_dir,
            mcp_tools,
            templates,
            default_template,
            static_mcp_tools,
            bwrap,
            setsid,
            setpriv: if protections.user { setpriv } else { None },
            firewall: network::firewall_rules(&network::host_addresses()),
            protections,
            identities,
            resolv_conf,
            config: config.clone(),
            public_url,
            children: Mutex::new(HashMap::new()),
        })
    }

    /// Sandbox `id`'s folder (an id is one path component, never `..`).
    fn dir(&self, id: &SandboxId) -> PathBuf {
        self.sandboxes_dir.join(id.as_str())
    }

    fn layout(&self, id: &SandboxId) -> bwrap::Layout {
        bwrap::Layout {
            data_dir: self.data_dir.clone(),
            dir: self.dir(id),
        }
    }

    fn cgroup(&self, id: &SandboxId) -> Option<cgroup::SandboxCgroup> {
        self.protections
            .cgroups
            .as_ref()
            .ok()
            .map(|c| c.sandbox(id.as_str()))
    }

    /// The settings of a new sandbox: what it asks for within the maxima,
    /// the defaults for the rest.
    fn choose(&self, asked: &Settings, template: Option<TemplateName>) -> Result<Chosen> {
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

    /// The template a create asking for `asked` runs on: `None` for this
    /// machine's system. Errors when it is not built or cannot be used here.
    fn resolve_template(&self, asked: Option<&str>) -> Result<Option<TemplateName>> {
        let name = match asked {
            None => match &self.default_template {
                Some(name) => name.clone(),
                None => return Ok(None),
            },
            // As before templates: "default" is whatever the default is.
            Some("default") if self.default_template.is_none() => return Ok(None),
            Some(asked) => TemplateName::parse(asked).map_err(Error::Invalid)?,
        };
        if self.templates.get(&name).is_none() {
            return Err(Error::Invalid(
                if Some(&name) == self.default_template.as_ref() {
                    format!(
                        "the default template {name} is not built yet: build it with \
                         `control-plane template build {name}` (scripts/serve.sh builds it at \
                         its first start), or start the control plane with \
                         --default-template none to run sandboxes on this machine's system"
                    )
                } else {
                    Error::TemplateNotFound {
                        name: name.to_string(),
                    }
                    .to_string()
                },
            ));
        }
        self.template_usable()?;
        Ok(Some(name))
    }

    /// Why sandboxes on a template cannot start here, if they cannot.
    fn template_usable(&self) -> Result<()> {
        if self.bwrap.is_none() {
            return Err(Error::Invalid(
                "sandboxes on a template need bubblewrap (apt-get install bubblewrap), \
                 which does not work here; start with --default-template none"
                    .into(),
            ));
        }
        if let Err(why) = &self.static_mcp_tools {
            return Err(ProviderError::refused(format!(
                "sandboxes on a template cannot start: {why}"
            ))
            .into());
        }
        Ok(())
    }

    /// The root, passwd and group of a sandbox on template `name`, made for
    /// its user `uid` (the control plane's own when it has none).
    fn template_root(
        &self,
        layout: &bwrap::Layout,
        name: &str,
        uid: Option<u32>,
    ) -> Result<bwrap::TemplateRoot> {
        let name = TemplateName::parse(name).map_err(Error::Invalid)?;
        let root = self.templates.root(&name);
        if self.templates.get(&name).is_none() {
            return Err(ProviderError::failed(format!(
                "template {name} of this sandbox is gone (deleted?); build it again to resume"
            ))
            .into());
        }
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let uid = uid.unwrap_or_else(|| unsafe { libc::geteuid() });
        let failed = |e: std::io::Error| {
            Error::Internal(format!("cannot write the sandbox's user files: {e}"))
        };
        let mut files = [
            (
                "passwd",
                format!("user:x:{uid}:{uid}:user:/home/user:/bin/bash\n"),
            ),
            ("group", format!("user:x:{uid}:\n")),
        ];
        for (file, line) in &mut files {
            let mut text =
                std::fs::read_to_string(root.join("etc").join(*file)).unwrap_or_default();
            let taken = text
                .lines()
                .any(|l| l.split(':').nth(2) == Some(uid.to_string().as_str()));
            if !taken {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(line);
            }
            write_atomically(&layout.dir.join(*file), &text)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(layout.dir.join(*file), PermissionsExt::from_mode(0o644))
                .map_err(failed)?;
        }
        Ok(bwrap::TemplateRoot {
            root,
            passwd: layout.dir.join("passwd"),
            group: layout.dir.join("group"),
        })
    }

    /// The sandboxes whose folder says they run on template `name`.
    fn sandboxes_on(&self, name: &TemplateName) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.sandboxes_dir) else {
            return Vec::new();
        };
        let mut on: Vec<String> = entries
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("template"))
                    .is_ok_and(|t| t.trim() == name.as_str())
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        on.sort();
        on
    }

    /// What the provider reports of a running sandbox.
    fn running(&self, id: &SandboxId, chosen: &Chosen) -> Running {
        Running {
            provider_id: ProviderId::from(id),
            endpoint: Endpoint {
                url: self.public_url.mcp_url(id.as_str()),
                headers: BTreeMap::new(),
            },
            provider_data: serde_json::to_value(chosen).unwrap_or_default(),
        }
    }

    /// Starts sandbox `id` and waits until its mcp-tools answers /health.
    /// A start that fails leaves no process.
    async fn start(&self, id: &SandboxId, token: &str, chosen: &Chosen) -> Result<Running> {
        let layout = self.layout(id);
        let failed = |what: &str, e: std::io::Error| {
            Error::Internal(format!("{what} for sandbox {id}: {e}"))
        };
        for d in [
            layout.dir.clone(),
            layout.workspace(),
            layout.state(),
            layout.run(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| failed("cannot create folders", e))?;
        }
        let uid = self
            .identities
            .claim(
                &self.sandboxes_dir,
                &layout.dir,
                &[&layout.workspace(), &layout.state(), &layout.run()],
            )
            .map_err(|e| failed("cannot give the sandbox its user", e))?;
        if let (Some(mb), Ok(quotas)) = (chosen.disk_size_mb, &self.protections.quota) {
            quotas
                .attach(&layout.dir, &layout.workspace(), mb, uid)
                .await
                .map_err(|e| failed("cannot mount the workspace's file system", e))?;
        }
        for stale in [
            layout.socket(),
            layout.run().join("mcp.sock"),
            layout.run().join("ready"),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.dir.join("mcp-tools.log"))
            .map_err(|e| failed("cannot open the log", e))?;
        // Kept while the sandbox exists, so its template is not deleted under it.
        match &chosen.template {
            Some(name) => write_atomically(&layout.dir.join("template"), name)?,
            None => {
                let _ = std::fs::remove_file(layout.dir.join("template"));
            }
        }

        let started = match &self.bwrap {
            Some(bwrap) => {
                self.start_isolated(id, token, chosen, &layout, bwrap, uid, log)
                    .await
            }
            None if chosen.template.is_some() => Err(Error::Invalid(
                "sandboxes on a template need bubblewrap, which does not work here".into(),
            )),
            None => self.start_plain(id, token, &layout, log).await,
        };
        if let Err(e) = started {
            self.stop(id).await;
            // The folder of a failed create goes: its log goes to ours first.
            let log = std::fs::read(layout.dir.join("mcp-tools.log")).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]);
            tracing::warn!(sandbox = %id, "start failed: {e}; its log ends with: {tail}");
            return Err(e);
        }
        Ok(self.running(id, chosen))
    }

    /// bubblewrap, held until it is in its cgroup and behind its firewall;
    /// then slirp4netns once mcp-tools listens.
    #[allow(clippy::too_many_arguments)]
    async fn start_isolated(
        &self,
        id: &SandboxId,
        token: &str,
        chosen: &Chosen,
        layout: &bwrap::Layout,
        bwrap_bin: &Path,
        uid: Option<u32>,
        log: std::fs::File,
    ) -> Result<()> {
        let cgroup = self.cgroup(id);
        if let Some(cg) = &cgroup {
            cg.create(&chosen.limits()).map_err(|e| {
                ProviderError::failed(format!("cannot set the limits of sandbox {id}: {e}"))
            })?;
        }
        let internet = match (&self.protections.internet, chosen.internet) {
            (Ok(tools), true) => Some(tools),
            _ => None,
        };
        let template = match &chosen.template {
            Some(name) => Some(self.template_root(layout, name, uid)?),
            None => None,
        };
        let mcp_tools = match (&template, &self.static_mcp_tools) {
            (None, _) => self.mcp_tools.as_path(),
            (Some(_), Ok(bin)) => bin.as_path(),
            (Some(_), Err(why)) => {
                return Err(ProviderError::refused(format!(
                    "sandboxes on a template cannot start: {why}"
                ))
                .into());
            }
        };
        let launch = bwrap::Launch {
            layout,
            bwrap: bwrap_bin,
            mcp_tools,
            template: template.as_ref(),
            user: match (&self.setpriv, uid) {
                (Some(setpriv), Some(uid)) => Some((setpriv.as_path(), uid)),
                _ => None,
            },
            resolv_conf: internet.map(|_| self.resolv_conf.as_path()),
            // Half the memory: tmpfs pages cannot be reclaimed, so a full /tmp
            // must be an ENOSPC, not an OOM kill of everything in the sandbox.
            tmp_bytes: Some(chosen.memory_mb.saturating_mul(1 << 19)),
            token,
            log: log
                .try_clone()
                .map_err(|e| Error::Internal(format!("log: {e}")))?,
        };
        let held = launch.start().await?;
        let bwrap_pid = held.child.id().unwrap_or(0);
        let sandbox_pid = held.sandbox_pid;
        write_atomically(&layout.dir.join("pid"), &bwrap_pid.to_string())?;
        let held = {
            let placed = match &cgroup {
                Some(cg) => cg.add(bwrap_pid).and_then(|()| cg.add(sandbox_pid)),
                None => Ok(()),
            };
            if let Err(e) = placed {
                let mut child = held.child;
                let _ = child.kill().await;
                return Err(ProviderError::failed(format!(
                    "cannot put sandbox {id} in its cgroup: {e}"
                ))
                .into());
            }
            if let Some(tools) = internet
                && !network::in_user_namespace()
                && let Err(e) = tools.apply_firewall(sandbox_pid, &self.firewall).await
            {
                let mut child = held.child;
                let _ = child.kill().await;
                return Err(e);
            }
            held
        };
        let mut child = held.release()?;
        let waited = wait_for_socket(&mut child, layout).await;
        self.children
            .lock()
            .await
            .entry(id.clone())
            .or_default()
            .push(child);
        waited.map_err(|e| e.into_error(id, layout))?;
        if let Some(tools) = internet {
            if network::in_user_namespace() {
                // Without root the firewall goes in only now: bubblewrap
                // maps the user into the namespace that owns the network
                // after it is released, and before that nft has no
                // privilege there. No packet has left yet: the namespace
                // has only `lo` until slirp4netns adds `tap0` below, and
                // the sandbox has no privilege over its network to add
                // rules of its own first.
                tools.apply_firewall(sandbox_pid, &self.firewall).await?;
            }
            // Only now: slirp4netns brings up the namespace's loopback too,
            // which must not race bubblewrap's own setup of it.
            // Once more if the first fails: under heavy load slirp4netns
            // was seen to fail now and then at start.
            let slirp = match tools.start_slirp(sandbox_pid, &log).await {
                Ok(slirp) => slirp,
                Err(e) => {
                    tracing::warn!(sandbox = %id, "{e}; trying once more");
                    tools.start_slirp(sandbox_pid, &log).await?
                }
            };
            let slirp_pid = slirp.id().unwrap_or(0);
            write_atomically(&layout.dir.join("slirp.pid"), &slirp_pid.to_string())?;
            if let Some(cg) = &cgroup {
                // Its memory counts as the sandbox's, and it ends with it.
                let _ = cg.add(slirp_pid);
            }
            self.children
                .lock()
                .await
                .entry(id.clone())
                .or_default()
                .push(slirp);
        }
        if !healthy_soon(&layout.socket()).await {
            return Err(ProviderError::failed(format!(
                "mcp-tools of sandbox {id} listens but /health fails"
            ))
            .into());
        }
        Ok(())
    }

    /// mcp-tools as a plain child process, without isolation.
    async fn start_plain(
        &self,
        id: &SandboxId,
        token: &str,
        layout: &bwrap::Layout,
        log: std::fs::File,
    ) -> Result<()> {
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Internal(format!("log: {e}")))?;
        let args: Vec<OsString> = vec![
            "--unix-socket".into(),
            layout.run().join("mcp.sock").into(),
            "--addr-file".into(),
            layout.run().join("ready").into(),
            "--workspace".into(),
            layout.workspace().into(),
            "--state-dir".into(),
            layout.state().into(),
            "--log-level".into(),
            "warn".into(),
        ];
        let mut cmd = Command::new(&self.setsid);
        cmd.arg(&self.mcp_tools)
            .args(&args)
            // The sandbox must not inherit this process's secrets (API keys).
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", layout.workspace())
            .env("LANG", "C.UTF-8")
            .env("MCP_AUTH_TOKEN", token)
            .current_dir(layout.workspace())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = cmd.spawn().map_err(|e| {
            ProviderError::failed(format!("cannot start {}: {e}", self.mcp_tools.display()))
        })?;
        write_atomically(
            &layout.dir.join("pid"),
            &child.id().unwrap_or(0).to_string(),
        )?;
        let waited = wait_for_socket(&mut child, layout).await;
        self.children
            .lock()
            .await
            .entry(id.clone())
            .or_default()
            .push(child);
        waited.map_err(|e| e.into_error(id, layout))?;
        if !healthy_soon(&layout.socket()).await {
            return Err(ProviderError::failed(format!(
                "mcp-tools of sandbox {id} listens but /health fails"
            ))
            .into());
        }
        Ok(())
    }

    /// The pid of sandbox `id`'s outer process if it is alive and really ours.
    fn live_pid(&self, id: &SandboxId) -> Option<u32> {
        let dir = self.dir(id);
        if let Some(pid) = recorded_pid(&dir, "pid")
            && procs::process_is_ours(pid, &dir)
        {
            return Some(pid);
        }
        // A control plane killed between starting the process and writing the
        // pid file leaves one that only its command line identifies.
        procs::find_group_leader(&dir)
    }

    /// Stops sandbox `id`'s processes, every process its commands left
    /// behind, and its network.
    async fn stop(&self, id: &SandboxId) {
        let dir = self.dir(id);
        let mut children = self.children.lock().await.remove(id).unwrap_or_default();
        let cgroup = self.cgroup(id);
        if let Some(cg) = &cgroup {
            cg.kill_all().await;
        }
        // The outer process leads its own process group. Without bubblewrap
        // mcp-tools leads its own session too, and its commands stay in it
        // (in process groups of their own, which signalling its group
        // misses). A leader that already died leaves its session id to them;
        // its pid names that session only while no other process has it.
        let leader = children.first_mut();
        let session = match self.live_pid(id) {
            Some(pid) => {
                procs::stop_group(pid, leader).await;
                Some(pid)
            }
            None => {
                if let Some(child) = leader {
                    let _ = child.try_wait();
                }
                recorded_pid(&dir, "pid").filter(|pid| procs::is_gone(*pid))
            }
        };
        if let Some(session) = session {
            procs::kill_session(session).await;
        }
        if let Some(pid) = recorded_pid(&dir, "slirp.pid")
            && procs::is_slirp_of(pid)
        {
            procs::signal_process(pid, libc::SIGKILL);
        }
        for child in &mut children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        // Anything else of this sandbox still alive: e.g. bubblewrap's
        // first process, orphaned when a control plane killed mid-start left
        // it waiting, before it was in any group or cgroup.
        procs::kill_all_of(&dir).await;
        quota::detach(&dir.join("workspace"));
        if let Some(cg) = &cgroup {
            cg.remove().await;
        }
        for file in ["pid", "slirp.pid", "mcp.sock"] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
}

/// What holds and what does not, as `name: why` for the missing ones.
fn missing_protections(p: &Protections) -> Vec<String> {
    let mut missing = Vec::new();
    if !p.filesystem {
        missing.push("filesystem and network namespaces: no working bubblewrap".to_string());
    }
    if let Err(why) = &p.internet {
        missing.push(format!("internet access for sandboxes: {why}"));
    }
    if !p.user {
        missing.push("a host user per sandbox: needs root, bubblewrap and setpriv".to_string());
    }
    if let Err(why) = &p.cgroups {
        missing.push(format!("cgroup limits: {why}"));
    }
    if let Err(why) = &p.quota {
        missing.push(format!("disk quotas: {why}"));
    }
    missing
}

/// Why mcp-tools never came to listen.
enum Exit {
    /// It exited, with this status.
    Exited(std::process::ExitStatus),
    /// It did not make its socket within [`START_TIMEOUT`].
    TimedOut,
    /// Its socket is not a socket (the sandbox cannot have made it so
    /// before mcp-tools ran, so something is badly wrong).
    NotASocket,
}

impl Exit {
    fn into_error(self, id: &SandboxId, layout: &bwrap::Layout) -> Error {
        let log = layout.dir.join("mcp-tools.log");
        match self {
            Exit::Exited(status) => ProviderError::failed(format!(
                "mcp-tools for sandbox {id} exited at start ({status}); see {}",
                log.display()
            )),
            Exit::TimedOut => ProviderError::timeout(format!(
                "mcp-tools for sandbox {id} did not start within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            )),
            Exit::NotASocket => {
                ProviderError::failed(format!("the socket of sandbox {id} is not a socket"))
            }
        }
        .into()
    }
}

/// Waits until `child`'s mcp-tools says its socket in the sandbox's `run`
/// folder is ready (it writes `ready` there), then moves the socket to the sandbox's own folder, out of the
/// sandbox's reach: the control plane connects only there, so nothing the
/// sandbox does later (a link in place of the socket) redirects it.
async fn wait_for_socket(child: &mut Child, layout: &bwrap::Layout) -> Result<(), Exit> {
    use std::os::unix::fs::FileTypeExt;
    let made = layout.run().join("mcp.sock");
    let ready = layout.run().join("ready");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Exit::Exited(status));
        }
        if std::fs::symlink_metadata(&ready).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Exit::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // rename(2) moves a link itself, never what it points to.
    std::fs::rename(&made, layout.socket()).map_err(|_| Exit::NotASocket)?;
    match std::fs::symlink_metadata(layout.socket()) {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        _ => Err(Exit::NotASocket),
    }
}

/// [`healthy`], asked again for up to a second: the socket exists from
/// mcp-tools' bind(2), a moment before it listens.
async fn healthy_soon(socket: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if healthy(socket).await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when the mcp-tools at `socket` answers `GET /health` with success.
async fn healthy(socket: &Path) -> bool {
    let check = async {
        let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        Some(get_succeeds(Box::new(stream), "sandbox", "/health").await)
    };
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, check).await,
        Ok(Some(true))
    )
}

/// True when `GET path` with `Host: host` over `stream` answers with success.
async fn get_succeeds(stream: RouteStream, host: &str, path: &str) -> bool {
    let check = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = axum::http::Request::get(path)
            .header(axum::http::header::HOST, host)
            .body(axum::body::Body::empty())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        Some(resp.status().is_success())
    };
    check.await == Some(true)
}

/// Whether `code-server` is an executable file in one of the folders of
/// `path` (a `PATH` value as the sandbox has it) under `root`, its `/`.
fn editor_on_path(root: &Path, path: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .filter_map(|dir| resolve_under(root, &dir.join("code-server")))
        .any(|bin| {
            std::fs::symlink_metadata(bin)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where `path`, as seen by a sandbox whose `/` is `root`, is on this
/// machine: its links followed the way they lead inside (an absolute link
/// target is under `root`), up to 8 of them.
fn resolve_under(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut inside = path.to_path_buf();
    for _ in 0..8 {
        let here = root.join(inside.strip_prefix("/").unwrap_or(&inside));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(here);
        }
        let target = std::fs::read_link(&here).ok()?;
        inside = match target.is_absolute() {
            true => target,
            false => inside.parent()?.join(target),
        };
    }
    None
}

/// The pid in file `name` of sandbox folder `dir`, if there is one.
fn recorded_pid(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
}

/// Bytes the files under `dir` take on disk, never following a link.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            total += disk_usage(&entry.path());
        }
    }
    total
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            expose_port: true,
            isolated: self.bwrap.is_some(),
            pause_on_shutdown: true,
        }
    }

    fn describe(&self) -> String {
        let p = &self.protections;
        let mut line = match &self.bwrap {
            Some(b) => format!(
                "local sandboxes run {} under {}: each sees the machine read-only without \
                 /root, /home and /run, its own folder read-write, its own processes and \
                 network namespace, no capabilities, and not the other sandboxes",
                self.mcp_tools.display(),
                b.display()
            ),
            None => {
                return format!(
                    "local sandboxes run {} as this user WITHOUT isolation: commands in a \
                     sandbox can read and write anything this user can, including other \
                     sandboxes (install bubblewrap for isolation)",
                    self.mcp_tools.display()
                );
            }
        };
        line.push_str(&match &p.internet {
            Ok(_) => "; internet through slirp4netns, never this machine or its LAN".into(),
            Err(why) => format!("; NO internet access ({why})"),
        });
        line.push_str(&match (p.user, &self.config.sandbox_uids) {
            (true, range) => format!("; a host user each from {range}"),
            (false, _) => "; running as this user inside a user namespace".into(),
        });
        line.push_str(&match &p.cgroups {
            Ok(c) => format!("; limits through {}", c.version()),
            Err(why) => format!("; NO resource limits ({why})"),
        });
        line.push_str(&match (&p.quota, self.config.default_disk_size_mb) {
            (Ok(_), 0) => "; a disk quota only when create asks (disk_size_mb)".into(),
            (Ok(_), mb) => format!("; a disk quota of {mb} MiB unless create asks otherwise"),
            (Err(why), _) => format!("; NO disk quota ({why})"),
        });
        line
    }

    fn environment(&self) -> String {
        match &self.default_template {
            Some(name) => match self.templates.get(name) {
                Some(m) => format!(
                    "template {name} (Debian {}, {} packages, built {}): sandboxes see its \
                     root read-only, their workspace at /home/user",
                    m.release,
                    m.packages.len(),
                    m.created_at
                ),
                None => format!(
                    "template {name}, NOT BUILT: creates without template_id fail until \
                     `control-plane template build {name}`"
                ),
            },
            None => "this machine's own system, read-only (--default-template none): what a \
                     sandbox finds depends on this machine, not on the sandbox template"
                .into(),
        }
    }

    async fn templates(&self) -> Result<Vec<TemplateInfo>> {
        Ok(self
            .templates
            .list()
            .iter()
            .map(|m| {
                m.info(Some(m.name.as_str()) == self.default_template.as_ref().map(|n| n.as_str()))
            })
            .collect())
    }

    async fn build_template(&self, spec: TemplateSpec, log: BuildLog) -> Result<TemplateInfo> {
        let build = template::BuildSpec {
            packages: spec.packages.unwrap_or_else(template::environment_packages),
            name: spec.name,
            vscode: spec.vscode,
        };
        let built = self.templates.build(&build, &log).await?;
        Ok(built.info(Some(&build.name) == self.default_template.as_ref()))
    }

    async fn delete_template(&self, name: &TemplateName) -> Result<()> {
        let users = self.sandboxes_on(name);
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "template {name} is used by sandbox{} {}; delete {} first",
                if users.len() == 1 { "" } else { "es" },
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" }
            )));
        }
        self.templates.delete(name).await
    }

    fn protections(&self) -> Vec<(&'static str, bool)> {
        let p = &self.protections;
        vec![
            ("filesystem", p.filesystem),
            ("network", p.network),
            ("internet_via_user_mode_network", p.internet.is_ok()),
            ("user", p.user),
            ("cgroups", p.cgroups.is_ok()),
            ("quota", p.quota.is_ok()),
        ]
    }

    async fn create(&self, spec: &CreateSpec) -> Result<Running> {
        let template = self.resolve_template(spec.template_id.as_deref())?;
        let chosen = self.choose(&spec.settings, template)?;
        let started = self.start(&spec.sandbox_id, &spec.token, &chosen).await;
        if started.is_err() {
            let _ = remove_tree(&self.dir(&spec.sandbox_id));
        }
        started
    }

    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        let dir = self.dir(sandbox.id);
        if !dir.join("workspace").is_dir() {
            return Err(ProviderError::failed(format!(
                "the workspace of sandbox {} is gone from {}",
                sandbox.id,
                dir.display()
            ))
            .into());
        }
        // A sandbox from before these settings existed gets today's defaults.
        let chosen = match Chosen::of(sandbox) {
            Some(chosen) => chosen,
            None => self.choose(&Settings::default(), None)?,
        };
        // Whatever is left from before (e.g. adopted) goes first.
        self.stop(sandbox.id).await;
        self.start(sandbox.id, sandbox.token, &chosen).await
    }

    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        self.stop(sandbox.id).await;
        Ok(())
    }

    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        self.stop(sandbox.id).await;
        let dir = self.dir(sandbox.id);
        remove_tree(&dir)
            .map_err(|e| Error::Internal(format!("cannot remove {}: {e}", dir.display())))
    }

    async fn inspect(&self, sandbox: SandboxRef<'_>) -> Result<Inspection> {
        let id = sandbox.id;
        let dir = self.dir(id);
        if !dir.join("workspace").is_dir() {
            return Ok(Inspection::Gone);
        }
        if let Some(children) = self.children.lock().await.get_mut(id) {
            // Reap children that exited by themselves.
            for child in children {
                let _ = child.try_wait();
            }
        }
        // Its outer process gone but mcp-tools (or anything) left: stopped,
        // and what is left is ended so that the state is true.
        if self.live_pid(id).is_some() && healthy(&dir.join("mcp.sock")).await {
            let chosen = match Chosen::of(sandbox) {
                Some(chosen) => chosen,
                None => self.choose(&Settings::default(), None)?,
            };
            return Ok(Inspection::Running(self.running(id, &chosen)));
        }
        self.stop(id).await;
        Ok(Inspection::Stopped)
    }

    fn port_url(&self, sandbox: SandboxRef<'_>, port: u16) -> Result<String> {
        match self.bwrap {
            // Its own network: reached through the control plane, an origin
            // per sandbox and port.
            Some(_) => Ok(self.public_url.port_origin(port, sandbox.id.as_str())),
            // Unisolated sandboxes share this machine's network.
            None => Ok(format!("http://127.0.0.1:{port}")),
        }
    }

    fn has_editor(&self, sandbox: SandboxRef<'_>) -> bool {
        match Chosen::of(sandbox).and_then(|c| c.template) {
            Some(name) => TemplateName::parse(&name).is_ok_and(|name| {
                editor_on_path(
                    &self.templates.root(&name),
                    bwrap::PATH_IN_TEMPLATE.as_ref(),
                )
            }),
            None => {
                let path = match self.bwrap {
                    Some(_) => bwrap::host_path_inside(),
                    None => std::env::var_os("PATH").unwrap_or_default(),
                };
                editor_on_path(Path::new("/"), &path)
            }
        }
    }

    async fn port_answers(&self, sandbox: SandboxRef<'_>, port: u16, path: &str) -> bool {
        let host = format!("{port}-{}.localhost", sandbox.id);
        let check = async {
            let stream = self.open_route(sandbox, Route::Port(port)).await.ok()?;
            Some(get_succeeds(stream, &host, path).await)
        };
        matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, check).await,
            Ok(Some(true))
        )
    }

    async fn open_route(&self, sandbox: SandboxRef<'_>, route: Route) -> Result<RouteStream> {
        let dir = self.dir(sandbox.id);
        let unreachable = |e: std::io::Error| -> Error {
            ProviderError::failed(format!("sandbox {} does not answer: {e}", sandbox.id)).into()
        };
        match route {
            Route::Mcp => Ok(Box::new(
                tokio::net::UnixStream::connect(dir.join("mcp.sock"))
                    .await
                    .map_err(unreachable)?,
            )),
            Route::Port(port) if self.bwrap.is_some() => {
                let init = self
                    .live_pid(sandbox.id)
                    .and_then(procs::only_child)
                    .ok_or_else(|| unreachable(std::io::ErrorKind::NotFound.into()))?;
                Ok(Box::new(
                    network::connect_inside(init, port)
                        .await
                        .map_err(unreachable)?,
                ))
            }
            Route::Port(port) => Ok(Box::new(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(unreachable)?,
            )),
        }
    }

    fn mcp_socket(&self, sandbox: SandboxRef<'_>) -> Option<PathBuf> {
        Some(self.dir(sandbox.id).join("mcp.sock"))
    }

    fn is_alive(&self, sandbox: SandboxRef<'_>) -> Option<bool> {
        // A listener that died leaves a socket that refuses at once.
        Some(std::os::unix::net::UnixStream::connect(self.dir(sandbox.id).join("mcp.sock")).is_ok())
    }

    fn oom_kills(&self, sandbox: SandboxRef<'_>) -> Option<u64> {
        self.cgroup(sandbox.id)?.oom_kills()
    }

    async fn metrics(&self, sandbox: SandboxRef<'_>) -> Result<Metrics> {
        let workspace = self.dir(sandbox.id).join("workspace");
        // Its own file system says at once; a folder is walked.
        let (disk_bytes, disk_limit_bytes) = match quota::used_bytes(&workspace) {
            Some(used) => (
                used,
                Chosen::of(sandbox)
                    .and_then(|c| c.disk_size_mb)
                    .map(|mb| mb << 20),
            ),
            None => (
                tokio::task::spawn_blocking(move || disk_usage(&workspace))
                    .await
                    .unwrap_or(0),
                None,
            ),
        };
        let Some(cg) = self.cgroup(sandbox.id) else {
            return Ok(Metrics {
                disk_bytes,
                disk_limit_bytes,
                ..Metrics::default()
            });
        };
        let usage = cg.usage().map_err(|e| {
            ProviderError::failed(format!(
                "cannot read the usage of sandbox {}: {e}",
                sandbox.id
            ))
        })?;
        Ok(Metrics {
            cpu_usec: Some(usage.cpu_usec),
            cpu_used_pct: None,
            cpu_count: Chosen::of(sandbox).map(|c| c.cpu_count),
            memory_bytes: usage.memory_bytes,
            memory_limit_bytes: usage.memory_limit_bytes,
            processes: Some(usage.pids),
            process_limit: usage.pids_limit,
            processes_refused: Some(usage.pids_refused),
            disk_bytes,
            disk_limit_bytes,
            oom_kills: Some(usage.oom_kills),
        })
    }
}

/// The mcp-tools binary: the configured one, else next to this binary, else on $PATH.
fn find_mcp_tools(configured: Option<&Path>) -> Result<PathBuf, StartError> {
    if let Some(p) = configured {
        return p
            .canonicalize()
            .map_err(|e| StartError::Config(format!("--mcp-tools-bin {}: {e}", p.display())));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join("mcp-tools");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("mcp-tools");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(StartError::Config(
        "cannot find the mcp-tools binary next to control-plane or on PATH; \
         build it (cargo build -p mcp-tools) or pass --mcp-tools-bin / MCP_TOOLS_BIN"
            .into(),
    ))
}

/// The statically linked mcp-tools for sandboxes on a template: the
/// configured one, else `mcp_tools` if it is static, else the musl release
/// build in this binary's target folder; `Err` says why there is none.
fn find_static_mcp_tools(
    config: &LocalConfig,
    mcp_tools: &Path,
) -> std::result::Result<PathBuf, String> {
    let musl = "x86_64-unknown-linux-musl/release/mcp-tools";
    let candidate = match &config.template_mcp_tools_bin {
        Some(p) => p.clone(),
        None if is_static(mcp_tools) => return Ok(mcp_tools.to_path_buf()),
        None => match std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join(musl)))
        {
            Some(p) if p.is_file() => p,
            _ => {
                return Err(format!(
                    "{} is dynamically linked and no static build was found; build one \
                     (rustup target add x86_64-unknown-linux-musl; cargo build --release \
                     --target x86_64-unknown-linux-musl -p mcp-tools) and pass \
                     --template-mcp-tools-bin",
                    mcp_tools.display()
                ));
            }
        },
    };
    let candidate = candidate
        .canonicalize()
        .map_err(|e| format!("--template-mcp-tools-bin {}: {e}", candidate.display()))?;
    if !is_static(&candidate) {
        return Err(format!(
            "{} is not statically linked: a template has its own libc",
            candidate.display()
        ));
    }
    Ok(candidate)
}

/// True for an ELF executable with no program interpreter (`PT_INTERP`):
/// one that needs no dynamic loader and no libc from its root.
fn is_static(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    // ELF, 64-bit, little-endian (the only kind built here).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| u32::from_le_bytes(b) != PT_INTERP)
    })
}

/// Builds the default template `name` before the control plane serves,
/// with mmdebstrap's output on stderr.
async fn build_at_start(
    templates: &template::Templates,
    name: &TemplateName,
) -> Result<(), StartError> {
    eprintln!(
        "building the default template {name} into {} (once; later starts reuse it)",
        templates.dir().display()
    );
    let (log, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let prefix = format!("[template {name}]");
    let printer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            eprintln!("{prefix} {line}");
        }
    });
    let spec = template::BuildSpec {
        name: name.clone(),
        packages: template::environment_packages(),
        vscode: false,
    };
    let built = templates.build(&spec, &log).await;
    drop(log);
    let _ = printer.await;
    let m = built.map_err(|e| {
        StartError::Config(format!("cannot build the default template {name}: {e}"))
    })?;
    eprintln!(
        "template {name} built in {} s: {} MB",
        m.build_secs,
        m.size_bytes / 1_000_000
    );
    Ok(())
}

/// The program `name` in a folder of $PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Removes `dir` and everything in it, also folders a command made read-only
/// (which stop a non-root owner from deleting their contents). Gone is fine.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_dirs_writable(dir);
            std::fs::remove_dir_all(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // symlink_metadata: never follow a link out of the sandbox's folder.
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Writes one of a sandbox's own files (pid files, settings) whole or not
/// at all, flushed to disk, mode 0644.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("/"));
    let name = Path::new(path.file_name().unwrap_or_default());
    cap_std::fs::Dir::open_ambient_dir(folder, cap_std::ambient_authority())
        .and_then(|dir| atomic_file::write(&dir, name, text.as_bytes(), 0o644))
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_is_found_on_the_sandbox_path_under_its_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(r.join("opt/cs/out")).unwrap();
        // npm's way: an absolute link, which leads inside the root, not on
        // this machine.
        std::os::unix::fs::symlink("/opt/cs/out/entry.js", r.join("usr/local/bin/code-server"))
            .unwrap();
        let path = std::ffi::OsStr::new("/usr/bin:/usr/local/bin");
        assert!(!editor_on_path(r, path), "a dangling link is no editor");
        let entry = r.join("opt/cs/out/entry.js");
        std::fs::write(&entry, "#!/usr/bin/env node\n").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!editor_on_path(r, path), "not executable");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(editor_on_path(r, path));
        assert!(!editor_on_path(
            r,
            std::ffi::OsStr::new("/usr/bin:relative")
        ));
        // A loop of links ends.
        std::fs::remove_file(r.join("usr/local/bin/code-server")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/local/bin/code-server",
            r.join("usr/local/bin/code-server"),
        )
        .unwrap();
        assert!(!editor_on_path(r, path));
    }
}
