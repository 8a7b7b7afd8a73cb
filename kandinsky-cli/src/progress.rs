//! Progress on stderr: indicatif bars on a terminal, plain lines otherwise, nothing with
//! `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kandinsky_pipeline::Event;
use kandinsky_pipeline::hub::DownloadProgress;

enum Mode {
    Quiet,
    Lines,
    Bars,
}

/// Draws the progress of downloads, loading, prior and decoder steps and decoding.
pub struct Reporter {
    mode: Mode,
    start: Instant,
    /// The bar or spinner being drawn and what it counts.
    current: Option<(String, ProgressBar)>,
}

impl Reporter {
    /// Bars when stderr is a terminal, lines when not, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Self {
            mode,
            start: Instant::now(),
            current: None,
        }
    }

    /// Prints a line (above the bars on a terminal).
    pub fn line(&mut self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                let elapsed = self.start.elapsed().as_secs_f64();
                let mut err = std::io::stderr();
                let _ = writeln!(err, "[{elapsed:7.1} s] {text}");
                let _ = err.flush();
            }
            Mode::Bars => match &self.current {
                Some((_, bar)) => bar.println(text),
                None => eprintln!("{text}"),
            },
        }
    }

    /// A pipeline event.
    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Loading(component) => self.spinner(&format!("loading {component}")),
            Event::PriorStep(s) => self.steps("prior", s.step, s.of),
            Event::DecoderStep(s) => self.steps("decoder", s.step, s.of),
            Event::Decoding => self.spinner("decoding"),
            Event::Loaded(_) => {}
        }
    }

    /// Ends whatever is drawn.
    pub fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }

    fn replace(&mut self, label: &str, bar: ProgressBar) {
        if let Some((_, old)) = self.current.take() {
            old.finish();
        }
        self.current = Some((label.to_string(), bar));
    }

    fn spinner(&mut self, message: &str) {
        if !matches!(self.mode, Mode::Bars) {
            return self.line(message);
        }
        let bar = ProgressBar::new_spinner().with_message(message.to_string());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        self.replace(message, bar);
    }

    fn steps(&mut self, label: &str, step: usize, of: usize) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => self.line(&format!("{label} step {step}/{of}")),
            Mode::Bars => {
                if self.current.as_ref().is_none_or(|(l, _)| l != label) {
                    let bar = ProgressBar::new(of as u64).with_prefix(label.to_string());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>8} [{bar:30}] {pos}/{len} steps {elapsed} (eta {eta})",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    self.replace(label, bar);
                }
                if let Some((_, bar)) = &self.current {
                    bar.set_position(step as u64);
                }
            }
        }
    }
}

impl DownloadProgress for Reporter {
    fn start(&mut self, repo: &str, file: &str, size: usize) {
        let mb = size as f64 / 1e6;
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => self.line(&format!("downloading {repo}/{file} ({mb:.1} MB)")),
            Mode::Bars => {
                let bar = ProgressBar::new(size as u64).with_prefix(file.to_string());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} (eta {eta})",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                self.replace(file, bar);
            }
        }
    }

    fn advance(&mut self, bytes: usize) {
        if let Some((_, bar)) = &self.current {
            bar.inc(bytes as u64);
        }
    }

    fn finish(&mut self) {
        Reporter::finish(self);
    }
}
