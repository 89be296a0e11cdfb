//! `evotune bench generate|es`: benchmarks that print figures (never pass/fail).

use anyhow::Context;

use crate::args::{BenchArgs, BenchWhich};

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.which {
        BenchWhich::Generate { model } => {
            let (m, theta) = evotune::model::load(&model).with_context(|| format!("loading model {model}"))?;
            let report = evotune::model::bench::bench_generate(
                &m.llama,
                &theta,
                &evotune::model::bench::BenchOptions::default(),
            )?;
            println!("{report}");
        }
        BenchWhich::Es { dim, population } => {
            let report = evotune::es::bench::bench_es(dim, population);
            println!("{report}");
        }
    }
    Ok(())
}
