//! A local sandbox's own network: bubblewrap gives it a network namespace of
//! its own (`--unshare-net`), holding only `lo`. With internet access,
//! slirp4netns adds a `tap0` interface whose traffic leaves through ordinary
//! sockets of this machine (user-mode networking), and an nftables table
//! inside the namespace rejects every destination that is not the internet:
//! this machine (loopback, its own addresses), private and link-local ranges
//! (the LAN, other sandboxes' ports, cloud metadata at 169.254.169.254).
//!
//! Nothing a sandbox listens on is reachable from the host's network, and
//! nothing on the host's loopback is reachable from the sandbox, so no
//! sandbox can occupy an address another client uses.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::error::{Error, ProviderError, Result};

/// slirp4netns's fixed addresses (its defaults, network 10.0.2.0/24).
pub const SLIRP_DNS: &str = "10.0.2.3";

/// What `/etc/resolv.conf` says inside a sandbox with internet access: the
/// host's own may name a loopback or LAN resolver, which the sandbox cannot
/// reach; slirp4netns forwards queries to 10.0.2.3 to the host's resolver.
pub const RESOLV_CONF: &str = "nameserver 10.0.2.3\noptions edns0\n";

/// Destinations a sandbox never reaches, whatever its settings: every IPv4
/// range that is not the public internet (RFC 6890's special-purpose
/// registry: this host, private networks, carrier-grade NAT, loopback,
/// link-local, documentation and benchmark networks, multicast, reserved).
const BLOCKED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
];

/// The nftables ruleset loaded into a sandbox's namespace when it has
/// internet access.
///
/// Loopback stays open (the sandbox's own servers), DNS to slirp4netns's
/// resolver is allowed, and everything in [`BLOCKED_V4`] or among
/// `host_addrs` (this machine's own addresses, which the sandbox would
/// otherwise reach through slirp4netns's sockets) is rejected at once, so a
/// connection fails fast instead of timing out. IPv6 leaves only through
/// `lo`: slirp4netns runs without IPv6.
pub fn firewall_rules(host_addrs: &[IpAddr]) -> String {
    let mut blocked: Vec<String> = BLOCKED_V4.iter().map(|s| s.to_string()).collect();
    blocked.extend(host_addrs.iter().filter_map(|a| match a {
        IpAddr::V4(v4) if !in_blocked_range(*v4) => Some(v4.to_string()),
        // IPv6 is rejected wholesale below.
        _ => None,
    }));
    format!(
        "table inet sandbox {{\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority 0; policy accept;\n\
         \t\toifname \"lo\" accept\n\
         \t\tip daddr {SLIRP_DNS} udp dport 53 accept\n\
         \t\tip daddr {SLIRP_DNS} tcp dport 53 accept\n\
         \t\tip daddr {{ {} }} reject\n\
         \t\tmeta nfproto ipv6 reject\n\
         \t}}\n\
         }}\n",
        blocked.join(", ")
    )
}

/// True when `addr` lies in one of [`BLOCKED_V4`]'s ranges.
fn in_blocked_range(addr: std::net::Ipv4Addr) -> bool {
    BLOCKED_V4.iter().any(|range| {
        let Some((net, len)) = range.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
            return false;
        };
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(addr) & mask == u32::from(net) & mask
    })
}

/// This machine's own addresses, from its network interfaces (`getifaddrs`).
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let entry = unsafe { &*cur };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: as above, an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: as above, an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        cur = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out.sort();
    out.dedup();
    out
}

/// The programs that make a sandbox's network, found once at start.
#[derive(Debug, Clone)]
pub struct NetworkTools {
    slirp4netns: PathBuf,
    nsenter: PathBuf,
    nft: PathBuf,
}

impl NetworkTools {
    /// slirp4netns, nsenter and nft on `PATH` (or in `/usr/sbin`, which a
    /// non-root `PATH` often lacks), and `/dev/net/tun` open to this user.
    ///
    /// Errors: what is missing, e.g. "slirp4netns, nft not found".
    pub fn find() -> std::result::Result<Self, String> {
        let found = |name: &str| find_program(name).ok_or_else(|| name.to_string());
        let (slirp4netns, nsenter, nft) = (found("slirp4netns"), found("nsenter"), found("nft"));
        let tools = match (slirp4netns, nsenter, nft) {
            (Ok(slirp4netns), Ok(nsenter), Ok(nft)) => NetworkTools {
                slirp4netns,
                nsenter,
                nft,
            },
            (a, b, c) => {
                let missing: Vec<String> =
                    [a.err(), b.err(), c.err()].into_iter().flatten().collect();
                return Err(format!("{} not found", missing.join(", ")));
            }
        };
        // slirp4netns opens it as this user; some hosts keep it root's (0600).
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun cannot be opened by this user ({e})"))?;
        Ok(tools)
    }

    /// Loads `rules` into the network namespace of process `pid` with
    /// `nsenter --target PID --net nft -f -`. Without root the namespace
    /// belongs to a user namespace of the sandbox's ([`NetnsOwner`]), which
    /// is entered too.
    ///
    /// nft never runs outside that namespace: if nsenter cannot enter it,
    /// nft is not started at all.
    pub async fn apply_firewall(&self, pid: u32, rules: &str) -> Result<()> {
        let owner = NetnsOwner::of_unprivileged(pid)?;
        let mut cmd = Command::new(&self.nsenter);
        cmd.arg(format!("--target={pid}")).arg("--net");
        if let Some(owner) = &owner {
            cmd.arg(format!("--user={}", owner.path()))
                .arg("--preserve-credentials");
        }
        let mut child = cmd
            .arg("--")
            .arg(&self.nft)
            .args(["-f", "-"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ProviderError::failed(format!("cannot start nsenter: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .await
                .map_err(|e| ProviderError::failed(format!("cannot give nft its rules: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ProviderError::failed(format!("nft: {e}")))?;
        if !out.status.success() {
            return Err(ProviderError::failed(format!(
                "cannot load the sandbox's firewall rules ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
            .into());
        }
        Ok(())
    }

    /// Starts slirp4netns for the network namespace of process `pid` and
    /// waits until `tap0` is configured (10.0.2.100/24, gateway 10.0.2.2,
    /// DNS 10.0.2.3). Its messages go to `log`.
    ///
    /// `--disable-host-loopback` stops the gateway from leading to the host's
    /// 127.0.0.1; `--enable-sandbox` and `--enable-seccomp` confine
    /// slirp4netns itself, since it parses the sandbox's packets.
    pub async fn start_slirp(&self, pid: u32, log: &std::fs::File) -> Result<Child> {
        let owner = NetnsOwner::of_unprivileged(pid)?;
        let (log, log2) = log
            .try_clone()
            .and_then(|a| Ok((a, log.try_clone()?)))
            .map_err(|e| Error::Internal(format!("log: {e}")))?;
        // slirp4netns writes one byte to its ready fd once tap0 is up: its
        // stdin is made the write end of a pipe this process reads.
        let (ready, ready_w) =
            std::io::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let mut cmd = match &owner {
            None => Command::new(&self.slirp4netns),
            // Started inside the namespace's owner, slirp4netns is root
            // there: it stays in it (entering its own user namespace is a
            // no-op) to join the network, and confines itself
            // (`--enable-sandbox`) as that root instead of joining the
            // sandbox's nested namespace, where it could not.
            Some(owner) => {
                let mut cmd = Command::new(&self.nsenter);
                cmd.arg(format!("--user={}", owner.path()))
                    .args(["--preserve-credentials", "--"])
                    .arg(&self.slirp4netns)
                    .arg("--userns-path=/proc/self/ns/user");
                cmd
            }
        };
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd=0",
        ])
        .arg(pid.to_string())
        .arg("tap0")
        .env_clear()
        .stdin(ready_w)
        .stdout(log)
        .stderr(log2);
        let mut child = cmd
            .spawn()
            .map_err(|e| ProviderError::failed(format!("cannot start slirp4netns: {e}")))?;
        // Our copy of the write end goes with the command, so a slirp4netns
        // that dies early reads as end-of-file, not as a wait without end.
        drop(cmd);
        let mut byte = [0u8; 1];
        let got = match pipe::Receiver::from_owned_fd(OwnedFd::from(ready)) {
            Ok(mut r) => r.read(&mut byte).await.unwrap_or(0),
            Err(_) => 0,
        };
        if got != 1 {
            let _ = child.start_kill();
            let status = child.wait().await;
            return Err(ProviderError::failed(format!(
                "slirp4netns could not configure the sandbox's network ({}); see its log",
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            ))
            .into());
        }
        Ok(child)
    }
}

/// True when bubblewrap puts sandboxes in user namespaces: when this
/// process is not root (as root it needs none).
pub fn in_user_namespace() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() != 0 }
}

/// The user namespace that owns a sandbox's network namespace, held open
/// for a tool that configures that network to enter.
///
/// Without root, bubblewrap makes two user namespaces: one mapping this
/// user to root, in which it makes the other namespaces and mounts the
/// sandbox's devpts (`--dev`), and inside it a second that maps the user
/// back, where the sandbox runs. The network namespace belongs to the
/// first, so a tool entering the sandbox's own (`/proc/PID/ns/user`) could
/// not configure it. `ioctl(NS_GET_USERNS)` names the owner whatever the
/// nesting (Linux ≥ 4.9, ioctl_ns(2)).
struct NetnsOwner {
    fd: OwnedFd,
}

impl NetnsOwner {
    /// The owner of process `pid`'s network namespace when this process is
    /// not root; `None` as root, where bubblewrap makes no user namespace.
    fn of_unprivileged(pid: u32) -> Result<Option<NetnsOwner>> {
        if !in_user_namespace() {
            return Ok(None);
        }
        let failed = |e: std::io::Error| -> Error {
            ProviderError::failed(format!(
                "cannot find the user namespace of the sandbox's network: {e}"
            ))
            .into()
        };
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(failed)?;
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: ioctl(2) on a descriptor we own; NS_GET_USERNS takes no
        // argument and returns a new descriptor (close-on-exec) or -1.
        let fd = unsafe { libc::ioctl(netns.as_raw_fd(), libc::NS_GET_USERNS) };
        if fd < 0 {
            return Err(failed(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned to us and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Some(NetnsOwner { fd }))
    }

    /// A path to the namespace that another process of this user can open
    /// while `self` lives (descriptors are close-on-exec, so a child cannot
    /// use `/proc/self/fd`).
    fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }
}

/// Finds `name` on `PATH`, then in the sbin folders.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// How long a connection into a sandbox's namespace may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to `port` on the loopback of the network namespace of process
/// `pid` (a sandbox's), where nothing outside the sandbox can otherwise go.
///
/// A thread of its own enters the namespace (`setns`), connects and ends, so
/// no other thread of the control plane is ever inside it. Entering needs
/// `CAP_SYS_ADMIN`, i.e. a control plane running as root.
pub async fn connect_inside(pid: u32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sandbox-connect".into())
        .spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) on a descriptor we own; it changes only this thread.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            let result = if entered {
                std::net::TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    CONNECT_TIMEOUT,
                )
            } else {
                Err(std::io::Error::last_os_error())
            };
            let _ = tx.send(result);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread ended"))??;
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_rejects_everything_but_the_internet() {
        let rules = firewall_rules(&[
            "192.0.2.2".parse().unwrap(),
            "203.0.114.7".parse().unwrap(),
            "fd00::2".parse().unwrap(),
        ]);
        for range in [
            "10.0.0.0/8",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
        ] {
            assert!(rules.contains(range), "{range} missing:\n{rules}");
        }
        // The host's own public address is rejected too; one inside a
        // rejected range is not listed twice.
        assert!(rules.contains("203.0.114.7"), "{rules}");
        assert!(!rules.contains(", 192.0.2.2"), "{rules}");
        assert!(rules.contains("meta nfproto ipv6 reject"));
        // Loopback and DNS come first, so they pass.
        let dns = rules.find("udp dport 53 accept").unwrap();
        assert!(rules.find("oifname \"lo\" accept").unwrap() < dns);
        assert!(dns < rules.find("reject").unwrap());
    }

    #[test]
    fn host_addresses_include_loopback() {
        assert!(host_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
