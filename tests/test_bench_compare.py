"""bench/compare.py and its per-family scripts run, and print tables that parse.

Subprocesses run the scripts as a user would, at tiny sizes: compare.py with every kernel and the
peers (scipy, torch, POT) that are installed, and each family's script on its own with the peers
hidden (their cells must read "-" and the header must say so, not crash). The harness's option
checks, clock and cycles arithmetic are checked in-process.
"""
from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import thermossl

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TINY = "64x50"
FAMILY_SIZE_FLAGS = {"logsumexp": "--sizes", "swav": "--swav-sizes", "sela": "--sela-sizes",
                     "xent": "--xent-sizes", "ledger": "--xent-sizes", "softmax": "--xent-sizes"}
PEER_MODULES = {"scipy": "scipy.special", "torch": "torch", "POT": "ot"}
# Runs a script with the peers made unimportable (None in sys.modules makes `import` fail).
HIDE_PEERS = ("import runpy, sys\n"
              "for name in ('torch', 'ot', 'scipy', 'scipy.special'):\n"
              "    sys.modules[name] = None\n"
              "sys.argv = sys.argv[1:]\n"
              "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def installed(peer: str) -> bool:
    try:
        return importlib.util.find_spec(PEER_MODULES[peer]) is not None
    except ImportError:
        return False


def run_script(script: str, *args: str, hide_peers: bool = False) -> str:
    path = BENCH / script
    assert path.exists(), f"{path} is missing"
    prefix = [sys.executable, "-c", HIDE_PEERS] if hide_peers else [sys.executable]
    proc = subprocess.run(prefix + [str(path), *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"{script} {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def parse_tables(text: str) -> list[list[dict]]:
    """The markdown tables of the output, each a list of rows {header: cell}."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if block:
            headers, separator, *rows = block
            assert all(re.fullmatch(r"-{3,}", s) for s in separator), separator
            assert rows, f"table without rows: {headers}"
            for row in rows:
                assert len(row) == len(headers), (headers, row)
            tables.append([dict(zip(headers, row)) for row in rows])
            block = []
    return tables


def number(cell: str) -> float:
    """The number of a cell: '12.5', '3.4x', '~8.1x', '45%', '0.21 (n=3)'."""
    match = re.fullmatch(r"~?([-+0-9.eE]+)(x|%)?( \(n=\d+\))?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group(1))


def peer_of(header: str) -> str | None:
    for peer in PEER_MODULES:
        if peer in header:
            return peer
    return None


def check_table(rows: list[dict], peers_present: dict[str, bool]) -> None:
    """Every timing, rate, ratio and cycle count is a positive number, or '-' exactly where its
    peer is absent."""
    for row in rows:
        for header, cell in row.items():
            if header in ("kernel", "yardstick", "size", "dtype", "start", "target", "POT it"):
                continue
            peer = peer_of(header)
            if peer is not None and not peers_present[peer]:
                assert cell == "-", (header, row)
                continue
            value = number(cell)
            assert math.isfinite(value) and value > 0, (header, row)
            if " / " in header or "speedup" in header:
                assert cell.endswith("x"), (header, cell)
            if header == "% of read bw":
                assert cell.endswith("%"), (header, cell)


def check_header(text: str, peers: dict[str, bool]) -> None:
    assert f"SIMD level {thermossl.simd_level()}" in text
    assert "OpenMP threads" in text and "logical cores" in text and "numpy " in text
    assert re.search(r"- clock: \d+\.\d+ GHz", text), "the header must give the clock the cycles came from"
    for peer, present in peers.items():
        if present:
            assert f"{peer} not installed" not in text


def sizes_of(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["size"], r["dtype"]) for r in rows]


def test_compare_quick_every_kernel_with_installed_peers():
    """compare.py --quick, every kernel in one process: logsumexp at the smaller of its quick sizes
    (both dtypes), the others at a tiny size (the imports of torch and POT take most of the time)."""
    out = run_script("compare.py", "--quick", "--sizes", "256x300", "--swav-sizes", TINY, "--sela-sizes", TINY,
                     "--xent-sizes", TINY, "--slow-repeats", "1")
    peers = {peer: installed(peer) for peer in PEER_MODULES}
    check_header(out, peers)
    tables = parse_tables(out)
    # logsumexp and its yardstick, swav and its yardstick, sela and its yardstick, xent, ledger,
    # softmax with entropy_grad
    assert len(tables) == 9, out
    lse, lse_read, swav, swav_read, sela, sela_read, xent, ledger, rowmaps = tables
    assert sizes_of(lse) == sizes_of(lse_read) == [("256x300", "float32"), ("256x300", "float64")]
    assert sizes_of(swav) == sizes_of(swav_read) == [(TINY, "float32")]
    assert [(r["size"], r["start"]) for r in sela] == [(TINY, "cold"), (TINY, "warm")]
    assert sizes_of(sela_read) == [(TINY, "float64")]
    assert sizes_of(xent) == [(TINY, "float32")]
    assert sizes_of(ledger) == [(TINY, "float32"), (TINY, "float64")]
    assert [(r["kernel"], r["size"]) for r in rowmaps] == [("softmax", TINY), ("entropy_grad", TINY)]
    assert all(r["% of read+write bw"].endswith("%") for r in rowmaps)
    for table in tables:
        check_table(table, peers)
    assert "thermossl cycles/elem" in lse[0] and "thermossl cycles/elem/pass" in swav[0]
    assert "median of 3 calls" in out  # --quick caps the repeats at 3


@pytest.mark.parametrize("family", list(FAMILY_SIZE_FLAGS))
def test_family_script_alone_without_peers(family):
    out = run_script(f"compare_{family}.py", FAMILY_SIZE_FLAGS[family], TINY, "--repeats", "2", hide_peers=True)
    absent = {peer: False for peer in PEER_MODULES}
    check_header(out, absent)
    assert "torch not installed (its columns show -)" in out
    tables = parse_tables(out)
    assert tables, out
    for table in tables:
        check_table(table, absent)
        assert all(r["size"] == TINY for r in table)
    assert len(tables[0]) == {"logsumexp": 2, "sela": 2, "ledger": 2, "softmax": 2}.get(family, 1)


# ----------------------------------------------------------------------------- in-process
@pytest.fixture
def bench_modules(monkeypatch):
    """Import bench/compare.py (and through it the harness and the family scripts) in-process,
    then take them out of sys.modules and sys.path again."""
    monkeypatch.setattr(sys, "path", [str(BENCH)] + sys.path)
    names = ("compare", "harness", "compare_logsumexp", "compare_swav", "compare_sela", "compare_xent",
             "compare_ledger", "compare_softmax", "compare_cuda")
    for name in names:
        monkeypatch.delitem(sys.modules, name, raising=False)
    import compare

    yield compare
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("argv, message", [
    (["--kernels", "logsumexp,bogus"], "--kernels: choose from"),
    (["--sizes", "10y10"], "--sizes: expected ROWSxCOLS"),
    (["--xent-sizes", "0x10"], "--xent-sizes: dimensions must be positive"),
    (["--dtypes", "float16"], "--dtypes: only float32 and float64"),
])
def test_compare_rejects_bad_options(bench_modules, argv, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        bench_modules.main(argv)


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--slow-repeats", "0"], "--slow-repeats must be >= 1"),
    (["--pot-budget", "0"], "--pot-budget must be > 0"),
])
def test_compare_rejects_bad_counts(bench_modules, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench_modules.main(argv)
    assert message in capsys.readouterr().err


def test_options_resolve_quick_defaults(bench_modules):
    harness = bench_modules.harness
    parser = harness.build_parser("t", bench_modules.OPTIONS)
    args = harness.resolve(parser, parser.parse_args(["--quick", "--repeats", "9", "--xent-sizes", "8x3,5x7"]),
                           bench_modules.OPTIONS)
    assert args.repeats == 3 and args.slow_repeats == 3
    assert args.sizes == [(256, 300), (1024, 3000)]
    assert args.xent_sizes == [(8, 3), (5, 7)]
    assert args.kernels == list(bench_modules.KERNELS)
    args = harness.resolve(parser, parser.parse_args(["--slow-repeats", "5", "--repeats", "2", "--kernels", "xent"]),
                           bench_modules.OPTIONS)
    assert args.repeats == 2 and args.slow_repeats == 2 and args.kernels == ["xent"]
    assert args.swav_sizes == [(4096, 3000), (65536, 3000)]
    # Each family script takes its own options, with compare.py's spelling, and no --kernels.
    for family in bench_modules.FAMILIES.values():
        flags = {f for o in family.OPTIONS for f in o.flags}
        assert flags <= {f for o in bench_modules.OPTIONS for f in o.flags}
        assert "--kernels" not in flags and "--repeats" in flags and "--quick" in flags


def test_clock_and_cycles(bench_modules):
    harness = bench_modules.harness
    clock = harness.measure_clock(trials=5)
    assert clock.hz is not None and 2e8 < clock.hz < 1e10, clock
    assert "GHz" in clock.how
    threads = harness.openmp_threads()[0]
    assert threads >= 1
    # 1 s on a 1000 x 1000 matrix at 1 GHz: 1000 cycles per element per thread; 2 passes: half.
    one_ghz = harness.Clock(1e9, "test")
    assert harness.cycles_per_element(1000.0, one_ghz, 1000, 1000) == pytest.approx(1000.0 * threads)
    assert harness.cycles_per_element(1000.0, one_ghz, 1000, 1000, passes=2) == pytest.approx(500.0 * threads)
    assert harness.cycles_per_element(1.0, one_ghz, 10, 10) == pytest.approx(1e4)  # small: one thread
    assert harness.fmt_cycles(1.0, harness.Clock(None, "none"), 10, 10) == "-"


def test_thread_threshold_matches_the_kernels(bench_modules):
    """The harness's one-thread threshold is the C++ kernels' kParallelMinElements."""
    source = (REPO / "cpp" / "src" / "cpu" / "rows.hpp").read_text()
    match = re.search(r"kParallelMinElements\s*=\s*([^;]+);", source)
    assert match, "kParallelMinElements not found in cpp/src/cpu/rows.hpp"
    assert eval(match.group(1), {}) == bench_modules.harness.PARALLEL_MIN_ELEMENTS  # e.g. "1 << 15"


def test_interleaved_medians_rotate_the_order(bench_modules, monkeypatch):
    """interleaved_ms times every contender once per round, each round starting one later, and
    returns each one's median; a None contender is not called and gets None."""
    harness = bench_modules.harness
    clock = iter(range(1000))
    monkeypatch.setattr(harness.time, "perf_counter", lambda: next(clock) * 1e-3)  # 1 ms per reading
    calls = []

    def contender(name, work):
        def call():
            calls.append(name)
            for _ in range(work):  # each reading of the clock advances it 1 ms
                harness.time.perf_counter()
        return call

    ms = harness.interleaved_ms({"a": contender("a", 0), "none": None, "b": contender("b", 2),
                                 "c": contender("c", 4)}, 4)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert ms == {"a": pytest.approx(1.0), "none": None, "b": pytest.approx(3.0), "c": pytest.approx(5.0)}


def test_number_formats_keep_tiny_values_nonzero(bench_modules):
    harness = bench_modules.harness
    assert harness.fmt_x(1.0, 250.0) == "0.004x"
    assert harness.fmt_x(250.0, 10.0) == "25.0x"  # unchanged where fixed decimals show the value
    assert harness.fmt_pct(0.3, 100.0) == "0.3%" and harness.fmt_pct(45.4, 100.0) == "45%"
    assert harness.fmt_ms(0.0036) == "0.0036" and harness.fmt_ms(12.345) == "12.35"


def test_cuda_script_imports_without_a_gpu(bench_modules):
    """bench/compare_cuda.py (run by --device cuda) imports without a GPU and checks its options."""
    import compare_cuda

    assert compare_cuda.swav_torch is bench_modules.compare_swav.swav_torch
    assert set(compare_cuda.KERNELS) <= set(bench_modules.KERNELS)
    assert compare_cuda.parse("16384x3000") == (16384, 3000)
    with pytest.raises(SystemExit):
        compare_cuda.main(["--kernels", "sela"])
    with pytest.raises(SystemExit, match="--device cuda: compare_cuda.py runs"):
        bench_modules.main(["--device", "cuda", "--kernels", "ledger"])
