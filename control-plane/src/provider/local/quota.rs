//! A hard limit on a local sandbox's disk: its workspace is an ext4 file
//! system of its own, kept in a sparse image file `<dir>/disk.img` (outside
//! the sandbox's view) and mounted through a loop device on
//! `<dir>/workspace` (`nosuid,nodev`). A write past it fails with `ENOSPC`
//! inside the sandbox; on the host the sandbox's files take at most the
//! image's size, and only what it has written (the image is sparse).
//!
//! Why not project quotas: they need the data folder's file system mounted
//! with project quotas (ext4 made with the `project` feature, or XFS with
//! `prjquota`), which most hosts are not and which cannot be turned on while
//! mounted. Loop devices, `mkfs.ext4` and `mount` are on every Linux host.
//! The cost is a mount at create and at resume (about 15 ms here): the
//! `mkfs.ext4` is done ahead, in a spare image of the default size kept in
//! the data folder (`spare-disk-<MiB>.img`), which a create takes by a
//! rename and which is made again in the background. A create of another
//! size, or one right after another, runs `mkfs.ext4` itself (about 10-30
//! ms more). `--default-disk-size-mb 0` leaves sandboxes without a quota
//! unless they ask.
//!
//! Needs root (mounting). The mount lives in the host's mount namespace, so
//! it outlives a killed control plane along with the sandbox's processes;
//! stopping a sandbox unmounts it, starting it mounts it again.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::Command;

/// Smallest quota a create may ask for, in MiB: room for ext4's journal and
/// metadata with space left to use.
pub const MIN_MB: u64 = 16;

/// The image file in a sandbox's folder.
pub fn image(dir: &Path) -> PathBuf {
    dir.join("disk.img")
}

/// The programs that make and mount workspace file systems, found once at
/// start.
#[derive(Debug, Clone)]
pub struct Quotas {
    mkfs: PathBuf,
    mount: PathBuf,
    /// The spare image of the default size (none when that is 0).
    spare: Option<(PathBuf, u64)>,
    /// Whether a spare is being made now.
    refilling: Arc<AtomicBool>,
}

impl Quotas {
    /// `mkfs.ext4` and `mount` when this process is root and the kernel
    /// has loop devices; otherwise why not. Spare images of
    /// `default_mb` MiB are kept in `data_dir`.
    pub fn detect(data_dir: &Path, default_mb: u64) -> Result<Quotas, String> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the control plane does not run as root".into());
        }
        if !Path::new("/dev/loop-control").exists() {
            return Err("no loop devices (/dev/loop-control)".into());
        }
        let find = |name: &str| {
            super::network::find_program(name).ok_or_else(|| format!("{name} not found"))
        };
        let spare_name = format!("spare-disk-{default_mb}.img");
        // Spares of a former default size (or half made) would lie there for good.
        for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("spare-disk-") && name != spare_name {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Quotas {
            mkfs: find("mkfs.ext4")?,
            mount: find("mount")?,
            spare: (default_mb > 0).then(|| (data_dir.join(spare_name), default_mb)),
            refilling: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Makes the spare image in the background unless it exists or is
    /// being made. A failure is logged: creates then run mkfs themselves.
    pub fn refill(&self) {
        let Some((spare, mb)) = self.spare.clone() else {
            return;
        };
        if spare.exists() || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let tmp = spare.with_extension("img.tmp");
            let _ = std::fs::remove_file(&tmp);
            match this.make(&tmp, mb, None).await {
                Ok(()) => {
                    if let Err(e) = std::fs::rename(&tmp, &spare) {
                        tracing::warn!("cannot keep a spare disk image: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot make a spare disk image: {e}"),
            }
            this.refilling.store(false, Ordering::Release);
        });
    }

    /// Moves the spare image to `image` if it has `size_mb` MiB.
    fn take_spare(&self, image: &Path, size_mb: u64) -> bool {
        match &self.spare {
            Some((spare, mb)) if *mb == size_mb => std::fs::rename(spare, image).is_ok(),
            _ => false,
        }
    }

    /// Makes `workspace` (an empty folder of sandbox folder `dir`) a file
    /// system of `size_mb` MiB owned by `uid`, and mounts it; a sandbox
    /// whose image exists gets it mounted again. Already mounted is fine.
    ///
    /// Errors: the image cannot be made or mounted, or `workspace` holds
    /// files while no image exists (they would be hidden under the mount).
    pub async fn attach(
        &self,
        dir: &Path,
        workspace: &Path,
        size_mb: u64,
        uid: Option<u32>,
    ) -> std::io::Result<()> {
        if is_mounted(workspace) {
            return Ok(());
        }
        let image = image(dir);
        if !image.exists() {
            if std::fs::read_dir(workspace)?.next().is_some() {
                return Err(std::io::Error::other(
                    "the workspace holds files but has no disk image; it is left without a quota",
                ));
            }
            if !self.take_spare(&image, size_mb) {
                self.make(&image, size_mb, uid).await?;
            }
            self.refill();
        }
        let out = Command::new(&self.mount)
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noatime"])
            .arg(&image)
            .arg(workspace)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "mount: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // mkfs makes it; nothing needs it, and the agent would see it.
        let _ = std::fs::remove_dir(workspace.join("lost+found"));
        if let Some(uid) = uid {
            std::os::unix::fs::chown(workspace, Some(uid), Some(uid))?;
        }
        Ok(())
    }

    /// A sparse image of `size_mb` MiB with an ext4 file system whose root
    /// belongs to `uid` (root without one). A failed make leaves no image.
    async fn make(&self, image: &Path, size_mb: u64, uid: Option<u32>) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(image)?;
        file.set_len(size_mb << 20)?;
        drop(file);
        let owner = uid.unwrap_or(0);
        let out = Command::new(&self.mkfs)
            .args(["-q", "-F", "-m", "0", "-E"])
            .arg(format!(
                "root_owner={owner}:{owner},lazy_itable_init=1,lazy_journal_init=1,nodiscard"
            ))
            .arg(image)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => Ok(()),
            failed => {
                let _ = std::fs::remove_file(image);
                Err(match failed {
                    Ok(out) => std::io::Error::other(format!(
                        "mkfs.ext4: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => e,
                })
            }
        }
    }
}

/// Unmounts `workspace` if a file system is mounted there. Lazily: a
/// process of the sandbox not yet gone does not keep it mounted, and the
/// loop device is freed once nothing uses it.
pub fn detach(workspace: &Path) {
    if !is_mounted(workspace) {
        return;
    }
    let Ok(path) = CString::new(workspace.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: umount2(2) with a NUL-terminated path we own.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        tracing::warn!(
            "cannot unmount {}: {}",
            workspace.display(),
            std::io::Error::last_os_error()
        );
    }
}

/// True when `path` is the root of a mount other than its parent's.
pub fn is_mounted(path: &Path) -> bool {
    let (Ok(here), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Bytes used on the file system mounted at `path` (`statvfs`), if one is.
pub fn used_bytes(path: &Path) -> Option<u64> {
    if !is_mounted(path) {
        return None;
    }
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) with a NUL-terminated path and a struct we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks - st.f_bfree) as u64 * st.f_frsize as u64)
}
