// Bulk co-simulation harness of the systolic array (hw/tb/bulk.py builds and runs it).
//
// A Verilator main, linked against the cocotb build's compiled model (Vtop__ALL.a of
// sim_build/<top>-<hash>: one Verilator build per configuration serves both): it reads a
// whole run's stimulus from raw little-endian files in a directory, drives the array
// cycle by cycle in C++ with exactly the protocol and timing of the cocotb bench
// hw/tb/bench_array.py, and writes what it saw into raw files the host's scoreboard
// (hw/tb/bulk_checks.py) compares with the golden model and gemm_schedule.
// Why C++: cocotb costs ~45 us per clock edge of the 8x8 array; here one cycle is two
// eval() calls of the model and a few loads and stores.
//
// Usage: s2fp8_bulk STIMULUS_DIR RESULTS_DIR   (exit 0; 2 on a bad or missing file)
// Compile-time configuration (-D, from hw/tb/bulk.py): S2FP8_ROWS, S2FP8_COLS,
// S2FP8_ROW_BITS (bits of the row index in c.payload), S2FP8_TABLE_ENTRIES,
// S2FP8_REGISTERED_INPUTS (1: the model is hw.tb.bulk.RegisteredInputsArray, see Clock).
//
// Stimulus files (J jobs, B = sum of beats, L = sum of ready_len; see bench_array.py):
//   tables_a.u32, tables_b.u32 [J * TABLE_ENTRIES]   k.i64, beats.i64, rows.i64,
//   ready_len.i64 [J]   offer.i64 [B]   a_beats.u8 [B * ROWS]   b_beats.u8 [B * COLS]
//   ready.u8 [L]
// Result files: accept.i64 (cycle of each accepted beat, job-relative), pop.i64 (cycle
// of each result row), row_index.i64, row_values.u32 [rows * COLS], summary.txt
// ("stalled_job cycles sim_seconds": the job that stopped producing rows, -1 if none;
// clock cycles simulated after reset; seconds of the cycle loop).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

#ifndef S2FP8_ROWS
#error "S2FP8_ROWS, S2FP8_COLS, S2FP8_ROW_BITS, S2FP8_TABLE_ENTRIES come from hw/tb/bulk.py"
#endif

namespace {

constexpr int kRows = S2FP8_ROWS, kCols = S2FP8_COLS, kRowBits = S2FP8_ROW_BITS;
constexpr int kTableEntries = S2FP8_TABLE_ENTRIES;
constexpr int64_t kNever = int64_t(1) << 62;

struct BadFile {
    std::string message;
};

template <class T>
std::vector<T> load(const std::string& dir, const char* name, size_t expected = SIZE_MAX) {
    std::string path = dir + "/" + name;
    FILE* file = std::fopen(path.c_str(), "rb");
    if (!file) throw BadFile{"cannot open " + path};
    std::fseek(file, 0, SEEK_END);
    long bytes = std::ftell(file);
    std::fseek(file, 0, SEEK_SET);
    if (bytes < 0 || bytes % sizeof(T)) {
        std::fclose(file);
        throw BadFile{path + ": size not a multiple of the element size"};
    }
    std::vector<T> data(size_t(bytes) / sizeof(T));
    size_t got = data.empty() ? 0 : std::fread(data.data(), sizeof(T), data.size(), file);
    std::fclose(file);
    if (got != data.size()) throw BadFile{path + ": short read"};
    if (expected != SIZE_MAX && data.size() != expected)
        throw BadFile{path + ": " + std::to_string(data.size()) + " elements, expected " +
                      std::to_string(expected)};
    return data;
}

template <class T>
void save(const std::string& dir, const char* name, const std::vector<T>& data) {
    std::string path = dir + "/" + name;
    FILE* file = std::fopen(path.c_str(), "wb");
    if (!file) throw BadFile{"cannot write " + path};
    size_t put = data.empty() ? 0 : std::fwrite(data.data(), sizeof(T), data.size(), file);
    if (std::fclose(file) != 0 || put != data.size()) throw BadFile{"short write " + path};
}

// A port of any width from little-endian bytes (a lane per byte, lane 0 lowest).
template <class Port>
void put_bytes(Port& port, const uint8_t* bytes, int count) {
    if constexpr (std::is_integral_v<Port>) {
        uint64_t value = 0;
        std::memcpy(&value, bytes, count);   // little-endian host
        port = static_cast<Port>(value);
    } else {
        uint32_t* words = port.data();
        std::memset(words, 0, sizeof(port.m_storage));
        std::memcpy(words, bytes, count);
    }
}

// Bits [low, low + width) of a port of any width (width <= 32).
template <class Port>
uint32_t get_bits(const Port& port, int low, int width) {
    uint64_t mask = width >= 32 ? 0xFFFFFFFFull : ((uint64_t(1) << width) - 1);
    if constexpr (std::is_integral_v<Port>) {
        return width ? uint32_t((uint64_t(port) >> low) & mask) : 0;
    } else {
        const uint32_t* words = port.data();
        int word = low / 32, shift = low % 32;
        uint64_t pair = words[word];
        if (shift + width > 32) pair |= uint64_t(words[word + 1]) << 32;
        return uint32_t((pair >> shift) & mask);
    }
}

// One clock cycle in two eval() calls, ``settle`` (clock low) and ``rise`` (the edge).
// Bare array (the cocotb build's model): the outputs read after ``settle`` are this
// cycle's and ``rise`` samples the inputs. (The usual third, falling-edge eval is the next
// settle. Every eval() re-runs all logic fed by top-level inputs, and ``rst`` feeds every
// register's next state, so each call re-evaluates the whole array.)
// S2FP8_REGISTERED_INPUTS (hw.tb.bulk.RegisteredInputsArray, every input behind one
// register): ``rise`` hands this cycle's inputs to the array, whose outputs are then
// readable; ``settle`` is cheap, and only the clocked logic runs, once per cycle.
struct Clock {
    Vtop* top;
    int64_t steps = 0;                 // clock cycles after reset
    void settle() {
        top->clk = 0;
        top->eval();
    }
    void rise() {
        top->clk = 1;
        top->eval();
    }
#if S2FP8_REGISTERED_INPUTS
    void sample() { rise(); }          // after it: this cycle's outputs
    void finish() { settle(); }
#else
    void sample() { settle(); }
    void finish() { rise(); }
#endif
    void cycle() {
        sample();
        finish();
    }
};

int run(const std::string& in, const std::string& out) {
    auto k = load<int64_t>(in, "k.i64");
    const size_t jobs = k.size();
    auto beats = load<int64_t>(in, "beats.i64", jobs);
    auto rows = load<int64_t>(in, "rows.i64", jobs);
    auto ready_len = load<int64_t>(in, "ready_len.i64", jobs);
    auto tables_a = load<uint32_t>(in, "tables_a.u32", jobs * kTableEntries);
    auto tables_b = load<uint32_t>(in, "tables_b.u32", jobs * kTableEntries);
    int64_t total_beats = 0, total_ready = 0, total_rows = 0;
    for (size_t j = 0; j < jobs; ++j) {
        total_beats += beats[j];
        total_ready += ready_len[j];
        total_rows += rows[j];
    }
    auto offer = load<int64_t>(in, "offer.i64", total_beats);
    auto a_beats = load<uint8_t>(in, "a_beats.u8", total_beats * kRows);
    auto b_beats = load<uint8_t>(in, "b_beats.u8", total_beats * kCols);
    auto ready = load<uint8_t>(in, "ready.u8", total_ready);

    std::vector<int64_t> accept, pop, row_index;
    std::vector<uint32_t> row_values;
    accept.reserve(total_beats);
    pop.reserve(total_rows);
    row_index.reserve(total_rows);
    row_values.reserve(total_rows * kCols);

    VerilatedContext context;
    Clock h{new Vtop(&context)};
    Vtop* top = h.top;
    auto start = std::chrono::steady_clock::now();
    top->clk = 0;
    top->rst = 1;
    top->a___05Fvalid = top->b___05Fvalid = 0;
    top->eval();                                 // clock low before the first edge
    for (int i = 0; i < 2; ++i) h.cycle();      // the cocotb benches hold reset 2 edges
    top->rst = 0;

    int64_t stalled = -1, offset = 0, ready_offset = 0;
    for (size_t j = 0; j < jobs && stalled < 0; ++j) {
        top->k = uint32_t(k[j]);
        top->a___05Fvalid = top->b___05Fvalid = 0;
        top->c___05Fready = 1;
        for (int address = 0; address < kTableEntries; ++address) {
            top->table_a___05Fen = top->table_b___05Fen = 1;
            top->table_a___05Faddr = top->table_b___05Faddr = uint8_t(address);
            top->table_a___05Fdata = tables_a[j * kTableEntries + address];
            top->table_b___05Fdata = tables_b[j * kTableEntries + address];
            h.cycle();
        }
        top->table_a___05Fen = top->table_b___05Fen = 0;
        h.steps += kTableEntries;

        const int64_t job_beats = beats[j], rows_wanted = rows[j], mask_len = ready_len[j];
        const uint8_t* mask = ready.data() + ready_offset;
        const int64_t* job_offer = offer.data() + offset;
        int64_t next_offer = job_beats ? job_offer[0] : kNever;
        const int64_t limit = 100 * (job_beats + 1000) + mask_len +
                              (job_beats ? job_offer[job_beats - 1] : 0);
        int64_t beat = 0, rows_seen = 0, cycle = 0, presented = -1;
        while (true) {
            const bool offered = cycle >= next_offer;
            if (offered && presented != beat) {
                put_bytes(top->a___05Fpayload, &a_beats[(offset + beat) * kRows], kRows);
                put_bytes(top->b___05Fpayload, &b_beats[(offset + beat) * kCols], kCols);
                presented = beat;
            }
            top->a___05Fvalid = top->b___05Fvalid = offered;
            const bool ready_now = cycle >= mask_len || mask[cycle];
            top->c___05Fready = ready_now;
            h.sample();                           // this cycle's a.ready, c.valid, c.payload
            const bool accepted = offered && (top->a___05Fready & 1);
            if (ready_now && (top->c___05Fvalid & 1)) {
                row_index.push_back(get_bits(top->c___05Fpayload, 0, kRowBits));
                for (int lane = 0; lane < kCols; ++lane)
                    row_values.push_back(get_bits(top->c___05Fpayload, kRowBits + 32 * lane, 32));
                pop.push_back(cycle);
                ++rows_seen;
            }
            h.finish();
            if (accepted) {
                accept.push_back(cycle);
                ++beat;
                next_offer = beat < job_beats ? job_offer[beat] : kNever;
            }
            ++cycle;
            if (rows_seen == rows_wanted && beat == job_beats) break;
            if (cycle > limit) {                  // lost rows: the host reports them
                std::fprintf(stderr, "job %zu: %lld of %lld result rows, %lld of %lld beats "
                             "after %lld cycles\n", j, (long long)rows_seen,
                             (long long)rows_wanted, (long long)beat, (long long)job_beats,
                             (long long)cycle);
                stalled = int64_t(j);
                break;
            }
        }
        h.steps += cycle;
        offset += job_beats;
        ready_offset += mask_len;
    }
    top->a___05Fvalid = top->b___05Fvalid = 0;
    top->final();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                         .count();
    delete top;

    save(out, "accept.i64", accept);
    save(out, "pop.i64", pop);
    save(out, "row_index.i64", row_index);
    save(out, "row_values.u32", row_values);
    std::string summary = std::to_string(stalled) + " " + std::to_string(h.steps) + " " +
                          std::to_string(seconds) + "\n";
    std::vector<char> text(summary.begin(), summary.end());
    save(out, "summary.txt", text);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s STIMULUS_DIR RESULTS_DIR\n", argv[0]);
        return 2;
    }
    try {
        return run(argv[1], argv[2]);
    } catch (const BadFile& error) {
        std::fprintf(stderr, "s2fp8_bulk: %s\n", error.message.c_str());
        return 2;
    }
}
