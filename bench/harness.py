"""The shared harness of the CPU comparison benchmarks (bench/compare.py and bench/compare_*.py).

What every kernel family needs, written once:

- options: the command-line options (one table; a family script takes the subset it uses, with
  the same flags as compare.py), and their checks;
- peers: torch, POT and scipy, imported by the sections that use them, None where not installed
  (their table cells then show "-" and the header says so);
- timing: medians of wall time, the contenders of a table row interleaved round by round;
  slow-peer medians that fit a time budget;
- the machine header: CPU model, cores, SIMD level thermossl ran at, OpenMP and torch threads,
  library versions, load average, and the core clock measured in the run (for cycles/element);
- the read-bandwidth yardstick: ``a.sum(axis=1)`` in numpy (one thread) and ``t.sum(dim=1)``
  in torch (``TORCH_THREADS`` threads), one read of the matrix and one write of a row vector;
- the benchmark data (energies, labels, cosine scores) and the agreement checks of the codes;
- markdown tables.

Cycles per element: no hardware cycle counter is assumed (in a VM ``perf stat -e cycles`` is
often "<not supported>"). The core clock is measured in the run by timing a chain of dependent
register-register integer adds (one cycle of latency each on every x86-64 core) in a few bytes
of machine code run through ctypes, best of several short trials; /proc/cpuinfo's "cpu MHz"
(the nominal clock a VM reports, not the boost clock) is the fallback and is printed beside
it. cycles/element = median wall time x clock x the OpenMP threads thermossl may use / elements:
core cycles spent per element, including any time the threads waited for a core.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import mmap
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import thermossl

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TORCH_THREADS = 2
SEED = 20240611
EMBED_DIM = 128


# ----------------------------------------------------------------------------- options
@dataclass
class Option:
    """One command-line option: its argparse spelling, and for a size list its two defaults."""

    dest: str
    flags: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)
    quick: str | None = None  # size lists: the default with --quick
    full: str | None = None  # size lists: the default without
    convert: object = None  # text -> value, applied after parsing (raises SystemExit on bad text)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.flags, dest=self.dest, **self.kwargs)


def size_option(flag: str, what: str, full: str, quick: str) -> Option:
    """A ROWSxCOLS[,ROWSxCOLS...] list; None on the command line means the (quick) default."""
    return Option(flag.lstrip("-").replace("-", "_"), (flag,), dict(
        default=None, help=f"{what}: ROWSxCOLS list (default {full}; {quick} with --quick)"),
        quick=quick, full=full, convert=lambda text: parse_sizes(text, flag))


REPEATS = Option("repeats", ("--repeats",), dict(
    type=int, default=7, help="timed calls per measurement (median; default 7)"))
QUICK = Option("quick", ("--quick",), dict(
    action="store_true", help="tiny sizes for every kernel and 3 repeats: runs in well under a minute"))
SLOW_REPEATS = Option("slow_repeats", ("--slow-repeats",), dict(
    type=int, default=3,
    help="timed calls of the slow peers (POT; median; default 3, fewer when a call is long: see --pot-budget)"))
POT_BUDGET = Option("pot_budget", ("--pot-budget",), dict(
    type=float, default=900.0,
    help="seconds: sela does not run POT to tolerance when one run is predicted to take longer "
         "(it times --pot-measure-iters iterations instead); also caps the POT calls of one row (default 900)"))
DEVICE = Option("device", ("--device",), dict(
    choices=("cpu", "cuda"), default="cpu",
    help="cuda: run bench/compare_cuda.py instead (torch CUDA peers, CUDA events)"))


def build_parser(description: str, options: list[Option]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    seen = set()
    for option in options:
        if option.dest not in seen:  # families may share an option (xent and ledger: --xent-sizes)
            option.add_to(parser)
            seen.add(option.dest)
    return parser


def parse_sizes(text: str, flag: str = "--sizes") -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            rows, cols = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"{flag}: expected ROWSxCOLS[,ROWSxCOLS...], got {item!r}") from None
        if rows <= 0 or cols <= 0:
            raise SystemExit(f"{flag}: dimensions must be positive, got {item!r}")
        sizes.append((rows, cols))
    return sizes


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, options: list[Option]) -> argparse.Namespace:
    """Check the parsed options and fill in what depends on --quick: size lists become lists of
    (rows, cols); with --quick the repeats are capped at 3; slow_repeats never exceeds repeats."""
    quick = getattr(args, "quick", False)
    for name, low in (("repeats", 1), ("slow_repeats", 1), ("pot_measure_iters", 1)):
        if getattr(args, name, low) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}")
    if not getattr(args, "pot_budget", 1.0) > 0:
        parser.error("--pot-budget must be > 0")
    for option in options:
        if option.full is not None and getattr(args, option.dest) is None:
            setattr(args, option.dest, option.quick if quick else option.full)
        if option.convert is not None and isinstance(getattr(args, option.dest), str):
            setattr(args, option.dest, option.convert(getattr(args, option.dest)))
    args.requested_repeats = args.repeats  # --device cuda passes it on uncapped (compare_cuda's own --quick)
    args.repeats = min(args.repeats, 3) if quick else args.repeats
    if hasattr(args, "slow_repeats"):
        args.slow_repeats = min(args.slow_repeats, args.repeats)
    return args


def run_cuda(kernels: list[str], quick: bool, repeats: int) -> int:
    """--device cuda: bench/compare_cuda.py on the kernels it has (torch CUDA peers, CUDA events)."""
    sys.path.insert(0, BENCH_DIR)
    import compare_cuda

    chosen = [k for k in kernels if k in compare_cuda.KERNELS]
    if not chosen:
        raise SystemExit(f"--device cuda: compare_cuda.py runs {','.join(compare_cuda.KERNELS)}, got {','.join(kernels)}")
    return compare_cuda.main((["--quick"] if quick else []) + ["--repeats", str(repeats), "--kernels", ",".join(chosen)])


def family_main(family, argv=None) -> int:
    """Command line of one family's script: its options (the same flags as compare.py), its section."""
    parser = build_parser(family.__doc__.split("\n\n")[0], family.OPTIONS)
    args = resolve(parser, parser.parse_args(argv), family.OPTIONS)
    if getattr(args, "device", "cpu") == "cuda":
        return run_cuda([family.KERNEL], args.quick, args.requested_repeats)
    family.section(args)
    return 0


# ----------------------------------------------------------------------------- peers
# A peer's name -> the module the benchmarks call and the distribution whose version is printed.
PEER_MODULES = {"scipy": ("scipy.special", "scipy"), "torch": ("torch", "torch"), "ot": ("ot", "POT")}


@functools.lru_cache(maxsize=None)
def peer(name: str):
    """The module of a peer library ("scipy": scipy.special, "torch", "ot": POT), or None when it
    is not installed (its table cells then show "-"). Imported on the first call, once: a family
    imports only its own peers (torch, the read yardstick's second library, for every family).
    torch runs TORCH_THREADS threads."""
    try:
        module = __import__(PEER_MODULES[name][0], fromlist=["_"])
    except ImportError:
        return None
    if name == "torch":
        module.set_num_threads(TORCH_THREADS)
    return module


def peer_text(name: str) -> str:
    """"torch 2.13.0 (2 threads)", or "torch not installed (its columns show -)"."""
    module = peer(name)
    label = PEER_MODULES[name][1]
    if module is None:
        return f"{label} not installed (its columns show -)"
    version = sys.modules[PEER_MODULES[name][0].split(".")[0]].__version__
    return f"{label} {version}" + (f" ({TORCH_THREADS} threads)" if name == "torch" else "")


def pot_text() -> str:
    ot = peer("ot")
    return f"POT {ot.__version__}" if ot is not None else "POT not installed (its columns show -)"


def slow_peer_text(repeats: int, slow_repeats: int, budget_s: float) -> str:
    return (f"thermossl and torch: median of {repeats} calls after a check call; POT (slow): median of "
            f"{slow_repeats} calls after its check call (--slow-repeats), fewer where its calls of a row would "
            f"exceed --pot-budget {budget_s:g} s; n= in the cells is the number of timed calls")


# ----------------------------------------------------------------------------- timing
def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in ms over `repeats` calls (after the caller's warm-up call)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return 1e3 * statistics.median(times)


def interleaved_ms(contenders: dict, repeats: int) -> dict:
    """Median wall time in ms of each contender over `repeats` rounds (after the caller's warm-up
    calls); a None contender gets None.

    Each round calls every contender once, the order rotated from round to round, so a slow drift
    of a shared machine (its load, its memory bandwidth, the clock) hits every contender alike
    instead of the one that happened to be timed while it lasted; the ratios of the table (kernel
    against peer, kernel against the read yardstick) are then taken over the same stretch of time.
    """
    names = [name for name, fn in contenders.items() if fn is not None]
    times: dict = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            result = contenders[name]()
            times[name].append(time.perf_counter() - t0)
            del result
    return {name: (1e3 * statistics.median(times[name]) if name in times else None) for name in contenders}


def timed_once(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, 1e3 * (time.perf_counter() - t0)


def slow_median_ms(fn, repeats: int, first_ms: float, budget_s: float) -> tuple[float, int]:
    """Median ms of a slow peer: `repeats` calls, fewer (at least 1) when the first (check) call
    took `first_ms` and that many would not fit in budget_s."""
    n = max(1, min(repeats, int(budget_s * 1e3 // max(first_ms, 1e-9))))
    return median_ms(fn, n), n


# ----------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpuinfo_mhz() -> float | None:
    """The first "cpu MHz" of /proc/cpuinfo (in a VM: the nominal clock, not the boost clock)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# x86-64 System V machine code of  uint64 chain(uint64 n, uint64 inc): n times, ADD_CHAIN
# dependent `add rax, rsi` (1 cycle of latency each, rsi unknown to the renamer), then the loop
# counter (dec rdi; jnz: off the chain, it runs beside it). Returns n * ADD_CHAIN * inc.
ADD_CHAIN = 64
_CHAIN_CODE = (
    b"\x31\xc0"  # xor eax, eax
    + b"\x48\x01\xf0" * ADD_CHAIN  # loop: add rax, rsi   (x ADD_CHAIN)
    + b"\x48\xff\xcf"  # dec rdi
    + b"\x0f\x85" + (-(9 + 3 * ADD_CHAIN)).to_bytes(4, "little", signed=True)  # jnz loop
    + b"\xc3"  # ret
)


@functools.lru_cache(maxsize=None)
def _add_chain():
    """The add chain as a ctypes function, or None where it cannot run (not x86-64 Linux, or
    the system refuses executable anonymous memory)."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_CHAIN_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        chain = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)(address)
        chain._page = page  # keep the code mapped as long as the function lives
        if chain(10, 3) != 10 * ADD_CHAIN * 3:
            return None
        return chain
    except (OSError, ValueError, AttributeError):
        return None


@dataclass
class Clock:
    hz: float | None  # None: no clock, no cycles column values
    how: str


def measure_clock(trials: int = 25, trial_s: float = 1e-3) -> Clock:
    """The core clock of the thread running now: the fastest of `trials` timed add chains of about
    `trial_s` each (the fastest is the one least interrupted); else /proc/cpuinfo's MHz."""
    mhz = cpuinfo_mhz()
    cpuinfo = f"/proc/cpuinfo reports {mhz:.0f} MHz" if mhz else "/proc/cpuinfo reports no MHz"
    chain = _add_chain()
    if chain is not None:
        n = 1000
        while True:  # size a trial to about trial_s
            t0 = time.perf_counter()
            chain(n, 1)
            if time.perf_counter() - t0 >= trial_s / 4 or n > 1 << 30:
                break
            n *= 4
        best = 0.0
        for _ in range(trials):
            t0 = time.perf_counter()
            chain(n, 1)
            best = max(best, n * ADD_CHAIN / (time.perf_counter() - t0))
        return Clock(best, f"{best / 1e9:.2f} GHz measured in this run (fastest of {trials} timed chains of "
                           f"{n * ADD_CHAIN:,} dependent 1-cycle integer adds); {cpuinfo}")
    if mhz:
        return Clock(mhz * 1e6, f"{mhz / 1e3:.2f} GHz as /proc/cpuinfo reports it (nominal: not measured, the "
                                "add-chain clock cannot run here; a boost clock makes the cycles an underestimate)")
    return Clock(None, "unknown (no add-chain clock here and no MHz in /proc/cpuinfo): cycles not reported")


@functools.lru_cache(maxsize=None)
def openmp_threads() -> tuple[int, str]:
    """Threads thermossl's kernels may use: omp_get_max_threads() of the OpenMP runtime its
    extension links (looked up through that library, so torch's own runtime is not asked)."""
    core = thermossl._core
    if not getattr(core, "openmp", False):
        return 1, "built without OpenMP"
    try:
        return int(ctypes.CDLL(core.__file__).omp_get_max_threads()), "omp_get_max_threads() of its runtime"
    except (OSError, AttributeError):
        pass
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    return usable_cores(), "assumed one per usable core"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# cpp/src/cpu/rows.hpp kParallelMinElements: a pass over a smaller matrix runs on one thread.
PARALLEL_MIN_ELEMENTS = 1 << 15


def kernel_threads(matrix_elements: int) -> int:
    """Threads a thermossl pass over a matrix of this many elements runs (as pass_threads in
    cpp/src/cpu/rows.hpp, leaving out its rarer limit of one thread per tile of rows)."""
    return openmp_threads()[0] if matrix_elements >= PARALLEL_MIN_ELEMENTS else 1


def cycles_per_element(ms: float | None, clock: Clock, rows: int, cols: int, passes: int = 1) -> float | None:
    """Core cycles per element (per pass) of a kernel that took `ms` on a rows x cols matrix:
    wall time x clock x the threads the kernel runs / (passes x rows x cols)."""
    if clock.hz is None or ms is None:
        return None
    return ms * 1e-3 * clock.hz * kernel_threads(rows * cols) / (passes * rows * cols)


def fmt_cycles(ms: float | None, clock: Clock, rows: int, cols: int, passes: int = 1) -> str:
    """The cycles/elem cell: cycles_per_element, '-' without a clock."""
    c = cycles_per_element(ms, clock, rows, cols, passes)
    return "-" if c is None else fmt_num(c, 2)


def machine_report(clock: Clock, peer_names: tuple[str, ...] = ("torch",)) -> str:
    """The header of a section: the machine, the libraries (numpy and the section's peers) and
    threads, the clock."""
    flags = cpu_flags()
    isa = ", ".join(f"{name} {'yes' if flag in flags else 'no'}"
                    for name, flag in (("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"))) \
        if flags else "CPU flags unknown"
    try:
        load = "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        load = "load average unknown"
    threads, how = openmp_threads()
    lines = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({usable_cores()} usable by this process); {isa}; "
        f"{load} at the start of this section",
        f"- thermossl {thermossl.__version__} at SIMD level {thermossl.simd_level()} (levels this CPU runs: "
        f"{', '.join(thermossl._core.simd_levels())}), {threads} OpenMP threads ({how})",
        f"- Python {platform.python_version()}, numpy {np.__version__}, "
        + ", ".join(peer_text(name) for name in peer_names),
        f"- clock: {clock.how}; thermossl cycles/elem = median wall time x clock x threads / elements: core cycles, "
        f"counting any time the threads waited for a core ({threads} threads; 1 below {PARALLEL_MIN_ELEMENTS} "
        "elements, as thermossl's passes)",
    ]
    stores = thermossl.streaming_stores_info()
    lines.append(f"- N x K outputs of softmax and the cross-entropy gradient: streaming stores '{stores['mode']}' "
                 f"(last-level cache {stores['last_level_cache_bytes'] / 2**20:g} MiB; 'auto' streams outputs above "
                 f"{stores['auto_threshold_bytes'] / 2**20:g} MiB)")
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "THERMOSSL_SIMD",
                                      "THERMOSSL_STREAMING_STORES") if k in os.environ}
    if env:
        lines.append("- env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(lines)


def section_header(title: str, peer_names: tuple[str, ...]) -> Clock:
    """Print a section's title and the machine header; return the clock measured for it."""
    clock = measure_clock()
    print(title)
    print(machine_report(clock, peer_names))
    return clock


# ----------------------------------------------------------------------------- formatting
def fmt_num(v: float, decimals: int) -> str:
    """Fixed decimals, or 2 significant digits where fixed would round a nonzero value to 0
    (tiny sizes: "0.042x", not "0.0x")."""
    text = f"{v:.{decimals}f}"
    return f"{v:.2g}" if v != 0 and float(text) == 0 else text


def fmt_ms(v):
    return "-" if v is None else fmt_num(v, 2)


def fmt_ms_n(ms, n):
    return "-" if ms is None else f"{fmt_num(ms, 2)} (n={n})"


def fmt_x(num, den):
    return "-" if num is None or den is None else fmt_num(num / den, 1) + "x"


def fmt_pct(part: float, whole: float) -> str:
    return fmt_num(100 * part / whole, 0) + "%"


def gbs(nbytes: int, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


def markdown_table(rows: list[dict]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- read yardstick
def read_contenders(a: np.ndarray, t, prefix: str = "read") -> dict:
    """The read yardsticks on `a` as interleaved_ms contenders, each called once here as its
    warm-up: f"{prefix}" numpy a.sum(axis=1), f"{prefix}_torch" torch t.sum(dim=1) (None without
    torch)."""
    a.sum(axis=1)
    if t is not None:
        t.sum(dim=1)
    return {prefix: lambda: a.sum(axis=1),
            f"{prefix}_torch": (lambda: t.sum(dim=1)) if t is not None else None}


def read_row(a: np.ndarray, read_ms: float, torch_read_ms: float | None) -> dict:
    """One row of the yardstick table (bytes: one read of a, one write of its row vector)."""
    rows, cols = a.shape
    nbytes = a.nbytes + rows * a.itemsize
    return {
        "yardstick": "sum(axis=1)",
        "size": f"{rows}x{cols}",
        "dtype": a.dtype.name,
        "numpy ms": fmt_ms(read_ms),
        "numpy GB/s": fmt_num(gbs(nbytes, read_ms), 2),
        f"torch ({TORCH_THREADS} thr) ms": fmt_ms(torch_read_ms),
        f"torch ({TORCH_THREADS} thr) GB/s": "-" if torch_read_ms is None else fmt_num(gbs(nbytes, torch_read_ms), 2),
    }


def best_read_gbs(a: np.ndarray, read_ms: float, torch_read_ms: float | None) -> float:
    nbytes = a.nbytes + a.shape[0] * a.itemsize
    return gbs(nbytes, min(v for v in (read_ms, torch_read_ms) if v is not None))


def torch_view(a: np.ndarray):
    """torch.from_numpy(a) (shares a's memory), or None without torch."""
    torch = peer("torch")
    return torch.from_numpy(a) if torch is not None else None


# ----------------------------------------------------------------------------- data and checks
def make_data(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """3 * N(0, 1) values (energies of the logsumexp, cross-entropy and ledger rows)."""
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((rows, cols), dtype=dtype)
    a *= 3
    return a


def make_labels(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """Row-stochastic q: softmax of N(0, 1) rows, in dtype."""
    rng = np.random.default_rng([SEED, rows, cols, 2])
    q = rng.standard_normal((rows, cols))
    q -= q.max(axis=1, keepdims=True)
    np.exp(q, out=q)
    q /= q.sum(axis=1, keepdims=True)
    return q.astype(dtype)


COSINE_DATA_TEXT = (f"data E = -(X @ P.T), X (N x {EMBED_DIM}) and P (K x {EMBED_DIM}) random, rows L2-normalised "
                    "(negative cosine scores), C-contiguous; uniform marginals")


def cosine_energies(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """E = -(X @ P.T): X (rows x 128) and P (cols x 128) random, rows L2-normalised, in dtype."""
    rng = np.random.default_rng([SEED, rows, cols])
    x = rng.standard_normal((rows, EMBED_DIM))
    p = rng.standard_normal((cols, EMBED_DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    e = x.astype(dtype) @ p.astype(dtype).T
    np.negative(e, out=e)
    return e


def row_relative_diff(q: np.ndarray, ref: np.ndarray) -> float:
    """max_iy |q_iy - ref_iy| / max_y ref_iy, in float64, a row block at a time (no N x K temporaries
    of float64 beyond one block)."""
    worst = 0.0
    step = max(1, (1 << 22) // max(1, q.shape[1]))
    for i0 in range(0, q.shape[0], step):
        a = np.asarray(q[i0 : i0 + step], dtype=np.float64)
        b = np.asarray(ref[i0 : i0 + step], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b) / np.max(b, axis=1, keepdims=True))))
    return worst


def check_codes(name: str, got: np.ndarray, ref: np.ndarray, limit: float, label: str) -> float:
    if got.shape != ref.shape:
        raise SystemExit(f"ABORT ({label}): {name}: shape {got.shape} vs {ref.shape}")
    diff = row_relative_diff(got, ref)
    if not diff <= limit:
        raise SystemExit(
            f"ABORT ({label}): {name}: max |diff| / row max = {diff:.3g} > {limit:g}"
        )
    return diff
