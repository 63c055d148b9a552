//! `control-plane create`: a new sandbox; prints its id.

use clap::Args;

use super::CliError;
use super::output::{print_json, with_spinner};
use crate::client::{Client, ClientError};
use crate::model::CreateSandboxRequest;

/// `control-plane create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Owner (optional when the API key is bound to a user).
    #[arg(long)]
    pub user: Option<String>,
    /// Template to create it from (the provider's default when left out;
    /// `control-plane template list` shows the local ones).
    #[arg(long)]
    pub template: Option<String>,
    /// Label as KEY=VALUE; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Inactivity timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Whether it reaches the internet (default: yes, where the host can).
    #[arg(long, value_name = "BOOL")]
    pub internet: Option<bool>,
    /// Memory limit in MiB (local provider).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPUs' worth of CPU time (local provider).
    #[arg(long)]
    pub cpu_count: Option<u32>,
    /// Most processes and threads alive at once (local provider).
    #[arg(long)]
    pub process_limit: Option<u64>,
    /// Disk quota of its workspace in MiB (local provider, as root).
    #[arg(long)]
    pub disk_size_mb: Option<u64>,
    /// Print the whole record as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
}

/// Parses a `KEY=VALUE` flag (`--metadata`); the value may hold `=`.
pub(super) fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// The API's message when create names no owner; the CLI says which flag.
const USER_ID_REQUIRED: &str = "user_id is required";

pub(super) async fn create(client: &Client, args: CreateArgs) -> Result<(), CliError> {
    let asked_for_user = args.user.is_some();
    let req = CreateSandboxRequest {
        user_id: args.user,
        template_id: args.template,
        metadata: args.metadata.into_iter().collect(),
        timeout_secs: args.timeout,
        allow_internet_access: args.internet,
        memory_mb: args.memory_mb,
        cpu_count: args.cpu_count,
        process_limit: args.process_limit,
        disk_size_mb: args.disk_size_mb,
    };
    let info = match with_spinner("creating sandbox", client.create(&req)).await {
        Err(ClientError::Api { message, .. }) if !asked_for_user && message == USER_ID_REQUIRED => {
            return Err(CliError::Usage(
                "--user is required: name the sandbox's owner (e.g. --user me), \
                 or use an API key bound to a user"
                    .into(),
            ));
        }
        other => other?,
    };
    if args.json {
        print_json(&info);
    } else {
        println!("{}", info.sandbox_id);
        eprintln!("mcp_url: {}", info.mcp_url);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_need_an_equals_sign() {
        assert_eq!(parse_pair("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_pair("novalue").is_err());
    }
}
