"""Early-exit tap: forward hooks that capture candidate layers' hidden states (docs/methods.md section 1).

`hidden_states[0]` is the input of decoder layer 0 (embeddings, after any embedding scale),
`hidden_states[l]` the output of decoder layer l-1 (before the final norm); layer L (the
number of decoder layers) stands for the model's own final logits, read from the decoder's
output (its last hidden state, after the final norm). Hooks live only inside
`capture()`; every forward pass overwrites what was captured, so during `generate()` the tap
holds the prefill and then one new position per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.core.errors import ConfigError
from toolkit.decoding.scratch import Buffers
from toolkit.graft.families import ModelParts, default_early_exit_norm, model_parts
from toolkit.graft.layers import candidate_layers


class EarlyExitTap:
    """Capture candidate layers of `model` and turn them into early-exit logits.

    `layers`: 'all' | 'low' | 'high' | list of indices in 0..L (see `candidate_layers`).
    `early_exit_norm`: apply the model's final norm to early layers before lm_head (the
    reference SLED/DoLa code does not; layer L is always normed, as the model itself does);
    None: the model type's default (`families.EARLY_EXIT_NORM_DEFAULTS`, else False).
    """

    def __init__(self, model: nn.Module, layers: Any = "all", early_exit_norm: bool | None = None):
        self.model = model
        self.parts: ModelParts = model_parts(model)
        self.early_exit_norm = (default_early_exit_norm(self.parts.model_type)
                                if early_exit_norm is None else bool(early_exit_norm))
        self.candidate_layers: list[int] = candidate_layers(
            layers, self.parts.num_layers, self.parts.tied
        )
        self._states: dict[int, Tensor] = {}
        self._final: Tensor | None = None
        self._last_only = True
        self._handles: list[Any] = []
        self._buffers = Buffers()

    @property
    def num_layers(self) -> int:
        return self.parts.num_layers

    def for_layers(self, layers: Any = None, final_only: bool = False) -> EarlyExitTap:
        """This tap, or one on the same model (and `early_exit_norm`) that hooks only what a
        call needs: `layers`, a method's own candidate layers (None: this tap's), or with
        `final_only` the final norm alone (layer L, the adaptive head's input)."""
        if final_only:
            layers = [self.num_layers]
        elif layers is None:
            return self
        wanted = candidate_layers(layers, self.num_layers, self.parts.tied)
        if wanted == self.candidate_layers:
            return self
        return EarlyExitTap(self.model, layers=wanted, early_exit_norm=self.early_exit_norm)

    @contextmanager
    def capture(self, last_only: bool = True) -> Iterator[EarlyExitTap]:
        """Install the hooks for the duration of the block (not re-entrant).

        `last_only=True` keeps only the newest position of each forward pass (B,N,d);
        `last_only=False` keeps every position (B,T,N,d). What was captured stays readable after
        the block until the next `capture()`.
        """
        if self._handles:
            raise RuntimeError("EarlyExitTap.capture() is already active; do not nest it")
        self._last_only = last_only
        self._states, self._final = {}, None
        self._install()
        try:
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []
            self._buffers = Buffers()  # kept for the steps of one capture, not the model's life

    def _install(self) -> None:
        layers = self.parts.layers
        for layer in self.candidate_layers:
            if layer == 0:
                hook = layers[0].register_forward_pre_hook(self._pre_hook_layer0, with_kwargs=True)
            elif layer < self.num_layers:
                hook = layers[layer - 1].register_forward_hook(self._output_hook(layer))
            else:
                continue
            self._handles.append(hook)
        self._handles.append(self.parts.decoder.register_forward_hook(self._final_hook))

    def _keep(self, hidden: Tensor) -> Tensor:
        hidden = hidden.detach()
        if not self._last_only:
            return hidden
        # After a prefill, copy the newest row so the whole (B,T,d) tensor can be freed.
        return hidden[:, -1].clone() if hidden.shape[1] > 1 else hidden[:, -1]

    def _pre_hook_layer0(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        self._states[0] = self._keep(hidden)

    def _output_hook(self, layer: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._states[layer] = self._keep(hidden)

        return hook

    def _final_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._final = self._keep(output[0])  # the decoder's last_hidden_state (after its norm)

    def state_shapes(self) -> dict[int, tuple[int, ...]]:
        """The shape of each captured layer's hidden state in the last forward pass."""
        return {layer: tuple(state.shape) for layer, state in self._states.items()}

    def final_hidden(self) -> Tensor:
        """The final-norm output of the last forward pass: (B,d) last_only, else (B,T,d)."""
        if self._final is None:
            raise RuntimeError("nothing captured yet; run the model inside `tap.capture()`")
        return self._final

    def early_logits(self, positions: Tensor | None = None, reuse: bool = False) -> Tensor:
        """Logits of every candidate layer, in `candidate_layers` order, for the last forward.

        last_only: (B,N,V), all N rows through lm_head in one matmul. Otherwise (B,T,N,V),
        (B,P,N,V) for `positions` (B,P) long, or (M,N,V) for `positions` a (B,T) bool mask with
        M True entries, in row-major order (only those positions go through lm_head).

        `reuse=True` (last_only, no autograd) writes into buffers the tap keeps while the shape
        stays the same, until the capture ends, so a decoding step allocates nothing the size of
        B*N*V: the result is overwritten by the next `early_logits(reuse=True)`; copy what must
        outlive the step.
        """
        if positions is not None and self._last_only:
            raise ConfigError(
                "early_logits(positions=...) needs every position; use tap.capture(last_only=False)"
            )
        reuse = reuse and self._last_only and not torch.is_grad_enabled()
        final = self._select(self.final_hidden(), positions)
        device = self._head_device(final)
        early_at = [i for i, layer in enumerate(self.candidate_layers) if layer < self.num_layers]
        early = [self._select(self._states[self.candidate_layers[i]], positions).to(device)
                 for i in early_at]
        if len(early_at) == len(self.candidate_layers):
            return self._unembed(self._prepared(self._stack(early, reuse)), reuse)
        shape = (*final.shape[:-1], len(self.candidate_layers), final.shape[-1])
        if reuse:
            hidden = self._buffers.get("hidden", shape, final.dtype, device)
            hidden.copy_(final.unsqueeze(-2).expand(shape))
        else:
            hidden = final.to(device).unsqueeze(-2).repeat_interleave(shape[-2], -2)
        if early:
            hidden[..., early_at, :] = self._prepared(self._stack(early, reuse))
        return self._unembed(hidden, reuse)

    def _stack(self, hidden: list[Tensor], reuse: bool) -> Tensor:
        """The states (...,d) of `hidden` stacked on dim -2: (...,n,d)."""
        if not reuse:
            return torch.stack(hidden, dim=-2)
        shape = (*hidden[0].shape[:-1], len(hidden), hidden[0].shape[-1])
        out = self._buffers.get("stacked", shape, hidden[0].dtype, hidden[0].device)
        return torch.stack(hidden, dim=-2, out=out)

    def _prepared(self, hidden: Tensor) -> Tensor:
        """Early hidden states as lm_head takes them: through the final norm if `early_exit_norm`."""
        return self._norm(hidden) if self.early_exit_norm else hidden

    @staticmethod
    def _select(hidden: Tensor, positions: Tensor | None) -> Tensor:
        """(B,T,d) -> (B,P,d) at `positions` (B,P) long, or (M,d) at a (B,T) bool mask;
        unchanged when positions is None."""
        if positions is None:
            return hidden
        if positions.dtype == torch.bool:
            return hidden[positions.to(hidden.device)]
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        return hidden[rows, positions.to(hidden.device)]

    def project(self, hidden: Tensor) -> Tensor:
        """Early-exit logits of hidden states (...,d): final norm if `early_exit_norm`, then
        lm_head, the architecture's logit scale and soft-cap, on lm_head's device."""
        return self._unembed(self._prepared(hidden))

    def _norm(self, hidden: Tensor) -> Tensor:
        device = hidden.device
        return self.parts.norm(hidden.to(_device_of(self.parts.norm, hidden))).to(device)

    def _head_device(self, hidden: Tensor) -> torch.device:
        return _device_of(self.parts.lm_head, hidden)

    def _unembed(self, hidden: Tensor, reuse: bool = False) -> Tensor:
        head = self.parts.lm_head
        hidden = hidden.to(self._head_device(hidden))
        if reuse and _plain_linear(head):
            shape = (*hidden.shape[:-1], head.weight.shape[0])
            out = self._buffers.get("logits", shape, head.weight.dtype, hidden.device)
            logits = torch.matmul(hidden.to(head.weight.dtype), head.weight.t(), out=out)
        else:
            logits, reuse = head(hidden), False
        if self.parts.logit_scale != 1.0:
            logits = logits.mul_(self.parts.logit_scale) if reuse else \
                logits * self.parts.logit_scale
        cap = self.parts.softcap
        if cap is not None:
            logits = logits.div_(cap).tanh_().mul_(cap) if reuse else \
                torch.tanh(logits / cap) * cap
        return logits


def _plain_linear(module: nn.Module) -> bool:
    """An nn.Linear without bias or hooks whose weight is a plain tensor on a real device: its
    output can be written into a buffer with one matmul."""
    weight = getattr(module, "weight", None)
    return (type(module) is nn.Linear and module.bias is None and weight is not None
            and type(weight) in (Tensor, nn.Parameter) and weight.device.type != "meta"
            and not module._forward_hooks and not module._forward_pre_hooks
            and "forward" not in vars(module))  # accelerate's hooks replace forward


def _device_of(module: nn.Module, fallback: Tensor) -> torch.device:
    param = next(module.parameters(), None)
    return fallback.device if param is None or param.device.type == "meta" else param.device
