// thermossl — how the CPU kernels write their large N x K outputs.
//
// A plain store to a line that is not in cache first reads the line from memory ("read for
// ownership") and writes it back when it is evicted: two memory transfers per output byte. A
// non-temporal ("streaming") store writes whole lines to memory without reading them: one
// transfer, but the output is not left in cache for whoever reads it next. row_softmax (and so
// gibbs_state) and the gradient of row_cross_entropy compute each output row in a per-thread
// staging row in cache and stream it out when the output is too large to stay in the last-level
// cache anyway: by default ("auto") when it is larger than twice the last-level cache of the core
// running the call. The outputs are the same bits either way. (log_softmax and the entropy
// gradient keep plain stores: streamed, they measured slower; docs/kernels.md, Round 9.)
//
// The mode is process-wide: "auto", "on" (every N x K output) or "off" (never); the environment
// variable THERMOSSL_STREAMING_STORES sets it at start ("auto" for a missing or unknown value).
#pragma once

#include <cstdint>

namespace thermossl {

enum class StreamingStores : int {
    kAuto = 0,  // outputs larger than twice the last-level cache
    kOn = 1,    // every N x K output
    kOff = 2,   // none
};

/// The mode in force.
StreamingStores streaming_stores();
/// Sets the mode for the whole process (not meant to be called while kernels run).
void set_streaming_stores(StreamingStores mode);
/// "auto", "on" or "off".
const char* streaming_stores_name(StreamingStores mode);
/// The mode named "auto", "on" or "off" into `mode`; false (mode untouched) for any other name.
bool streaming_stores_from_name(const char* name, StreamingStores& mode);
/// The size in bytes of the largest cache of the core's hierarchy (Linux: sysfs, the highest
/// level cache of cpu0; else the C library's report; 32 MiB where neither says).
std::int64_t last_level_cache_bytes();
/// The output size above which "auto" streams: twice last_level_cache_bytes() (an output about the
/// cache's size still leaves much of itself there for the reader that follows).
std::int64_t auto_streaming_threshold_bytes();
/// Whether an output of `bytes` is written by streaming stores in the mode in force.
bool streams_output(std::int64_t bytes);

}  // namespace thermossl
