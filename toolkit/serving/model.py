"""vLLM model classes for model-surgery checkpoints.

`ModelSurgery_<Arch>` is vLLM's own class for `<Arch>` with `SurgeryModel` mixed in, built on
first use (this module's `__getattr__`, so vLLM's lazy registry and its worker processes can
import it by name). The mixin adds, without changing the base model:

- the early layers' states. Where vLLM's class has auxiliary hidden-state outputs (its
  mechanism for EAGLE-3, which survives torch.compile and CUDA graphs), the tap's layers are
  asked for through it; otherwise forward hooks on the decoder layers record them, which needs
  eager mode (`enforce_eager=True`). `forward` returns them packed beside the final hidden
  state, (tokens, d * (1 + N)), so vLLM's own row selection (`hidden_states[logits_indices]`)
  carries them to `compute_logits`, which splits them off, publishes them for the sampler
  (`toolkit.serving.state`) and computes the model's own logits from the final state;
- the AdaptiveDecoder head, loaded from the checkpoint's head.safetensors (the checkpoint folder
  is the primary weight source, restricted to that file; the base is a secondary source);
- `early_logits`: early states through the final norm when the graft says so, then the model's
  own `compute_logits` (lm_head, logit scale, soft-cap, vocabulary gather under tensor
  parallelism): the tap's logits, as `EarlyExitTap` computes them in transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from toolkit.graft.families import NORM_NAMES
from toolkit.graft.head import AdaptiveDecoderHead
from toolkit.io.layout import HEAD_FILE
from toolkit.serving import state
from toolkit.serving.config import ARCH_PREFIX, load_served


class SurgeryModel:
    """Mixin over a vLLM causal-LM class (module docstring)."""

    def __init__(self, *, vllm_config, prefix: str = "", **kwargs) -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
        from vllm.model_executor.model_loader.default_loader import DefaultModelLoader

        if vllm_config.parallel_config.pipeline_parallel_size > 1:
            raise ValueError("model-surgery checkpoints do not run with pipeline parallelism; "
                             "use tensor_parallel_size to spread the model over GPUs")
        model_config = vllm_config.model_config
        text = model_config.hf_config.get_text_config()
        served = load_served(model_config.model, text)
        self.surgery = served
        self.surgery_hidden = text.hidden_size
        self.surgery_head = AdaptiveDecoderHead(text.hidden_size, served.graft.head).float()
        self.surgery_early = [layer for layer in served.layers if layer < served.num_layers]
        self.surgery_norm = _final_norm(self.model) if served.graft.early_exit_norm else None
        self.surgery_captured: dict[int, torch.Tensor] = {}
        self.surgery_aux = self._ask_for_states(vllm_config)
        self.allow_patterns_overrides = [HEAD_FILE]
        self.secondary_weights = [DefaultModelLoader.Source(served.base_path, None,
                                                            fall_back_to_pt=False)]

    def _ask_for_states(self, vllm_config) -> bool:
        """True: vLLM's auxiliary hidden states carry the early layers; False: hooks do."""
        from vllm.config import CompilationMode
        from vllm.model_executor.models.interfaces import supports_eagle3

        if not self.surgery_early:
            return False
        if supports_eagle3(self):
            self.set_aux_hidden_state_layers(tuple(self.surgery_early))
            return True
        if vllm_config.compilation_config.mode != CompilationMode.NONE:
            raise ValueError(
                f"{type(self).__name__.removeprefix(ARCH_PREFIX)} has no auxiliary hidden-state "
                "outputs in this vLLM, so the model-surgery tap needs eager mode: start vLLM "
                "with --enforce-eager (enforce_eager=True)")
        layers = self.model.layers
        for layer in self.surgery_early:
            if layer == 0:
                layers[0].register_forward_pre_hook(self._record_input)
            else:
                layers[layer - 1].register_forward_hook(self._recorder(layer))
        return False

    def _record_input(self, module: nn.Module, args: tuple) -> None:
        self.surgery_captured[0] = args[1]  # (positions, hidden_states, residual)

    def _recorder(self, layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            hidden, residual = output  # vLLM's layers return the stream as two parts
            self.surgery_captured[layer] = hidden + residual

        return hook

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        if not self.surgery_early or not isinstance(out, (torch.Tensor, tuple)):
            return out  # an IntermediateTensors of a non-last rank
        if self.surgery_aux:
            hidden, aux = out
            order = sorted(self.surgery_early)
            early = [aux[order.index(layer)] for layer in self.surgery_early]
        else:
            hidden = out
            early = [self.surgery_captured.pop(layer) for layer in self.surgery_early]
        return torch.cat([hidden, *early], dim=-1)

    def compute_logits(self, hidden_states: torch.Tensor):
        d = self.surgery_hidden
        final = hidden_states[..., :d].contiguous()
        early = None
        if hidden_states.shape[-1] > d:
            early = hidden_states[..., d:].unflatten(-1, (len(self.surgery_early), d))
        state.publish(state.StepStates(final=final, early=early, model=self))
        return super().compute_logits(final)

    def early_logits(self, states: state.StepStates, rows: torch.Tensor,
                     layers: list[int]) -> torch.Tensor:
        """(R, n, V) logits of the tap layers `layers` at the batch rows `rows` (R,)."""
        final = states.final[rows]
        picked = [self.surgery_early.index(layer) for layer in layers
                  if layer < self.surgery.num_layers]
        hidden = states.early[rows][:, picked] if picked else final[:, :0]
        if self.surgery_norm is not None and picked:
            hidden = self.surgery_norm(hidden.reshape(-1, hidden.shape[-1])).view_as(hidden)
        if len(picked) < len(layers):  # layer L: the model's own final state
            at = layers.index(self.surgery.num_layers)
            hidden = torch.cat([hidden[:, :at], final[:, None], hidden[:, at:]], dim=1)
        logits = super().compute_logits(hidden.reshape(-1, hidden.shape[-1]).contiguous())
        return logits.view(*hidden.shape[:2], -1)

    def load_weights(self, weights):
        head_keys = set(self.surgery_head.state_dict())
        head: dict[str, torch.Tensor] = {}

        def base_weights():
            for name, tensor in weights:
                if name in head_keys:
                    head[name] = tensor
                else:
                    yield name, tensor

        loaded = super().load_weights(base_weights())
        self.surgery_head.load_state_dict(head, strict=True)
        return None if loaded is None else set(loaded) | {f"surgery_head.{k}" for k in head_keys}


def _final_norm(decoder: nn.Module) -> nn.Module:
    for name in NORM_NAMES:
        module = getattr(decoder, name, None)
        if isinstance(module, nn.Module):
            return module
    raise ValueError("model-surgery: the graft applies the final norm to early layers, but this "
                     "vLLM model's decoder has no final norm under a known name")


def class_for(architecture: str) -> type:
    """`ModelSurgery_<architecture>`: vLLM's class for the architecture with `SurgeryModel`."""
    from vllm.model_executor.models import ModelRegistry

    registered = ModelRegistry.models.get(architecture)
    if registered is None:
        raise AttributeError(f"vLLM has no model class for the architecture {architecture!r}")
    name = ARCH_PREFIX + architecture
    cls = type(name, (SurgeryModel, registered.load_model_cls()),
               {"__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    return cls


def __getattr__(name: str) -> Any:
    if name.startswith(ARCH_PREFIX):
        return class_for(name.removeprefix(ARCH_PREFIX))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
