//! Sizes in config files as CRI-O reads them (docker's `RAMInBytes`): a number and
//! an optional binary unit, `k`/`m`/`g`/`t`/`p` with optional `i`/`b`, any case.

/// `"12MiB"`, `"64m"`, `"1.5G"`, `"8192"` -> bytes.
pub(crate) fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_units() {
        assert_eq!(parse("12MiB"), Some(12 << 20));
        assert_eq!(parse("64m"), Some(64 << 20));
        assert_eq!(parse("8192"), Some(8192));
        assert_eq!(parse("1.5k"), Some(1536));
        assert_eq!(parse("2 GB"), Some(2 << 30));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("5x"), None);
    }
}
