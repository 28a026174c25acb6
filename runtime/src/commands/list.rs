//! `list`: the containers under `--root`, as a table (runc's layout) or JSON.

use super::Error;
use crate::cli::{List, ListFormat};
use crate::container::Store;

pub fn list(store: &Store, args: &List) -> Result<(), Error> {
    let mut rows = Vec::new();
    for id in store.list()? {
        // A container removed while we list is simply not listed.
        let Ok(c) = store.load(&id) else { continue };
        let status = c.status(&store.dir(&id));
        let mut state = c.oci_state(status);
        state["owner"] = owner_name(c.owner_uid).into();
        rows.push(state);
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match args.format {
        ListFormat::Json => println!("{}", serde_json::Value::Array(rows)),
        ListFormat::Table => {
            let mut table = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec()];
            for r in &rows {
                let s = |k: &str| r[k].as_str().map(str::to_string).unwrap_or_else(|| r[k].to_string());
                table.push(vec![s("id"), s("pid"), s("status"), s("bundle"), s("created"), s("owner")]);
            }
            print!("{}", tabulate(&table));
        }
    }
    Ok(())
}

/// Columns as Go's tabwriter lays them out with runc's settings (minimum width 12, padding 3);
/// the last column is not padded.
fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count() + 3).max().unwrap_or(0).max(12))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_runc_layout() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from).to_vec(),
            ["c1", "2744", "running", "/tmp/rs", "2026-11-23T09:17:41.480160235Z", "root"].map(String::from).to_vec(),
        ];
        assert_eq!(
            tabulate(&rows),
            "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n\
             c1          2744        running     /tmp/rs     2026-11-23T09:17:41.480160235Z   root\n"
        );
    }
}
