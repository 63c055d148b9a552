//! `run_command`: a shell command in the foreground, or started as a
//! background job.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The arguments of `run_command`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RunCommandArgs {
    /// Shell command line (run with bash, or sh where bash is missing).
    pub command: String,
    /// Start it detached and return at once with a process id.
    #[serde(default)]
    pub background: bool,
    /// Kill the command after this many ms (default 120000, max 600000). Foreground only.
    pub timeout_ms: Option<u64>,
    /// Working folder, relative to the workspace root (default: the root).
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run on a terminal (with background=true) for interactive programs.
    #[serde(default)]
    pub pty: bool,
    /// Terminal width with pty (default 120).
    pub cols: Option<u16>,
    /// Terminal height with pty (default 40).
    pub rows: Option<u16>,
}

/// What `run_command` reports: a foreground command that ended, or a
/// background job that started.
///
/// On the wire (`structuredContent`) both are one flat object, the shape
/// its output schema lists: MCP requires an output schema of type
/// `object` (spec 2025-06-18, "Output Schema"), so the variant is told by
/// its fields: a finished command has `timed_out`, `stdout` and `stderr`,
/// a started job only `id`, `pid` and `log_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RunCommandWire", try_from = "RunCommandWire")]
pub enum RunCommandOutput {
    /// The command ran in the foreground and ended (or was killed).
    Finished(Finished),
    /// The command was started as a background job (`background=true`).
    Started(JobRef),
}

/// A foreground command that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// Signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// Its standard output (UTF-8, invalid bytes replaced), head and tail
    /// kept when longer than the tool's limit.
    pub stdout: String,
    /// Its standard error, cut like `stdout`.
    pub stderr: String,
    /// Bytes cut from the middle of stdout and stderr together.
    pub output_cut_bytes: u64,
    /// It ran past its timeout and its process group was killed.
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// The processes it left running in its process group (`cmd &`),
    /// tracked as a job.
    pub left_running: Option<JobRef>,
}

/// A job the process tools know by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    /// Id for the process tools, e.g. `p1`.
    pub id: String,
    /// Process id, which is also its process group id.
    pub pid: u32,
    /// File that receives the job's output (outside the workspace).
    pub log_path: String,
}

/// The wire shape of [`RunCommandOutput`]: every field optional but
/// `timed_out`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct RunCommandWire {
    /// Exit code, when the command exited by itself (foreground).
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    /// Signal that ended the command, if one did (foreground).
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stderr: Option<String>,
    /// Bytes cut from the middle of stdout and stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    output_cut_bytes: Option<u64>,
    /// The command ran past its timeout and its process group was killed.
    timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    /// Id for the process tools: of a background job, or of the processes a
    /// foreground command left running (`cmd &`).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Process id (and process group id) of that job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    /// File that receives that job's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    log_path: Option<String>,
}

impl From<RunCommandOutput> for RunCommandWire {
    fn from(output: RunCommandOutput) -> Self {
        match output {
            RunCommandOutput::Finished(f) => {
                let job = f.left_running;
                RunCommandWire {
                    exit_code: f.exit_code,
                    signal: f.signal,
                    stdout: Some(f.stdout),
                    stderr: Some(f.stderr),
                    output_cut_bytes: Some(f.output_cut_bytes),
                    timed_out: f.timed_out,
                    duration_ms: Some(f.duration_ms),
                    pid: job.as_ref().map(|j| j.pid),
                    log_path: job.as_ref().map(|j| j.log_path.clone()),
                    id: job.map(|j| j.id),
                }
            }
            RunCommandOutput::Started(job) => RunCommandWire {
                exit_code: None,
                signal: None,
                stdout: None,
                stderr: None,
                output_cut_bytes: None,
                timed_out: false,
                duration_ms: None,
                id: Some(job.id),
                pid: Some(job.pid),
                log_path: Some(job.log_path),
            },
        }
    }
}

impl TryFrom<RunCommandWire> for RunCommandOutput {
    type Error = String;

    fn try_from(w: RunCommandWire) -> Result<Self, String> {
        let job = match (w.id, w.pid, w.log_path) {
            (Some(id), Some(pid), Some(log_path)) => Some(JobRef { id, pid, log_path }),
            (None, None, None) => None,
            _ => return Err("id, pid and log_path come together or not at all".to_owned()),
        };
        match (w.stdout, w.stderr) {
            (Some(stdout), Some(stderr)) => Ok(RunCommandOutput::Finished(Finished {
                exit_code: w.exit_code,
                signal: w.signal,
                stdout,
                stderr,
                output_cut_bytes: w.output_cut_bytes.unwrap_or(0),
                timed_out: w.timed_out,
                duration_ms: w.duration_ms.unwrap_or(0),
                left_running: job,
            })),
            (None, None) => job
                .map(RunCommandOutput::Started)
                .ok_or_else(|| "neither a finished command nor a started job".to_owned()),
            _ => Err("stdout and stderr come together".to_owned()),
        }
    }
}

/// The listed output schema: the wire shape's.
impl JsonSchema for RunCommandOutput {
    fn schema_name() -> Cow<'static, str> {
        "RunCommandOutput".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RunCommandWire::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobRef {
        JobRef {
            id: "p1".into(),
            pid: 42,
            log_path: "/tmp/p1.log".into(),
        }
    }

    #[test]
    fn both_variants_survive_the_wire() {
        let finished = RunCommandOutput::Finished(Finished {
            exit_code: Some(0),
            signal: None,
            stdout: "hi\n".into(),
            stderr: String::new(),
            output_cut_bytes: 0,
            timed_out: false,
            duration_ms: 3,
            left_running: Some(job()),
        });
        for output in [finished, RunCommandOutput::Started(job())] {
            let wire = serde_json::to_value(&output).unwrap();
            assert!(wire.is_object(), "{wire}");
            assert_eq!(
                serde_json::from_value::<RunCommandOutput>(wire).unwrap(),
                output
            );
        }
    }

    #[test]
    fn a_started_job_has_no_exit_fields_on_the_wire() {
        let wire = serde_json::to_value(RunCommandOutput::Started(job())).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"timed_out": false, "id": "p1", "pid": 42, "log_path": "/tmp/p1.log"})
        );
    }

    #[test]
    fn half_a_job_is_refused() {
        let half = serde_json::json!({"timed_out": false, "id": "p1"});
        assert!(serde_json::from_value::<RunCommandOutput>(half).is_err());
    }
}
