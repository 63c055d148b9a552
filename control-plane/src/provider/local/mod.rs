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
//!
//! This module is the provider type and its [`Provider`] implementation;
//! the rest is one concept per module: `settings.rs` (what a sandbox is
//! created with), `protections.rs` (which protections hold on this host),
//! `process.rs` (starting and stopping a sandbox's processes),
//! `health.rs` (whether its servers answer), `editor.rs` (finding its
//! editor),
//! `on_template.rs` (sandboxes on a template), `binaries.rs` (finding
//! mcp-tools and the helpers it runs under), `folder.rs` (a sandbox's
//! folder on disk).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::process::Child;
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

mod binaries;
mod bwrap;
mod cgroup;
mod editor;
mod folder;
mod health;
mod identity;
mod mountinfo;
mod network;
mod on_template;
mod process;
mod procs;
mod protections;
mod quota;
mod settings;
pub mod template;

use binaries::{find_mcp_tools, find_on_path, find_static_mcp_tools};
use editor::editor_on_path;
use folder::{disk_usage, remove_tree, write_atomically};
use health::{HEALTH_TIMEOUT, get_succeeds, healthy};
use on_template::build_at_start;
use protections::{Protections, missing_protections};
use settings::Chosen;

pub use identity::UidRange;

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
