#!/usr/bin/env bash
# The course's two entry points. Each sets everything up first (a virtual environment
# in .venv with ferlib installed in editable mode), so both work on a fresh machine:
#
#   bash course.sh lab    # start JupyterLab on notebooks/
#   bash course.sh test   # run the whole test suite: unit tests and every notebook (nbval)
#   bash course.sh student               # regenerate the student edition, notebooks/student/
#   bash course.sh grade PATH [--out DIR]  # grade submissions offline (README: Teacher's guide)
#   bash course.sh site [--out DIR]        # build the course website into build/site (docs/)
#
# PYTHON=python3.12 bash course.sh ...  picks the interpreter (Python >= 3.10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "course.sh: need Python >= 3.10 as '$python' (set PYTHON=... to choose another)" >&2
    exit 2
fi

setup() {
    if [ ! -x .venv/bin/python ]; then
        echo "course.sh: creating .venv with $("$python" --version)"
        "$python" -m venv .venv
    fi
    # Reinstall only when the package metadata changed since the last install.
    stamp=.venv/.ferlib-installed
    want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "course.sh: installing ferlib and its dependencies into .venv (first run takes a few minutes)"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".[dev]"
        echo "$want" > "$stamp"
    fi
}

case "${1:-}" in
    lab)
        setup
        # Jupyter refuses to run as root (containers, cloud VMs) unless told it is meant.
        extra=()
        [ "$(id -u)" = 0 ] && extra=(--allow-root)
        exec .venv/bin/python -m jupyter lab "${extra[@]}" notebooks/
        ;;
    test)
        setup
        shift
        # The quick profile shrinks every experiment so that notebooks run on a CPU.
        export FERLIB_PROFILE=${FERLIB_PROFILE:-quick}
        export MPLBACKEND=Agg
        exec .venv/bin/python -m pytest tests notebooks \
            --nbval-lax --nbval-current-env --nbval-cell-timeout=600 "$@"
        ;;
    student|grade)
        setup
        exec .venv/bin/python -m ferlib "$@"
        ;;
    site)
        setup
        shift
        # the notebooks as committed (nothing is executed), the results from results/
        exec .venv/bin/python docs/build.py "$@"
        ;;
    *)
        echo "usage: bash course.sh lab|test [pytest options]|student|grade PATH [--out DIR]|site [--out DIR]" >&2
        exit 2
        ;;
esac
