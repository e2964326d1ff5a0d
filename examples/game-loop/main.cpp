// main.cpp: a fixed-timestep game loop that spends at most a budget per frame on its characters'
// generations, all of them stepped together by r1_session_step_many.
//
// usage: game-loop MODEL [--hz 60] [--budget-ms 4] [--frames N] [--cancel-after N]
//                        [--max-tokens N] [--prompt TEXT] [--characters N] [--ignore-eos]
//                        [--quiet]
//
// Each of --characters (default 1) has its own session (its own conversation) on the one model.
// Each frame runs steps while the frame's r1 time is under the budget, every step one token for
// every character still talking (one shared forward pass: the model's weights are read once for
// all of them), then "renders" (prints the frame's timings) and sleeps to the next tick. A step
// is never interrupted, so a frame may overrun the budget by at most one step: the program
// measures the longest step and fails (exit 1) when the worst frame exceeds budget + longest
// step. Ctrl-C, or --cancel-after N frames, cancels every generation through r1_session_cancel()
// and the loop winds down cleanly.
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <r1.h>

namespace
{
using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t interrupted = 0;

void on_sigint(int)
{
    interrupted = 1;
}

double ms_between(Clock::time_point a, Clock::time_point b)
{
    return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Options {
    const char *model = nullptr;
    const char *prompt = "Tell me a story about a dragon.";
    double hz = 60.0, budget_ms = 4.0;
    long frames = 600, cancel_after = -1;
    int max_tokens = 256, characters = 1;
    bool quiet = false, ignore_eos = false;
};

bool parse(int argc, char **argv, Options &o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (!std::strcmp(a, "--quiet")) {
            o.quiet = true;
            continue;
        }
        if (!std::strcmp(a, "--ignore-eos")) {
            o.ignore_eos = true;
            continue;
        }
        if (a[0] != '-') {
            o.model = a;
            continue;
        }
        if (v == nullptr)
            return false;
        i++;
        if (!std::strcmp(a, "--hz"))
            o.hz = std::atof(v);
        else if (!std::strcmp(a, "--budget-ms"))
            o.budget_ms = std::atof(v);
        else if (!std::strcmp(a, "--frames"))
            o.frames = std::atol(v);
        else if (!std::strcmp(a, "--cancel-after"))
            o.cancel_after = std::atol(v);
        else if (!std::strcmp(a, "--max-tokens"))
            o.max_tokens = std::atoi(v);
        else if (!std::strcmp(a, "--prompt"))
            o.prompt = v;
        else if (!std::strcmp(a, "--characters"))
            o.characters = std::atoi(v);
        else
            return false;
    }
    return o.model != nullptr && o.hz > 0 && o.budget_ms > 0 && o.frames > 0 && o.characters >= 1 &&
           o.characters <= 256;
}

// One character: its conversation and sampler, what it said, and how its generation stands.
struct Character {
    r1_session *session = nullptr;
    r1_sampler *sampler = nullptr;
    std::string answer;
    r1_status st = R1_OK; // R1_OK while it is generating
    long tokens = 0;
};

// The r1 objects of the game, released in reverse order whatever happens.
struct Game {
    r1_model *model = nullptr;
    r1_gen_opts *opts = nullptr;
    std::vector<Character> characters;
    ~Game()
    {
        for (Character &c : characters) {
            r1_sampler_destroy(c.sampler);
            r1_session_destroy(c.session);
        }
        r1_gen_opts_destroy(opts);
        r1_model_destroy(model);
    }
};

r1_status start(const Options &o, Game &g)
{
    r1_status st = r1_model_load(&g.model, o.model, nullptr, nullptr);
    const int32_t role = R1_ROLE_USER;
    const char *contents[1] = {o.prompt};
    size_t len = 0;
    std::string prompt;
    if (st == R1_OK)
        st = r1_chat_render(g.model, &role, contents, 1, 1, nullptr, 0, &len);
    if (st == R1_ERR_BUFFER_TOO_SMALL) {
        prompt.resize(len + 1);
        st = r1_chat_render(g.model, &role, contents, 1, 1, &prompt[0], len + 1, &len);
    }
    if (st == R1_OK)
        st = r1_gen_opts_create(&g.opts);
    if (st == R1_OK)
        st = r1_gen_opts_set_max_tokens(g.opts, o.max_tokens);
    g.characters.resize(st == R1_OK ? (size_t)o.characters : 0);
    // Each character its own session and seed: the same question, its own way of answering.
    for (size_t i = 0; i < g.characters.size() && st == R1_OK; i++) {
        Character &c = g.characters[i];
        st = r1_session_create(&c.session, g.model, nullptr);
        if (st == R1_OK)
            st = r1_session_feed_text(c.session, prompt.data(), len, R1_TOKENIZE_PARSE_SPECIAL);
        if (st == R1_OK)
            st = r1_sampler_create(&c.sampler, 42 + i);
        if (st == R1_OK && o.ignore_eos) // only the limit or a cancel ends the generation
            st = r1_sampler_set_logit_bias(c.sampler, r1_token_eos(g.model), -INFINITY);
        if (st == R1_OK)
            st = r1_session_begin(c.session, c.sampler, g.opts);
    }
    return st;
}

// One step of every character still generating: one r1_session_step_many for all of them.
r1_status step_all(Game &g)
{
    std::vector<r1_session *> live;
    std::vector<Character *> who;
    for (Character &c : g.characters)
        if (c.st == R1_OK) {
            live.push_back(c.session);
            who.push_back(&c);
        }
    if (live.empty())
        return R1_DONE;
    std::vector<int32_t> ids(live.size()), kinds(live.size());
    std::vector<r1_status> sts(live.size());
    r1_status st =
        r1_session_step_many(live.data(), live.size(), ids.data(), kinds.data(), sts.data());
    if (st != R1_OK)
        return st;
    for (size_t i = 0; i < live.size(); i++) {
        Character &c = *who[i];
        c.st = sts[i];
        if (sts[i] < 0)
            return sts[i];
        c.tokens += sts[i] == R1_OK && ids[i] >= 0;
        const char *piece;
        size_t n;
        if (r1_session_piece(c.session, &piece, &n) == R1_OK && kinds[i] == R1_PIECE_ANSWER)
            c.answer.append(piece, n);
    }
    return R1_OK;
}

long total_tokens(const Game &g)
{
    long n = 0;
    for (const Character &c : g.characters)
        n += c.tokens;
    return n;
}
} // namespace

int main(int argc, char **argv)
{
    Options o;
    if (!parse(argc, argv, o)) {
        std::fprintf(stderr, "usage: game-loop MODEL [--hz 60] [--budget-ms 4] [--frames N] "
                             "[--cancel-after N] [--max-tokens N] [--prompt TEXT] "
                             "[--characters N] [--ignore-eos] [--quiet]\n");
        return 2;
    }
    std::signal(SIGINT, on_sigint);
    Game g;
    r1_status st = start(o, g);
    if (st != R1_OK) {
        std::fprintf(stderr, "game-loop: %s: %s\n", r1_status_name(st), r1_last_error());
        return 1;
    }
    const auto tick =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o.hz));
    double worst_frame_ms = 0, longest_step_ms = 0;
    long frame = 0;
    bool cancel_sent = false;
    auto next_tick = Clock::now();
    for (; frame < o.frames && st == R1_OK; frame++) {
        const auto frame_start = Clock::now();
        // Update: steps of every character while this frame's r1 time is under budget.
        int steps = 0;
        while (st == R1_OK && ms_between(frame_start, Clock::now()) < o.budget_ms) {
            const auto t0 = Clock::now();
            st = step_all(g);
            const double step_ms = ms_between(t0, Clock::now());
            longest_step_ms = step_ms > longest_step_ms ? step_ms : longest_step_ms;
            steps++;
        }
        const double frame_ms = ms_between(frame_start, Clock::now());
        worst_frame_ms = frame_ms > worst_frame_ms ? frame_ms : worst_frame_ms;
        // Render.
        if (!o.quiet)
            std::printf("frame %4ld: %2d steps, %6.3f ms in r1 (budget %.1f), %ld tokens\n", frame,
                        steps, frame_ms, o.budget_ms, total_tokens(g));
        // Input: a cancel request (Ctrl-C or the frame count) stops every generation; the next
        // step reports R1_CANCELLED for each.
        if (!cancel_sent && (interrupted || frame + 1 == o.cancel_after)) {
            for (Character &c : g.characters)
                if (r1_session_cancel(c.session) != R1_OK)
                    std::fprintf(stderr, "game-loop: cannot cancel: %s\n", r1_last_error());
            cancel_sent = true;
        }
        next_tick += tick;
        const auto now = Clock::now();
        if (next_tick < now)
            next_tick = now; // a late frame starts the next at once, without catching up
        std::this_thread::sleep_until(next_tick);
    }
    if (st < 0) {
        std::fprintf(stderr, "game-loop: %s: %s\n", r1_status_name(st), r1_last_error());
        return 1;
    }
    bool all_cancelled = true;
    for (size_t i = 0; i < g.characters.size(); i++) {
        const Character &c = g.characters[i];
        const char *end = c.st == R1_CANCELLED ? "cancelled" : c.st == R1_DONE ? "done" : "running";
        all_cancelled = all_cancelled && c.st == R1_CANCELLED;
        if (g.characters.size() == 1)
            std::printf("answer: %s\n", c.answer.c_str());
        else
            std::printf("character %zu (%ld tokens, %s): %s\n", i + 1, c.tokens, end,
                        c.answer.c_str());
    }
    const Character &first = g.characters[0];
    const char *end = first.st == R1_CANCELLED ? "cancelled"
                      : first.st == R1_DONE    ? "done"
                                               : "running";
    std::printf("%ld frames at %.0f Hz, %zu character%s, %ld tokens, generation %s\n", frame, o.hz,
                g.characters.size(), g.characters.size() == 1 ? "" : "s", total_tokens(g), end);
    std::printf("worst frame %.3f ms, longest step %.3f ms, budget %.3f ms\n", worst_frame_ms,
                longest_step_ms, o.budget_ms);
    // The loop only starts a step under budget, so no frame may exceed budget + one step; the
    // small slack covers the clock reads and piece copies outside the measured steps.
    const double slack_ms = 0.5;
    if (worst_frame_ms > o.budget_ms + longest_step_ms + slack_ms) {
        std::printf("FAIL: worst frame exceeds budget + longest step\n");
        return 1;
    }
    if (o.cancel_after > 0 && o.cancel_after < o.frames && !all_cancelled) {
        std::printf("FAIL: --cancel-after %ld did not cancel every generation\n", o.cancel_after);
        return 1;
    }
    return 0;
}
