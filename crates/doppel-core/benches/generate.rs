//! Local generation speed through Doppel's own path (`llm.rs`: llama.cpp via `llama-cpp-2`, the
//! sampler chain of every answer): time to first token, prompt and generation tokens per second.
//!
//! `bench/generate` runs this beside `mini-bench` (llama-bench's method, built from the same
//! vendored llama.cpp sources) on the same GGUF. Arguments (cargo adds `--bench`, ignored):
//! `MODEL PROMPT_TOKENS GENERATED_TOKENS THREADS ROUNDS`.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let default_model = std::env::var_os("DOPPEL_MODEL_CACHE")
        .map(|c| PathBuf::from(c).join(doppel_core::bench::DEFAULT_CHAT_MODEL))
        .unwrap_or_default();
    let model = args.first().map_or(default_model, PathBuf::from);
    let number = |i: usize, default: usize| -> Result<usize, Box<dyn Error>> {
        Ok(args.get(i).map(|a| a.parse()).transpose()?.unwrap_or(default))
    };
    let (prompt, generate, threads, rounds) =
        (number(1, 300)?, number(2, 128)?, number(3, 2)?, number(4, 5)?);
    let runs =
        doppel_core::bench::bench_generation(&model, prompt, generate, threads as i32, rounds)?;
    let mean = |f: &dyn Fn(&doppel_core::bench::GenerationTimes) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len() as f64
    };
    let spread = |f: &dyn Fn(&doppel_core::bench::GenerationTimes) -> f64| {
        let m = mean(f);
        (runs.iter().map(|r| (f(r) - m).powi(2)).sum::<f64>() / (runs.len().max(2) - 1) as f64)
            .sqrt()
    };
    println!(
        "| doppel | {threads} | pp{prompt} {:.2} ± {:.2} t/s | tg{generate} {:.2} ± {:.2} t/s | first token {:.0} ± {:.0} ms |",
        mean(&|r| r.prompt_per_s),
        spread(&|r| r.prompt_per_s),
        mean(&|r| r.generate_per_s),
        spread(&|r| r.generate_per_s),
        mean(&|r| r.first_token.as_secs_f64() * 1000.0),
        spread(&|r| r.first_token.as_secs_f64() * 1000.0),
    );
    Ok(())
}
