//! Reading the mount table: what is mounted at or below a directory.

use std::path::Path;

/// The first mount point at or below `dir` in mountinfo text (`None`: nothing
/// is mounted there).
pub fn mount_below(mountinfo: &str, dir: &Path) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|point| Path::new(point).starts_with(dir))
        .map(str::to_string)
}

/// The same, in this process's mount table.
pub fn mounted_below(dir: &Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_below(&mountinfo, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_below_a_directory_is_found() {
        let info = "36 25 0:31 / /run/vm/abc/shared/c1/rootfs rw - overlay overlay rw\n\
                    37 25 0:32 / /run/vmx rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_below(info, Path::new("/run/vm/abc")).as_deref(),
            Some("/run/vm/abc/shared/c1/rootfs")
        );
        assert_eq!(mount_below(info, Path::new("/run/vm/abd")), None);
        assert_eq!(
            mount_below(info, Path::new("/run/vm")).as_deref(),
            Some("/run/vm/abc/shared/c1/rootfs")
        );
        assert_eq!(
            mount_below(info, Path::new("/run/v")),
            None,
            "not a prefix of a name"
        );
    }
}
