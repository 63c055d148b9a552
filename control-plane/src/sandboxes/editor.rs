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

use mcp_tools_contract::command::RunCommandArgs;

use crate::ids::SandboxId;
use crate::provider::VSCODE_PORT;

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
