//! The crate's errors: [`Error`] for what an operation on sandboxes can
//! fail with (mapped to HTTP answers in one place, `api::error`), and
//! [`StartError`] for what stops `control-plane serve` from starting.

use std::path::PathBuf;

use crate::ids::SandboxId;
use crate::model::SandboxState;

/// Everything an operation on sandboxes can fail with. Handlers use `?`;
/// the HTTP status and `error.code` of each variant are chosen in `api::error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// The API key is bound to another user than the one the request names.
    #[error("this API key may only {action} sandboxes for user {user:?}")]
    Forbidden {
        /// What was asked, e.g. `create`.
        action: &'static str,
        /// The user the key is bound to.
        user: String,
    },
    /// Only a key bound to no user may do this (build or delete templates).
    #[error("only an API key bound to no user may {action}; this one is bound to user {user:?}")]
    NotAdmin {
        /// What was asked, e.g. `build templates`.
        action: &'static str,
        /// The user the key is bound to.
        user: String,
    },
    /// No local template of that name is built.
    #[error(
        "no template {name:?} is built here; `control-plane template list` shows the built ones"
    )]
    TemplateNotFound {
        /// The name as asked.
        name: String,
    },
    /// No such sandbox, or one this caller may not see (the two look alike,
    /// so a key cannot learn that another user's sandbox exists).
    #[error("sandbox {id:?} not found")]
    NotFound {
        /// The id as the caller wrote it (it may not even parse).
        id: String,
    },
    /// The sandbox is in the wrong state for this operation.
    #[error("{}", wrong_state(id, *is, *wanted))]
    WrongState {
        /// The sandbox.
        id: SandboxId,
        /// Its state now.
        is: SandboxState,
        /// The state the operation needs.
        wanted: SandboxState,
    },
    /// The operation cannot happen now for a reason other than the sandbox's
    /// state: no room for another running sandbox, a record of another provider.
    #[error("{0}")]
    Conflict(String),
    /// The provider no longer has the sandbox (it was killed, or lost): only
    /// delete is left.
    #[error(
        "sandbox {id} is gone: its provider no longer has it (it was killed, or its \
         provider's own timeout passed); delete it and create a new one"
    )]
    Gone {
        /// The sandbox.
        id: SandboxId,
    },
    /// The provider cannot do this at all.
    #[error("the {provider} provider does not support {operation}")]
    Unsupported {
        /// The provider's name, e.g. `local`.
        provider: &'static str,
        /// The operation, e.g. `pause`.
        operation: &'static str,
    },
    /// A tool in the sandbox answered with an error (bad path, binary file,
    /// ...); the message is the tool's own.
    #[error("{0}")]
    Tool(String),
    /// A tool call larger than the sandbox's MCP server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The provider, or the sandbox it runs, failed or did not answer.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The database failed. Clients are told only that something internal
    /// failed; the detail goes to the log.
    #[error("database: {0}")]
    Store(#[from] rusqlite::Error),
    /// Another fault of the control plane itself (file system, randomness).
    /// Clients are told only that something internal failed.
    #[error("{0}")]
    Internal(String),
}

fn wrong_state(id: &SandboxId, is: SandboxState, wanted: SandboxState) -> String {
    match (is, wanted) {
        (SandboxState::Creating, _) => format!("sandbox {id} is still being created"),
        (_, SandboxState::Running) => {
            format!("sandbox {id} is {is}, not running; resume or connect it first")
        }
        _ => format!("sandbox {id} is {is}, not {wanted}"),
    }
}

/// What went wrong in a provider or in a sandbox, with a message written for
/// the client (it never quotes a credential).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What kind of failure it is, which decides the answer's status.
    pub kind: ProviderFault,
    /// What happened and, where there is one, what to do about it.
    pub message: String,
}

/// The kinds of [`ProviderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFault {
    /// The provider refused the request as invalid (e.g. an unknown template).
    Refused,
    /// The provider cannot do it now (its limit of sandboxes, a conflict).
    Busy,
    /// The provider no longer has the sandbox.
    Lost,
    /// The provider or the sandbox failed, or answered something unreadable.
    Failed,
    /// The provider or the sandbox did not answer in time.
    Timeout,
}

impl ProviderError {
    /// A [`ProviderFault::Refused`] error.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ProviderFault::Refused, message)
    }
    /// A [`ProviderFault::Busy`] error.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ProviderFault::Busy, message)
    }
    /// A [`ProviderFault::Lost`] error.
    pub fn lost(message: impl Into<String>) -> Self {
        Self::new(ProviderFault::Lost, message)
    }
    /// A [`ProviderFault::Failed`] error.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ProviderFault::Failed, message)
    }
    /// A [`ProviderFault::Timeout`] error.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ProviderFault::Timeout, message)
    }
    fn new(kind: ProviderFault, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
        }
    }
}

impl Error {
    /// True when the provider said it no longer has the sandbox.
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Provider(e) if e.kind == ProviderFault::Lost)
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops `control-plane serve` from starting; `main` prints it and
/// exits with status 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong or missing; the message names the flag.
    #[error("{0}")]
    Config(String),
    /// The address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `host:port` as configured.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Another control plane holds the data folder.
    #[error("another control-plane is already using {}", .0.display())]
    DataDirInUse(PathBuf),
    /// A file or folder the service needs cannot be made or used.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `cannot use data folder`.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Recovering the sandboxes of the previous run failed.
    #[error(transparent)]
    Sandboxes(#[from] Error),
    /// The server itself failed.
    #[error("server: {0}")]
    Server(std::io::Error),
}
