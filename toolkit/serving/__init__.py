"""Serving model-surgery checkpoints on vLLM, through vLLM's plugin entry points (no fork).

- `plugin.register` (group `vllm.general_plugins`): the config parser and model classes;
- `processors.LogitsStage` / `processors.SamplingStage` (group `vllm.logits_processors`): the
  decoding methods, per request;
- `requests` and `plan`: a request's `vllm_xargs` into the toolkit's decoding options and stages;
- `model`: vLLM's class for the base architecture, with the tap's layers and the head;
- `install`: `python3 -m toolkit.serving.install` adds vLLM to this environment.

Every module but `requests`, `plan`, `state` and `install` imports vLLM.
"""
