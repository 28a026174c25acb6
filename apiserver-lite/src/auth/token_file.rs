//! kube-apiserver's static token file (`--token-auth-file`): CSV lines of
//! `token,user,uid[,"group1,group2"]`. A field may be quoted (`"..."`, with `""` for a
//! quote) so the group list can hold commas; blank lines are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// One record of the file, the user a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// Read and parse the token file at `path`, token → record.
pub fn load(path: &Path) -> Result<HashMap<String, TokenRecord>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, reason)| TokenFileError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// Parse the file's text; an error is (1-based line, reason).
pub fn parse(text: &str) -> Result<HashMap<String, TokenRecord>, (usize, String)> {
    let mut tokens = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let fields = split_csv(raw).map_err(|reason| (line, reason))?;
        if fields.len() < 3 {
            return Err((
                line,
                format!(
                    "want at least 3 fields (token,user,uid), got {}",
                    fields.len()
                ),
            ));
        }
        let token = fields[0].trim();
        if token.is_empty() {
            return Err((line, "empty token".to_string()));
        }
        let user = fields[1].trim();
        if user.is_empty() {
            return Err((line, "empty user name".to_string()));
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let record = TokenRecord {
            user: user.to_string(),
            uid: fields[2].trim().to_string(),
            groups,
        };
        // kube-apiserver lets a later duplicate win, with a warning.
        if tokens.insert(token.to_string(), record).is_some() {
            tracing::warn!(line, "duplicate token in token file; the later line wins");
        }
    }
    Ok(tokens)
}

/// Split one CSV record (RFC 4180 quoting, no multi-line fields).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            (false, c) => {
                field.push(c);
                at_field_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err("text after a closing quote".to_string());
                }
            }
            (true, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".to_string());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_uids_and_quoted_groups() {
        let tokens =
            parse("abc,alice,1001,\"dev,ops\"\n\n  \ndef,bob,1002\nghi,carol,1003,viewers\n")
                .unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(
            tokens["abc"],
            TokenRecord {
                user: "alice".into(),
                uid: "1001".into(),
                groups: vec!["dev".into(), "ops".into()]
            }
        );
        assert!(tokens["def"].groups.is_empty());
        assert_eq!(tokens["ghi"].groups, vec!["viewers".to_string()]);
    }

    #[test]
    fn escaped_quotes_and_later_duplicates_win() {
        let tokens = parse("t,\"a \"\"b\"\"\",u\nt,second,u2\n").unwrap();
        assert_eq!(tokens["t"].user, "second");
        let tokens = parse("t,\"a \"\"b\"\"\",u\n").unwrap();
        assert_eq!(tokens["t"].user, "a \"b\"");
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        assert_eq!(parse("ok,u,1\nonly,two\n").unwrap_err().0, 2);
        assert_eq!(parse(",u,1\n").unwrap_err().0, 1);
        assert_eq!(parse("t,,1\n").unwrap_err().0, 1);
        assert!(
            parse("t,u,1,\"open\n")
                .unwrap_err()
                .1
                .contains("unterminated")
        );
        assert!(
            parse("t,\"u\"x,1\n")
                .unwrap_err()
                .1
                .contains("closing quote")
        );
    }

    #[test]
    fn load_names_the_missing_file() {
        let err = load(Path::new("/nonexistent/tokens.csv")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokens.csv"), "{err}");
    }
}
