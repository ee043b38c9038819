// The process-wide streaming-store mode (thermossl/stores.hpp). Compiled for the baseline ISA.
#include "thermossl/stores.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace thermossl {
namespace {

StreamingStores initial_mode() {
    const char* requested = std::getenv("THERMOSSL_STREAMING_STORES");
    StreamingStores mode = StreamingStores::kAuto;
    if (requested != nullptr) streaming_stores_from_name(requested, mode);  // unknown: auto
    return mode;
}

std::atomic<int>& mode_store() {
    static std::atomic<int> mode{static_cast<int>(initial_mode())};
    return mode;
}

/// "32768K" (sysfs) -> bytes; 0 if it does not parse.
std::int64_t parse_size(const std::string& text) {
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (end == text.c_str() || value <= 0) return 0;
    const char unit = *end;
    if (unit == 'K') return value * 1024;
    if (unit == 'M') return value * 1024 * 1024;
    if (unit == 'G') return value * 1024 * 1024 * 1024;
    return value;
}

std::int64_t detect_last_level_cache() {
    // sysfs gives the cache this core shares (an AMD EPYC's 32 MiB per core complex), where the
    // C library's sysconf may report the whole package's L3.
    std::int64_t best_level = 0, best_size = 0;
    for (int index = 0; index < 8; ++index) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
        std::ifstream level_file(dir + "level"), size_file(dir + "size"), type_file(dir + "type");
        std::string level_text, size_text, type_text;
        if (!(level_file >> level_text) || !(size_file >> size_text)) continue;
        if (type_file >> type_text && type_text == "Instruction") continue;
        const std::int64_t level = std::atoll(level_text.c_str());
        const std::int64_t size = parse_size(size_text);
        if (size > 0 && level > best_level) {
            best_level = level;
            best_size = size;
        }
    }
    if (best_size > 0) return best_size;
#if defined(_SC_LEVEL3_CACHE_SIZE)
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) return l3;
#endif
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 > 0) return l2;
#endif
    return std::int64_t{32} << 20;
}

}  // namespace

StreamingStores streaming_stores() {
    return static_cast<StreamingStores>(mode_store().load(std::memory_order_relaxed));
}

void set_streaming_stores(StreamingStores mode) { mode_store().store(static_cast<int>(mode), std::memory_order_relaxed); }

const char* streaming_stores_name(StreamingStores mode) {
    switch (mode) {
        case StreamingStores::kOn:
            return "on";
        case StreamingStores::kOff:
            return "off";
        default:
            return "auto";
    }
}

bool streaming_stores_from_name(const char* name, StreamingStores& mode) {
    for (const auto candidate : {StreamingStores::kAuto, StreamingStores::kOn, StreamingStores::kOff}) {
        if (std::strcmp(name, streaming_stores_name(candidate)) == 0) {
            mode = candidate;
            return true;
        }
    }
    return false;
}

std::int64_t last_level_cache_bytes() {
    static const std::int64_t bytes = detect_last_level_cache();
    return bytes;
}

std::int64_t auto_streaming_threshold_bytes() { return 2 * last_level_cache_bytes(); }

bool streams_output(std::int64_t bytes) {
    switch (streaming_stores()) {
        case StreamingStores::kOn:
            return true;
        case StreamingStores::kOff:
            return false;
        default:
            // twice the cache: a 2-core Intel Xeon VM with 480 MiB of L3 wrote a 786 MB softmax
            // faster with plain stores
            return bytes > auto_streaming_threshold_bytes();
    }
}

}  // namespace thermossl
