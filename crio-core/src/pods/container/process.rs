//! A container's process from its CRI config and its image's defaults, by the
//! Kubernetes rules (pure functions).

use std::path::Path;

use crate::image::image_config::ContainerDefaults;

/// Kubernetes' command rules: `command` replaces the image's Entrypoint (and drops its
/// Cmd); `args` replaces the image's Cmd.
pub(crate) fn command_line(
    command: &[String],
    args: &[String],
    image: &ContainerDefaults,
) -> Option<Vec<String>> {
    let mut out: Vec<String> = if command.is_empty() {
        image.entrypoint.clone().unwrap_or_default()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        out.extend(args.iter().cloned());
    } else if command.is_empty() {
        out.extend(image.cmd.clone().unwrap_or_default());
    }
    (!out.is_empty()).then_some(out)
}

/// The image's environment, with the CRI's entries overriding by name, plus a PATH
/// when neither sets one.
pub(crate) fn environment(image_env: &[String], cri_env: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    for e in image_env {
        let k = key(e);
        out.retain(|x| key(x) != k);
        out.push(e.clone());
    }
    for (k, v) in cri_env {
        out.retain(|x| key(x) != *k);
        out.push(format!("{k}={v}"));
    }
    if !out.iter().any(|e| key(e) == "PATH") {
        out.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
    }
    out
}

/// A user as resolved inside the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    NoSuchGroup(String),
}

fn lookup(file: &str, name: &str) -> Option<(u32, u32)> {
    file.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == name {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Resolves `user[:group]` (names or numbers) against the rootfs' passwd/group files.
/// A numeric uid not in passwd runs with gid 0, as runc and CRI-O do.
pub(crate) fn resolve_user(spec: &str, rootfs: &Path) -> Result<ResolvedUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (uid, mut gid) = if user.is_empty() {
        (0, 0)
    } else if let Ok(uid) = user.parse::<u32>() {
        let gid = passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[2].parse::<u32>().ok() == Some(uid))
                    .then(|| f[3].parse().ok())
                    .flatten()
            })
            .unwrap_or(0);
        (uid, gid)
    } else {
        lookup(&passwd, user).ok_or_else(|| UserError::NoSuchUser(user.to_string()))?
    };
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => {
                let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                groups
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == group)
                            .then(|| f[2].parse().ok())
                            .flatten()
                    })
                    .ok_or_else(|| UserError::NoSuchGroup(group.to_string()))?
            }
        };
    }
    Ok(ResolvedUser { uid, gid })
}

/// The groups of the image's `/etc/group` that list the user (by the name `uid` has in
/// `/etc/passwd`) as a member, other than `gid`: what CRI-O adds under the `Merge`
/// supplemental-groups policy.
pub(crate) fn member_groups(uid: u32, gid: u32, rootfs: &Path) -> Vec<u32> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let Some(name) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    }) else {
        return Vec::new();
    };
    let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let mut out: Vec<u32> = groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            let g: u32 = f.get(2)?.parse().ok()?;
            (g != gid && members.split(',').any(|m| m.trim() == name)).then_some(g)
        })
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ContainerDefaults {
        ContainerDefaults {
            entrypoint: Some(entrypoint.iter().map(|s| s.to_string()).collect()),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubernetes_command_rules() {
        let img = image(&["/entry"], &["default"]);
        assert_eq!(
            command_line(&[], &[], &img),
            Some(v(&["/entry", "default"]))
        );
        assert_eq!(
            command_line(&[], &v(&["x"]), &img),
            Some(v(&["/entry", "x"]))
        );
        assert_eq!(command_line(&v(&["sh"]), &[], &img), Some(v(&["sh"])));
        assert_eq!(
            command_line(&v(&["sh"]), &v(&["-c", "true"]), &img),
            Some(v(&["sh", "-c", "true"]))
        );
        assert_eq!(command_line(&[], &[], &ContainerDefaults::default()), None);
    }

    #[test]
    fn cri_env_wins_and_path_is_always_set() {
        let env = environment(
            &v(&["A=1", "B=2"]),
            &[("B".into(), "3".into()), ("C".into(), "4".into())],
        );
        assert_eq!(env[0].split_once('=').map(|p| p.0), Some("PATH"));
        assert_eq!(&env[1..], v(&["A=1", "B=3", "C=4"]));
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\nwheel:x:10:root,web\nweb:x:1001:web\n",
        )
        .expect("group");
        assert_eq!(member_groups(1000, 1001, dir.path()), [10]);
        assert_eq!(member_groups(0, 0, dir.path()), [10]);
        assert!(member_groups(4242, 0, dir.path()).is_empty());
        let r = |s: &str| resolve_user(s, dir.path());
        assert_eq!(r(""), Ok(ResolvedUser { uid: 0, gid: 0 }));
        assert_eq!(
            r("web"),
            Ok(ResolvedUser {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            r("1000"),
            Ok(ResolvedUser {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(r("4242"), Ok(ResolvedUser { uid: 4242, gid: 0 }));
        assert_eq!(r("web:staff"), Ok(ResolvedUser { uid: 1000, gid: 50 }));
        assert_eq!(r("web:7"), Ok(ResolvedUser { uid: 1000, gid: 7 }));
        assert_eq!(r("nobody"), Err(UserError::NoSuchUser("nobody".into())));
        assert_eq!(
            r("web:nogroup"),
            Err(UserError::NoSuchGroup("nogroup".into()))
        );
    }
}
