#!/usr/bin/env bash
# Mutation testing with mutmut 3 (not run in CI; hours on 2 busy shared cores). Results: docs/mutation.md.
#
#   tools/mutation.sh                          # every group: generate, run, list the survivors
#   GROUP=compat tools/mutation.sh            # one group (physics, compat, torch)
#   GROUP=torch MODULES="torch/losses torch/ops" tools/mutation.sh   # a subset of a group's modules
#   GROUP=torch MODULES=... tools/mutation.sh run 'thermossl.torch.sela*' ...
#                                              # stage and generate all, run only the mutants named
#                                              # (fnmatch patterns); a later run without names
#                                              # resumes: mutmut skips mutants with a verdict
#   STAGE=torch-ops GROUP=torch MODULES=torch/ops tools/mutation.sh run ...
#                                              # stage in build/mutation/torch-ops instead of
#                                              # build/mutation/torch (two stages of one group side
#                                              # by side; give the same STAGE to results/more/check)
#   GROUP=physics tools/mutation.sh results   # the verdicts of a group's last run again
#   GROUP=physics tools/mutation.sh more 'thermossl.demon.x_*'
#                                              # more named mutants in the last run's stage (its
#                                              # sources, tests and verdicts kept; not staged again)
#   GROUP=physics tools/mutation.sh rerun 'thermossl.balancing.x__sinkhorn__mutmut_7*'
#                                              # re-test those mutants against the current tests/
#   GROUP=physics tools/mutation.sh check "tests/test_ledger_files.py" NAME...   (or NAME... from stdin)
#                                              # quick: run just those test files against each named
#                                              # mutant of the last run (mutmut's own switch,
#                                              # MUTANT_UNDER_TEST, without its call statistics)
#
# Groups (modules of python/thermossl mutated, and the test files run against them):
#   physics  thermo demon reservoirs balancing analysis
#   compat   compat                                (POT's ot.sinkhorn log-domain stand-in)
#   torch    torch/ops torch/losses torch/recorder torch/sela torch/_kernels   (needs torch)
# Each group also runs tests/test_mutation_kills_<group>*.py, the tests written to kill its survivors.
#
# mutmut 3 copies the sources into ./mutants and imports them from there, which an editable or
# installed thermossl would shadow, and it only finds sources under ./, src/ or source/. So each
# group runs in a staging copy, build/mutation/<group>: src/thermossl (python/thermossl plus the
# compiled _core extension of the dev build), tests/, and a pyproject.toml with the [tool.mutmut]
# section, driven by a venv (build/mutation-venv) in which thermossl is NOT installed. mutmut runs
# the test selection once to learn which tests call each function, then runs only those tests
# against each of that function's mutants. The kernels' property tests (test_properties.py) are
# left out: slow, and they aim at the C++ paths, which mutmut does not mutate.
# mutmut does not mutate decorated functions (the torch custom ops' bodies under
# @torch.library.custom_op / register_fake / register_autograd are such), only the plain ones.
# OMP_NUM_THREADS=1: mutmut forks its workers, and libgomp's thread pool does not survive fork;
# the torch group forks from a fork server (mutmut's process_isolation = "forkserver": torch's
# threads do not survive a fork of a process that ran tests either).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=build/mutation-venv
PYTHON=${PYTHON:-python3}
export OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
# test_compat_pot.py's side-by-side comparison with POT on 100 random problems instead of 300.
export THERMOSSL_POT_PROBLEMS=${THERMOSSL_POT_PROBLEMS:-100}
GROUP=${GROUP:-physics compat torch}  # (not GROUPS: bash owns that name)
children=${MAX_CHILDREN:-2}  # mutmut's parallel workers
action=${1:-run}
[ $# -gt 0 ] && shift

group_modules() {
  case $1 in
    physics) echo "thermo demon reservoirs balancing analysis" ;;
    compat) echo "compat" ;;
    torch) echo "torch/ops torch/losses torch/recorder torch/sela torch/_kernels" ;;
    *) echo "unknown group $1 (physics, compat, torch)" >&2; exit 2 ;;
  esac
}
group_tests() {
  local kills
  kills=$(cd tests && ls "test_mutation_kills_$1"*.py 2>/dev/null | sed 's|^|tests/|' | tr '\n' ' ' || true)
  case $1 in
    physics) echo "tests/test_thermo.py tests/test_demon.py tests/test_analysis.py tests/test_balancing.py
                   tests/test_reference_ledger.py tests/test_physics_contract.py tests/test_ledger_files.py $kills" ;;
    compat) echo "tests/test_compat_pot.py $kills" ;;
    # test_torch_compile.py: the registered ops' route under torch.compile (the losses' compiled
    # backward branch); test_torch_distributed.py is not here: its workers import the installed
    # thermossl, not the staged mutants (the kills file for the losses' distributed branch passes
    # PYTHONPATH on)
    torch) echo "tests/test_torch_ops.py tests/test_torch_losses.py tests/test_torch_recorder.py
                 tests/test_torch_compile.py $kills" ;;
  esac
}
toml_list() { local sep=""; for x in "$@"; do printf '%s"%s"' "$sep" "$x"; sep=", "; done; }

if [ "$action" = results ]; then
  for group in $GROUP; do
    echo "== $group"
    (cd "build/mutation/${STAGE:-$group}" && "$root/$venv/bin/mutmut" results)
  done
  exit 0
fi

core=$(ls build/dev/_core*.so 2>/dev/null | head -1 || true)
[ -n "$core" ] || { echo "no build/dev/_core*.so: run the editable install of the dev loop first"; exit 1; }
[ -x "$venv/bin/mutmut" ] || {
  "$PYTHON" -m venv "$venv"
  # torch: the torch group, and the device-routing tests, which run on the CPU through a stand-in
  # CUDA backend (tests/helpers.py)
  "$venv/bin/pip" install -q "mutmut==3.8.1" numpy scipy pytest "hypothesis>=6.80" pot "torch==2.13.0"
}

for group in $GROUP; do
  stage=build/mutation/${STAGE:-$group}
  if [ "$action" = check ]; then
    tests_to_run=$1 && shift
    names=("$@")
    [ ${#names[@]} -gt 0 ] || mapfile -t names
    # only the test files that changed (a run in progress keeps reading the others)
    for f in tests/*.py; do cmp -s "$f" "$stage/mutants/$f" || cp "$f" "$stage/mutants/$f"; done
    # shellcheck disable=SC2086
    (cd "$stage/mutants" && MUTANT_UNDER_TEST="" PYTHONPATH=src "$root/$venv/bin/python" -m pytest \
       -p no:cacheprovider -q -x --hypothesis-seed=0 $tests_to_run > /dev/null 2>&1) \
      || { echo "the tests fail on the unmutated staged sources: no verdicts"; exit 1; }
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086
      if (cd "$stage/mutants" && MUTANT_UNDER_TEST=$name PYTHONPATH=src nice -n 10 "$root/$venv/bin/python" -m pytest \
            -p no:cacheprovider -q -x --hypothesis-seed=0 $tests_to_run > /dev/null 2>&1); then
        echo "$name: survived"
      else
        echo "$name: killed"
      fi
    done
    continue
  fi
  if [ "$action" = more ]; then
    [ -d "$stage/mutants" ] || { echo "no earlier run of $group in $stage"; exit 1; }
    (cd "$stage" && nice -n 10 "$root/$venv/bin/mutmut" run --max-children "$children" "$@")
    continue
  fi
  if [ "$action" = rerun ]; then
    # The same mutants (the sources are not staged again), the current tests: mutmut copies
    # tests/ into mutants/ again, and the call statistics are collected anew.
    [ -d "$stage/mutants" ] || { echo "no earlier run of $group in $stage"; exit 1; }
    rm -rf "$stage/tests" && cp -r tests "$stage/tests"
    find "$stage/tests" -name __pycache__ -prune -exec rm -rf {} +
    rm -f "$stage/mutants/mutmut-stats.json"
    sed -i "s|^pytest_add_cli_args_test_selection = .*|pytest_add_cli_args_test_selection = [$(toml_list $(group_tests "$group"))]|" \
      "$stage/pyproject.toml"
    (cd "$stage" && nice -n 10 "$root/$venv/bin/mutmut" run --max-children "$children" "$@")
    continue
  fi
  modules=${MODULES:-$(group_modules "$group")}
  isolation=fork extra=""
  if [ "$group" = torch ]; then
    isolation=forkserver
    # a subprocess that imports thermossl finds no thermossl in the staging copy (and tests the
    # package's import, not the torch layer)
    extra=', "--deselect", "tests/test_torch_ops.py::test_import_thermossl_does_not_import_torch"'
  fi
  rm -rf "$stage"
  mkdir -p "$stage/src"
  cp -r python/thermossl "$stage/src/thermossl"
  cp "$core" "$stage/src/thermossl/"
  cp -r tests "$stage/tests"
  cp README.md "$stage/"  # test_torch_recorder.py runs the README's example
  find "$stage" -name __pycache__ -prune -exec rm -rf {} +
  # shellcheck disable=SC2046
  cat > "$stage/pyproject.toml" <<TOML
[tool.mutmut]
source_paths = ["src/thermossl"]
only_mutate = [$(toml_list $(for m in $modules; do echo "src/thermossl/$m.py"; done))]
also_copy = ["src/thermossl", "README.md"]
process_isolation = "$isolation"
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "--hypothesis-seed=0"$extra]
pytest_add_cli_args_test_selection = [$(toml_list $(group_tests "$group"))]

[tool.pytest.ini_options]
addopts = ["--import-mode=importlib", "-ra"]
pythonpath = ["tests"]
TOML
  echo "== $group: $modules"
  # shellcheck disable=SC2086
  (cd "$stage" && nice -n 10 "$root/$venv/bin/mutmut" run --max-children "$children" "$@" && "$root/$venv/bin/mutmut" results)
done
