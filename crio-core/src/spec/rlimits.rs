//! `default_ulimits` entries (`nofile=1024:2048`, CRI-O's and Docker's syntax)
//! as OCI `process.rlimits`.

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// One parsed entry: the OCI type (`RLIMIT_NOFILE`), soft and hard limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ulimit {
    pub typ: String,
    pub soft: u64,
    pub hard: u64,
}

/// `name=soft:hard` or `name=limit` (both limits); `-1` is unlimited. The name is
/// `ulimit`'s (`nofile`, `nproc`, ...), with or without `RLIMIT_`.
pub(crate) fn parse(entry: &str) -> Result<Ulimit, String> {
    let (name, limits) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not name=soft:hard"))?;
    let upper = name.trim().to_ascii_uppercase();
    let typ = format!("RLIMIT_{}", upper.strip_prefix("RLIMIT_").unwrap_or(&upper));
    typ.parse::<PosixRlimitType>()
        .map_err(|_| format!("{name:?} is not a resource limit"))?;
    let number = |v: &str| -> Result<u64, String> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v
                .parse()
                .map_err(|_| format!("{v:?} in {entry:?} is not a number")),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => {
            let both = number(limits)?;
            (both, both)
        }
    };
    if soft > hard {
        return Err(format!("{entry:?}: the soft limit is above the hard one"));
    }
    Ok(Ulimit { typ, soft, hard })
}

/// The OCI form.
pub(crate) fn to_oci(ulimits: &[Ulimit]) -> Vec<PosixRlimit> {
    ulimits
        .iter()
        .filter_map(|u| {
            PosixRlimitBuilder::default()
                .typ(u.typ.parse::<PosixRlimitType>().ok()?)
                .soft(u.soft)
                .hard(u.hard)
                .build()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimit_entries_parse_as_docker_and_cri_o_write_them() {
        assert_eq!(
            parse("nofile=1024:2048"),
            Ok(Ulimit {
                typ: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: 2048
            })
        );
        assert_eq!(
            parse("RLIMIT_NPROC=50").map(|u| (u.soft, u.hard)),
            Ok((50, 50))
        );
        assert_eq!(parse("core=-1").map(|u| u.hard), Ok(u64::MAX));
        for bad in ["nofile", "files=1", "nofile=a:b", "nofile=10:5"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let oci = to_oci(&[parse("nofile=1:2").expect("ok")]);
        assert_eq!(oci[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((oci[0].soft(), oci[0].hard()), (1, 2));
    }
}
