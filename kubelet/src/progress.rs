//! The pull progress display: one indicatif bar per downloading layer, on a terminal only.
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use images::digest::Digest;
use images::pull::{NoProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

/// Bars when stderr is a terminal, otherwise nothing.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bars { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()) })
    } else {
        Box::new(NoProgress)
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl Progress for Bars {
    fn start(&self, layer: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(short(layer).to_string());
        self.bars.lock().unwrap().insert(layer.clone(), bar);
    }
    fn advance(&self, layer: &Digest, bytes: u64) {
        if let Some(bar) = self.bars.lock().unwrap().get(layer) {
            bar.inc(bytes);
        }
    }
    fn finish(&self, layer: &Digest, downloaded: bool) {
        match self.bars.lock().unwrap().remove(layer) {
            Some(bar) => bar.finish_with_message("done"),
            None if !downloaded => {
                let _ = self.multi.println(format!("{} already stored", short(layer)));
            }
            None => {}
        }
    }
}
