// The output pool of the Python bindings: memory for the large arrays the CPU kernels return
// (Sinkhorn's q, softmax, gradients), kept when the array dies and handed to the next output of
// the same size.
//
// Why: an array above glibc's largest mmap threshold (32 MiB) is mapped fresh on every call and
// unmapped when freed, so every call pays the kernel's page faults and the zeroing of every page
// before the kernel writes its first element -- one extra write of the whole output, in fault
// handlers that serialise on the process's memory map. Measured on a 2-core Xeon VM: SwAV's
// codes at 4096x3000 float32 14.1 ms into a fresh q, 11.0 ms into a reused one; at 65536x3000
// 291 ms and 238 ms. A training loop asks for the same shapes every step, so the pool turns
// those faults into a cache hit after the first step (as PyTorch's caching allocator does for
// GPU memory).
//
// Policy: blocks of at least kMinBytes (smaller ones come from malloc, which reuses them itself),
// sizes rounded up to 2 MiB (huge-page friendly; a slightly smaller output reuses a block), at
// most `limit` bytes kept (least recently released evicted first), a block reused only for a
// request of its own size class. limit 0 disables the pool (and frees what it holds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(_WIN32)
#include <malloc.h>
#endif

namespace thermossl_bindings {

class OutputPool {
public:
    static constexpr std::size_t kMinBytes = std::size_t(4) << 20;  // 4 MiB
    static constexpr std::size_t kGranule = std::size_t(2) << 20;   // 2 MiB: a huge page

    struct Stats {
        std::size_t limit, cached_bytes, cached_blocks, hits, misses;
    };

    explicit OutputPool(std::size_t limit) : limit_(limit) {}
    OutputPool(const OutputPool&) = delete;
    OutputPool& operator=(const OutputPool&) = delete;
    ~OutputPool() { trim(0); }

    /// The size class of a request: what acquire allocates and release expects.
    static std::size_t block_size(std::size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }

    /// Whether a request of `bytes` goes through the pool.
    bool takes(std::size_t bytes) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return bytes >= kMinBytes && block_size(bytes) <= limit_;
    }

    /// A block of block_size(bytes) bytes, 2 MiB aligned: a cached one of that size if any (its
    /// old contents left in place), else a new allocation. Throws std::bad_alloc.
    void* acquire(std::size_t bytes) {
        const std::size_t size = block_size(bytes);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
                if (it->second == size) {
                    void* p = it->first;
                    cached_bytes_ -= size;
                    blocks_.erase(it);
                    ++hits_;
                    return p;
                }
            }
            ++misses_;
        }
        return allocate_block(size);
    }

    /// Takes back a block of acquire(bytes): kept (most recent first) while the pool holds at
    /// most `limit` bytes, the least recently released blocks freed to make room; freed at once
    /// when it alone exceeds the limit.
    void release(void* p, std::size_t bytes) {
        const std::size_t size = block_size(bytes);
        std::list<std::pair<void*, std::size_t>> evicted;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (size > limit_) {
                evicted.emplace_back(p, size);
            } else {
                blocks_.emplace_front(p, size);
                cached_bytes_ += size;
                while (cached_bytes_ > limit_) {
                    evicted.splice(evicted.end(), blocks_, std::prev(blocks_.end()));
                    cached_bytes_ -= evicted.back().second;
                }
            }
        }
        for (auto& block : evicted) free_block(block.first);  // outside the lock
    }

    /// Sets the limit (bytes kept at most), freeing cached blocks beyond it; returns the old one.
    std::size_t set_limit(std::size_t limit) {
        std::size_t old;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            old = limit_;
            limit_ = limit;
        }
        trim(limit);
        return old;
    }

    Stats stats() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return Stats{limit_, cached_bytes_, blocks_.size(), hits_, misses_};
    }

private:
    static void* allocate_block(std::size_t size) {
        void* p = nullptr;
#if defined(_WIN32)
        p = _aligned_malloc(size, kGranule);
#else
        if (posix_memalign(&p, kGranule, size) != 0) p = nullptr;
#endif
        if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
        // as numpy does for its large arrays: fewer faults and TLB misses (advice only)
        madvise(p, size, MADV_HUGEPAGE);
#endif
        return p;
    }

    static void free_block(void* p) {
#if defined(_WIN32)
        _aligned_free(p);
#else
        std::free(p);
#endif
    }

    /// Frees cached blocks, least recently released first, until at most `keep` bytes remain.
    void trim(std::size_t keep) {
        std::list<std::pair<void*, std::size_t>> evicted;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            while (cached_bytes_ > keep && !blocks_.empty()) {
                evicted.splice(evicted.end(), blocks_, std::prev(blocks_.end()));
                cached_bytes_ -= evicted.back().second;
            }
        }
        for (auto& block : evicted) free_block(block.first);
    }

    mutable std::mutex mutex_;
    std::list<std::pair<void*, std::size_t>> blocks_;  // cached: most recently released first
    std::size_t limit_;
    std::size_t cached_bytes_ = 0;
    std::size_t hits_ = 0, misses_ = 0;
};

}  // namespace thermossl_bindings
