//! Containers on this machine: whether it can run them at all (a real node,
//! `tests/cluster/up --node=real`) and build images (buildah).

use std::path::Path;
use std::process::Command;

/// The effective user id of this process, from procfs.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Why this machine cannot run the real node (containerd, runc and a kubelet
/// run as root on Linux with cgroups), or `None` when it can. What it needs
/// beyond that is installed by `tests/cluster/up --node=real` itself.
pub fn cannot_run_containers() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("the real node runs only on Linux".to_owned());
    }
    if euid() != Some(0) {
        return Some(
            "the real node needs root (containerd, runc and the kubelet run as root)".to_owned(),
        );
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Some("no cgroup filesystem at /sys/fs/cgroup".to_owned());
    }
    None
}

/// Why this machine cannot build images with buildah (as root, with a private
/// vfs store), or `None`. A missing buildah is a failure, not a reason to
/// skip: `tests/cluster/node-deps` installs it (`make test` runs it).
pub fn cannot_build_images() -> Option<String> {
    if let Some(reason) = cannot_run_containers() {
        return Some(reason);
    }
    let found = Command::new("buildah").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "buildah is missing: run tests/cluster/node-deps (make test does)"
    );
    None
}
