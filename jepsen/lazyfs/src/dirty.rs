//! The volatile part of one file: the byte ranges written since its last fsync and the smallest
//! size it was truncated to. Owns only bookkeeping; it never touches a file (see `durable`).

/// Unsynced changes to one file's data.
#[derive(Debug, Default, Clone)]
pub struct Dirty {
    /// Written ranges `[start, end)`, in write order; merged when they touch.
    ranges: Vec<(u64, u64)>,
    /// The smallest size the file was truncated to since its last fsync.
    trunc_min: Option<u64>,
}

/// Merge when this many separate ranges pile up (random writes), to bound memory.
const MERGE_AT: usize = 4096;

impl Dirty {
    /// A write of `len` bytes at `offset`.
    pub fn write(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = offset + len;
        if let Some(last) = self.ranges.last_mut() {
            if offset <= last.1 && end >= last.0 {
                last.0 = last.0.min(offset);
                last.1 = last.1.max(end);
                return;
            }
        }
        self.ranges.push((offset, end));
        if self.ranges.len() >= MERGE_AT {
            self.ranges = merged(std::mem::take(&mut self.ranges));
        }
    }

    /// The file's size was set to `size` (truncate or extend).
    pub fn truncate(&mut self, size: u64) {
        self.trunc_min = Some(self.trunc_min.map_or(size, |t| t.min(size)));
    }

    /// Sorted, non-overlapping written ranges.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        merged(self.ranges.clone())
    }

    pub fn trunc_min(&self) -> Option<u64> {
        self.trunc_min
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
        self.trunc_min = None;
    }
}

fn merged(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_merge_and_gaps_stay_apart() {
        let mut d = Dirty::default();
        d.write(0, 10);
        d.write(10, 5);
        d.write(100, 1);
        d.write(50, 60);
        assert_eq!(d.ranges(), vec![(0, 15), (50, 110)]);
        d.truncate(40);
        d.truncate(70);
        assert_eq!(d.trunc_min(), Some(40));
        d.clear();
        assert!(d.ranges().is_empty() && d.trunc_min().is_none());
    }
}
