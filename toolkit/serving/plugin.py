"""The vLLM general plugin (entry-point group `vllm.general_plugins`), run in every vLLM process.

It registers, through vLLM's own extension points, what serving a model-surgery checkpoint
needs: the config parser that reads a checkpoint folder as its base model under the
architecture `ModelSurgery_<Arch>` (`toolkit.serving.config`), and those architectures
(`toolkit.serving.model`, built on first use). The logits processors come through their own
entry-point group (`toolkit.serving.processors`).

Those processors implement the logits-processor interface of vLLM's V1 model runner. Where
vLLM would pick its V2 runner (a GPU with Triton), which refuses V1-interface processors for
every model, the plugin asks for the V1 runner, unless the user set VLLM_USE_V2_MODEL_RUNNER.
"""

from __future__ import annotations

import os

ENV_RUNNER = "VLLM_USE_V2_MODEL_RUNNER"


def register() -> None:
    """Register the config parser and the architectures (idempotent, cheap: no model import)."""
    from vllm.model_executor.models import ModelRegistry
    from vllm.transformers_utils.config import register_config_parser

    from toolkit.serving.config import ARCH_PREFIX, SurgeryConfigParser

    if os.environ.get(ENV_RUNNER) is None:
        os.environ[ENV_RUNNER] = "0"
    register_config_parser("hf")(SurgeryConfigParser)
    for arch in list(ModelRegistry.get_supported_archs()):
        if not arch.startswith(ARCH_PREFIX):
            ModelRegistry.register_model(ARCH_PREFIX + arch,
                                         f"toolkit.serving.model:{ARCH_PREFIX}{arch}")
