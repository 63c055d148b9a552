//! `control-plane list`: every sandbox matching the filters, page by page.

use clap::Args;

use super::CliError;
use super::create::parse_pair;
use super::output::print_json;
use crate::client::Client;

/// `control-plane list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this user's sandboxes.
    #[arg(long)]
    pub user: Option<String>,
    /// creating, running, paused or gone.
    #[arg(long)]
    pub state: Option<String>,
    /// Only sandboxes with this label; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Print the records as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn list(client: &Client, args: ListArgs) -> Result<(), CliError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(String, String)> = Vec::new();
        if let Some(u) = &args.user {
            q.push(("user_id".into(), u.clone()));
        }
        if let Some(s) = &args.state {
            q.push(("state".into(), s.clone()));
        }
        for (k, v) in &args.metadata {
            q.push((format!("metadata.{k}"), v.clone()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = client.list(&pairs).await?;
        all.extend(page.sandboxes);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if args.json {
        print_json(&all);
    } else {
        println!("{:<20} {:<9} {:<16} MCP URL", "ID", "STATUS", "USER");
        for s in all {
            println!(
                "{:<20} {:<9} {:<16} {}",
                s.sandbox_id, s.status, s.user_id, s.mcp_url
            );
        }
    }
    Ok(())
}
