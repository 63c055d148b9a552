//! Reaping orphans when the server is PID 1.
//!
//! In a container the server is often PID 1, so processes orphaned by
//! commands are re-parented to it and become zombies unless someone waits
//! for them. A `waitpid(-1)` loop inside the server would steal the exit
//! statuses that tokio waits for on its own children, so PID 1 forks
//! instead: the parent only reaps and forwards signals (like tini), the
//! child runs the server.

/// Forks a reaper when this process is PID 1; returns in the process that
/// should serve. Must be called before any thread is started.
pub fn reap_orphans_if_pid1() {
    if std::process::id() != 1 {
        return;
    }
    // SAFETY: called before any thread exists, so fork copies a consistent
    // process; the parent below uses only async-signal-safe libc calls.
    unsafe {
        let child = libc::fork();
        if child <= 0 {
            // The child serves; if fork failed, serve without a reaper.
            return;
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCHLD,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) != 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                libc::kill(child, sig);
                continue;
            }
            loop {
                let mut status: libc::c_int = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    libc::_exit(code);
                }
            }
        }
    }
}
