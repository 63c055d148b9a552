//! Local templates: Debian root filesystems that local sandboxes run on as
//! `/`, built with mmdebstrap from the sandbox environment's package list
//! (`sandbox-template/packages.txt`, compiled in) or a given one.
//!
//! ```text
//! <templates>/<name>/root            the root filesystem (read-only in sandboxes)
//! <templates>/<name>/template.json   its [`Manifest`]
//! <templates>/.build-<name>-<pid>-<random>/   a build in progress
//! ```
//!
//! A build happens in its own folder, renamed to `<name>` only once it has
//! succeeded, so a failed or interrupted build leaves no template behind
//! (its folder is removed, or at the next start when its process died).
//! Builds that share an apt cache take turns (a `flock` on `<cache>.lock`,
//! which `sandbox-template/build-rootfs.sh` takes too), so each package is
//! downloaded once per cache.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::error::{Error, ProviderError, Result};
use crate::ids::TemplateName;
use crate::model::TemplateInfo;
use crate::provider::BuildLog;

use scratch::{Scratch, remove_build_folder};

mod scratch;

/// The sandbox environment: the Debian packages every sandbox system
/// carries, one per line, `#` starting a comment. The same file is read by
/// the template image's builds (`e2b.Dockerfile`, `template.py`).
const ENVIRONMENT: &str = include_str!("../../../../../sandbox-template/packages.txt");

/// The editor step of the sandbox environment: installs code-server from
/// npm (`--with-vscode`). The template image's builds run the same file.
const EDITOR_STEP: &str = include_str!("../../../../../sandbox-template/code-server.sh");

/// The Debian release templates are built from (the template image's `FROM`).
pub const RELEASE: &str = "bookworm";

/// The file that describes a template, next to its root.
const MANIFEST: &str = "template.json";

/// Longest line of build output passed on (apt's are far shorter).
const MAX_LOG_LINE: usize = 2000;

/// The packages of the sandbox environment (`sandbox-template/packages.txt`).
pub fn environment_packages() -> Vec<String> {
    ENVIRONMENT
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a template is, kept as `template.json` beside its root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Its name (the folder's).
    pub name: String,
    /// The Debian release, e.g. `bookworm`.
    pub release: String,
    /// The packages asked for.
    pub packages: Vec<String>,
    /// Whether code-server is installed (the editor behind `vscode_url`).
    #[serde(default)]
    pub vscode: bool,
    /// When the build finished, RFC 3339 (UTC).
    pub created_at: String,
    /// Bytes its files take on disk.
    pub size_bytes: u64,
    /// Seconds the build took.
    pub build_secs: u64,
}

impl Manifest {
    /// The API's view of it.
    pub fn info(&self, default: bool) -> TemplateInfo {
        TemplateInfo {
            name: self.name.clone(),
            release: self.release.clone(),
            packages: self.packages.clone(),
            vscode: self.vscode,
            created_at: self.created_at.clone(),
            size_bytes: self.size_bytes,
            build_secs: self.build_secs,
            default,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The new template's name.
    pub name: TemplateName,
    /// Debian package names (checked by [`check_packages`]).
    pub packages: Vec<String>,
    /// Also install the editor ([`EDITOR_STEP`]).
    pub vscode: bool,
}

/// The templates folder of one control plane.
#[derive(Debug)]
pub struct Templates {
    dir: PathBuf,
    apt_cache: PathBuf,
}

impl Templates {
    /// The templates in `dir`, built with apt's downloads kept in
    /// `apt_cache`; both are made if missing. Leftovers of builds whose
    /// process died are removed.
    pub fn open(dir: &Path, apt_cache: &Path) -> std::io::Result<Templates> {
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all(apt_cache)?;
        let templates = Templates {
            dir: dir.canonicalize()?,
            apt_cache: apt_cache.canonicalize()?,
        };
        templates.remove_leftovers();
        Ok(templates)
    }

    /// The folder of the templates.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root filesystem of template `name` (whether or not it exists).
    pub fn root(&self, name: &TemplateName) -> PathBuf {
        self.dir.join(name.as_str()).join("root")
    }

    /// Template `name`'s manifest, if it is built.
    pub fn get(&self, name: &TemplateName) -> Option<Manifest> {
        let folder = self.dir.join(name.as_str());
        let text = std::fs::read(folder.join(MANIFEST)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&text).ok()?;
        (folder.join("root").is_dir() && manifest.name == name.as_str()).then_some(manifest)
    }

    /// Every built template, by name.
    pub fn list(&self) -> Vec<Manifest> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut all: Vec<Manifest> = entries
            .flatten()
            .filter_map(|e| TemplateName::parse(e.file_name().to_str()?).ok())
            .filter_map(|name| self.get(&name))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Builds `spec` with mmdebstrap, passing its output line by line to
    /// `log`, and answers the new template's manifest.
    ///
    /// Errors: [`Error::Conflict`] when the name is taken, [`Error::Invalid`]
    /// for a package name that cannot be one or a package Debian does not
    /// have (named), a provider failure when mmdebstrap fails otherwise. A
    /// failed build leaves nothing.
    pub async fn build(&self, spec: &BuildSpec, log: &BuildLog) -> Result<Manifest> {
        check_packages(&spec.packages)?;
        for path in [&self.dir, &self.apt_cache] {
            if path.to_string_lossy().chars().any(char::is_whitespace) {
                return Err(Error::Invalid(format!(
                    "cannot build templates in {}: mmdebstrap's hooks take no whitespace in paths",
                    path.display()
                )));
            }
        }
        let mmdebstrap = super::find_on_path("mmdebstrap").ok_or_else(|| {
            ProviderError::refused(
                "building a template needs mmdebstrap: apt-get install mmdebstrap",
            )
        })?;
        self.refuse_taken(&spec.name)?;
        let _turn = self.wait_for_turn(log).await?;
        // Taken while this build waited for its turn?
        self.refuse_taken(&spec.name)?;

        let suffix = crate::random::hex(4)
            .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
        let work = Scratch(self.dir.join(format!(
            ".build-{}-{}-{suffix}",
            spec.name,
            std::process::id()
        )));
        std::fs::create_dir(&work.0)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", work.0.display())))?;
        let started = Instant::now();
        let root = work.0.join("root");
        let _ = log.send(format!(
            "building template {} from Debian {RELEASE} with {} packages: {}",
            spec.name,
            spec.packages.len(),
            spec.packages.join(" ")
        ));
        let editor = match spec.vscode {
            true => Some(EditorStep::write(&work.0)?),
            false => None,
        };
        let built = self
            .mmdebstrap(&mmdebstrap, &spec.packages, editor.as_ref(), &root, log)
            .await;
        // The editor step's files stay out of the template's folder.
        if let Some(editor) = &editor {
            editor.remove();
        }
        built?;
        let mut needed = vec!["bin/sh", "etc/os-release"];
        if spec.vscode {
            needed.push("usr/local/bin/code-server");
        }
        for needed in needed {
            if std::fs::symlink_metadata(root.join(needed)).is_err() {
                return Err(ProviderError::failed(format!(
                    "mmdebstrap succeeded but the template has no /{needed}"
                ))
                .into());
            }
        }
        let size_bytes = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || super::disk_usage(&root))
                .await
                .unwrap_or(0)
        };
        let manifest = Manifest {
            name: spec.name.to_string(),
            release: RELEASE.into(),
            packages: spec.packages.clone(),
            vscode: spec.vscode,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            size_bytes,
            build_secs: started.elapsed().as_secs(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("template manifest: {e}")))?;
        std::fs::write(work.0.join(MANIFEST), json)
            .map_err(|e| Error::Internal(format!("cannot write the template manifest: {e}")))?;
        let target = self.dir.join(spec.name.as_str());
        // rename(2) onto an existing, non-empty folder fails: never two builds in one.
        std::fs::rename(&work.0, &target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty => {
                Error::Conflict(format!("template {} was built meanwhile", spec.name))
            }
            _ => Error::Internal(format!("cannot move the template into place: {e}")),
        })?;
        std::mem::forget(work);
        Ok(manifest)
    }

    /// Removes template `name`. [`Error::TemplateNotFound`] when it is not built.
    /// The caller checks first that no sandbox uses it.
    pub async fn delete(&self, name: &TemplateName) -> Result<()> {
        if self.get(name).is_none() {
            return Err(Error::TemplateNotFound {
                name: name.to_string(),
            });
        }
        let suffix = crate::random::hex(4)
            .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
        // Renamed first, so it is gone from the list at once and whole.
        let doomed = self
            .dir
            .join(format!(".delete-{name}-{}-{suffix}", std::process::id()));
        std::fs::rename(self.dir.join(name.as_str()), &doomed)
            .map_err(|e| Error::Internal(format!("cannot remove template {name}: {e}")))?;
        tokio::task::spawn_blocking(move || remove_build_folder(&doomed))
            .await
            .map_err(|e| Error::Internal(format!("cannot remove template {name}: {e}")))?
            .map_err(|e| Error::Internal(format!("cannot remove template {name}: {e}")))
    }

    fn refuse_taken(&self, name: &TemplateName) -> Result<()> {
        if self.dir.join(name.as_str()).exists() {
            return Err(Error::Conflict(format!(
                "template {name} exists; delete it first to build it again"
            )));
        }
        Ok(())
    }

    /// Waits until no other build uses the apt cache (`<cache>.lock`), and
    /// answers the lock, held until dropped.
    async fn wait_for_turn(&self, log: &BuildLog) -> Result<std::fs::File> {
        let path = self.apt_cache.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            return Ok(file);
        }
        let _ = log.send(format!(
            "waiting for another build that uses {} to finish",
            self.apt_cache.display()
        ));
        tokio::task::spawn_blocking(move || flock(&file, libc::LOCK_EX).map(|()| file))
            .await
            .map_err(|e| Error::Internal(format!("build lock: {e}")))?
            .map_err(|e| Error::Internal(format!("cannot lock {}: {e}", path.display())))
    }

    /// Runs mmdebstrap into `root`, output to `log`; with `editor`, its
    /// step runs in the new system once the packages are in.
    async fn mmdebstrap(
        &self,
        mmdebstrap: &Path,
        packages: &[String],
        editor: Option<&EditorStep>,
        root: &Path,
        log: &BuildLog,
    ) -> Result<()> {
        let cache = self.apt_cache.display();
        let mut cmd = Command::new(mmdebstrap);
        cmd.args([
            "--variant=minbase",
            "--format=directory",
            // The downloads stay in the root until the hook below has copied
            // them out to the cache (and then removed them).
            "--skip=download/empty",
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
        ])
        .arg(format!(
            "--setup-hook=sync-in {cache} /var/cache/apt/archives/"
        ))
        .args(editor.map(EditorStep::hooks).unwrap_or_default())
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {cache}"
        ))
        .arg("--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb")
        // Nothing of this machine's stays in it (mmdebstrap copies its
        // resolv.conf and hostname in); the empty resolv.conf is the mount
        // point a sandbox with internet access gets its own on.
        .arg(
            "--customize-hook=rm -f \"$1\"/etc/resolv.conf && : > \"$1\"/etc/resolv.conf && \
             echo sandbox > \"$1\"/etc/hostname",
        );
        if !packages.is_empty() {
            cmd.arg(format!("--include={}", packages.join(",")));
        }
        cmd.arg(RELEASE).arg(root);
        let (reader, writer) =
            std::io::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            // An interrupted build (the control plane stopping) stops mmdebstrap.
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            ProviderError::failed(format!("cannot start {}: {e}", mmdebstrap.display()))
        })?;
        // Our copies of the write ends go, so the reader sees the end.
        drop(cmd);
        let reader =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
                .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let mut lines = BufReader::new(reader);
        let mut unknown = BTreeSet::new();
        let mut last_error = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text: String = text.trim_end().chars().take(MAX_LOG_LINE).collect();
            if let Some(package) = unknown_package(&text) {
                unknown.insert(package.to_string());
            }
            if text.starts_with("E: ") {
                last_error.get_or_insert(text.clone());
            }
            let _ = log.send(text);
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ProviderError::failed(format!("mmdebstrap: {e}")))?;
        if status.success() {
            return Ok(());
        }
        if !unknown.is_empty() {
            let names: Vec<_> = unknown.into_iter().collect();
            return Err(Error::Invalid(format!(
                "Debian {RELEASE} has no package {} (apt: Unable to locate package); \
                 nothing was built",
                names.join(", ")
            )));
        }
        Err(ProviderError::failed(format!(
            "mmdebstrap failed ({status}): {}; nothing was built",
            last_error.unwrap_or_else(|| "see the build's log".into())
        ))
        .into())
    }

    /// Removes what builds and deletes whose process died left behind.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name
                .strip_prefix(".build-")
                .or_else(|| name.strip_prefix(".delete-"))
            else {
                continue;
            };
            // <name>-<pid>-<random>
            let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !alive && let Err(e) = remove_build_folder(&entry.path()) {
                tracing::warn!("cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// The editor step's files, next to the root being built (never in it).
struct EditorStep {
    script: PathBuf,
    /// This machine's extra CA bundle (`NODE_EXTRA_CA_CERTS`), for npm
    /// behind a TLS-inspecting proxy.
    extra_ca: Option<PathBuf>,
}

impl EditorStep {
    /// Writes the step's files into the build's folder `work`.
    fn write(work: &Path) -> Result<EditorStep> {
        let failed =
            |e: std::io::Error| Error::Internal(format!("cannot stage the editor step: {e}"));
        let script = work.join("code-server.sh");
        std::fs::write(&script, EDITOR_STEP).map_err(failed)?;
        let extra_ca = match std::env::var_os("NODE_EXTRA_CA_CERTS") {
            Some(ca) if Path::new(&ca).is_file() => {
                let copy = work.join("extra-ca.crt");
                std::fs::copy(&ca, &copy).map_err(failed)?;
                Some(copy)
            }
            _ => None,
        };
        Ok(EditorStep { script, extra_ca })
    }

    /// Removes the step's files.
    fn remove(&self) {
        for file in std::iter::once(&self.script).chain(&self.extra_ca) {
            let _ = std::fs::remove_file(file);
        }
    }

    /// mmdebstrap's hooks that run it in the new system, as root, and
    /// leave none of its files there.
    fn hooks(&self) -> Vec<String> {
        let mut hooks = vec![format!(
            "--customize-hook=upload {} /tmp/code-server.sh",
            self.script.display()
        )];
        let env = match &self.extra_ca {
            Some(ca) => {
                hooks.push(format!(
                    "--customize-hook=upload {} /tmp/extra-ca.crt",
                    ca.display()
                ));
                "NODE_EXTRA_CA_CERTS=/tmp/extra-ca.crt"
            }
            None => "",
        };
        hooks.push(format!(
            "--customize-hook=chroot \"$1\" env {env} sh /tmp/code-server.sh"
        ));
        hooks.push(
            "--customize-hook=rm -f \"$1\"/tmp/code-server.sh \"$1\"/tmp/extra-ca.crt".into(),
        );
        hooks
    }
}

/// Checks that every name is a Debian package name (policy 5.6.1: lowercase
/// letters, digits, `+`, `-` and `.`, at least two characters, starting with
/// a letter or a digit), so none can be read as an option or a list.
pub fn check_packages(packages: &[String]) -> Result<()> {
    for p in packages {
        let valid = p.len() >= 2
            && p.len() <= 128
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
            });
        if !valid {
            return Err(Error::Invalid(format!(
                "{p:?} is not a Debian package name (lowercase letters, digits, '+', '-' and \
                 '.', at least two characters)"
            )));
        }
    }
    Ok(())
}

/// The package of apt's `E: Unable to locate package NAME`.
fn unknown_package(line: &str) -> Option<&str> {
    let name = line.strip_prefix("E: Unable to locate package ")?.trim();
    (!name.is_empty()).then_some(name)
}

/// flock(2) on `file`.
fn flock(file: &std::fs::File, how: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock(2) on a descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
