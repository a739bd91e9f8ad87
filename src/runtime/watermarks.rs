//! Watermarks per input and their combination at the match operator.

use crate::time::{Duration, EventTime, Watermark};

/// Tracks each input's bounded out-of-orderness watermark and combines
/// them: the operator's watermark is the minimum over inputs that are
/// neither idle nor finished, never moves backwards, and a finished input
/// counts as +infinity.
#[derive(Clone, Debug)]
pub struct Watermarks {
    inputs: Vec<InputState>,
    combined: Watermark,
}

#[derive(Clone, Debug)]
struct InputState {
    lag: Duration,
    max_seen: Option<EventTime>,
    finished: bool,
    idle: bool,
}

impl InputState {
    fn watermark(&self) -> Watermark {
        match self.max_seen {
            _ if self.finished => Watermark::MAX,
            Some(max_seen) => Watermark::bounded(max_seen, self.lag),
            None => Watermark::MIN,
        }
    }
}

impl Watermarks {
    /// One input per lag, nothing seen yet.
    pub fn new(lags: impl IntoIterator<Item = Duration>) -> Self {
        let inputs = lags
            .into_iter()
            .map(|lag| InputState {
                lag,
                max_seen: None,
                finished: false,
                idle: false,
            })
            .collect();
        Self {
            inputs,
            combined: Watermark::MIN,
        }
    }

    /// The operator's watermark.
    pub fn current(&self) -> Watermark {
        self.combined
    }

    /// The watermark of one input.
    pub fn input(&self, input: usize) -> Watermark {
        self.inputs[input].watermark()
    }

    /// Records an event at `time` on `input`; returns the new combined
    /// watermark if it advanced.
    pub fn observe(&mut self, input: usize, time: EventTime) -> Option<Watermark> {
        let state = &mut self.inputs[input];
        state.idle = false;
        state.max_seen = Some(state.max_seen.map_or(time, |seen| seen.max(time)));
        self.recombine()
    }

    /// Marks `input` as ended: it holds nothing back any more.
    pub fn finish(&mut self, input: usize) -> Option<Watermark> {
        self.inputs[input].finished = true;
        self.recombine()
    }

    /// Marks `input` idle (excluded from the minimum) or active again.
    pub fn set_idle(&mut self, input: usize, idle: bool) -> Option<Watermark> {
        self.inputs[input].idle = idle;
        self.recombine()
    }

    /// The newest event time seen on `input`.
    pub fn max_seen(&self, input: usize) -> Option<EventTime> {
        self.inputs.get(input).and_then(|state| state.max_seen)
    }

    /// Puts back what a checkpoint kept: each input's newest event time,
    /// whether it had ended and whether it was idle, and the combined
    /// watermark.
    pub fn restore(&mut self, inputs: &[(Option<EventTime>, bool, bool)], combined: Watermark) {
        for (state, &(max_seen, finished, idle)) in self.inputs.iter_mut().zip(inputs) {
            state.max_seen = max_seen;
            state.finished = finished;
            state.idle = idle;
        }
        self.combined = combined;
    }

    /// Moves the combined watermark up to `to`, whatever the inputs say:
    /// for when every input is idle and the wall clock takes over. Returns
    /// the new watermark if it advanced.
    pub fn advance(&mut self, to: Watermark) -> Option<Watermark> {
        (to > self.combined).then(|| {
            self.combined = to;
            to
        })
    }

    fn recombine(&mut self) -> Option<Watermark> {
        // With every input idle there is nothing to take the minimum of:
        // the watermark stays where it is.
        let minimum = self
            .inputs
            .iter()
            .filter(|input| !input.idle)
            .map(InputState::watermark)
            .min()?;
        (minimum > self.combined).then(|| {
            self.combined = minimum;
            minimum
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: i64) -> EventTime {
        EventTime::from_millis(ms)
    }

    fn at(ms: i64) -> Watermark {
        Watermark::bounded(EventTime::from_millis(ms + 1), Duration::ZERO)
    }

    #[test]
    fn the_slowest_input_holds_the_watermark_back() {
        let mut watermarks = Watermarks::new([Duration::ZERO, Duration::from_millis(1_000)]);
        assert_eq!(
            watermarks.observe(0, ms(5_000)),
            None,
            "the other input has seen nothing"
        );
        assert_eq!(watermarks.observe(1, ms(3_000)), Some(at(1_999)));
        assert_eq!(watermarks.observe(1, ms(9_000)), Some(at(4_999)));
        assert_eq!(watermarks.input(1), at(7_999));
    }

    #[test]
    fn out_of_order_events_never_move_it_back() {
        let mut watermarks = Watermarks::new([Duration::ZERO]);
        watermarks.observe(0, ms(5_000));
        assert_eq!(watermarks.observe(0, ms(1_000)), None);
        assert_eq!(watermarks.current(), at(4_999));
    }

    #[test]
    fn finished_inputs_count_as_infinity() {
        let mut watermarks = Watermarks::new([Duration::ZERO, Duration::ZERO]);
        watermarks.observe(0, ms(2_000));
        assert_eq!(watermarks.finish(1), Some(at(1_999)));
        assert_eq!(watermarks.finish(0), Some(Watermark::MAX));
    }

    #[test]
    fn idle_inputs_are_excluded_until_they_speak() {
        let mut watermarks = Watermarks::new([Duration::ZERO, Duration::ZERO]);
        watermarks.observe(0, ms(2_000));
        assert_eq!(watermarks.set_idle(1, true), Some(at(1_999)));
        assert_eq!(watermarks.set_idle(0, true), None, "all idle: it stays");
        assert_eq!(
            watermarks.observe(1, ms(1_000)),
            None,
            "rejoining lower does not move it back"
        );
        assert_eq!(watermarks.current(), at(1_999));
    }
}
