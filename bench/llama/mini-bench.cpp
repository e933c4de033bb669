// mini-bench: replicates llama-bench's pp/tg methodology (test_prompt / test_gen, warmup,
// llama_memory_clear before each rep, random tokens, n_ctx = n_prompt + n_gen,
// n_batch 2048, n_ubatch 512, f16 KV, flash_attn auto) against the llama.cpp sources vendored
// in llama-cpp-sys-2 (which does not ship tools/llama-bench).
//
// usage: mini-bench -m model.gguf [-t 2] [-p 300] [-n 128] [-r 5] [--tp]
//   --tp : attach an explicit ggml threadpool (poll=50) like llama-bench does; default: none
//          (llama-cpp-2 never attaches one).
#include "llama.h"
#include "ggml.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

static uint64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}

static bool test_prompt(llama_context * ctx, int n_prompt, int n_batch, int n_threads) {
    llama_set_n_threads(ctx, n_threads, n_threads);
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> tokens(n_batch);
    int n_processed = 0;
    while (n_processed < n_prompt) {
        int n_tokens = std::min(n_prompt - n_processed, n_batch);
        tokens[0] = n_processed == 0 && llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : std::rand() % n_vocab;
        for (int i = 1; i < n_tokens; i++) tokens[i] = std::rand() % n_vocab;
        int res = llama_decode(ctx, llama_batch_get_one(tokens.data(), n_tokens));
        if (res != 0) { fprintf(stderr, "prompt decode failed %d\n", res); return false; }
        n_processed += n_tokens;
    }
    llama_synchronize(ctx);
    return true;
}

static bool test_gen(llama_context * ctx, int n_gen, int n_threads) {
    llama_set_n_threads(ctx, n_threads, n_threads);
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    llama_token token = llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : std::rand() % n_vocab;
    for (int i = 0; i < n_gen; i++) {
        int res = llama_decode(ctx, llama_batch_get_one(&token, 1));
        if (res != 0) { fprintf(stderr, "gen decode failed %d\n", res); return false; }
        llama_synchronize(ctx);
        token = std::rand() % n_vocab;
    }
    return true;
}

static void null_log(enum ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    std::string model_path;
    int n_threads = 2, n_prompt = 300, n_gen = 128, reps = 5, n_batch = 2048, n_ubatch = 512;
    bool use_tp = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() { return std::string(argv[++i]); };
        if (a == "-m") model_path = next();
        else if (a == "-t") n_threads = std::stoi(next());
        else if (a == "-p") n_prompt = std::stoi(next());
        else if (a == "-n") n_gen = std::stoi(next());
        else if (a == "-r") reps = std::stoi(next());
        else if (a == "-b") n_batch = std::stoi(next());
        else if (a == "-ub") n_ubatch = std::stoi(next());
        else if (a == "--tp") use_tp = true;
    }
    llama_log_set(null_log, nullptr);
    llama_backend_init();

    uint64_t t0 = now_ns();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    double load_ms = (now_ns() - t0) / 1e6;
    char desc[128]; llama_model_desc(model, desc, sizeof(desc));
    printf("model: %s, %.2f MiB, %.2f M params, load %.1f ms, system_info: %s\n", desc,
           llama_model_size(model) / 1024.0 / 1024.0, llama_model_n_params(model) / 1e6, load_ms,
           llama_print_system_info());
    printf("| test   | threads | n_batch | n_ubatch | tp  |            t/s |\n");
    printf("| ------ | ------: | ------: | -------: | --- | -------------: |\n");

    struct T { int p, g; };
    for (T t : { T{n_prompt, 0}, T{0, n_gen} }) {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = t.p + t.g;
        cp.n_batch = n_batch;
        cp.n_ubatch = n_ubatch;
        cp.type_k = GGML_TYPE_F16;
        cp.type_v = GGML_TYPE_F16;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
        cp.n_threads = n_threads;
        cp.n_threads_batch = n_threads;
        cp.no_perf = false;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "ctx failed\n"); return 1; }
        ggml_threadpool * tp = nullptr;
        if (use_tp) {
            ggml_threadpool_params tpp = ggml_threadpool_params_default(n_threads);
            tpp.poll = 50;
            tp = ggml_threadpool_new(&tpp);
            llama_attach_threadpool(ctx, tp, nullptr);
        }
        llama_memory_clear(llama_get_memory(ctx), false);
        // warmup (same as llama-bench)
        if (t.p > 0) test_prompt(ctx, t.p, n_batch, n_threads);
        if (t.g > 0) test_gen(ctx, 1, n_threads);
        std::vector<double> ts;
        for (int r = 0; r < reps; r++) {
            llama_memory_clear(llama_get_memory(ctx), false);
            uint64_t s = now_ns();
            if (t.p > 0 && !test_prompt(ctx, t.p, n_batch, n_threads)) return 1;
            if (t.g > 0 && !test_gen(ctx, t.g, n_threads)) return 1;
            double sec = (now_ns() - s) / 1e9;
            ts.push_back((t.p + t.g) / sec);
        }
        double avg = std::accumulate(ts.begin(), ts.end(), 0.0) / ts.size();
        double sq = 0; for (double v : ts) sq += (v - avg) * (v - avg);
        double sd = ts.size() > 1 ? std::sqrt(sq / (ts.size() - 1)) : 0;
        char name[32]; snprintf(name, sizeof name, t.p ? "pp%d" : "tg%d", t.p ? t.p : t.g);
        printf("| %-6s | %7d | %7d | %8d | %-3s | %7.2f ± %5.2f |\n", name, n_threads, n_batch, n_ubatch,
               use_tp ? "yes" : "no", avg, sd);
        llama_free(ctx);
        if (tp) ggml_threadpool_free(tp);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
