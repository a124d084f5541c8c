//! The nginx variables a directive's value uses (`$name`, `${name}`), so
//! that an unknown one can be reported with the directive's name (nginx
//! itself names only the variable).

/// The variable names in `value`, lowercased, in order.
pub fn variable_names(value: &[u8]) -> Vec<Vec<u8>> {
    let name_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(dollar) = rest.iter().position(|&b| b == b'$') {
        rest = &rest[dollar + 1..];
        let (name, after) = match rest.strip_prefix(b"{") {
            Some(braced) => match braced.iter().position(|&b| b == b'}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => break,
            },
            None => {
                let end = rest
                    .iter()
                    .position(|b| !name_byte(b))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        // `$1` and other captures are not named variables
        if !name.is_empty() && !name[0].is_ascii_digit() {
            names.push(name.to_ascii_lowercase());
        }
        rest = after;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_values() {
        let names = |v: &str| -> Vec<String> {
            variable_names(v.as_bytes())
                .into_iter()
                .map(|n| String::from_utf8(n).unwrap())
                .collect()
        };
        assert_eq!(names("/srv/$host/x"), ["host"]);
        assert_eq!(names("/srv/${Host}x-$arg_a.$1"), ["host", "arg_a"]);
        assert_eq!(names("/plain"), Vec::<String>::new());
        assert_eq!(names("$"), Vec::<String>::new());
        assert_eq!(names("${unclosed"), Vec::<String>::new());
    }
}
