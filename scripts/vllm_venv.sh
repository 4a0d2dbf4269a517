#!/usr/bin/env bash
# A throwaway venv (.venv-vllm) that imports vLLM's Python-side LoRA classes without installing
# vLLM's dependency tree (a CUDA torch): the vLLM wheel with --no-deps, msgspec, and a .pth that
# adds the project venv's site-packages (CPU torch, pydantic, the editable adapter-registry with
# its vllm.general_plugins entry point). Enough for vllm.lora.resolver / vllm.lora.request /
# vllm.plugins; not enough to serve. tests/integrations/test_vllm_resolver.py uses it when present.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION=${VLLM_VERSION:-0.33.0}
python3 -m venv .venv-vllm
.venv-vllm/bin/pip install -q --no-deps "vllm==${VLLM_VERSION}" msgspec
# addsitedir (not a bare path line) so that the project venv's own .pth files (the editable
# install's finder) run too.
.venv/bin/python -c "import site; print(f'import site; site.addsitedir({site.getsitepackages()[0]!r})')" \
  > .venv-vllm/lib/python3.11/site-packages/zz_adapter_registry_venv.pth
.venv-vllm/bin/python -c "import vllm.lora.resolver, vllm.lora.request; print('vllm', __import__('vllm').__version__, 'imports')"
