#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut: each module is mutated one small change at
# a time and its own fast tests are run against every mutant; a mutant that no test notices
# "survives". Not part of CI (minutes to an hour per module on 2 cores). tests/MUTATION.md
# records the figures and a review of every survivor.
#
#   scripts/mutation.sh                      # every module, one after the other
#   scripts/mutation.sh metrics sampling     # some of them (metrics sampling judging forms grpo)
#   MUTATION_JOBS=2 scripts/mutation.sh grpo # mutants run in parallel (default 1)
#
# Needs mutmut 3.8.1 in the active environment: `pip install mutmut==3.8.1` (not in
# requirements.txt; and not through constraints.txt, whose libcst 1.0.1 is older than the
# libcst >= 1.9 that mutmut 3.8.1 requires). Each module runs in its own copy of the project
# under .mutation/<module>/ (git-ignored), so the working tree is never modified; the tests run
# without the real HLE data (HLE_SHARED_DIR points nowhere), so no figure depends on it.
# Afterwards: `cd .mutation/<module> && mutmut results` lists the survivors and
# `mutmut show <name>` shows one as a diff.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${MUTATION_DIR:-$ROOT/.mutation}"
JOBS="${MUTATION_JOBS:-1}"

# module -> "source file|its tests (space separated)|extra pytest arguments"
declare -A TARGETS=(
  [metrics]="src/hle_reasoning/hle/scoring/metrics.py|tests/hle/scoring/test_metrics.py"
  [sampling]="src/hle_reasoning/hle/data/sampling.py|tests/hle/data/test_sampling.py"
  [judging]="src/hle_reasoning/hle/judge/rules.py|tests/hle/judge/test_rules.py tests/hle/judge/test_rules_sample.py tests/hle/judge/test_rules_cases.py tests/hle/judge/test_rules_forms.py"
  [forms]="src/hle_reasoning/hle/judge/forms.py|tests/hle/judge/test_rules_forms.py tests/hle/judge/test_rules_cases.py"
  [grpo]="src/hle_reasoning/modeling/grpo.py|tests/modeling/test_grpo.py|-m not slow"
)
ORDER=(metrics sampling judging forms grpo)

if ! command -v mutmut >/dev/null || [[ "$(mutmut --version)" != *"3.8.1"* ]]; then
  echo "mutation.sh needs mutmut 3.8.1 in the active environment: pip install mutmut==3.8.1" >&2
  exit 2
fi

modules=("$@")
[[ ${#modules[@]} -eq 0 ]] && modules=("${ORDER[@]}")
for module in "${modules[@]}"; do
  if [[ -z "${TARGETS[$module]:-}" ]]; then
    echo "unknown module '$module': choose from ${ORDER[*]}" >&2
    exit 2
  fi
done

export OMP_NUM_THREADS=1 KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1
export HLE_SHARED_DIR="$WORK/no-shared"
unset PYTHONPATH  # mutmut puts the mutated copy of src/ first on the path itself

for module in "${modules[@]}"; do
  IFS='|' read -r source tests extra <<<"${TARGETS[$module]}"
  dir="$WORK/$module"
  rm -rf "$dir"
  mkdir -p "$dir/data"
  cp -r "$ROOT/src" "$ROOT/tests" "$ROOT/conf" "$ROOT/pyproject.toml" "$ROOT/.telemetry" "$dir/"
  cp -r "$ROOT/data/01_raw" "$dir/data/"
  find "$dir" -name __pycache__ -prune -exec rm -rf {} +
  {
    echo "[mutmut]"
    echo "source_paths = src"
    echo "only_mutate = $source"
    echo "also_copy ="
    echo "    conf"
    echo "    data"
    echo "    .telemetry"
    echo "pytest_add_cli_args_test_selection ="
    for t in $tests; do echo "    $t"; done
    echo "pytest_add_cli_args ="
    echo "    -p"
    echo "    no:cacheprovider"
    # the slow learning-signal test (a minute a run) is left to the ordinary suite
    [[ -n "$extra" ]] && printf '    %s\n' "${extra%% *}" "${extra#* }"
    echo "use_git_change_detection = false"
  } >"$dir/setup.cfg"
  echo "== $module: mutating $source, tests: $tests $extra (jobs: $JOBS)"
  start=$SECONDS
  (cd "$dir" && mutmut run --max-children "$JOBS" >mutmut-run.log 2>&1) || {
    tail -n 30 "$dir/mutmut-run.log" >&2
    echo "mutmut failed for $module (log: $dir/mutmut-run.log)" >&2
    exit 1
  }
  (cd "$dir" && mutmut export-cicd-stats >/dev/null && mutmut results >survivors.txt || true)
  python - "$module" "$dir/mutants/mutmut-cicd-stats.json" "$((SECONDS - start))" <<'PY'
import json
import sys

module, path, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
stats = json.load(open(path))
killed = stats["killed"] + stats["timeout"]
survived = stats["survived"] + stats["no_tests"]
total = killed + survived
rate = 100.0 * killed / total if total else float("nan")
print(
    f"{module}: {stats['total']} mutants, {killed} killed, {survived} survived "
    f"({stats['no_tests']} not reached by its tests), {stats['suspicious']} suspicious, "
    f"{stats['skipped']} skipped; {rate:.1f}% killed in {seconds} s"
)
PY
  echo "   survivors: $dir/survivors.txt"
done
