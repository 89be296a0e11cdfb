//! Finding numbers in model output.
//!
//! A number is an optional sign, digits, optional thousands separators (`1,234`) and an optional
//! decimal part. A `-` counts as a sign only when it does not follow a letter or digit, so
//! `47-38` reads as 47 and 38, while `is -9` reads as −9.

/// One number found in a text: its value and its byte span.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub value: f64,
    pub start: usize,
    pub end: usize,
}

/// Every number in `text`, left to right.
pub fn find_numbers(text: &str) -> Vec<Found> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let sign_ok = |j: usize| j == 0 || !(b[j - 1].is_ascii_alphanumeric());
        let (start, digits_at) =
            if (b[i] == b'-' || b[i] == b'+') && i + 1 < b.len() && b[i + 1].is_ascii_digit() && sign_ok(i) {
                (i, i + 1)
            } else if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()) {
                (i, i)
            } else {
                i += 1;
                continue;
            };
        let mut j = digits_at;
        let mut plain = String::new();
        loop {
            while j < b.len() && b[j].is_ascii_digit() {
                plain.push(b[j] as char);
                j += 1;
            }
            // Thousands separator: a comma followed by exactly three digits.
            let separator = j + 4 <= b.len()
                && b[j] == b','
                && b[j + 1..j + 4].iter().all(u8::is_ascii_digit)
                && (j + 4 == b.len() || !b[j + 4].is_ascii_digit());
            if separator {
                j += 1;
                continue;
            }
            break;
        }
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            plain.push('.');
            j += 1;
            while j < b.len() && b[j].is_ascii_digit() {
                plain.push(b[j] as char);
                j += 1;
            }
        }
        if let Ok(v) = plain.parse::<f64>() {
            let v = if b[start] == b'-' { -v } else { v };
            out.push(Found { value: v, start, end: j });
        }
        i = j;
    }
    out
}

/// The last number in `text`.
pub fn last_number(text: &str) -> Option<f64> {
    find_numbers(text).pop().map(|f| f.value)
}

/// The first number in `text`.
pub fn first_number(text: &str) -> Option<f64> {
    find_numbers(text).into_iter().next().map(|f| f.value)
}

/// True when `text`, trimmed (and without one trailing full stop), is exactly one number.
pub fn is_bare_number(text: &str) -> bool {
    let t = text.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    let found = find_numbers(t);
    found.len() == 1 && found[0].start == 0 && found[0].end == t.len()
}

/// Parses a reference answer as a number (thousands separators allowed).
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let found = find_numbers(t);
    (found.len() == 1 && found[0].start == 0 && found[0].end == t.len()).then(|| found[0].value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_signed_and_separated_numbers() {
        let v: Vec<f64> = find_numbers("47-38 is -9, total 1,234.5 or 12,34").into_iter().map(|f| f.value).collect();
        assert_eq!(v, vec![47.0, 38.0, -9.0, 1234.5, 12.0, 34.0]);
        assert_eq!(last_number("The answer is 85."), Some(85.0));
        assert!(is_bare_number(" 85\n"));
        assert!(is_bare_number("-12."));
        assert!(!is_bare_number("85 apples"));
        assert_eq!(parse_number("1,000"), Some(1000.0));
        assert_eq!(last_number("no digits"), None);
    }
}
