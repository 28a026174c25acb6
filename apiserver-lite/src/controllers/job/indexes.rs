//! Completion indexes of Indexed jobs: `status.completedIndexes` as upstream writes it
//! (ascending, consecutive runs as ranges: "1,3-5,7") and which indexes still need a pod.

use std::collections::BTreeSet;

/// Parse "1,3-5,7"; entries that do not parse, or are not below `completions`, are dropped.
pub fn parse(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            set.extend((first.max(0)..=last.min(completions - 1)).filter(|i| *i >= 0));
        }
    }
    set
}

pub fn format(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

/// The lowest indexes below `completions` that neither completed nor have an active pod,
/// at most `room` of them.
pub fn to_create(completions: i32, completed: &BTreeSet<i32>, active: &BTreeSet<i32>, room: usize) -> Vec<i32> {
    (0..completions).filter(|i| !completed.contains(i) && !active.contains(i)).take(room).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let set = parse("1,3-5,7", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 3, 4, 5, 7]);
        assert_eq!(format(&set), "1,3-5,7");
        assert_eq!(format(&parse("0-9", 3)), "0-2");
        assert_eq!(format(&parse("", 3)), "");
        assert_eq!(format(&[2, 0, 1, 5].into_iter().collect()), "0-2,5");
    }

    #[test]
    fn pods_are_made_for_the_lowest_missing_indexes() {
        let completed = [0, 2].into_iter().collect();
        let active = [1].into_iter().collect();
        assert_eq!(to_create(6, &completed, &active, 2), [3, 4]);
        assert_eq!(to_create(3, &completed, &active, 5), Vec::<i32>::new());
    }
}
