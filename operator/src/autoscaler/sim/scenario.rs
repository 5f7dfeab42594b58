//! Load scenarios as lists of sessions. Connections are sticky and long
//! lived, so the load is not a number per second but sessions that arrive,
//! stay on the pod that took them, and leave; a scenario generates them once
//! (seeded) and every policy replays the same list.
//!
//! Each scenario is one or more *populations* of users. Lifetimes are
//! log-normal with mean `L` and log-σ `σ` (whole seconds, at least one).
//! The `C(0)` sessions connected at second 0 are drawn from the steady
//! state (remaining lifetime `U × ℓ*`, `ℓ*` the length-biased lifetime,
//! log-normal with `μ + σ²`), so a flat curve starts flat. A population
//! with a nominal connection curve `C(t)` then arrives at the rate that
//! keeps the *expected* connected count on the curve:
//! `λ(t) = max(0, C(t) − E[sessions from before t still connected at t])`,
//! a discrete renewal equation solved once per scenario. (With exponential
//! lifetimes this is `C/L + dC/dt`; with log-normal ones that simpler rate
//! falls short on a ramp, most of all with a heavy tail.) Arrivals are
//! Poisson-distributed each second. Where `C` falls faster than sessions
//! end, `λ` is 0 and the count lags the curve: users leave when they leave.
//! A session's end second is fixed, whatever reconnections it goes
//! through. The formulas of each scenario are on [`Scenario`].

use std::ops::Range;

use super::rng::Rng;

/// Session lifetimes: log-normal with this mean and log-σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifetime {
    pub mean_seconds: f64,
    pub sigma: f64,
}

impl Lifetime {
    /// Mean 20 min, σ 1: the default for chat sessions.
    pub const CHAT: Self = Self {
        mean_seconds: 1200.0,
        sigma: 1.0,
    };

    fn mu(&self) -> f64 {
        self.mean_seconds.ln() - self.sigma * self.sigma / 2.0
    }

    /// A lifetime in seconds.
    pub fn draw(&self, rng: &mut Rng) -> f64 {
        (self.mu() + self.sigma * rng.normal()).exp()
    }

    /// The remaining lifetime of a session found connected in a steady
    /// state: uniform over a length-biased lifetime.
    pub fn draw_remaining(&self, rng: &mut Rng) -> f64 {
        let biased = (self.mu() + self.sigma * self.sigma + self.sigma * rng.normal()).exp();
        rng.unit() * biased
    }

    /// The probability that a session that arrived `k` seconds ago is
    /// still connected (its rounded lifetime exceeds `k`).
    pub fn survival(&self, k: u64) -> f64 {
        if k == 0 {
            return 1.0;
        }
        normal_cdf((self.mu() - (k as f64 + 0.5).ln()) / self.sigma)
    }

    /// The same for a session connected at second 0 (of the steady state):
    /// `E[(ℓ − x)⁺] / L`, closed-form for a log-normal.
    pub fn residual_survival(&self, k: u64) -> f64 {
        if k == 0 {
            return 1.0;
        }
        let x = k as f64 + 0.5;
        let (mu, sigma) = (self.mu(), self.sigma);
        let d1 = (mu + sigma * sigma - x.ln()) / sigma;
        let d2 = (mu - x.ln()) / sigma;
        (normal_cdf(d1) - x / self.mean_seconds * normal_cdf(d2)).max(0.0)
    }
}

/// The standard normal distribution function.
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Chebyshev fit of Numerical Recipes'
/// `erfcc`, fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// One group of users with its own arrivals and lifetimes.
struct Population {
    /// Sessions connected at second 0.
    initial: u64,
    /// Expected arrivals at each second (from 1 on).
    rates: Vec<f64>,
    lifetime: Lifetime,
    /// Every session of this population still connected at the start of
    /// this range leaves at a uniform second within it.
    leave: Option<Range<u64>>,
}

impl Population {
    /// Arrivals that keep the expected connected count on `nominal` (see
    /// the module documentation) over `seconds`.
    fn following(nominal: impl Fn(u64) -> f64, lifetime: Lifetime, seconds: u64) -> Self {
        let n = seconds as usize;
        let curve: Vec<f64> = (0..seconds).map(|t| nominal(t).max(0.0)).collect();
        let initial = curve.first().map_or(0.0, |c| c.round());
        let mut rates = vec![0.0; n];
        if curve.iter().all(|c| *c == curve[0]) {
            // Flat from a steady start: arrivals replace departures.
            rates[1..].fill(curve[0] / lifetime.mean_seconds);
        } else {
            let survival: Vec<f64> = (0..seconds).map(|k| lifetime.survival(k)).collect();
            for t in 1..n {
                let mut expected = initial * lifetime.residual_survival(t as u64);
                // Arrivals at 1..t, still connected t − u seconds later.
                for (rate, survives) in rates[1..t].iter().zip(survival[1..t].iter().rev()) {
                    expected += rate * survives;
                }
                rates[t] = (curve[t] - expected).max(0.0);
            }
        }
        Self {
            initial: initial as u64,
            rates,
            lifetime,
            leave: None,
        }
    }
}

/// Offered-load scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A day compressed into 2 h: `C(t) = 2000 + 38000 × (1 − cos(2πt/7200)) / 2`
    /// (2k to 40k and back), lifetimes mean 20 min, σ 1.
    Diurnal,
    /// 1 h: a base of 5000 (20 min, σ 1) and a crowd of 20000 more that
    /// arrives within 60 s from minute 20 (`C` ramps linearly), stays 20 min
    /// (its sessions that end are replaced), and leaves within 60 s from
    /// minute 41 (each at a uniform second of that minute, or earlier if its
    /// own lifetime ends first).
    FlashCrowd,
    /// 1 h around 20k moving ±15%: a base of 16000 long sessions (20 min,
    /// σ 1) and bursts of short ones (mean 60 s, σ 0.5) arriving at `B/60`
    /// per second, with `B` drawn uniformly in 0..8000 anew every minute
    /// (4000 in the first, so the run starts at 20k: 4 pods on target).
    /// It tests flapping.
    NoisyPlateau,
    /// 1.5 h with a heavy tail (mean 20 min, σ 1.75: median 4.3 min, but 3%
    /// of sessions last more than 2 h): 2000 for 5 min, a linear ramp to
    /// 30000 over 20 min, then a plateau. The old pods keep their long
    /// sessions: where stickiness hurts most.
    LongTail,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Self::Diurnal,
        Self::FlashCrowd,
        Self::NoisyPlateau,
        Self::LongTail,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Diurnal => "diurnal",
            Self::FlashCrowd => "flash-crowd",
            Self::NoisyPlateau => "noisy-plateau",
            Self::LongTail => "long-tail",
        }
    }

    /// Simulated seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Diurnal => 7200,
            Self::FlashCrowd | Self::NoisyPlateau => 3600,
            Self::LongTail => 5400,
        }
    }

    fn populations(self, seed: u64) -> Vec<Population> {
        let seconds = self.seconds();
        match self {
            Self::Diurnal => {
                let day = seconds as f64;
                vec![Population::following(
                    move |t| {
                        let phase = std::f64::consts::TAU * t as f64 / day;
                        2000.0 + 38_000.0 * (1.0 - phase.cos()) / 2.0
                    },
                    Lifetime::CHAT,
                    seconds,
                )]
            }
            Self::FlashCrowd => {
                let crowd = |t: u64| match t {
                    0..1200 => 0.0,
                    1200..1260 => 20_000.0 * (t - 1200) as f64 / 60.0,
                    1260..2460 => 20_000.0,
                    _ => 0.0,
                };
                let mut crowd = Population::following(crowd, Lifetime::CHAT, seconds);
                crowd.leave = Some(2460..2520);
                vec![
                    Population::following(|_| 5000.0, Lifetime::CHAT, seconds),
                    crowd,
                ]
            }
            Self::NoisyPlateau => {
                let burst = Lifetime {
                    mean_seconds: 60.0,
                    sigma: 0.5,
                };
                let mut rng = Rng::stream(seed, 100);
                // The first minute at the mean: the run starts at 20k.
                let levels: Vec<f64> = (0..seconds.div_ceil(60))
                    .map(|minute| {
                        let level = 8000.0 * rng.unit();
                        if minute == 0 { 4000.0 } else { level }
                    })
                    .collect();
                vec![
                    Population::following(|_| 16_000.0, Lifetime::CHAT, seconds),
                    Population {
                        initial: levels[0].round() as u64,
                        rates: (0..seconds)
                            .map(|t| levels[(t / 60) as usize] / burst.mean_seconds)
                            .collect(),
                        lifetime: burst,
                        leave: None,
                    },
                ]
            }
            Self::LongTail => vec![Population::following(
                |t| match t {
                    0..300 => 2000.0,
                    300..1500 => 2000.0 + 28_000.0 * (t - 300) as f64 / 1200.0,
                    _ => 30_000.0,
                },
                Lifetime {
                    mean_seconds: 1200.0,
                    sigma: 1.75,
                },
                seconds,
            )],
        }
    }

    /// The scenario's sessions under `seed` (the same for every policy).
    pub fn sessions(self, seed: u64) -> Sessions {
        let seconds = self.seconds();
        let mut spans = Vec::new();
        for (i, population) in self.populations(seed).into_iter().enumerate() {
            let mut rng = Rng::stream(seed, i as u64 + 1);
            let end = |start: u64, lifetime: f64, rng: &mut Rng| {
                let mut end = start + (lifetime.round() as u64).max(1);
                if let Some(leave) = &population.leave
                    && start < leave.start
                {
                    end = end.min(rng.between(leave.start, leave.end - 1));
                }
                end.max(start + 1)
            };
            for _ in 0..population.initial {
                let lifetime = population.lifetime.draw_remaining(&mut rng);
                let end = end(0, lifetime, &mut rng);
                spans.push((0, end));
            }
            for t in 1..seconds {
                for _ in 0..rng.poisson(population.rates[t as usize]) {
                    let lifetime = population.lifetime.draw(&mut rng);
                    let end = end(t, lifetime, &mut rng);
                    spans.push((t, end));
                }
            }
        }
        Sessions::new(seconds, spans)
    }
}

/// Sessions, each connected from its start second to (not including) its
/// end second, and the per-second indexes the world steps through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    pub seconds: u64,
    /// (start, end) seconds, sorted by start: the session's id is its index.
    spans: Vec<(u32, u32)>,
    /// Connected sessions at each second: the offered load, the same for
    /// every policy (a session waiting to reconnect is still offered).
    pub offered: Vec<u64>,
    /// `first[t]` is the first session that starts at or after `t`.
    first: Vec<u32>,
    /// Sessions that end at each second.
    ends: Vec<Vec<u32>>,
}

impl Sessions {
    /// From (start, end) seconds; sessions that start at or after `seconds` are dropped.
    pub fn new(seconds: u64, spans: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let clamp = |s: u64| s.min(u64::from(u32::MAX)) as u32;
        let mut spans: Vec<(u32, u32)> = spans
            .into_iter()
            .filter(|(start, _)| *start < seconds)
            .map(|(start, end)| (clamp(start), clamp(end.max(start + 1))))
            .collect();
        spans.sort_unstable();
        let n = seconds as usize;
        let mut first = vec![spans.len() as u32; n + 1];
        let mut ends = vec![Vec::new(); n];
        let mut change = vec![0i64; n + 1];
        for (id, (start, end)) in spans.iter().enumerate().rev() {
            first[*start as usize] = id as u32;
            change[*start as usize] += 1;
            if (*end as usize) < n {
                ends[*end as usize].push(id as u32);
                change[*end as usize] -= 1;
            }
        }
        // Seconds where nothing starts point at the next session that does.
        for t in (0..n).rev() {
            first[t] = first[t].min(first[t + 1]);
        }
        let mut connected = 0i64;
        let offered = change[..n]
            .iter()
            .map(|c| {
                connected += c;
                connected as u64
            })
            .collect();
        Self {
            seconds,
            spans,
            offered,
            first,
            ends,
        }
    }

    /// How many sessions there are (connected at some second of the run).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The sessions that start at second `t`.
    pub fn starting_at(&self, t: u64) -> Range<u32> {
        let t = t as usize;
        if t >= self.first.len() - 1 {
            return 0..0;
        }
        self.first[t]..self.first[t + 1]
    }

    /// The sessions that end at second `t`.
    pub fn ending_at(&self, t: u64) -> &[u32] {
        self.ends.get(t as usize).map_or(&[], Vec::as_slice)
    }

    /// Mean offered connections.
    pub fn mean_offered(&self) -> f64 {
        self.offered.iter().sum::<u64>() as f64 / self.offered.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "prints the offered curves"]
    fn print_offered() {
        for scenario in Scenario::ALL {
            let s = scenario.sessions(42);
            let points: Vec<String> = (0..s.offered.len())
                .step_by(300)
                .map(|t| format!("{}:{}", t, s.offered[t]))
                .collect();
            let (low, high) = s.offered[60..]
                .iter()
                .fold((u64::MAX, 0), |(l, h), c| (l.min(*c), h.max(*c)));
            println!(
                "{} sessions {} min {low} max {high}: {}",
                scenario.name(),
                s.len(),
                points.join(" ")
            );
        }
    }

    #[test]
    fn sessions_index_starts_ends_and_the_offered_load() {
        let sessions = Sessions::new(5, [(0, 2), (0, 9), (1, 3), (3, 4), (7, 8)]);
        assert_eq!(sessions.len(), 4, "the one starting at 7 is past the end");
        assert_eq!(sessions.starting_at(0), 0..2);
        assert_eq!(sessions.starting_at(1), 2..3);
        assert_eq!(sessions.starting_at(2), 3..3);
        assert_eq!(sessions.starting_at(3), 3..4);
        assert_eq!(sessions.starting_at(4), 4..4);
        assert_eq!(sessions.ending_at(2), &[0]);
        assert_eq!(sessions.offered, [2, 3, 2, 2, 1]);
    }

    #[test]
    fn scenarios_are_deterministic_and_follow_their_curves() {
        for scenario in Scenario::ALL {
            let sessions = scenario.sessions(42);
            assert_eq!(sessions, scenario.sessions(42), "{}", scenario.name());
            assert_eq!(sessions.offered.len() as u64, scenario.seconds());
        }
        assert_ne!(
            Scenario::NoisyPlateau.sessions(42),
            Scenario::NoisyPlateau.sessions(7)
        );
        let around = |sessions: &Sessions, t: usize, expected: f64, within: f64| {
            let got = sessions.offered[t] as f64;
            assert!(
                (got - expected).abs() <= within * expected,
                "second {t}: {got} connections, expected {expected} ± {within}"
            );
        };
        let diurnal = Scenario::Diurnal.sessions(42);
        around(&diurnal, 0, 2000.0, 0.01);
        around(&diurnal, 3600, 40_000.0, 0.05);
        let flash = Scenario::FlashCrowd.sessions(42);
        around(&flash, 1100, 5000.0, 0.05);
        around(&flash, 1800, 25_000.0, 0.05);
        around(&flash, 3000, 5000.0, 0.05);
        let noisy = Scenario::NoisyPlateau.sessions(42);
        let (low, high) = noisy
            .offered
            .iter()
            .fold((u64::MAX, 0), |(l, h), c| (l.min(*c), h.max(*c)));
        assert!(
            (16_000..18_500).contains(&low) && (21_500..24_500).contains(&high),
            "{low}..{high}"
        );
        around(&noisy, 0, 20_000.0, 0.2);
        let tail = Scenario::LongTail.sessions(42);
        around(&tail, 200, 2000.0, 0.05);
        around(&tail, 5300, 30_000.0, 0.1);
    }

    #[test]
    fn survival_functions_integrate_to_the_mean() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-3.0) - 0.001_349_9).abs() < 1e-6);
        for lifetime in [
            Lifetime::CHAT,
            Lifetime {
                mean_seconds: 1200.0,
                sigma: 1.75,
            },
        ] {
            // Σ P(rounded lifetime > k) is the mean rounded lifetime.
            let mean: f64 = (0..200_000).map(|k| lifetime.survival(k)).sum();
            assert!((mean / lifetime.mean_seconds - 1.0).abs() < 0.01, "{mean}");
            let residual: Vec<f64> = (0..5000).map(|k| lifetime.residual_survival(k)).collect();
            assert!(residual.windows(2).all(|w| w[1] <= w[0]));
            assert!(residual[1] > 0.99 && residual[4999] > 0.0);
        }
    }

    #[test]
    fn lifetimes_have_their_mean() {
        let mut rng = Rng::new(3);
        for lifetime in [
            Lifetime::CHAT,
            Lifetime {
                mean_seconds: 60.0,
                sigma: 0.5,
            },
        ] {
            let n = 40_000;
            let mean = (0..n).map(|_| lifetime.draw(&mut rng)).sum::<f64>() / n as f64;
            assert!(
                (mean / lifetime.mean_seconds - 1.0).abs() < 0.05,
                "{mean} for {lifetime:?}"
            );
        }
    }
}
