//! Kubernetes' `$(VAR)` references in env values, commands and args: `$(NAME)` becomes the
//! value of an earlier variable, `$$` escapes a `$`, and a reference to an unknown variable
//! (or an unterminated one) stays as written.

/// `input` with its references replaced through `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// [`expand`] against `(name, value)` pairs; the last definition of a name wins.
pub fn expand_with(input: &str, env: &[(String, String)]) -> String {
    expand(input, |name| env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "one".into()), ("B".into(), "two".into()), ("A".into(), "uno".into())]
    }

    #[test]
    fn references_are_replaced_and_the_last_definition_wins() {
        assert_eq!(expand_with("$(A)-$(B)", &env()), "uno-two");
        assert_eq!(expand_with("x$(B)y", &env()), "xtwoy");
    }

    #[test]
    fn unknown_and_unterminated_references_stay() {
        assert_eq!(expand_with("$(C) $(A", &env()), "$(C) $(A");
        assert_eq!(expand_with("$A $", &env()), "$A $");
    }

    #[test]
    fn a_doubled_dollar_escapes() {
        assert_eq!(expand_with("$$(A) $$$(B)", &env()), "$(A) $two");
    }
}
