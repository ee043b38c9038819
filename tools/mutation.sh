#!/usr/bin/env bash
# Mutation testing of the physics layer with mutmut 3 (not run in CI; about an hour on 2 busy shared cores).
#
#   tools/mutation.sh                 # generate, run, and print the surviving mutants
#   tools/mutation.sh results         # the verdicts of the last run again
#   MODULES="thermo demon" tools/mutation.sh   # a subset of the modules
#
# mutmut 3 copies the sources into ./mutants and imports them from there, which an editable or
# installed thermossl would shadow, and it only finds sources under ./, src/ or source/. So the run
# happens in a staging copy, build/mutation/: src/thermossl (python/thermossl plus the compiled
# _core extension of the dev build), tests/, and a pyproject.toml with the [tool.mutmut] section,
# driven by a venv (build/mutation-venv) in which thermossl is NOT installed. Mutated modules:
# thermo, demon, reservoirs, balancing, analysis. Tests: the files that test those modules' formulas
# and contract (the kernels' property tests, test_properties.py, are left out: slow, and they aim
# at the C++ paths, which mutmut does not mutate).
# OMP_NUM_THREADS=1: mutmut forks its workers, and libgomp's thread pool does not survive fork.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
stage=build/mutation
venv=build/mutation-venv
PYTHON=${PYTHON:-python3}
export OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
MODULES=${MODULES:-thermo demon reservoirs balancing analysis}  # e.g. MODULES=thermo for a quick run

if [ "${1:-run}" = results ]; then
  cd "$stage" && exec "$root/$venv/bin/mutmut" results
fi

core=$(ls build/dev/_core*.so 2>/dev/null | head -1 || true)
[ -n "$core" ] || { echo "no build/dev/_core*.so: run the editable install of the dev loop first"; exit 1; }
[ -x "$venv/bin/mutmut" ] || {
  "$PYTHON" -m venv "$venv"
  # torch: the device-routing tests run on the CPU through a stand-in CUDA backend (tests/helpers.py)
  "$venv/bin/pip" install -q "mutmut==3.8.1" numpy scipy pytest "hypothesis>=6.80" pot "torch==2.13.0"
}

rm -rf "$stage"
mkdir -p "$stage/src"
cp -r python/thermossl "$stage/src/thermossl"
cp "$core" "$stage/src/thermossl/"
cp -r tests "$stage/tests"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cat > "$stage/pyproject.toml" <<'TOML'
[tool.mutmut]
source_paths = ["src/thermossl"]
only_mutate = [ONLY_MUTATE]
also_copy = ["src/thermossl"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "--hypothesis-seed=0"]
pytest_add_cli_args_test_selection = [
  "tests/test_thermo.py", "tests/test_demon.py", "tests/test_analysis.py", "tests/test_balancing.py",
  "tests/test_reference_ledger.py", "tests/test_physics_contract.py",
]

[tool.pytest.ini_options]
addopts = ["--import-mode=importlib", "-ra"]
pythonpath = ["tests"]
TOML
only=$(for m in $MODULES; do printf '"src/thermossl/%s.py", ' "$m"; done)
sed -i "s|ONLY_MUTATE|$only|" "$stage/pyproject.toml"
cd "$stage"
nice -n 10 "$root/$venv/bin/mutmut" run --max-children 2
"$root/$venv/bin/mutmut" results
