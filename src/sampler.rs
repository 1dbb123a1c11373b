//! Choosing the next token from logits: repetition penalty, top-k, top-p, min-p, temperature,
//! then a draw from a seeded generator (the same seed gives the same text), or greedy argmax
//! when the temperature is 0. The order is llama.cpp's default sampler chain.

use crate::math::exp64;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off. Divides positive logits (multiplies negative ones) of recent tokens.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerParams {
    pub fn greedy() -> Self {
        SamplerParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
    /// Out-of-range values are an error rather than silently clamped.
    pub fn validate(&self) -> Result<(), String> {
        let ok = self.temperature.is_finite()
            && self.temperature >= 0.0
            && (0.0..=1.0).contains(&self.top_p)
            && self.top_p > 0.0
            && (0.0..=1.0).contains(&self.min_p)
            && self.repeat_penalty.is_finite()
            && self.repeat_penalty > 0.0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "bad sampling parameters: temperature {} (>= 0), top_p {} (0 < p <= 1), \
                 min_p {} (0..1), repeat penalty {} (> 0)",
                self.temperature, self.top_p, self.min_p, self.repeat_penalty
            ))
        }
    }
}

/// xoshiro256** seeded through splitmix64: small, fast and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

pub struct Sampler {
    pub params: SamplerParams,
    rng: Rng,
    cand: Vec<(f32, u32)>,
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        Sampler {
            rng: Rng::new(params.seed),
            params,
            cand: Vec::new(),
        }
    }

    pub fn reseed(&mut self, seed: u64) {
        self.params.seed = seed;
        self.rng = Rng::new(seed);
    }

    /// Pick the next token. `recent` is the token history (for the repetition penalty).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let p = &self.params;
        let penalized: Vec<u32> = if p.repeat_penalty != 1.0 {
            let mut r: Vec<u32> = recent[recent.len().saturating_sub(p.repeat_last_n)..].to_vec();
            r.sort_unstable();
            r.dedup();
            r
        } else {
            Vec::new()
        };
        let logit = |i: u32| {
            let v = logits[i as usize];
            if penalized.binary_search(&i).is_ok() {
                if v > 0.0 {
                    v / p.repeat_penalty
                } else {
                    v * p.repeat_penalty
                }
            } else {
                v
            }
        };
        if p.temperature == 0.0 {
            if penalized.is_empty() {
                return argmax(logits);
            }
            let mut best = 0u32;
            for i in 1..logits.len() as u32 {
                if logit(i) > logit(best) {
                    best = i;
                }
            }
            return best;
        }
        let cand = &mut self.cand;
        cand.clear();
        cand.extend((0..logits.len() as u32).filter_map(|i| {
            let v = logit(i);
            (!v.is_nan()).then_some((v, i))
        }));
        if cand.is_empty() {
            return 0;
        }
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        // top-k: partial selection, then sort only what is kept
        let k = if p.top_k == 0 {
            cand.len()
        } else {
            p.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, by_logit);
            cand.truncate(k);
        }
        cand.sort_unstable_by(by_logit);
        // probabilities at temperature 1 for top-p and min-p (llama.cpp applies temp last)
        let max = cand[0].0;
        let mut probs: Vec<f64> = cand.iter().map(|c| exp64((c.0 - max) as f64)).collect();
        let total: f64 = probs.iter().sum();
        let mut keep = cand.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, q) in probs.iter().enumerate() {
                cum += q / total;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            // the top candidate has probability ratio 1; keep those within min_p of it
            keep = probs[..keep]
                .iter()
                .take_while(|&&q| q >= p.min_p as f64)
                .count()
                .max(1);
        }
        cand.truncate(keep);
        // temperature, then draw
        probs.clear();
        probs.extend(
            cand.iter()
                .map(|c| exp64(((c.0 - max) / p.temperature) as f64)),
        );
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (q, c) in probs.iter().zip(cand.iter()) {
            r -= q;
            if r < 0.0 {
                return c.1;
            }
        }
        cand[cand.len() - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, 3.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let p = SamplerParams {
            repeat_penalty: 2.0,
            ..SamplerParams::greedy()
        };
        let mut s = Sampler::new(p);
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerParams {
                seed,
                top_k: 0,
                min_p: 0.0,
                ..Default::default()
            });
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplerParams {
            top_k: 1,
            ..Default::default()
        });
        for _ in 0..10 {
            assert_eq!(s.sample(&[0.0, 5.0, 4.9], &[]), 1);
        }
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // token 0 holds ~0.9 of the mass; top_p 0.5 keeps only it
        let mut s = Sampler::new(SamplerParams {
            top_p: 0.5,
            top_k: 0,
            min_p: 0.0,
            ..Default::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&[5.0, 2.0, 2.0, 1.0], &[]), 0);
        }
    }
}
