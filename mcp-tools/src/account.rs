//! Running as a named account (`--user`).
//!
//! E2B runs a template's start command as root, while its SDK and file API
//! work as `user`: a server left as root would run every agent command as
//! root and leave root's files in `/home/user`. With `--user user` a server
//! started as root switches, before it starts any thread, to that account's
//! user id, group id and supplementary groups, as `login` would; one already
//! running as the account carries on unchanged. Nothing happens without the
//! flag, so a server run as uid 0 inside a user namespace stays as it is.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why the server cannot run as the account it was given.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account has this name.
    #[error("no account named {0:?} in the user database (/etc/passwd)")]
    NotFound(String),
    /// The name holds a NUL byte.
    #[error("invalid account name {0:?}")]
    InvalidName(String),
    /// The user database could not be read.
    #[error("cannot look up the account {name:?}: {source}")]
    Lookup {
        /// The account asked for.
        name: String,
        /// Why `getpwnam_r` failed.
        source: std::io::Error,
    },
    #[error(
        "cannot run as {name:?} (uid {wanted}): this process runs as uid {current}, \
         and only root can switch accounts"
    )]
    /// Only root can switch to another account.
    NotPermitted {
        /// The account asked for.
        name: String,
        /// Its user id.
        wanted: u32,
        /// This process's effective user id.
        current: u32,
    },
    #[error("cannot switch to {name:?}: {step} failed: {source}")]
    /// A system call of the switch failed.
    Switch {
        /// The account asked for.
        name: String,
        /// What failed: `initgroups`, `setresgid`, `setresuid` or
        /// `dropping root`.
        step: &'static str,
        /// Its error.
        source: std::io::Error,
    },
}

/// An entry of the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its login name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its home folder.
    pub home: PathBuf,
}

impl Account {
    /// The account named `name`, from the system's user database
    /// (`getpwnam_r`: /etc/passwd in a static build).
    pub fn lookup(name: &str) -> Result<Account, AccountError> {
        let c_name = CString::new(name).map_err(|_| AccountError::InvalidName(name.to_owned()))?;
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: passwd is plain data; getpwnam_r writes it and the
            // strings it points to into buf, whose length we pass.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: c_name is a valid C string; entry, buf (with its
            // length) and found are live for the call.
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            if rc != 0 {
                return Err(AccountError::Lookup {
                    name: name.to_owned(),
                    source: std::io::Error::from_raw_os_error(rc),
                });
            }
            if found.is_null() {
                return Err(AccountError::NotFound(name.to_owned()));
            }
            // SAFETY: on success pw_dir points to a NUL-terminated string
            // inside buf, which is still alive.
            let home = unsafe { CStr::from_ptr(entry.pw_dir) };
            return Ok(Account {
                name: name.to_owned(),
                uid: entry.pw_uid,
                gid: entry.pw_gid,
                home: PathBuf::from(OsStr::from_bytes(home.to_bytes())),
            });
        }
    }
}

/// Makes this process run as the account `name`: from root, switches the
/// real, effective and saved user and group ids and the supplementary
/// groups for good; as the account already, changes nothing. Either way
/// HOME, USER and LOGNAME are set to the account's, for the commands the
/// server runs.
///
/// # Errors
/// [`AccountError::NotFound`] when there is no such account,
/// [`AccountError::NotPermitted`] when running as another account than
/// root or `name`, [`AccountError::Switch`] when the kernel refuses a step.
///
/// # Safety of use
/// Must be called before any thread is started: the ids of the calling
/// thread change, and the environment is written.
pub fn switch_to(name: &str) -> Result<Account, AccountError> {
    let account = Account::lookup(name)?;
    // SAFETY: these calls have no preconditions.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid != account.uid || euid != account.uid {
        if euid != 0 {
            return Err(AccountError::NotPermitted {
                name: account.name,
                wanted: account.uid,
                current: euid,
            });
        }
        let step = |step: &'static str, rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(AccountError::Switch {
                    name: name.to_owned(),
                    step,
                    source: std::io::Error::last_os_error(),
                })
            }
        };
        let c_name = CString::new(name).map_err(|_| AccountError::InvalidName(name.to_owned()))?;
        // Groups first: once the user id changes, they can no longer be set.
        // SAFETY: c_name is a valid C string; the rest take plain integers.
        unsafe {
            step("initgroups", libc::initgroups(c_name.as_ptr(), account.gid))?;
            step(
                "setresgid",
                libc::setresgid(account.gid, account.gid, account.gid),
            )?;
            step(
                "setresuid",
                libc::setresuid(account.uid, account.uid, account.uid),
            )?;
        }
        // Root must be gone for good: a process that can get it back has
        // not switched.
        // SAFETY: as above.
        if account.uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err(AccountError::Switch {
                name: account.name,
                step: "dropping root",
                source: std::io::Error::other("root could be regained"),
            });
        }
    }
    // SAFETY: called before any thread exists (see above), so no other
    // thread reads the environment meanwhile.
    unsafe {
        std::env::set_var("HOME", &account.home);
        std::env::set_var("USER", &account.name);
        std::env::set_var("LOGNAME", &account.name);
    }
    Ok(account)
}
