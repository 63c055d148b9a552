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
        // What the provider cannot tell (e2b: process counts).
        let known = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        let used = match (m.cpu_used_secs, m.cpu_used_pct) {
            (Some(secs), _) => format!("{secs:.2}s used"),
            (None, Some(pct)) => format!("{pct:.1}% in use"),
            (None, None) => "? used".to_string(),
        };
        println!(
            "cpu:        {used}, {} CPUs",
            limit(m.cpu_count.map(u64::from))
        );
        println!("memory:     {} of {} bytes", m.mem_used, limit(m.mem_total));
        println!(
            "processes:  {} of {} ({} forks refused)",
            known(m.processes),
            limit(m.process_limit),
            known(m.processes_refused)
        );
        println!(
            "disk:       {} of {} bytes",
            m.disk_used,
            limit(m.disk_total)
        );
        println!("oom kills:  {}", known(m.oom_kills));
    }
    Ok(())
}
