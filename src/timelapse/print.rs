//! A printer's print as its reports tell it, whatever the printer family: each trigger
//! ([`super::moonraker`], [`super::bambu`]) turns its printer's fields into a [`Report`] (the
//! fields that changed), and a [`Print`] says what that asks of the timelapses.

/// Where a print is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing printing.
    Idle,
    /// Printing, or paused mid-print.
    Printing,
    /// The print ended: `complete`, `cancelled` or `error`.
    Ended(&'static str),
}

/// What changed in a printer's report (`None`: not said this time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub phase: Option<Phase>,
    /// The print's file (an empty name clears it).
    pub file: Option<String>,
    pub layer: Option<u64>,
}

/// What a report asks of the printer's timelapses.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Start { file: Option<String> },
    Layer(u64),
    Stop(&'static str),
}

/// A printer's print, from its reports (partial: what a report leaves out keeps its value).
#[derive(Debug, Default)]
pub struct Print {
    phase: Option<Phase>,
    file: Option<String>,
    layer: Option<u64>,
}

impl Print {
    /// Take a report; what it means for a printer whose cameras are `recording` or not.
    pub fn update(&mut self, report: Report, recording: bool) -> Vec<Step> {
        if let Some(p) = report.phase {
            self.phase = Some(p);
        }
        if let Some(f) = report.file {
            self.file = (!f.is_empty()).then_some(f);
        }
        let mut steps = Vec::new();
        match self.phase {
            Some(Phase::Printing) if !recording => steps.push(Step::Start {
                file: self.file.clone(),
            }),
            Some(Phase::Ended(outcome)) if recording => {
                self.layer = None;
                return vec![Step::Stop(outcome)];
            }
            Some(Phase::Idle) if recording => {
                self.layer = None;
                return vec![Step::Stop("stopped")];
            }
            _ => {}
        }
        if let Some(n) = report.layer {
            if self.layer != Some(n) && self.phase == Some(Phase::Printing) {
                steps.push(Step::Layer(n));
            }
            self.layer = Some(n);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(phase: Option<Phase>, file: Option<&str>, layer: Option<u64>) -> Report {
        Report {
            phase,
            file: file.map(str::to_string),
            layer,
        }
    }

    #[test]
    fn reports_start_layer_and_stop_timelapses() {
        let mut p = Print::default();
        assert!(p.update(r(Some(Phase::Idle), Some(""), None), false).is_empty());
        assert_eq!(
            p.update(r(Some(Phase::Printing), Some("benchy.gcode"), Some(0)), false),
            vec![
                Step::Start {
                    file: Some("benchy.gcode".into())
                },
                Step::Layer(0)
            ]
        );
        assert_eq!(p.update(r(None, None, Some(1)), true), vec![Step::Layer(1)]);
        assert!(
            p.update(r(None, None, Some(1)), true).is_empty(),
            "the same layer again"
        );
        assert_eq!(
            p.update(r(Some(Phase::Ended("cancelled")), None, None), true),
            vec![Step::Stop("cancelled")]
        );
        assert!(
            p.update(r(Some(Phase::Ended("cancelled")), None, None), false)
                .is_empty(),
            "stopped already"
        );
        // A print under way when farmcam connects; then the printer goes idle without an end.
        let mut p = Print::default();
        assert_eq!(
            p.update(r(Some(Phase::Printing), Some("a.gcode"), None), false),
            vec![Step::Start {
                file: Some("a.gcode".into())
            }]
        );
        assert_eq!(
            p.update(r(Some(Phase::Idle), None, None), true),
            vec![Step::Stop("stopped")]
        );
    }
}
