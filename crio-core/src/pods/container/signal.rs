//! Stop signals: the image's `StopSignal` (a name or a number), the CRI's `Signal`
//! enum (KEP-4960 container stop signals), and the numbers sent to the shim.
//! Real-time signals follow the Linux/glibc numbering moby and containerd use:
//! `SIGRTMIN` is 34, `SIGRTMAX` is 64.

use protocols::cri;

const SIGTERM: u32 = 15;
const RTMIN: u32 = 34;
const RTMAX: u32 = 64;

/// A signal name or number (`SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`); empty means
/// SIGTERM. None for anything else.
pub(super) fn parse_signal(name: &str) -> Option<u32> {
    if name.is_empty() {
        return Some(SIGTERM);
    }
    if let Ok(n) = name.parse::<u32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(n) = realtime(bare) {
        return Some(n);
    }
    // Aliases nix does not name.
    let canonical = match bare {
        "CLD" => "CHLD",
        "POLL" => "IO",
        "IOT" => "ABRT",
        other => other,
    };
    format!("SIG{canonical}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .and_then(|s| u32::try_from(s as i32).ok())
}

/// `RTMIN`, `RTMIN+N`, `RTMAX-N`, `RTMAX` (without the `SIG` prefix).
fn realtime(bare: &str) -> Option<u32> {
    let offset = |rest: &str| -> Option<u32> {
        if rest.is_empty() {
            Some(0)
        } else {
            rest.parse().ok()
        }
    };
    let n = if let Some(rest) = bare.strip_prefix("RTMIN") {
        RTMIN.checked_add(offset(rest.strip_prefix('+').unwrap_or(rest))?)?
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        RTMAX.checked_sub(offset(rest.strip_prefix('-').unwrap_or(rest))?)?
    } else {
        return None;
    };
    (RTMIN..=RTMAX).contains(&n).then_some(n)
}

/// The stop signal a `ContainerConfig` asks for, as the name the record keeps; None
/// for `RUNTIME_DEFAULT` (the image's, else SIGTERM). An enum value this API does not
/// know is an error.
pub(super) fn from_cri(value: i32) -> Result<Option<String>, String> {
    let signal = cri::Signal::try_from(value)
        .map_err(|_| format!("unknown stop_signal {value}: not a CRI Signal value"))?;
    if signal == cri::Signal::RuntimeDefault {
        return Ok(None);
    }
    let name = signal.as_str_name();
    // SIGRTMINPLUS3 / SIGRTMAXMINUS3 are the enum's spellings of SIGRTMIN+3 / SIGRTMAX-3.
    Ok(Some(
        name.replace("RTMINPLUS", "RTMIN+")
            .replace("RTMAXMINUS", "RTMAX-"),
    ))
}

/// The CRI enum value for a signal number, as `ContainerStatus` reports it.
pub(super) fn to_cri(number: u32) -> cri::Signal {
    let name = match number {
        RTMIN => "SIGRTMIN".to_string(),
        RTMAX => "SIGRTMAX".to_string(),
        n if n > RTMIN && n <= RTMIN + 15 => format!("SIGRTMINPLUS{}", n - RTMIN),
        n if n > RTMIN + 15 && n < RTMAX => format!("SIGRTMAXMINUS{}", RTMAX - n),
        n => i32::try_from(n)
            .ok()
            .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    };
    cri::Signal::from_str_name(&name).unwrap_or(cri::Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_aliases() {
        assert_eq!(parse_signal(""), Some(15));
        assert_eq!(parse_signal("SIGKILL"), Some(9));
        assert_eq!(parse_signal("quit"), Some(3));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(parse_signal("SIGCLD"), Some(17));
        assert_eq!(parse_signal("POLL"), Some(29));
        assert_eq!(parse_signal("SIGIOT"), Some(6));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
        assert_eq!(parse_signal("0"), None);
    }

    #[test]
    fn parses_realtime_signals() {
        assert_eq!(parse_signal("SIGRTMIN"), Some(34));
        assert_eq!(parse_signal("RTMIN+3"), Some(37));
        assert_eq!(parse_signal("SIGRTMAX-1"), Some(63));
        assert_eq!(parse_signal("SIGRTMAX"), Some(64));
        assert_eq!(parse_signal("SIGRTMIN+31"), None);
        assert_eq!(parse_signal("SIGRTMAX-31"), None);
        assert_eq!(parse_signal("SIGRTMIN+x"), None);
    }

    #[test]
    fn every_cri_signal_round_trips_through_its_number() {
        for value in 1..=65 {
            let name = from_cri(value)
                .expect("a CRI value")
                .expect("not the default");
            let number = parse_signal(&name).unwrap_or_else(|| panic!("{name} parses"));
            let back = to_cri(number);
            // Aliases come back as the signal's usual name.
            let expected = match cri::Signal::try_from(value).expect("a CRI value") {
                cri::Signal::Sigcld => cri::Signal::Sigchld,
                cri::Signal::Sigpoll => cri::Signal::Sigio,
                cri::Signal::Sigiot => cri::Signal::Sigabrt,
                other => other,
            };
            assert_eq!(back, expected, "{name} = {number}");
        }
    }

    #[test]
    fn runtime_default_and_unknown_values() {
        assert_eq!(from_cri(0), Ok(None));
        assert!(from_cri(66).expect_err("not in the enum").contains("66"));
        assert_eq!(to_cri(15), cri::Signal::Sigterm);
        assert_eq!(to_cri(0), cri::Signal::RuntimeDefault);
    }
}
