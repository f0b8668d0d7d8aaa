"""Kept scratch buffers (toolkit.decoding.scratch): reused, per thread, never leaking into results."""

import threading

import torch

from toolkit.decoding import dola_contrast, sled_details
from toolkit.decoding.blocks import use_compile
from toolkit.decoding.scratch import scratch

CPU = torch.device("cpu")


def test_same_name_reuses_one_buffer_grown_to_the_largest_request():
    first = scratch("test.a", (2, 3, 10), torch.float32, CPU)
    smaller = scratch("test.a", (1, 3, 10), torch.float32, CPU)
    assert smaller.data_ptr() == first.data_ptr() and smaller.is_contiguous()
    larger = scratch("test.a", (4, 3, 10), torch.float32, CPU)
    assert larger.shape == (4, 3, 10)
    assert scratch("test.a", (2, 3, 10), torch.float32, CPU).data_ptr() == larger.data_ptr()
    other = scratch("test.b", (2, 3, 10), torch.float32, CPU)
    assert other.data_ptr() != larger.data_ptr()
    assert scratch("test.a", (2, 3, 10), torch.float64, CPU).dtype == torch.float64


def test_threads_and_compiled_blocks_get_their_own_tensors():
    mine = scratch("test.c", (8,), torch.float32, CPU)
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(
        scratch("test.c", (8,), torch.float32, CPU).data_ptr()))
    thread.start()
    thread.join()
    assert theirs[0] != mine.data_ptr()
    use_compile(True)
    try:
        assert scratch("test.c", (8,), torch.float32, CPU).data_ptr() != mine.data_ptr()
    finally:
        use_compile(False)


def test_results_do_not_share_memory_with_the_next_call():
    gen = torch.Generator().manual_seed(0)
    inputs = [(torch.randn(3, 500, generator=gen) * 4, torch.randn(3, 4, 500, generator=gen) * 4)
              for _ in range(2)]
    kw = dict(evolution_rate=2.0, evolution_scale=10)
    first_sled = sled_details(*inputs[0], **kw)
    first_dola = dola_contrast(*inputs[0])
    kept = [t.clone() for t in (first_sled.logits, first_sled.layer_weights, first_dola[0])]
    sled_details(*inputs[1], **kw)
    dola_contrast(*inputs[1])
    results = (first_sled.logits, first_sled.layer_weights, first_dola[0])
    for before, now in zip(kept, results, strict=True):
        assert torch.equal(before, now)


def test_buffers_made_in_inference_mode_are_replaced_outside_it():
    """vLLM samples under torch.inference_mode; the same thread may then decode with
    AugmentedModel under no_grad, where a tensor made in inference mode cannot be written.
    (In a new thread, whose buffers are all made here.)"""
    final, early = torch.randn(2, 50), torch.randn(2, 3, 50)
    results, errors = [], []

    def both() -> None:
        try:
            with torch.inference_mode():
                results.append(sled_details(final, early, evolution_rate=2.0,
                                            evolution_scale=5).logits.clone())
            with torch.no_grad():
                results.append(sled_details(final, early, evolution_rate=2.0,
                                            evolution_scale=5).logits)
        except RuntimeError as err:
            errors.append(err)

    thread = threading.Thread(target=both)
    thread.start()
    thread.join()
    assert not errors and torch.equal(results[0], results[1])
