#!/usr/bin/env bash
# Installs the pinned reference environment (PyTorch + diffusers + transformers) into
# tools/reference/.venv, which git ignores. About 5.7 GB (PyPI only ships CUDA builds of torch).
# Only needed to regenerate fixtures; the tests and CI use the committed fixtures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
# Only for the CLIP BPE merges it ships (bpe_simple_vocab_16e6.txt.gz); its dependencies are
# not needed.
"$here/.venv/bin/pip" install --quiet --no-deps open-clip-torch==3.2.0
"$here/.venv/bin/python" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
