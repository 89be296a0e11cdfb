//! Prints the ES engine's throughput figures: `cargo run --release --example bench_es [d] [N]`
//! (defaults: d = 135e6, the default model's size, and N = 30). `evotune bench es` prints the same.

fn main() {
    let mut args = std::env::args().skip(1);
    let d = args.next().map_or(135_000_000, |a| a.parse().expect("d: a parameter count"));
    let n = args.next().map_or(30, |a| a.parse().expect("N: a population size"));
    println!("{}", evotune::es::bench::bench_es(d, n));
}
