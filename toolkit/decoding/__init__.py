"""Pure, batched decoding math (docs/methods.md sections 2-5). Imports torch only.

Shapes: B batch rows, N early layers, V vocabulary, K = SLED's evolution_scale, G temperatures.
"""

from toolkit.decoding.contrastive import contrastive_logits, contrastive_scores
from toolkit.decoding.delta import delta_extrapolate, delta_logits, trajectory_weights
from toolkit.decoding.dola import dola_contrast, dola_values, layer_divergences
from toolkit.decoding.edt import edt_logits, edt_temperature, entropy
from toolkit.decoding.p_less import p_less_filter, p_less_threshold
from toolkit.decoding.sled import SledResult, sled_details, sled_evolve, sled_step
from toolkit.decoding.temperature import apply_temperature, sample_tokens, temperature_log_probs
from toolkit.decoding.top_n_sigma import top_n_sigma
from toolkit.decoding.typical import typical_filter

__all__ = [
    "SledResult",
    "apply_temperature",
    "contrastive_logits",
    "contrastive_scores",
    "delta_extrapolate",
    "delta_logits",
    "dola_contrast",
    "dola_values",
    "edt_logits",
    "edt_temperature",
    "entropy",
    "layer_divergences",
    "p_less_filter",
    "p_less_threshold",
    "sample_tokens",
    "sled_details",
    "sled_evolve",
    "sled_step",
    "temperature_log_probs",
    "top_n_sigma",
    "trajectory_weights",
    "typical_filter",
]
