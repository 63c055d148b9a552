//! `control-plane status` (one sandbox's record) and `control-plane stats`
//! (what it uses).

use super::CliError;
use super::output::{print_json, seconds_until};
use crate::client::Client;

pub(super) async fn status(client: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let s = client.status(id).await?;
    if json {
        print_json(&s);
    } else {
        println!("id:        {}", s.sandbox_id);
        println!("status:    {}", s.status);
        println!("user:      {}", s.user_id);
        println!("provider:  {}", s.provider);
        println!("mcp_url:   {}", s.mcp_url);
        println!("expires:   in {}s", seconds_until(s.expires_at));
        for (k, v) in &s.metadata {
            println!("metadata:  {k}={v}");
        }
    }
    Ok(())
}

pub(super) async fn stats(client: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let m = client.metrics(id).await?;
    if json {
        print_json(&m);
    } else {
        let limit = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
        println!(
            "cpu:        {:.2}s used, {} CPUs",
            m.cpu_used_secs,
            limit(m.cpu_count.map(u64::from))
        );
        println!("memory:     {} of {} bytes", m.mem_used, limit(m.mem_total));
        println!(
            "processes:  {} of {} ({} forks refused)",
            m.processes,
            limit(m.process_limit),
            m.processes_refused
        );
        println!("disk:       {} bytes in the workspace", m.disk_used);
        println!("oom kills:  {}", m.oom_kills);
    }
    Ok(())
}
