//! The contract between mcp-tools and its callers: the arguments and
//! results of its MCP tools, as they travel in `tools/call` (`arguments`
//! and `structuredContent`).
//!
//! mcp-tools derives its listed schemas from these types and fills them;
//! the control plane builds its calls from them and reads the answers
//! through them, so a field renamed on one side fails to compile on the
//! other instead of reading as absent at run time.
//!
//! Field docs on `*Args` types are what a model reads in `tools/list`
//! (the input schemas' descriptions); keep them short. Result types lose
//! their descriptions in `tools/list`, so their docs are for programmers.
//!
//! Modules: [`command`] for `run_command`; [`files`] for `read_file` and
//! `write_file`; [`process`] for `process_output`, `process_wait`,
//! `process_input`, `process_kill`, `process_list`, `process_screen` and
//! `process_resize`.

pub mod command;
pub mod files;
pub mod process;
