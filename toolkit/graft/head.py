"""AdaptiveDecoder head: an MLP from the last hidden state to a temperature grid (docs/methods.md section 5)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.core.errors import ConfigError
from toolkit.methods.options import HeadConfig


class AdaptiveDecoderHead(nn.Module):
    """Linear(d,H) - SiLU - Linear(H,H) - SiLU - Linear(H,G), last layer zero-initialised.

    The untrained head gives every grid temperature the same probability, 1/G. Its outputs
    follow the input: `head(h)` returns logits of h's dtype on h's device, whatever dtype and
    device the head's own weights have (h is moved to them for the matmuls).
    """

    def __init__(self, d_model: int, config: HeadConfig | None = None):
        super().__init__()
        self.config = config or HeadConfig()
        self.d_model = d_model
        hidden, grid = self.config.hidden_size, len(self.config.temperatures)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, grid),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        temperatures = torch.tensor([float(t) for t in self.config.temperatures])
        # Derived from the config (its one home), so not saved with the weights.
        self.register_buffer("temperatures", temperatures, persistent=False)

    @property
    def grid_size(self) -> int:
        return len(self.config.temperatures)

    def forward(self, h: Tensor) -> Tensor:
        """Logits over the temperature grid: (...,d) -> (...,G)."""
        if h.shape[-1] != self.d_model:
            raise ConfigError(
                f"the head expects hidden states of size {self.d_model}, got {tuple(h.shape)}; "
                "graft the head on the model whose hidden size it was built for"
            )
        weight = self.mlp[0].weight
        return self.mlp(h.to(device=weight.device, dtype=weight.dtype)).to(h)

    def log_probs(self, h: Tensor) -> Tensor:
        """Log-probabilities over the grid (...,G), computed in float32, returned in h's dtype."""
        return torch.log_softmax(self(h).float(), dim=-1).to(h.dtype)

    def choose(
        self, h: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """Grid index per row: (...,d) -> (...) long on h's device.

        Argmax by default; ties go to the lowest index (`torch.argmax` returns the first
        maximum), so the untrained head picks index 0. `sample=True` draws from the head's
        distribution, with `generator` if given (the draw runs on the generator's device).
        """
        probs = torch.softmax(self(h).float(), dim=-1)
        if not sample:
            return probs.argmax(dim=-1)
        flat = probs.reshape(-1, probs.shape[-1])
        if generator is not None:
            flat = flat.to(generator.device)
        drawn = torch.multinomial(flat, 1, generator=generator)
        return drawn.reshape(probs.shape[:-1]).to(h.device)
