//! Which seccomp filter a container gets: CRI-O's choices (`RuntimeDefault`,
//! `Unconfined`, `Localhost`) and the containers/Docker profile format that
//! `Localhost` profiles are written in (`includes`/`excludes` by capability, arch and
//! kernel, `archMap`), reduced to the OCI form runtimes read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSyscall};
use serde::Deserialize;
use serde_json::Value;

use super::SpecError;

/// The seccomp filter asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Seccomp {
    /// The built-in profile (`seccomp_default`), adjusted to the container's capabilities.
    #[default]
    RuntimeDefault,
    Unconfined,
    /// A profile read from the node (`localhost_ref`), already parsed.
    Profile(Box<ProfileFile>),
}

/// A profile file in the containers/Docker JSON format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProfileFile {
    pub path: PathBuf,
    pub json: Value,
}

/// The arch seccomp calls this machine's (`SCMP_ARCH_X86_64`...).
pub(crate) fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// Go's arch names, which profiles' `includes.arches` use (and CRI-O's
/// `platform_runtime_paths` keys).
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn err(path: &Path, reason: impl std::fmt::Display) -> SpecError {
    SpecError::Seccomp {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads and parses a `Localhost` profile: a missing file or bad JSON is an error
/// naming the file.
pub(crate) fn read_profile(path: &Path) -> Result<ProfileFile, SpecError> {
    if !path.is_absolute() {
        return Err(err(path, "the localhost profile path must be absolute"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| err(path, e))?;
    if !json.is_object() {
        return Err(err(path, "a profile is a JSON object"));
    }
    Ok(ProfileFile {
        path: path.to_path_buf(),
        json,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Filter {
    caps: Vec<String>,
    arches: Vec<String>,
    #[serde(rename = "minKernel")]
    min_kernel: Option<String>,
}

fn cap_name(c: &str) -> String {
    let upper = c.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// `"5.8"` -> (5, 8); a kernel release (`6.1.0-18-amd64`) the same way.
fn kernel_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    Some((major, minor))
}

/// Whether a rule's `includes`/`excludes` let it apply to this container.
fn applies(
    includes: &Filter,
    excludes: &Filter,
    caps: &HashSet<String>,
    kernel: (u32, u32),
) -> bool {
    let arch = go_arch();
    if !includes.caps.iter().all(|c| caps.contains(&cap_name(c))) {
        return false;
    }
    if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if let Some(min) = includes.min_kernel.as_deref().and_then(kernel_version) {
        if kernel < min {
            return false;
        }
    }
    if excludes.caps.iter().any(|c| caps.contains(&cap_name(c))) {
        return false;
    }
    if excludes.arches.iter().any(|a| a == arch) {
        return false;
    }
    if let Some(min) = excludes.min_kernel.as_deref().and_then(kernel_version) {
        if kernel >= min {
            return false;
        }
    }
    true
}

/// Reduces a profile to the OCI filter for a container holding `caps`, on a kernel
/// `kernel_release` (`uname -r`).
pub(crate) fn to_oci(
    profile: &ProfileFile,
    caps: &HashSet<Capability>,
    kernel_release: &str,
) -> Result<LinuxSeccomp, SpecError> {
    let path = &profile.path;
    let mut json = profile.json.clone();
    let obj = json
        .as_object_mut()
        .ok_or_else(|| err(path, "a profile is a JSON object"))?;
    let caps: HashSet<String> = caps.iter().map(|c| cap_name(&c.to_string())).collect();
    let kernel = kernel_version(kernel_release).unwrap_or((0, 0));

    // `archMap`: the native arch and its sub-arches, when `architectures` is absent.
    let arch_map = obj.remove("archMap");
    if !obj.contains_key("architectures") {
        if let Some(Value::Array(entries)) = arch_map {
            let native = native_arch();
            let mut arches = Vec::new();
            for e in entries {
                if e.get("architecture").and_then(Value::as_str) == Some(native) {
                    arches.push(Value::from(native));
                    if let Some(Value::Array(subs)) = e.get("subArchitectures") {
                        arches.extend(subs.iter().cloned());
                    }
                }
            }
            obj.insert("architectures".into(), Value::Array(arches));
        }
    }

    let mut syscalls = Vec::new();
    if let Some(rules) = obj.remove("syscalls") {
        let Value::Array(rules) = rules else {
            return Err(err(path, "\"syscalls\" must be an array"));
        };
        for (i, mut rule) in rules.into_iter().enumerate() {
            let r = rule
                .as_object_mut()
                .ok_or_else(|| err(path, format!("syscalls[{i}] is not an object")))?;
            let parse_filter = |v: Option<Value>| -> Result<Filter, SpecError> {
                v.map(serde_json::from_value)
                    .transpose()
                    .map(Option::unwrap_or_default)
                    .map_err(|e| err(path, format!("syscalls[{i}]: {e}")))
            };
            let includes = parse_filter(r.remove("includes"))?;
            let excludes = parse_filter(r.remove("excludes"))?;
            r.remove("comment");
            // The old single-name form.
            if let Some(name) = r.remove("name") {
                r.entry("names")
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
                    .ok_or_else(|| err(path, format!("syscalls[{i}].names is not an array")))?
                    .push(name);
            }
            if !applies(&includes, &excludes, &caps, kernel) {
                continue;
            }
            let syscall: LinuxSyscall = serde_json::from_value(rule)
                .map_err(|e| err(path, format!("syscalls[{i}]: {e}")))?;
            syscalls.push(syscall);
        }
    }
    let mut seccomp: LinuxSeccomp =
        serde_json::from_value(json).map_err(|e| err(path, format!("{e}")))?;
    seccomp.set_syscalls(Some(syscalls));
    Ok(seccomp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> ProfileFile {
        ProfileFile {
            path: PathBuf::from("/p.json"),
            json: serde_json::from_str(json).expect("json"),
        }
    }

    #[test]
    fn includes_and_excludes_follow_caps_and_kernel() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[
              {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
              {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["clone"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]},
               "args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["newer"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"9.1"}},
              {"name":"old","action":"SCMP_ACT_ALLOW","comment":"x"}
            ]}"#,
        );
        let plain = to_oci(&p, &HashSet::new(), "6.1.0").expect("profile");
        let names: Vec<String> = plain
            .syscalls()
            .as_ref()
            .expect("rules")
            .iter()
            .flat_map(|s| s.names().clone())
            .collect();
        assert_eq!(names, ["read", "write", "clone", "old"]);
        if std::env::consts::ARCH == "x86_64" {
            let arches = serde_json::to_value(plain.architectures()).expect("json");
            assert_eq!(
                arches,
                serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
            );
        }
        let admin = HashSet::from([Capability::SysAdmin]);
        let names: Vec<String> = to_oci(&p, &admin, "9.2")
            .expect("profile")
            .syscalls()
            .as_ref()
            .expect("rules")
            .iter()
            .flat_map(|s| s.names().clone())
            .collect();
        assert_eq!(names, ["read", "write", "mount", "newer", "old"]);
    }

    #[test]
    fn bad_profiles_name_the_file_and_the_fault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.json");
        let e = read_profile(&missing).expect_err("missing").to_string();
        assert!(e.contains("missing.json"), "{e}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ not json").expect("write");
        let e = read_profile(&bad).expect_err("bad json").to_string();
        assert!(e.contains("bad.json") && e.contains("line 1"), "{e}");
        assert!(read_profile(Path::new("relative.json")).is_err());
        let p = profile(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#);
        let e = to_oci(&p, &HashSet::new(), "6.1").expect_err("bad action");
        assert!(e.to_string().contains("/p.json"), "{e}");
    }
}
