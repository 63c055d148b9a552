use super::*;

const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const V1_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/jobs/abc
2:cpuacct:/
1:cpu:/
0::/
";
const V2_MOUNTS: &str = "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
const V2_OWN: &str = "0::/user.slice/user-1000.slice/cp.service\n";

#[test]
fn v1_sandboxes_live_under_the_own_cgroup_of_each_controller() {
    let c = Cgroups::from_tables(V1_MOUNTS, V1_OWN).unwrap();
    assert_eq!(c.version(), Version::V1);
    let sb = c.sandbox("sb-1");
    assert_eq!(
        sb.dirs,
        [
            "/sys/fs/cgroup/memory/jobs/abc/sandboxes/sb-1",
            "/sys/fs/cgroup/pids/sandboxes/sb-1",
            "/sys/fs/cgroup/cpu/sandboxes/sb-1",
            "/sys/fs/cgroup/cpuacct/sandboxes/sb-1",
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn v2_sandboxes_live_under_the_own_cgroup() {
    let c = Cgroups::from_tables(V2_MOUNTS, V2_OWN).unwrap();
    assert_eq!(c.version(), Version::V2);
    assert_eq!(
        c.sandbox("sb-1").dirs,
        [PathBuf::from(
            "/sys/fs/cgroup/user.slice/user-1000.slice/cp.service/sandboxes/sb-1"
        )]
    );
    // A cgroup namespace shows the own cgroup as the mount's root.
    let ns = "30 23 0:27 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    let c = Cgroups::from_tables(ns, "0::/user.slice/cp\n").unwrap();
    assert_eq!(
        c.sandbox("x").dirs,
        [PathBuf::from("/sys/fs/cgroup/cp/sandboxes/x")]
    );
}

#[test]
fn no_controllers_is_an_error() {
    let none = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
    assert!(Cgroups::from_tables(none, "0::/\n").is_err());
}

/// A fake hierarchy in a temporary folder: the files a kernel would show.
fn fake(version: Version, dir: &Path) -> SandboxCgroup {
    let c = Cgroups {
        version,
        parents: match version {
            Version::V1 => Parents::V1 {
                memory: dir.join("memory"),
                pids: dir.join("pids"),
                cpu: dir.join("cpu"),
                cpuacct: dir.join("cpuacct"),
            },
            Version::V2 => Parents::V2(dir.join("unified")),
        },
    };
    let sb = c.sandbox("sb");
    for d in &sb.dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    sb
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn v1_limits_are_written_to_each_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = fake(Version::V1, tmp.path());
    let limits = Limits {
        memory_bytes: Some(256 << 20),
        cpu_count: Some(2),
        pids: Some(100),
    };
    sb.create(&limits).unwrap();
    let d = tmp.path();
    assert_eq!(read(d.join("memory/sb/memory.limit_in_bytes")), "268435456");
    assert_eq!(
        read(d.join("memory/sb/memory.memsw.limit_in_bytes")),
        "268435456"
    );
    assert_eq!(read(d.join("pids/sb/pids.max")), "100");
    assert_eq!(read(d.join("cpu/sb/cpu.cfs_period_us")), "100000");
    assert_eq!(read(d.join("cpu/sb/cpu.cfs_quota_us")), "200000");

    sb.create(&Limits::default()).unwrap();
    assert_eq!(read(d.join("memory/sb/memory.limit_in_bytes")), "-1");
    assert_eq!(read(d.join("pids/sb/pids.max")), "max");
    assert_eq!(read(d.join("cpu/sb/cpu.cfs_quota_us")), "-1");

    sb.add(42).unwrap();
    for c in ["memory", "pids", "cpu", "cpuacct"] {
        assert_eq!(read(d.join(c).join("sb/cgroup.procs")), "42");
    }
}

#[test]
fn v2_limits_are_written_to_the_one_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = fake(Version::V2, tmp.path());
    sb.create(&Limits {
        memory_bytes: Some(1 << 30),
        cpu_count: Some(1),
        pids: Some(512),
    })
    .unwrap();
    let d = tmp.path().join("unified/sb");
    assert_eq!(read(d.join("memory.max")), "1073741824");
    assert_eq!(read(d.join("memory.swap.max")), "0");
    assert_eq!(read(d.join("pids.max")), "512");
    assert_eq!(read(d.join("cpu.max")), "100000 100000");
    sb.create(&Limits::default()).unwrap();
    assert_eq!(read(d.join("memory.max")), "max");
    assert_eq!(read(d.join("cpu.max")), "max 100000");
}

#[test]
fn usage_is_read_from_the_kernels_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = fake(Version::V1, tmp.path());
    let d = tmp.path();
    for (file, text) in [
        ("cpuacct/sb/cpuacct.usage", "2500000\n"),
        ("memory/sb/memory.usage_in_bytes", "1048576\n"),
        ("memory/sb/memory.limit_in_bytes", "9223372036854771712\n"),
        (
            "memory/sb/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        ),
        ("pids/sb/pids.current", "7\n"),
        ("pids/sb/pids.max", "max\n"),
        ("pids/sb/pids.events", "max 12\n"),
    ] {
        std::fs::write(d.join(file), text).unwrap();
    }
    assert_eq!(
        sb.usage().unwrap(),
        Usage {
            cpu_usec: 2500,
            memory_bytes: 1 << 20,
            memory_limit_bytes: None,
            pids: 7,
            pids_limit: None,
            pids_refused: 12,
            oom_kills: 3,
        }
    );

    let sb = fake(Version::V2, tmp.path());
    let d = tmp.path().join("unified/sb");
    for (file, text) in [
        ("cpu.stat", "usage_usec 777\nuser_usec 700\n"),
        ("memory.current", "4096\n"),
        ("memory.max", "268435456\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
        ("pids.current", "2\n"),
        ("pids.max", "64\n"),
        ("pids.events", "max 0\n"),
    ] {
        std::fs::write(d.join(file), text).unwrap();
    }
    let u = sb.usage().unwrap();
    assert_eq!(
        (
            u.cpu_usec,
            u.memory_bytes,
            u.memory_limit_bytes,
            u.oom_kills
        ),
        (777, 4096, Some(256 << 20), 1)
    );
    assert_eq!((u.pids, u.pids_limit, u.pids_refused), (2, Some(64), 0));
}
