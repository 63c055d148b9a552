//! Sandboxes on a local [`template`](super::template): which template a
//! create runs on, whether templates can run here, the root and user files
//! a sandbox on one gets, which sandboxes use one, and building the default
//! template at start.

use super::{LocalProvider, bwrap, template, write_atomically};
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::TemplateName;

impl LocalProvider {
    /// The template a create asking for `asked` runs on: `None` for this
    /// machine's system. Errors when it is not built or cannot be used here.
    pub(super) fn resolve_template(&self, asked: Option<&str>) -> Result<Option<TemplateName>> {
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
    pub(super) fn template_root(
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
    pub(super) fn sandboxes_on(&self, name: &TemplateName) -> Vec<String> {
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
}

/// Builds the default template `name` before the control plane serves,
/// with mmdebstrap's output on stderr.
pub(super) async fn build_at_start(
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
