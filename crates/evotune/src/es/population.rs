//! The members of one iteration: noise ids and signs, a pure function of (N, mirrored, iteration).
//!
//! Member noise ids are the member's index (plain sampling) or its pair index (mirrored sampling:
//! members `2k` and `2k+1` share noise id `k` with signs +1 and −1). The noise itself is keyed by
//! (run seed, iteration, noise id, tensor, element), see [`crate::es::noise`], so small ids are
//! enough: they never collide and read well in the trajectory log, and ε differs across
//! iterations and runs through the other parts of the key.

use crate::error::{Error, Result};

/// One member of an iteration: its index, the id of its noise stream and its sign (±1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub index: usize,
    pub noise_id: u32,
    pub sign: f32,
}

/// The members of one iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub iteration: u64,
    pub members: Vec<Member>,
}

/// Checks the population size: at least 2 members (z-scores of one reward are all zero), and
/// an even number when sampling is mirrored.
pub fn check_size(population: usize, mirrored: bool) -> Result<()> {
    if population < 2 {
        return Err(Error::EsConfig {
            field: "population",
            problem: format!("{population} members; at least 2 are needed to shape rewards"),
        });
    }
    if mirrored && population & 1 == 1 {
        return Err(Error::EsConfig {
            field: "population",
            problem: format!("{population} members with mirrored sampling; mirrored pairs need an even number"),
        });
    }
    Ok(())
}

/// The `population` members of `iteration`.
pub fn members(population: usize, mirrored: bool, iteration: u64) -> Population {
    let members = (0..population)
        .map(|index| {
            if mirrored {
                let sign = if index % 2 == 0 { 1.0 } else { -1.0 };
                Member { index, noise_id: (index / 2) as u32, sign }
            } else {
                Member { index, noise_id: index as u32, sign: 1.0 }
            }
        })
        .collect();
    Population { iteration, members }
}

/// One noise pass of the update: a noise id and the summed coefficient of the members using it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pass {
    pub noise_id: u32,
    pub coefficient: f32,
}

/// Groups members by noise id (in order of first appearance): coefficient = Σ sign·c over the
/// members sharing the id. A mirrored pair thus becomes one pass with c⁺ − c⁻; zero
/// coefficients are dropped (they add nothing).
pub fn passes(members: &[Member], coefficients: &[f32]) -> Vec<Pass> {
    let mut out: Vec<Pass> = Vec::with_capacity(members.len());
    for (m, &c) in members.iter().zip(coefficients) {
        match out.iter_mut().find(|p| p.noise_id == m.noise_id) {
            Some(p) => p.coefficient += m.sign * c,
            None => out.push(Pass { noise_id: m.noise_id, coefficient: m.sign * c }),
        }
    }
    out.retain(|p| p.coefficient != 0.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_members_pair_up() {
        let pop = members(4, true, 9);
        assert_eq!(pop.iteration, 9);
        let ids: Vec<(u32, f32)> = pop.members.iter().map(|m| (m.noise_id, m.sign)).collect();
        assert_eq!(ids, vec![(0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0)]);
        assert_eq!(members(4, true, 9), pop, "pure function of its inputs");
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(3, true).is_err());
        assert!(check_size(1, false).is_err());
        assert!(check_size(3, false).is_ok());
        assert!(check_size(4, true).is_ok());
    }

    #[test]
    fn mirrored_passes_take_the_difference() {
        let pop = members(4, true, 0);
        let p = passes(&pop.members, &[1.5, -0.5, 0.25, 0.25]);
        assert_eq!(p, vec![Pass { noise_id: 0, coefficient: 2.0 }]);
    }
}
