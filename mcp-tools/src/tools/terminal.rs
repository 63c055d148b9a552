//! Tools for background processes on a terminal (run_command with
//! pty=true): process_screen shows what a person would see, and
//! process_resize changes the terminal's size.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};

use super::{Tools, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::process::Job;
use crate::pty::{TermSize, Terminal};
use mcp_tools_contract::process::{
    ProcessResizeArgs, ProcessResizeOutput, ProcessScreenArgs, ProcessScreenOutput,
};

impl Tools {
    fn terminal(&self, id: &str) -> Result<(Arc<Job>, Arc<Terminal>), ToolError> {
        let job = self.job(id)?;
        let terminal = job.terminal.clone().ok_or_else(|| {
            ToolError::InvalidArgument(format!(
                "{} has no terminal (start it with run_command pty=true, background=true); \
                 read its output with process_output",
                job.id
            ))
        })?;
        Ok((job, terminal))
    }
}

#[tool_router(router = terminal_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "A pty process's screen as a person sees it now (like tmux capture-pane): \
            rendered rows and cursor.",
        output_schema = schema::<ProcessScreenOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_screen(
        &self,
        Parameters(args): Parameters<ProcessScreenArgs>,
    ) -> ToolResult {
        let (job, terminal) = self.terminal(&args.id)?;
        let screen = terminal.screen();
        let running = job.is_running();
        let (row, col) = (
            u32::from(screen.cursor.0) + 1,
            u32::from(screen.cursor.1) + 1,
        );
        // The rows as shown, then one line about the terminal; blank rows
        // at the bottom are left out of the text (not of `rows`).
        let shown = screen
            .rows
            .iter()
            .rposition(|r| !r.is_empty())
            .map_or(0, |last| last + 1)
            .max(row as usize);
        let mut text = screen.rows[..shown.min(screen.rows.len())].join("\n");
        text.push_str(&format!(
            "\n[{} {}; {}x{} terminal; cursor at row {row}, column {col}{}{}]",
            job.id,
            if running { "running" } else { "exited" },
            screen.size.cols,
            screen.size.rows,
            if screen.alternate {
                "; full-screen program"
            } else {
                ""
            },
            if shown < screen.rows.len() {
                format!("; rows {}-{} are blank", shown + 1, screen.rows.len())
            } else {
                String::new()
            }
        ));
        let out = ProcessScreenOutput {
            id: job.id.clone(),
            running,
            rows: screen.rows,
            cols: screen.size.cols.into(),
            height: screen.size.rows.into(),
            cursor_row: row,
            cursor_col: col,
            cursor_visible: screen.cursor_visible,
            alternate_screen: screen.alternate,
        };
        Ok(success(text, &out))
    }

    #[tool(
        description = "Resize a pty process's terminal to cols x rows; the program gets SIGWINCH.",
        output_schema = schema::<ProcessResizeOutput>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_resize(
        &self,
        Parameters(args): Parameters<ProcessResizeArgs>,
    ) -> ToolResult {
        let (job, terminal) = self.terminal(&args.id)?;
        let size = TermSize::new(args.cols, args.rows).map_err(ToolError::InvalidArgument)?;
        terminal.resize(size).map_err(|e| {
            ToolError::Failed(format!("resizing {}'s terminal failed: {e}", job.id))
        })?;
        let out = ProcessResizeOutput {
            id: job.id.clone(),
            cols: size.cols.into(),
            rows: size.rows.into(),
        };
        Ok(success(
            format!(
                "Resized {}'s terminal to {}x{}",
                job.id, size.cols, size.rows
            ),
            &out,
        ))
    }
}
