//! `evotune fetch-model`: put the default model into the cache (a no-op when it is there).

use anyhow::Context;

pub fn run() -> anyhow::Result<()> {
    let path = evotune::model::fetch::fetch_default_model().context("fetching the default model")?;
    println!("{}", path.display());
    Ok(())
}
