//! `control-plane template build`, `list` and `delete`: the local templates
//! sandboxes run on.

use clap::{Args, Subcommand};

use super::CliError;
use super::output::print_json;
use crate::client::Client;
use crate::model::BuildTemplateRequest;

/// `control-plane template ...`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build a template (a Debian root filesystem, with mmdebstrap) on the
    /// server, showing the build's output. Without --package or
    /// --packages-file it carries the sandbox environment
    /// (sandbox-template/packages.txt). Needs a key bound to no user.
    Build(TemplateBuildArgs),
    /// List the built templates.
    List {
        /// Print them as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template that no sandbox uses. Needs a key bound to no user.
    Delete {
        /// Template name.
        name: String,
    },
}

/// `control-plane template build`.
#[derive(Debug, Args)]
pub struct TemplateBuildArgs {
    /// Its name: lowercase letters, digits, '-', '_' and '.' (e.g. `default`).
    pub name: String,
    /// A Debian package to install instead of the sandbox environment's
    /// list; repeatable.
    #[arg(long = "package", value_name = "PACKAGE")]
    pub packages: Vec<String>,
    /// A file listing the packages instead, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE", conflicts_with = "packages")]
    pub packages_file: Option<std::path::PathBuf>,
    /// Also install code-server, VS Code in the browser (from npm, a few
    /// minutes more): sandboxes on the template then get a `vscode_url`.
    #[arg(long)]
    pub with_vscode: bool,
    /// Print only the result, not the build's output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs one `template` subcommand.
pub(super) async fn template(client: &Client, command: TemplateCommand) -> Result<(), CliError> {
    match command {
        TemplateCommand::Build(args) => build(client, args).await,
        TemplateCommand::List { json } => list(client, json).await,
        TemplateCommand::Delete { name } => {
            client.delete_template(&name).await?;
            println!("deleted template {name}");
            Ok(())
        }
    }
}

/// Builds a template, its output on stderr as it comes, the result on stdout.
async fn build(client: &Client, args: TemplateBuildArgs) -> Result<(), CliError> {
    let packages = match (&args.packages_file, args.packages.is_empty()) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            Some(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
        (None, false) => Some(args.packages),
        (None, true) => None,
    };
    let req = BuildTemplateRequest {
        name: args.name,
        packages,
        vscode: args.with_vscode,
    };
    let quiet = args.quiet;
    let info = client
        .build_template(&req, |line| {
            if !quiet {
                eprintln!("{line}");
            }
        })
        .await?;
    println!(
        "built template {} in {} s: {} packages{}, {} MB",
        info.name,
        info.build_secs,
        info.packages.len(),
        if info.vscode { " and code-server" } else { "" },
        info.size_bytes / 1_000_000
    );
    Ok(())
}

/// Prints the built templates, as a table or JSON.
async fn list(client: &Client, json: bool) -> Result<(), CliError> {
    let list = client.templates().await?;
    if json {
        print_json(&list.templates);
        return Ok(());
    }
    println!(
        "{:<20} {:<9} {:>8} {:>8}  {:<20}  PACKAGES",
        "NAME", "RELEASE", "SIZE MB", "DEFAULT", "CREATED"
    );
    for t in list.templates {
        println!(
            "{:<20} {:<9} {:>8} {:>8}  {:<20}  {}",
            t.name,
            t.release,
            t.size_bytes / 1_000_000,
            if t.default { "yes" } else { "" },
            t.created_at,
            t.packages.join(" ")
        );
    }
    Ok(())
}
