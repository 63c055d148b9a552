//! VS Code in the browser: code-server, which the control plane starts in
//! each sandbox whose system has it ([`Provider::has_editor`]: a template
//! built with the editor).
//!
//! - It listens on `127.0.0.1:9000` ([`VSCODE_PORT`]) inside the sandbox, so it is
//!   reached only through the provider's route to that port (the control
//!   plane's `9000-{id}.localhost` for local sandboxes, E2B's
//!   `9000-{id}.{domain}`): the same way as any port given by expose-port.
//! - It asks for a password (`--auth password`): the sandbox's token, the
//!   one in `mcp_headers`. The editor gives a terminal as the sandbox's
//!   user, which is what that token gives through MCP, so one credential
//!   guards both. It is handed over in `PASSWORD`, which code-server removes
//!   from its own environment, so its terminals and extensions never see it;
//!   it is never part of a command line or a log.
//! - It is started through the sandbox's own MCP server (`run_command` in
//!   the background), the one path every provider has; to the sandbox it is
//!   a job like any other.
//! - `vscode_url` is reported only once `GET /healthz` answers through that
//!   route ([`Provider::port_answers`]), and not after a pause until it
//!   answers again.
//!
//! [`VSCODE_PORT`]: crate::provider::VSCODE_PORT
//! [`Provider::has_editor`]: crate::provider::Provider::has_editor
//! [`Provider::port_answers`]: crate::provider::Provider::port_answers

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use mcp_tools_contract::command::RunCommandArgs;

use super::Sandboxes;
use crate::ids::SandboxId;
use crate::model::SandboxState;
use crate::provider::VSCODE_PORT;
use crate::store::SandboxRecord;

/// The path code-server answers without a login, used to see it is up.
pub const HEALTH_PATH: &str = "/healthz";

/// The `run_command` arguments that start the editor with `password`:
/// code-server on [`VSCODE_PORT`] of the sandbox's loopback, in the folder
/// commands start in (the workspace). Its config file is neither read nor
/// written: the default one it would write holds a random password of its
/// own, which would only mislead.
pub fn start_arguments(password: &str) -> RunCommandArgs {
    RunCommandArgs {
        command: format!(
            "exec code-server --bind-addr 127.0.0.1:{VSCODE_PORT} --auth password \
             --config /dev/null --disable-telemetry --disable-update-check \"$PWD\""
        ),
        background: true,
        env: [("PASSWORD".to_string(), password.to_string())].into(),
        ..RunCommandArgs::default()
    }
}

/// The sandboxes whose editor has answered, since they last (re)started.
#[derive(Default)]
pub struct Editors {
    answering: Mutex<HashSet<SandboxId>>,
}

impl Editors {
    /// Whether sandbox `id`'s editor has answered since it last started.
    pub fn answers(&self, id: &SandboxId) -> bool {
        self.answering.lock().is_ok_and(|s| s.contains(id))
    }

    /// Records that sandbox `id`'s editor answered.
    pub fn answered(&self, id: &SandboxId) {
        if let Ok(mut s) = self.answering.lock() {
            s.insert(id.clone());
        }
    }

    /// Forgets sandbox `id`'s editor: it stopped, or is being restarted.
    pub fn forget(&self, id: &SandboxId) {
        if let Ok(mut s) = self.answering.lock() {
            s.remove(id);
        }
    }
}

/// How long starting the editor (a background command) may take.
const EDITOR_START_TIMEOUT: Duration = Duration::from_secs(30);

impl Sandboxes {
    /// Starts the editor in running sandbox `record` when its system has
    /// one (see the module documentation). A failure is logged, not passed on: the
    /// sandbox works without it, and `vscode_url` stays empty.
    pub(super) async fn start_editor(&self, record: &SandboxRecord) {
        self.editors.forget(&record.id);
        if !self.provider.has_editor(record.provider_ref()) {
            return;
        }
        let Some(target) = self.target(record) else {
            return;
        };
        let args = serde_json::to_value(start_arguments(&record.token)).unwrap_or_default();
        match self
            .call_tool(&target, "run_command", args, EDITOR_START_TIMEOUT)
            .await
        {
            Ok(_) => tracing::info!(sandbox = %record.id, "editor starting"),
            Err(e) => tracing::warn!(sandbox = %record.id, "cannot start the editor: {e}"),
        }
    }

    /// Looks whether running sandbox `record`'s editor answers now, if it
    /// has one and is not yet known to answer.
    pub(super) async fn probe_editor(&self, record: &SandboxRecord) {
        if record.state == SandboxState::Running
            && !self.editors.answers(&record.id)
            && self.provider.has_editor(record.provider_ref())
            && self
                .provider
                .port_answers(record.provider_ref(), VSCODE_PORT, HEALTH_PATH)
                .await
        {
            self.editors.answered(&record.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_in_the_environment_not_the_command() {
        let args = start_arguments("s3cret");
        assert!(!args.command.contains("s3cret"));
        assert!(args.command.contains("--auth password"));
        assert!(args.command.contains("--bind-addr 127.0.0.1:9000"));
        assert_eq!(args.env["PASSWORD"], "s3cret");
        assert!(args.background);
    }
}
