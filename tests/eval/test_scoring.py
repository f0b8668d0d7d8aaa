"""Teacher-forced scoring on the tiny Llama: batched == unbatched (both paddings), and each
mode equals a direct computation from the model's own `output_hidden_states`."""

import pytest
import torch

from toolkit.decoding import dola_contrast, layer_divergences, sled_evolve
from toolkit.eval.scoring import encode_pair, score_pairs
from toolkit.graft import AugmentedModel
from toolkit.methods.options import DecodingConfig, DolaOptions, SledOptions, apply_preset

PAIRS = [
    ("Q: What is the capital of France?\nA:", " Paris."),
    ("Q: Is the sky green?\nA:", " No, the sky is blue on a clear day."),
    ("Q: Name a color.\nA:", " Red."),
    ("The cat sat on", " the mat."),
    ("Q: Why?\nA:", " Because it is."),
]
# K = V (300) evolves every token of the tiny vocabulary, so no score sits at the lower bound.
TFQA = apply_preset(DecodingConfig(sled=SledOptions(evolution_rate=2.5, evolution_scale=300)),
                    "truthfulqa")
FACTOR = apply_preset(DecodingConfig(sled=SledOptions(evolution_rate=2.0, evolution_scale=10),
                                     dola=DolaOptions(relative_top=0.5)), "factor")


def test_presets_are_the_reference_protocols():
    assert (TFQA.sled.op_T, TFQA.sled.evolution_lower_bound, TFQA.sled.score_log_softmax,
            TFQA.dola.relative_top) == (10, -100.0, False, 0.0)
    assert (FACTOR.sled.op_T, FACTOR.sled.evolution_lower_bound, FACTOR.sled.score_log_softmax,
            FACTOR.dola.relative_top) == (1, -2500.0, True, 0.1)
    assert TFQA.sled.evolution_rate == 2.5 and TFQA.dola.relative_top_value == -1000.0


@pytest.fixture(scope="module")
def am(tiny_llama_dir):
    return AugmentedModel.graft(str(tiny_llama_dir))


def _direct(am, prompt, continuation):
    """(final logits (P,V), early logits (P,N,V), targets (P,)) from output_hidden_states."""
    ids, start = encode_pair(am.tokenizer, prompt, continuation)
    x = torch.tensor([ids])
    rows = slice(start - 1, len(ids) - 1)
    lm_head = am.base.get_output_embeddings()
    with torch.no_grad():
        out = am.base(x, output_hidden_states=True)
        early = torch.stack([lm_head(out.hidden_states[layer][0, rows])
                             for layer in am.tap.candidate_layers], dim=1)
    final = out.logits[0, rows]
    return final, early, torch.tensor(ids[start:])


def test_encoding_scores_exactly_the_continuation(am):
    for prompt, continuation in PAIRS:
        ids, start = encode_pair(am.tokenizer, prompt, continuation)
        assert am.tokenizer.decode(ids[start:]) == continuation
        assert ids[:start] == am.tokenizer(prompt)["input_ids"]


def test_greedy_is_the_sum_of_model_log_probs(am):
    got = score_pairs(am, PAIRS, ["greedy"], TFQA, batch_size=4)["greedy"]
    for (prompt, continuation), value in zip(PAIRS, got, strict=True):
        final, _, targets = _direct(am, prompt, continuation)
        expected = final.log_softmax(-1)[torch.arange(len(targets)), targets].sum()
        assert value == pytest.approx(float(expected), abs=1e-4)
    assert all(v < 0 for v in got)


def _scored(am, mode, settings, batch_size):
    """(score_pairs' score, final, early, targets) per pair of PAIRS."""
    got = score_pairs(am, PAIRS, [mode], settings, batch_size=batch_size)[mode]
    return [(value, *_direct(am, *pair)) for pair, value in zip(PAIRS, got, strict=True)]


@pytest.mark.parametrize("settings", [TFQA, FACTOR], ids=["truthfulqa", "factor"])
def test_sled_is_sled_evolve_on_output_hidden_states(am, settings):
    sled, scored = settings.sled, _scored(am, "sled", settings, batch_size=3)
    for value, final, early, targets in scored:
        evolved = sled_evolve(final, early, evolution_rate=sled.evolution_rate,
                              evolution_scale=sled.evolution_scale,
                              evolution_lower_bound=sled.evolution_lower_bound, op_T=sled.op_T)
        if sled.score_log_softmax:
            evolved = evolved.log_softmax(-1)
        expected = evolved[torch.arange(len(targets)), targets].sum()
        assert value == pytest.approx(float(expected), rel=1e-6, abs=1e-3)
    assert len({value for value, *_ in scored}) == len(scored)


@pytest.mark.parametrize("settings", [TFQA, FACTOR], ids=["no-filter", "relative-top"])
def test_dola_matches_direct_contrast(am, settings):
    dola = settings.dola
    for value, final, early, targets in _scored(am, "dola", settings, batch_size=2):
        if dola.relative_top > 0:
            contrast, _ = dola_contrast(final, early, relative_top=dola.relative_top)
            contrast = torch.where(contrast == -torch.inf, dola.relative_top_value, contrast)
        else:
            j = layer_divergences(final, early).argmax(-1)
            contrast = final.log_softmax(-1) - early[torch.arange(len(j)), j].log_softmax(-1)
        expected = contrast[torch.arange(len(targets)), targets].sum()
        assert value == pytest.approx(float(expected), rel=1e-6, abs=1e-3)


@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_equals_unbatched(am, side):
    modes = ["greedy", "dola", "sled"]
    single = score_pairs(am, PAIRS, modes, FACTOR, batch_size=1)
    batched = score_pairs(am, PAIRS, modes, FACTOR, batch_size=5, padding_side=side)
    for mode in modes:
        assert batched[mode] == pytest.approx(single[mode], abs=1e-3)
    assert len(set(single["greedy"])) == len(PAIRS)
