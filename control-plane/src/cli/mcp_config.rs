//! `control-plane mcp-config` (how an MCP client connects) and
//! `control-plane expose-port` (the URL of a port inside the sandbox).

use clap::ValueEnum;

use super::CliError;
use super::output::{print_json, shell_quote};
use crate::client::Client;
use crate::model::SandboxState;

/// Output of `mcp-config`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum McpFormat {
    /// A `claude mcp add` command line.
    Claude,
    /// A `.mcp.json` snippet.
    Json,
}

pub(super) async fn mcp_config(
    client: &Client,
    id: &str,
    name: &str,
    format: McpFormat,
) -> Result<(), CliError> {
    let s = client.status(id).await?;
    match s.status {
        SandboxState::Running => {}
        SandboxState::Gone => {
            return Err(CliError::Usage(format!(
                "sandbox {id} is gone: its provider no longer has it, so it has no MCP \
                 endpoint; delete it and create a new one"
            )));
        }
        other => eprintln!(
            "note: sandbox {id} is {other}: this URL answers only once it runs again \
             (control-plane resume {id})"
        ),
    }
    match format {
        McpFormat::Claude => {
            let mut line = format!(
                "claude mcp add --transport http {} {}",
                shell_quote(name),
                shell_quote(&s.mcp_url)
            );
            for (k, v) in &s.mcp_headers {
                line.push_str(&format!(" --header {}", shell_quote(&format!("{k}: {v}"))));
            }
            println!("{line}");
        }
        McpFormat::Json => {
            let snippet = serde_json::json!({
                "mcpServers": {
                    name: { "type": "http", "url": s.mcp_url, "headers": s.mcp_headers }
                }
            });
            print_json(&snippet);
        }
    }
    Ok(())
}

pub(super) async fn expose_port(client: &Client, id: &str, port: u16) -> Result<(), CliError> {
    println!("{}", client.expose_port(id, port).await?);
    Ok(())
}
